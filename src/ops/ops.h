#pragma once
// Numeric kernels. Row-major float32 activations; weights as razor::Matrix (F32 or BF16).
#include <cstdint>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "razor/model.h"

namespace razor::ops {

// Y[n][W.rows] = X[n][W.cols] * W^T. n <= 4: AVX-512 GEMV (BF16 widened exactly), on the
// calling thread below 1 MiB of weights, else one contiguous row range per thread.
// n > 4: F32 goes to BLAS; BF16 converts weight panels to F32 for BLAS GEMM (exact), or, when
// bf16_activations() is on and n >= 16, rounds X to BF16 and uses the AVX512-BF16 GEMM.
// Multithreaded with OpenMP (single-threaded when called inside a parallel region).
void matmul(const Matrix& W, const float* X, int64_t n, float* Y);

// Opt-in, process-wide: BF16-weight products with n >= 16 rows (prefill) round the activations
// to BF16 (round to nearest even) and multiply with vdpbf16ps, F32 accumulation: about twice the
// F32 FMA rate, at a relative error of about 2^-9 per product (logits differ from the exact path
// by ~1e-3 relative). Off by default; the environment variable RAZOR_BF16_ACT=1 turns it on at
// startup. Without AVX512-BF16 in the build it has no effect. F32 weights are never affected.
void set_bf16_activations(bool on);
bool bf16_activations();
bool bf16_gemm_available();  // built with AVX512-BF16

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

// x[i] = exp(x[i]) (vectorized; relative error below 1e-6, see exp512), returns the sum.
float exp_inplace(float* x, int64_t n);
// x[i] = exp(x[i] - max(x)), returns the sum (the softmax numerators and denominator).
float exp_shifted_inplace(float* x, int64_t n);

#if defined(__AVX512F__)
// exp for 16 lanes: x = k ln2 + r (Cody-Waite, |r| <= ln2/2), degree-7 Taylor polynomial for
// e^r (truncation < 6e-9 relative), scaled by 2^k with vscalefps (exact, handles underflow to
// denormals/0 and overflow to inf). Relative error a few ulp. Inputs are clamped to [-104, 104].
inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(104.0f)), _mm512_set1_ps(-104.0f));
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, k);
}
#endif

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

}  // namespace razor::ops
