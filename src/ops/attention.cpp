#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/ops.h"

namespace razor::ops {

void attend_causal(const float* q, int64_t ldq, int64_t n, const float* K, const float* V, int64_t m,
                   int head_dim, float* out, int64_t ldo, float* scratch) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const int64_t past = m - n;  // tokens before the first query
  for (int64_t i0 = 0; i0 < n; i0 += kAttnTile) {
    const int64_t rows = std::min(kAttnTile, n - i0);
    const int64_t visible = past + i0 + rows;  // keys seen by the tile's last row
    // S = scale * Q K^T over the visible keys; later rows of the tile see more keys.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows),
                static_cast<int>(visible), head_dim, scale, q + i0 * ldq, static_cast<int>(ldq), K,
                head_dim, 0.0f, scratch, static_cast<int>(visible));
    for (int64_t r = 0; r < rows; ++r) {
      float* s = scratch + r * visible;
      const int64_t len = past + i0 + r + 1;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < len; ++j) mx = std::max(mx, s[j]);
      float sum = 0.0f;
      for (int64_t j = 0; j < len; ++j) {
        s[j] = std::exp(s[j] - mx);
        sum += s[j];
      }
      const float inv = 1.0f / sum;
      for (int64_t j = 0; j < len; ++j) s[j] *= inv;
      std::fill(s + len, s + visible, 0.0f);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), head_dim,
                static_cast<int>(visible), 1.0f, scratch, static_cast<int>(visible), V, head_dim, 0.0f,
                out + i0 * ldo, static_cast<int>(ldo));
  }
}

void attend_decode(const float* q, int g, const float* K, const float* V, int64_t m, int head_dim,
                   const float* kc, const float* vc, float comp_log, float* out, float* scratch) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const int64_t cols = m + (kc ? 1 : 0);
  // Logits: each key row is read once for all g query heads of the group.
  for (int64_t j = 0; j < m; ++j) {
    const float* k = K + j * head_dim;
    for (int r = 0; r < g; ++r) scratch[r * cols + j] = dot(q + r * head_dim, k, head_dim) * scale;
  }
  if (kc)
    for (int r = 0; r < g; ++r) scratch[r * cols + m] = dot(q + r * head_dim, kc, head_dim) * scale + comp_log;
  for (int r = 0; r < g; ++r) {
    float* s = scratch + r * cols;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, s[j]);
    float sum = 0.0f;
    for (int64_t j = 0; j < cols; ++j) {
      s[j] = std::exp(s[j] - mx);
      sum += s[j];
    }
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < cols; ++j) s[j] *= inv;
    std::fill(out + r * head_dim, out + (r + 1) * head_dim, 0.0f);
  }
  for (int64_t j = 0; j < m; ++j) {
    const float* v = V + j * head_dim;
    for (int r = 0; r < g; ++r) {
      const float p = scratch[r * cols + j];
      float* o = out + r * head_dim;
#pragma omp simd
      for (int d = 0; d < head_dim; ++d) o[d] += p * v[d];
    }
  }
  if (vc)
    for (int r = 0; r < g; ++r) {
      const float p = scratch[r * cols + m];
      float* o = out + r * head_dim;
      for (int d = 0; d < head_dim; ++d) o[d] += p * vc[d];
    }
}

}  // namespace razor::ops
