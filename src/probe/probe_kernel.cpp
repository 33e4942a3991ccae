// GCC 12 warns about the deliberately undefined pass-through operand inside several AVX-512
// intrinsics (a false positive); silence it for this file, where the intrinsics are inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "probe/probe_kernel.h"

#include <cblas.h>
#include <omp.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#include "razor/error.h"

namespace razor::probe {

namespace {
// Cephes expf: exp(x) = 2^n * exp(r), r = x - n ln2 (ln2 split in two), |r| <= ln2 / 2,
// exp(r) = 1 + r + r^2 P(r).
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kC1 = 0.693359375f;
constexpr float kC2 = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f,
                kP3 = 4.1665795894e-2f, kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;
constexpr int kMaxTileRows = 1024;
constexpr float kExpLo = -100.0f, kExpHi = 88.3762626647949f;

#if defined(__AVX512F__)
inline __m512 exp512(__m512 x) {
  // max(lo, x) keeps a NaN x (the second operand is returned when either is NaN).
  x = _mm512_min_ps(_mm512_set1_ps(kExpHi), _mm512_max_ps(_mm512_set1_ps(kExpLo), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kC1), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kC2), r);
  __m512 p = _mm512_set1_ps(kP0);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP5));
  const __m512 r2 = _mm512_mul_ps(r, r);
  p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);  // exact 2^n scaling, underflows gracefully to 0
}
#endif

float* alloc_aligned(size_t n) {
  size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, std::max<size_t>(bytes, 64));
  if (!p) throw std::bad_alloc();
  return static_cast<float*>(p);
}
}  // namespace

float fast_exp(float x) {
  if (std::isnan(x)) return x;
  x = std::min(kExpHi, std::max(kExpLo, x));
  const float n = std::nearbyint(x * kLog2e);
  float r = x - n * kC1;
  r = r - n * kC2;
  float p = kP0;
  p = p * r + kP1;
  p = p * r + kP2;
  p = p * r + kP3;
  p = p * r + kP4;
  p = p * r + kP5;
  p = p * (r * r) + r + 1.0f;
  return std::ldexp(p, static_cast<int>(n));
}

float row_max(const float* s, int64_t n) {
#if defined(__AVX512F__)
  __m512 m0 = _mm512_set1_ps(-std::numeric_limits<float>::infinity()), m1 = m0;
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    m0 = _mm512_max_ps(m0, _mm512_loadu_ps(s + j));
    m1 = _mm512_max_ps(m1, _mm512_loadu_ps(s + j + 16));
  }
  for (; j + 16 <= n; j += 16) m0 = _mm512_max_ps(m0, _mm512_loadu_ps(s + j));
  if (j < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - j)) - 1);
    m1 = _mm512_mask_max_ps(m1, m, m1, _mm512_maskz_loadu_ps(m, s + j));
  }
  return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
#else
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, s[j]);
  return mx;
#endif
}

float exp_shift_sum(float* s, int64_t n, float mx) {
#if defined(__AVX512F__)
  const __m512 vmx = _mm512_set1_ps(mx);
  __m512 a0 = _mm512_setzero_ps(), a1 = a0;
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    __m512 e0 = exp512(_mm512_sub_ps(_mm512_loadu_ps(s + j), vmx));
    __m512 e1 = exp512(_mm512_sub_ps(_mm512_loadu_ps(s + j + 16), vmx));
    _mm512_storeu_ps(s + j, e0);
    _mm512_storeu_ps(s + j + 16, e1);
    a0 = _mm512_add_ps(a0, e0);
    a1 = _mm512_add_ps(a1, e1);
  }
  for (; j < n; j += 16) {
    const int64_t left = n - j;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
    __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + j), vmx));
    _mm512_mask_storeu_ps(s + j, m, e);
    a0 = _mm512_add_ps(a0, _mm512_maskz_mov_ps(m, e));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
#else
  float acc[16] = {};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int u = 0; u < 16; ++u) {
      s[j + u] = fast_exp(s[j + u] - mx);
      acc[u] += s[j + u];
    }
  for (; j < n; ++j) {
    s[j] = fast_exp(s[j] - mx);
    acc[0] += s[j];
  }
  float sum = 0;
  for (float a : acc) sum += a;
  return sum;
#endif
}

FusedProbeKernel::FusedProbeKernel(const FusedShape& shape, int threads, int tile_rows)
    : shape_(shape), threads_(std::max(1, threads)), tile_rows_(std::clamp(tile_rows, 1, kMaxTileRows)) {
  if (shape.n_heads <= 0 || shape.n_kv_heads <= 0 || shape.n_heads % shape.n_kv_heads != 0 ||
      shape.head_dim <= 0 || shape.length <= 0 || shape.repeats < 2)
    throw Error("probe kernel: invalid shape");
  const int64_t n = shape.n_tokens();
  n_tiles_ = static_cast<int>((n + tile_rows_ - 1) / tile_rows_);
  ld_max_ = (n + 15) / 16 * 16;
  scratch_.assign(threads_, nullptr);
  try {
    for (auto& p : scratch_) p = alloc_aligned(static_cast<size_t>(tile_rows_) * ld_max_ + 64);
  } catch (...) {
    for (auto* p : scratch_) std::free(p);
    throw;
  }
  ind_part_.assign(static_cast<size_t>(shape.n_heads) * n_tiles_, 0.0);
  echo_part_.assign(ind_part_.size(), 0.0);
}

