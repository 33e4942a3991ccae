#pragma once
// Head-wise KV cache (SPEC section 4). Each (layer, KV head) is either a retrieval head that keeps
// every token, or a compressed head that keeps N0 sink tokens, a recent window of W tokens and one
// compensation token (mean post-RoPE key and mean value of the dropped tokens, counted as |D|
// tokens through a +ln|D| logit). The cache holds only what it keeps: bytes_held() is the memory
// it has allocated, not a mask over a full cache.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "razor/model.h"

namespace razor {

enum class CompressMode : uint8_t { Static, Rolling };

struct KVPolicy {
  // [layer][kv head]: true keeps the head's full cache. Empty means every head is retrieval
  // (the plain full cache).
  std::vector<std::vector<bool>> retrieval;
  int sink = 4;                  // N0
  int window = -1;               // W; < 0: W = max(compress_threshold, N / compress_ratio)
  int compress_threshold = 4000; // S0
  int compress_ratio = 5;        // C
  CompressMode mode = CompressMode::Static;
  bool compensation = true;

  bool is_full() const;
  int window_for(int n_prompt) const;
  // Throws razor::Error for negative sizes, a ratio < 1, or a retrieval table of the wrong shape.
  void validate(const ModelConfig& config) const;
  int n_retrieval() const;  // retrieval (layer, kv head) pairs; all of them when is_full()
};

// One (layer, KV head) of the cache. Rows are head_dim floats; keys are post-RoPE.
struct HeadCache {
  bool retrieval = true;
  std::vector<float> k, v;  // [capacity][head_dim]; capacity() rows are allocated
  int rows = 0;             // rows in use
  int ring_next = -1;       // rolling mode: next window row to overwrite (-1 = append)
  // Compensation token: running sums over the dropped set D (double, so that incremental
  // updates in rolling mode equal a recomputation from scratch). Empty without compensation,
  // and in static mode when nothing was dropped.
  std::vector<double> k_sum, v_sum;
  int64_t dropped = 0;      // |D|
};

class KVCache {
 public:
  // max_tokens: the most tokens this cache will ever see (prompt + generated); retrieval heads
  // reserve exactly that.
  KVCache(const ModelConfig& config, const KVPolicy& policy, int max_tokens);

  const KVPolicy& policy() const { return policy_; }
  int max_tokens() const { return max_tokens_; }
  int n_tokens(int layer) const { return n_tokens_[layer]; }
  bool compressed() const { return window_ >= 0; }
  int window() const { return window_; }  // W once compressed, else -1

  // Appends n tokens' keys and values for one layer: k, v are [n][kv_dim], k post-RoPE.
  void append(int layer, int n, const float* k, const float* v);

  // Attention for the last n appended tokens of `layer`: q [n][q_dim] -> out [n][q_dim].
  // Causal among those n. Multi-token calls need an uncompressed layer.
  void attend(int layer, int n, const float* q, float* out) const;

  // After the prompt (n_prompt tokens) went through `layer`: fixes W from the policy and drops
  // the middle of every non-retrieval head of that layer into its compensation token.
  void compress_layer(int layer, int n_prompt);

  const HeadCache& head(int layer, int kv_head) const { return heads_[layer * n_kv_ + kv_head]; }
  size_t bytes_held() const;         // bytes allocated for keys, values and compensation tokens
  size_t bytes_full(int n) const;    // a full float32 cache holding n tokens

 private:
  HeadCache& head_mut(int layer, int kv_head) { return heads_[layer * n_kv_ + kv_head]; }
  void push_row(int layer, HeadCache& h, const float* k, const float* v);
  void drop(HeadCache& h, const float* k, const float* v);

  ModelConfig config_;
  KVPolicy policy_;
  int max_tokens_;
  int n_kv_, head_dim_;
  int window_ = -1;
  std::vector<int> n_tokens_;   // per layer
  std::vector<HeadCache> heads_;
  std::vector<bool> layer_compressed_;
  mutable std::vector<std::vector<float>> scratch_;  // per thread
};

}  // namespace razor
