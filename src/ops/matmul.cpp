#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "ops/ops.h"

namespace razor::ops {
namespace {

// y[r] = sum_c W[r][c] * x[c] for BF16 W, float32 accumulation (exact widening of the weights).
float bf16_row_dot(const uint16_t* w, const float* x, int64_t cols) {
  int64_t c = 0;
  float s = 0.0f;
#if defined(__AVX512F__)
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  for (; c + 32 <= cols; c += 32) {
    __m512i a = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + c)));
    __m512i b = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + c + 16)));
    acc0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(a, 16)), _mm512_loadu_ps(x + c), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(b, 16)), _mm512_loadu_ps(x + c + 16), acc1);
  }
  for (; c + 16 <= cols; c += 16) {
    __m512i a = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + c)));
    acc0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(a, 16)), _mm512_loadu_ps(x + c), acc0);
  }
  s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
#endif
  for (; c < cols; ++c) s += bf16_to_f32(w[c]) * x[c];
  return s;
}

void bf16_gemv(const Matrix& W, const float* X, int64_t n, float* Y) {
  const uint16_t* w = W.bf16();
  const int64_t rows = W.rows, cols = W.cols;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i) Y[i * rows + r] = bf16_row_dot(w + r * cols, X + i * cols, cols);
}

// BF16 weights, many rows of X: widen a panel of weight rows to F32, then BLAS GEMM on it.
// Panels are split across threads; BLAS (OpenMP build) runs single-threaded inside.
void bf16_gemm(const Matrix& W, const float* X, int64_t n, float* Y) {
  const int64_t rows = W.rows, cols = W.cols;
  const int64_t panel = 128;
  const int64_t n_panels = (rows + panel - 1) / panel;
#pragma omp parallel
  {
    std::vector<float> buf(static_cast<size_t>(panel * cols));
#pragma omp for schedule(dynamic, 1)
    for (int64_t p = 0; p < n_panels; ++p) {
      const int64_t r0 = p * panel, nr = std::min(panel, rows - r0);
      const uint16_t* src = W.bf16() + r0 * cols;
      for (int64_t i = 0; i < nr * cols; ++i) buf[i] = bf16_to_f32(src[i]);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(nr),
                  static_cast<int>(cols), 1.0f, X, static_cast<int>(cols), buf.data(),
                  static_cast<int>(cols), 0.0f, Y + r0, static_cast<int>(rows));
    }
  }
}

}  // namespace

void matmul(const Matrix& W, const float* X, int64_t n, float* Y) {
  if (W.dtype == DType::BF16) {
    if (n <= 4)
      bf16_gemv(W, X, n, Y);
    else
      bf16_gemm(W, X, n, Y);
    return;
  }
  if (n == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(W.rows), static_cast<int>(W.cols), 1.0f,
                W.f32(), static_cast<int>(W.cols), X, 1, 0.0f, Y, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(W.rows),
              static_cast<int>(W.cols), 1.0f, X, static_cast<int>(W.cols), W.f32(),
              static_cast<int>(W.cols), 0.0f, Y, static_cast<int>(W.rows));
}

void matrix_row(const Matrix& W, int64_t row, float* out) {
  if (W.dtype == DType::F32) {
    std::copy_n(W.f32() + row * W.cols, W.cols, out);
  } else {
    const uint16_t* src = W.bf16() + row * W.cols;
    for (int64_t i = 0; i < W.cols; ++i) out[i] = bf16_to_f32(src[i]);
  }
}

}  // namespace razor::ops