FusedProbeKernel::~FusedProbeKernel() {
  for (auto* p : scratch_) std::free(p);
}

void FusedProbeKernel::tile(int h, int t, const float* q, const float* k, const float* v, float* out,
                            float* S, double* ind_part, double* echo_part) const {
  const int hd = shape_.head_dim;
  const int64_t q_dim = int64_t(shape_.n_heads) * hd, kv_dim = int64_t(shape_.n_kv_heads) * hd;
  const int g = h / (shape_.n_heads / shape_.n_kv_heads);
  const int64_t L = shape_.length, last_row = L * shape_.repeats;  // rows L+1 .. R*L count
  const int64_t n = shape_.n_tokens();
  const int64_t i0 = int64_t(t) * tile_rows_;
  const int64_t rows = std::min<int64_t>(tile_rows_, n - i0);
  const int64_t visible = i0 + rows;  // keys seen by the tile's last row; later key blocks are masked
  const int64_t ld = (visible + 15) / 16 * 16;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  // S = scale * Q K^T over the visible keys (the head's columns of q and k, read in place).
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(visible),
              hd, scale, q + i0 * q_dim + int64_t(h) * hd, static_cast<int>(q_dim), k + int64_t(g) * hd,
              static_cast<int>(kv_dim), 0.0f, S, static_cast<int>(ld));

  double ind = 0.0, echo = 0.0;
  float inv[kMaxTileRows];
  for (int64_t r = 0; r < rows; ++r) {
    float* s = S + r * ld;
    const int64_t row = i0 + r, len = row + 1;  // causal: keys 0..row
    const float mx = row_max(s, len);
    const float sum = exp_shift_sum(s, len, mx);
    std::fill(s + len, s + visible, 0.0f);
    inv[r] = 1.0f / sum;
    if (row > L && row <= last_row) {
      // Query i = row - 1 of the random part; earlier occurrences j = i - m L, full index j + 1.
      double e = 0.0, d = 0.0;
      for (int64_t key = row - L; key >= 1; key -= L) {
        e += s[key];
        d += s[key + 1];
      }
      const double dinv = 1.0 / static_cast<double>(sum);
      echo += e * dinv;
      ind += d * dinv;
    }
  }
  ind_part[size_t(h) * n_tiles_ + t] = ind;
  echo_part[size_t(h) * n_tiles_ + t] = echo;
  if (!out) return;

  // O = P V with unnormalised P, then each row scaled by 1 / sum.
  float* o = out + i0 * q_dim + int64_t(h) * hd;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), hd, static_cast<int>(visible),
              1.0f, S, static_cast<int>(ld), v + int64_t(g) * hd, static_cast<int>(kv_dim), 0.0f, o,
              static_cast<int>(q_dim));
  for (int64_t r = 0; r < rows; ++r) {
    float* orow = o + r * q_dim;
    const float f = inv[r];
    for (int d = 0; d < hd; ++d) orow[d] *= f;
  }
}

void FusedProbeKernel::run(const float* q, const float* k, const float* v, float* out, double* induction,
                           double* echo) {
  const int H = shape_.n_heads, n_items = H * n_tiles_;
  // Largest tiles (most keys) first, so the dynamic schedule ends balanced.
#pragma omp parallel num_threads(threads_)
  {
    float* S = scratch_[omp_get_thread_num()];
#pragma omp for schedule(dynamic, 1)
    for (int w = 0; w < n_items; ++w) {
      const int t = n_tiles_ - 1 - w / H, h = w % H;
      tile(h, t, q, k, v, out, S, ind_part_.data(), echo_part_.data());
    }
  }
  // Fixed-order reduction: the same scores whatever the schedule.
  const double rows = static_cast<double>(shape_.repeats - 1) * shape_.length;
  for (int h = 0; h < H; ++h) {
    double a = 0.0, b = 0.0;
    for (int t = 0; t < n_tiles_; ++t) {
      a += ind_part_[size_t(h) * n_tiles_ + t];
      b += echo_part_[size_t(h) * n_tiles_ + t];
    }
    induction[h] = a / rows;
    echo[h] = b / rows;
  }
}

ProbeAttention::ProbeAttention(const ModelConfig& config, int length, int repeats, int threads,
                               std::function<void(int)> on_layer)
    : config_(config),
      kernel_(FusedShape{config.n_heads, config.n_kv_heads, config.head_dim, length, repeats}, threads),
      on_layer_(std::move(on_layer)) {
  induction.assign(config.n_layers, std::vector<double>(config.n_heads, 0.0));
  echo.assign(config.n_layers, std::vector<double>(config.n_heads, 0.0));
}

void ProbeAttention::attend(int layer, int n, const float* q, const float* k, const float* v, float* out) {
  if (on_layer_) on_layer_(layer);
  if (n != kernel_.shape().n_tokens())
    throw Error("probe attention: expected " + std::to_string(kernel_.shape().n_tokens()) + " tokens, got " +
                std::to_string(n));
  const bool last = skip_last_output && layer == config_.n_layers - 1;
  if (last) std::memset(out, 0, sizeof(float) * size_t(n) * config_.q_dim());
  kernel_.run(q, k, v, last ? nullptr : out, induction.at(layer).data(), echo.at(layer).data());
}

}  // namespace razor::probe
