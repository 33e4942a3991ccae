#pragma once
// The probe's fused attention: causal attention for one layer of a prefill that starts at position
// 0, computing each query head's echo and induction scores (SPEC section 2) from the same softmax
// probabilities. Tiles of query rows: S = scale * Q K^T over the visible keys only (BLAS), a row
// softmax (vectorised exp), the few probabilities the scores need, then O = P V (BLAS). Memory is
// one S tile per thread: never a T x T matrix.
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

#include "razor/session.h"

namespace razor::probe {

// exp(x) to ~1e-7 relative (Cephes expf polynomial); tiny (denormal or 0) below about -87.
float fast_exp(float x);
// s[j] = exp(s[j] - mx) for j < n; returns the sum. Vectorised (AVX-512 where available).
float exp_shift_sum(float* s, int64_t n, float mx);
// max of s[0..n), n >= 1.
float row_max(const float* s, int64_t n);

struct FusedShape {
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int length = 0, repeats = 0;  // probe geometry: tokens = 1 + length * repeats
  int n_tokens() const { return 1 + length * repeats; }
};

// One instance per probe run: per-thread scratch is allocated once, in the constructor.
// Work items are (KV head, tile of query rows): the KV head's query heads are stacked into one
// GEMM, keys are processed in blocks with an online softmax (running max and sum per row), so
// the S block stays in cache whatever the sequence length.
class FusedProbeKernel {
 public:
  // tile_rows / key_block 0: chosen from the shape.
  FusedProbeKernel(const FusedShape& shape, int threads, int tile_rows = 0, int key_block = 0);
  ~FusedProbeKernel();
  FusedProbeKernel(const FusedProbeKernel&) = delete;
  FusedProbeKernel& operator=(const FusedProbeKernel&) = delete;

  const FusedShape& shape() const { return shape_; }
  int tile_rows() const { return tile_rows_; }
  int key_block() const { return key_block_; }

  // q [n][n_heads * head_dim], k and v [n][n_kv_heads * head_dim] (post-RoPE), n = n_tokens().
  // out [n][n_heads * head_dim], or nullptr to skip O = P V. induction/echo: [n_heads] mean
  // scores. The result does not depend on the thread count or scheduling.
  void run(const float* q, const float* k, const float* v, float* out, double* induction, double* echo);

 private:
  struct RowState {
    float max = -std::numeric_limits<float>::infinity();
    double sum = 0.0, echo = 0.0, ind = 0.0;  // relative to exp(max)
  };
  void tile(int kv_head, int tile_index, const float* q, const float* k, const float* v, float* out, float* buf,
            RowState* state);

  FusedShape shape_;
  int threads_, group_ = 1, tile_rows_ = 0, key_block_ = 0, n_tiles_ = 0;
  int64_t ld_ = 0;
  std::vector<float*> scratch_;                 // per thread, 64-byte aligned: S block, Q stack, O
  std::vector<std::vector<RowState>> state_;    // per thread
  std::vector<double> ind_part_, echo_part_;    // [head][tile]
};

// The PrefillAttention the probe hands to Session::prefill: fused attention per layer, scores
// stored per [layer][query head].
class ProbeAttention : public PrefillAttention {
 public:
  ProbeAttention(const ModelConfig& config, int length, int repeats, int threads,
                 std::function<void(int layer)> on_layer = {}, int tile_rows = 0, int key_block = 0);
  void attend(int layer, int n, const float* q, const float* k, const float* v, float* out) override;

  // The last layer's attention output feeds nothing the probe reads: skip its P V product
  // (out is zero-filled instead). On by default.
  bool skip_last_output = true;

  std::vector<std::vector<double>> induction, echo;  // [layer][query head]

 private:
  ModelConfig config_;
  FusedProbeKernel kernel_;
  std::function<void(int)> on_layer_;
};

}  // namespace razor::probe
