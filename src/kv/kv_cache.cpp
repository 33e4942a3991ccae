#include "razor/kv_cache.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "ops/ops.h"

namespace razor {

bool KVPolicy::is_full() const {
  for (const auto& layer : retrieval)
    for (bool r : layer)
      if (!r) return false;
  return true;
}

int KVPolicy::window_for(int n_prompt) const {
  if (window >= 0) return window;
  return std::max(compress_threshold, n_prompt / compress_ratio);
}

int KVPolicy::n_retrieval() const {
  int n = 0;
  for (const auto& layer : retrieval) n += static_cast<int>(std::count(layer.begin(), layer.end(), true));
  return n;
}

void KVPolicy::validate(const ModelConfig& c) const {
  auto bad = [](const std::string& m) { throw Error("invalid KV policy: " + m); };
  if (sink < 0) bad("--sink must be >= 0, got " + std::to_string(sink));
  if (window < -1) bad("--window must be >= 0, got " + std::to_string(window));
  if (compress_threshold < 0) bad("--compress-threshold must be >= 0");
  if (compress_ratio < 1) bad("--compress-ratio must be >= 1");
  if (!retrieval.empty()) {
    if (static_cast<int>(retrieval.size()) != c.n_layers) bad("retrieval table has wrong layer count");
    for (const auto& l : retrieval)
      if (static_cast<int>(l.size()) != c.n_kv_heads) bad("retrieval table has wrong KV head count");
  }
}

KVCache::KVCache(const ModelConfig& config, const KVPolicy& policy, int max_tokens)
    : config_(config), policy_(policy), max_tokens_(max_tokens), n_kv_(config.n_kv_heads),
      head_dim_(config.head_dim) {
  policy_.validate(config);
  n_tokens_.assign(config.n_layers, 0);
  layer_compressed_.assign(config.n_layers, false);
  heads_.resize(static_cast<size_t>(config.n_layers) * n_kv_);
  for (int l = 0; l < config.n_layers; ++l)
    for (int g = 0; g < n_kv_; ++g)
      head_mut(l, g).retrieval = policy_.retrieval.empty() || policy_.retrieval[l][g];
  scratch_.resize(static_cast<size_t>(omp_get_max_threads()));
}

void KVCache::drop(HeadCache& h, const float* k, const float* v) {
  ++h.dropped;
  if (!policy_.compensation) return;
  for (int d = 0; d < head_dim_; ++d) {
    h.k_sum[d] += k[d];
    h.v_sum[d] += v[d];
  }
}

void KVCache::push_row(int layer, HeadCache& h, const float* k, const float* v) {
  const size_t hd = static_cast<size_t>(head_dim_);
  if (layer_compressed_[layer] && !h.retrieval && policy_.mode == CompressMode::Rolling &&
      h.rows == policy_.sink + window_) {
    if (window_ == 0) {  // nothing is kept beyond the sinks
      drop(h, k, v);
      return;
    }
    // The oldest window row moves into the compensation token; the new row takes its place.
    const size_t r = static_cast<size_t>(h.ring_next);
    drop(h, h.k.data() + r * hd, h.v.data() + r * hd);
    std::memcpy(h.k.data() + r * hd, k, hd * 4);
    std::memcpy(h.v.data() + r * hd, v, hd * 4);
    h.ring_next = policy_.sink + (h.ring_next - policy_.sink + 1) % window_;
    return;
  }
  if (h.k.capacity() == 0) {
    // Retrieval heads hold every token this cache will see; others hold the prompt until it is
    // compressed.
    size_t rows = static_cast<size_t>(std::max(max_tokens_, 1));
    h.k.reserve(rows * hd);
    h.v.reserve(rows * hd);
  }
  h.k.insert(h.k.end(), k, k + hd);
  h.v.insert(h.v.end(), v, v + hd);
  ++h.rows;
}

void KVCache::append(int layer, int n, const float* k, const float* v) {
  const int kv_dim = n_kv_ * head_dim_;
  for (int g = 0; g < n_kv_; ++g) {
    HeadCache& h = head_mut(layer, g);
    for (int i = 0; i < n; ++i)
      push_row(layer, h, k + static_cast<size_t>(i) * kv_dim + g * head_dim_,
               v + static_cast<size_t>(i) * kv_dim + g * head_dim_);
  }
  n_tokens_[layer] += n;
}

void KVCache::attend(int layer, int n, const float* q, float* out) const {
  const int hd = head_dim_, G = config_.group_size(), q_dim = config_.q_dim();
  // One scratch buffer per thread; a later Session may have raised the thread count.
  const size_t threads = static_cast<size_t>(std::max(omp_get_max_threads(), 1));
  if (scratch_.size() < threads) scratch_.resize(threads);
  if (n == 1) {
#pragma omp parallel for schedule(dynamic, 1) if (n_kv_ > 1)
    for (int g = 0; g < n_kv_; ++g) {
      const HeadCache& h = head(layer, g);
      std::vector<float>& s = scratch_[omp_get_thread_num()];
      const size_t need = static_cast<size_t>(G) * (h.rows + 1) + 2 * hd;
      if (s.size() < need) s.resize(need);
      const float *kc = nullptr, *vc = nullptr;
      float comp_log = 0.0f;
      if (h.dropped > 0 && policy_.compensation) {
        float* km = s.data() + static_cast<size_t>(G) * (h.rows + 1);
        float* vm = km + hd;
        for (int d = 0; d < hd; ++d) {
          km[d] = static_cast<float>(h.k_sum[d] / static_cast<double>(h.dropped));
          vm[d] = static_cast<float>(h.v_sum[d] / static_cast<double>(h.dropped));
        }
        kc = km;
        vc = vm;
        comp_log = std::log(static_cast<float>(h.dropped));
      }
      ops::attend_decode(q + g * G * hd, G, h.k.data(), h.v.data(), h.rows, hd, kc, vc, comp_log,
                         out + g * G * hd, s.data());
    }
    return;
  }
  if (layer_compressed_[layer])
    throw Error("KV cache: multi-token attention after compression is not supported");
#pragma omp parallel for schedule(dynamic, 1)
  for (int hq = 0; hq < config_.n_heads; ++hq) {
    const HeadCache& h = head(layer, hq / G);
    std::vector<float>& s = scratch_[omp_get_thread_num()];
    const size_t need = static_cast<size_t>(ops::kAttnTile) * h.rows;
    if (s.size() < need) s.resize(need);
    ops::attend_causal(q + hq * hd, q_dim, n, h.k.data(), h.v.data(), h.rows, hd, out + hq * hd, q_dim,
                       s.data());
  }
}

void KVCache::compress_layer(int layer, int n_prompt) {
  if (policy_.is_full() || layer_compressed_[layer]) return;
  window_ = policy_.window_for(n_prompt);
  const int N0 = policy_.sink, W = window_;
  const size_t hd = static_cast<size_t>(head_dim_);
  for (int g = 0; g < n_kv_; ++g) {
    HeadCache& h = head_mut(layer, g);
    if (h.retrieval) continue;
    const int rows = h.rows;
    int keep_front = std::min(N0, rows);
    int drop_end = std::max(keep_front, rows - W);  // D = [keep_front, drop_end)
    // The compensation token exists once something is dropped: now, or (rolling) later on.
    if (policy_.compensation && (drop_end > keep_front || policy_.mode == CompressMode::Rolling)) {
      h.k_sum.assign(hd, 0.0);
      h.v_sum.assign(hd, 0.0);
    }
    for (int r = keep_front; r < drop_end; ++r) drop(h, h.k.data() + r * hd, h.v.data() + r * hd);
    const int kept = rows - (drop_end - keep_front);
    const size_t capacity = policy_.mode == CompressMode::Rolling
                                ? static_cast<size_t>(N0 + W)
                                : static_cast<size_t>(kept + std::max(0, max_tokens_ - n_prompt));
    std::vector<float> k, v;
    k.reserve(std::max(capacity, static_cast<size_t>(kept)) * hd);
    v.reserve(std::max(capacity, static_cast<size_t>(kept)) * hd);
    k.insert(k.end(), h.k.begin(), h.k.begin() + keep_front * hd);
    v.insert(v.end(), h.v.begin(), h.v.begin() + keep_front * hd);
    k.insert(k.end(), h.k.begin() + drop_end * hd, h.k.begin() + rows * hd);
    v.insert(v.end(), h.v.begin() + drop_end * hd, h.v.begin() + rows * hd);
    h.k.swap(k);
    h.v.swap(v);
    h.rows = kept;
    h.ring_next = N0;  // the window's oldest row once it is full
  }
  layer_compressed_[layer] = true;
}

size_t KVCache::bytes_held() const {
  size_t b = 0;
  for (const HeadCache& h : heads_)
    b += (h.k.capacity() + h.v.capacity()) * sizeof(float) +
         (h.k_sum.capacity() + h.v_sum.capacity()) * sizeof(double);
  return b;
}

size_t KVCache::bytes_full(int n) const {
  return static_cast<size_t>(n) * 2 * config_.n_layers * n_kv_ * head_dim_ * sizeof(float);
}

}  // namespace razor
