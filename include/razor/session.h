#pragma once
// The forward pass: a model, a KV cache and preallocated scratch. prefill() pushes many tokens
// through each layer at once (matrix-matrix projections); decode() pushes one.
#include <memory>
#include <vector>

#include "razor/kv_cache.h"
#include "razor/model.h"

namespace razor {

// Replaces the causal self-attention of a prefill that starts at position 0 (the probe fuses its
// scores into it). q [n][q_dim], k and v [n][kv_dim] (post-RoPE) -> out [n][q_dim].
class PrefillAttention {
 public:
  virtual ~PrefillAttention() = default;
  virtual void attend(int layer, int n, const float* q, const float* k, const float* v, float* out) = 0;
};

struct SessionOptions {
  int threads = 0;            // 0: all cores
  int max_tokens = 0;         // 0: model max_seq_len
  bool keep_cache = true;     // false: prefill only, no KV stored (the probe)
};

class Session {
 public:
  Session(const Model& model, const KVPolicy& policy, const SessionOptions& options = {});
  ~Session();

  const Model& model() const { return model_; }
  int pos() const { return pos_; }
  KVCache& cache() { return *cache_; }
  const KVCache& cache() const { return *cache_; }

  // Runs the prompt. logits: nullptr, or [vocab] for the last token, or (all_logits) [n][vocab].
  // A compressing policy compresses each layer when the prompt has gone through it.
  void prefill(const std::vector<int>& tokens, float* logits, bool all_logits = false,
               PrefillAttention* attention = nullptr);
  // One token at pos(); logits [vocab] (may be nullptr).
  void decode(int token, float* logits);

 private:
  struct Scratch;
  void forward(const int* tokens, int n, float* logits, bool all_logits, bool prefill,
               PrefillAttention* attention);

  const Model& model_;
  std::unique_ptr<KVCache> cache_;
  std::unique_ptr<Scratch> scratch_;
  int pos_ = 0;
  int threads_;
};

}  // namespace razor
