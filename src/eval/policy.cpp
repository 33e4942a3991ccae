#include "razor/policy.h"

#include <algorithm>
#include <cstdio>

#include "razor/error.h"

namespace razor {

PolicyKind parse_policy_kind(const std::string& name) {
  if (name == "auto") return PolicyKind::Auto;
  if (name == "full") return PolicyKind::Full;
  if (name == "razor") return PolicyKind::Razor;
  if (name == "streaming") return PolicyKind::Streaming;
  if (name == "random") return PolicyKind::Random;
  throw Error("unknown policy '" + name + "' (expected full, razor, streaming or random)");
}

std::string policy_kind_name(PolicyKind kind) {
  switch (kind) {
    case PolicyKind::Auto: return "auto";
    case PolicyKind::Full: return "full";
    case PolicyKind::Razor: return "razor";
    case PolicyKind::Streaming: return "streaming";
    case PolicyKind::Random: return "random";
  }
  return "?";
}

CompressMode parse_compress_mode(const std::string& name) {
  if (name == "static") return CompressMode::Static;
  if (name == "rolling") return CompressMode::Rolling;
  throw Error("unknown compression mode '" + name + "' (expected static or rolling)");
}

std::string compress_mode_name(CompressMode mode) { return mode == CompressMode::Rolling ? "rolling" : "static"; }

PolicyKind PolicyOptions::resolved_kind() const {
  if (kind != PolicyKind::Auto) return kind;
  return heads_path.empty() ? PolicyKind::Full : PolicyKind::Razor;
}

std::vector<std::pair<int, int>> heads_for_model(const HeadsFile& heads, const ModelConfig& c,
                                                 const std::string& path) {
  if (heads.probe) {
    const ProbeRecord& p = *heads.probe;
    if (p.n_layers != c.n_layers || p.n_kv_heads != c.n_kv_heads || p.n_heads != c.n_heads ||
        p.head_dim != c.head_dim)
      fail(path, "heads were found for a model with " + std::to_string(p.n_layers) + " layers, " +
                     std::to_string(p.n_heads) + " heads, " + std::to_string(p.n_kv_heads) +
                     " kv heads, head dim " + std::to_string(p.head_dim) + "; this model has " +
                     std::to_string(c.n_layers) + ", " + std::to_string(c.n_heads) + ", " +
                     std::to_string(c.n_kv_heads) + ", " + std::to_string(c.head_dim));
  }
  std::vector<std::pair<int, int>> out = heads.retrieval_heads();
  for (const auto& [layer, kv] : out) {
    if (layer < 0 || layer >= c.n_layers)
      fail(path, "retrieval head in layer " + std::to_string(layer) + ", but the model has " +
                     std::to_string(c.n_layers) + " layers (0.." + std::to_string(c.n_layers - 1) + ")");
    if (kv < 0 || kv >= c.n_kv_heads)
      fail(path, "retrieval head " + std::to_string(kv) + " in layer " + std::to_string(layer) +
                     ", but the model has " + std::to_string(c.n_kv_heads) + " kv heads per layer (0.." +
                     std::to_string(c.n_kv_heads - 1) + ")");
  }
  return out;
}

namespace {
uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
}  // namespace

std::vector<std::pair<int, int>> random_heads(const ModelConfig& c, int count, uint64_t seed) {
  const int total = c.n_layers * c.n_kv_heads;
  count = std::clamp(count, 0, total);
  std::vector<int> ids(total);
  for (int i = 0; i < total; ++i) ids[i] = i;
  uint64_t s = seed ^ 0x5241'5A4F'5248'4541ULL;  // "RAZORHEA"
  // Partial Fisher-Yates with an explicit RNG: the same draw on every platform.
  for (int i = 0; i < count; ++i) {
    const uint64_t span = static_cast<uint64_t>(total - i);
    const int j = i + static_cast<int>(splitmix64(s) % span);
    std::swap(ids[i], ids[j]);
  }
  std::vector<std::pair<int, int>> out;
  for (int i = 0; i < count; ++i) out.emplace_back(ids[i] / c.n_kv_heads, ids[i] % c.n_kv_heads);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::vector<bool>> retrieval_table(const ModelConfig& c, const std::vector<std::pair<int, int>>& heads) {
  std::vector<std::vector<bool>> t(c.n_layers, std::vector<bool>(c.n_kv_heads, false));
  for (const auto& [l, g] : heads) t.at(l).at(g) = true;
  return t;
}

KVPolicy build_policy(const PolicyOptions& o, const ModelConfig& c, const HeadsFile* heads) {
  const PolicyKind kind = o.resolved_kind();
  auto bad = [](const std::string& m) { throw Error(m); };
  if (o.sink < 0) bad("--sink must be >= 0, got " + std::to_string(o.sink));
  if (o.sink > c.max_seq_len)
    bad("--sink " + std::to_string(o.sink) + " is larger than the model's " + std::to_string(c.max_seq_len) +
        "-token context");
  if (o.window) {
    if (*o.window < 0) bad("--window must be >= 0, got " + std::to_string(*o.window));
    if (*o.window > c.max_seq_len)
      bad("--window " + std::to_string(*o.window) + " is larger than the model's " +
          std::to_string(c.max_seq_len) + "-token context");
  }
  if (o.compress_threshold < 0) bad("--compress-threshold must be >= 0, got " + std::to_string(o.compress_threshold));
  if (o.compress_ratio < 1) bad("--compress-ratio must be >= 1, got " + std::to_string(o.compress_ratio));

  KVPolicy p;
  p.sink = o.sink;
  p.window = o.window ? *o.window : -1;
  p.compress_threshold = o.compress_threshold;
  p.compress_ratio = o.compress_ratio;
  p.mode = o.mode;
  p.compensation = o.compensation;
  switch (kind) {
    case PolicyKind::Auto:
    case PolicyKind::Full:
      p.retrieval.clear();
      break;
    case PolicyKind::Streaming:
      p.retrieval = retrieval_table(c, {});
      p.compensation = false;
      break;
    case PolicyKind::Razor:
    case PolicyKind::Random: {
      if (o.heads_path.empty())
        bad("--policy " + policy_kind_name(kind) + " needs a heads file (--heads FILE, from razor probe)");
      HeadsFile read;
      if (!heads) {
        read = read_heads(o.heads_path);
        heads = &read;
      }
      auto pairs = heads_for_model(*heads, c, o.heads_path);
      if (kind == PolicyKind::Random) pairs = random_heads(c, static_cast<int>(pairs.size()), o.seed);
      p.retrieval = retrieval_table(c, pairs);
      break;
    }
  }
  p.validate(c);
  return p;
}

size_t predicted_kv_bytes(const ModelConfig& c, const KVPolicy& p, int n_prompt, int max_tokens) {
  const size_t hd = static_cast<size_t>(c.head_dim);
  const size_t full_rows = static_cast<size_t>(std::max(max_tokens, 1));
  const size_t row_bytes = 2 * hd * sizeof(float);
  if (p.is_full()) return static_cast<size_t>(c.n_layers) * c.n_kv_heads * full_rows * row_bytes;
  const int N0 = p.sink, W = p.window_for(n_prompt), n = n_prompt;
  const int keep_front = std::min(N0, n);
  const int drop_end = std::max(keep_front, n - W);
  const int kept = n - (drop_end - keep_front);
  size_t rows = p.mode == CompressMode::Rolling ? static_cast<size_t>(N0 + W)
                                                : static_cast<size_t>(kept + std::max(0, max_tokens - n));
  rows = std::max(rows, static_cast<size_t>(kept));
  const bool comp = p.compensation && (drop_end > keep_front || p.mode == CompressMode::Rolling);
  const size_t compressed = rows * row_bytes + (comp ? 2 * hd * sizeof(double) : 0);
  size_t total = 0;
  for (int l = 0; l < c.n_layers; ++l)
    for (int g = 0; g < c.n_kv_heads; ++g) total += p.retrieval[l][g] ? full_rows * row_bytes : compressed;
  return total;
}

std::optional<KVPolicy> streaming_at_bytes(const ModelConfig& c, const KVPolicy& base, size_t budget, int n_prompt,
                                           int max_tokens) {
  KVPolicy s = base;
  s.retrieval = retrieval_table(c, {});
  s.compensation = false;
  auto bytes = [&](int w) {
    s.window = w;
    return predicted_kv_bytes(c, s, n_prompt, max_tokens);
  };
  if (bytes(0) > budget) return std::nullopt;
  // Bytes grow with W (and stop growing once nothing is dropped); binary search the largest W.
  int lo = 0, hi = std::max(max_tokens, n_prompt) + 1;
  if (bytes(hi) <= budget) {
    lo = hi;
  } else {
    while (hi - lo > 1) {
      const int mid = lo + (hi - lo) / 2;
      (bytes(mid) <= budget ? lo : hi) = mid;
    }
  }
  // Smallest W with those bytes (a larger W that changes nothing would only confuse a reader).
  const size_t at = bytes(lo);
  int w = lo;
  while (w > 0 && bytes(w - 1) == at) --w;
  s.window = w;
  return s;
}

std::string describe_policy(const KVPolicy& p, const ModelConfig& c, int n_prompt) {
  const int total = c.n_layers * c.n_kv_heads;
  if (p.is_full()) return "full cache (" + std::to_string(total) + " kv heads)";
  char buf[256];
  std::snprintf(buf, sizeof buf, "%d/%d retrieval kv heads, N0=%d, W=%d, %s, %s", p.n_retrieval(), total, p.sink,
                p.window_for(n_prompt), compress_mode_name(p.mode).c_str(),
                p.compensation ? "compensation" : "no compensation");
  return buf;
}

}  // namespace razor
