#pragma once
// From user-facing policy options (SPEC section 4: full, razor, streaming, random) to a KVPolicy
// for one model. Shared by `razor eval` and `razor generate`.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "razor/heads.h"
#include "razor/kv_cache.h"
#include "razor/model.h"

namespace razor {

enum class PolicyKind : uint8_t {
  Auto,       // razor when a heads file is given, else full
  Full,       // no compression
  Razor,      // retrieval heads from a heads file
  Streaming,  // StreamingLLM: every head compressed, no compensation token
  Random,     // as many retrieval heads as the heads file, chosen with a seeded RNG
};

// "auto", "full", "razor", "streaming", "random"; anything else is a razor::Error.
PolicyKind parse_policy_kind(const std::string& name);
std::string policy_kind_name(PolicyKind kind);
CompressMode parse_compress_mode(const std::string& name);  // "static" | "rolling"
std::string compress_mode_name(CompressMode mode);

struct PolicyOptions {
  PolicyKind kind = PolicyKind::Auto;
  std::string heads_path;                 // required by razor and random
  int sink = 4;                           // N0
  std::optional<int> window;              // W; unset: max(S0, N / C)
  int compress_threshold = 4000;          // S0
  int compress_ratio = 5;                 // C
  CompressMode mode = CompressMode::Static;
  bool compensation = true;               // ignored by full and streaming
  uint64_t seed = 0;                      // random

  PolicyKind resolved_kind() const;       // Auto resolved
};

// Retrieval (layer, kv head) pairs of a heads file, checked against the model: a layer or KV
// head outside the model, or a probe record of another shape, is a razor::Error naming `path`.
std::vector<std::pair<int, int>> heads_for_model(const HeadsFile& heads, const ModelConfig& config,
                                                 const std::string& path);

// `count` distinct (layer, kv head) pairs drawn uniformly with a seeded RNG (the same on every
// platform), sorted.
std::vector<std::pair<int, int>> random_heads(const ModelConfig& config, int count, uint64_t seed);

// [layer][kv head] table with the given pairs marked retrieval.
std::vector<std::vector<bool>> retrieval_table(const ModelConfig& config,
                                               const std::vector<std::pair<int, int>>& heads);

// Builds and validates the policy. Reads the heads file when the kind needs one (pass `heads`
// to reuse one already read). Errors: negative or too large N0 / W, S0 < 0, C < 1, a kind that
// needs --heads without one, heads out of range.
KVPolicy build_policy(const PolicyOptions& options, const ModelConfig& config,
                      const HeadsFile* heads = nullptr);

// KV bytes a cache built with `policy` holds once a prompt of n_prompt tokens was prefilled
// (and compressed), for a session of max_tokens tokens. Equals KVCache::bytes_held() from then
// on: static mode reserves the continuation up front and rolling mode never grows.
size_t predicted_kv_bytes(const ModelConfig& config, const KVPolicy& policy, int n_prompt, int max_tokens);

// The streaming policy (N0 and mode from `base`) with the largest window whose KV bytes do not
// exceed `budget`; nullopt when even W = 0 exceeds it.
std::optional<KVPolicy> streaming_at_bytes(const ModelConfig& config, const KVPolicy& base, size_t budget,
                                           int n_prompt, int max_tokens);

// One-line description, e.g. "razor: 2/12 retrieval kv heads, N0=4, W=32, static, compensation".
std::string describe_policy(const KVPolicy& policy, const ModelConfig& config, int n_prompt);

}  // namespace razor
