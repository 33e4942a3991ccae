#pragma once
// Numeric kernels. Row-major float32 activations; weights as razor::Matrix (F32 or BF16).
#include <cstdint>

#include "razor/model.h"

namespace razor::ops {

// Y[n][W.rows] = X[n][W.cols] * W^T. F32 goes to BLAS; BF16 uses a widening GEMV for small n
// and converts weight panels to F32 for BLAS GEMM otherwise. Multithreaded with OpenMP.
void matmul(const Matrix& W, const float* X, int64_t n, float* Y);

// One row of W as float32 (embedding lookup).
void matrix_row(const Matrix& W, int64_t row, float* out);

// out = w * x / sqrt(mean(x^2) + eps) for each of n rows of size d (out may alias x).
void rmsnorm(float* out, const float* x, const float* w, int64_t n, int d, float eps);

// x[i] = silu(x[i]) * y[i]
void swiglu(float* x, const float* y, int64_t n);

// Per-position RoPE in the interleaved convention: pairs (2i, 2i+1) of each head rotate by
// pos * inv_freq[i].
struct Rope {
  int head_dim = 0;
  float inv_freq[512];  // head_dim / 2 entries
  void init(const ModelConfig& c);
  // x [n][n_heads * head_dim], rows at positions pos0, pos0 + 1, ...
  void apply(float* x, int64_t n, int n_heads, int64_t pos0) const;
};

// Causal attention of n new query rows against keys/values of one KV head stored contiguously
// [m][head_dim] (the new tokens are the last n of the m). Query head rows of q have stride ldq,
// out rows stride ldo. scratch: >= rows_per_tile * m floats.
void attend_causal(const float* q, int64_t ldq, int64_t n, const float* K, const float* V, int64_t m,
                   int head_dim, float* out, int64_t ldo, float* scratch);

// One decode step for g query heads sharing one KV head: keys/values [m][head_dim] in any
// order (all visible), plus an optional compensation token (kc, vc) whose logit gets +comp_log.
// scratch: >= g * (m + 1) floats.
void attend_decode(const float* q, int g, const float* K, const float* V, int64_t m, int head_dim,
                   const float* kc, const float* vc, float comp_log, float* out, float* scratch);

// Rows per query tile in attend_causal.
constexpr int64_t kAttnTile = 64;

float dot(const float* a, const float* b, int n);

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

}  // namespace razor::ops
