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

FusedProbeKernel::FusedProbeKernel(const FusedShape& shape, int threads, int tile_rows, int key_block)
    : shape_(shape), threads_(std::max(1, threads)) {
  if (shape.n_heads <= 0 || shape.n_kv_heads <= 0 || shape.n_heads % shape.n_kv_heads != 0 ||
      shape.head_dim <= 0 || shape.length <= 0 || shape.repeats < 2)
    throw Error("probe kernel: invalid shape");
  group_ = shape.n_heads / shape.n_kv_heads;
  // The group's query heads are stacked into one GEMM of group * tile_rows rows (~512: BLAS runs
  // near peak there with head_dim-sized inner dimensions), and keys go in blocks whose S block
  // stays in L2 (~512 KB). Measured on Zen 4 at T = 10001: ~80 GFlop/s per core, against ~50
  // for one head per GEMM over all visible keys at once.
  if (tile_rows <= 0) tile_rows = std::clamp(512 / group_ / 8 * 8, 16, 256);
  tile_rows_ = std::clamp(tile_rows, 1, kMaxTileRows);
  const int64_t m_max = int64_t(group_) * tile_rows_;
  if (key_block <= 0) key_block = static_cast<int>(std::clamp<int64_t>(131072 / m_max / 16 * 16, 128, 4096));
  key_block_ = std::max(1, key_block);
  const int64_t n = shape.n_tokens();
  n_tiles_ = static_cast<int>((n + tile_rows_ - 1) / tile_rows_);
  ld_ = (std::min<int64_t>(key_block_, n) + 15) / 16 * 16;
  const int hd = shape.head_dim;
  const size_t per_thread = size_t(m_max) * ld_ + 2 * size_t(m_max) * hd + 64;
  scratch_.assign(threads_, nullptr);
  try {
    for (auto& p : scratch_) p = alloc_aligned(per_thread);
  } catch (...) {
    for (auto* p : scratch_) std::free(p);
    throw;
  }
  state_.assign(threads_, std::vector<RowState>(m_max));
  ind_part_.assign(static_cast<size_t>(shape.n_heads) * n_tiles_, 0.0);
  echo_part_.assign(ind_part_.size(), 0.0);
}

FusedProbeKernel::~FusedProbeKernel() {
  for (auto* p : scratch_) std::free(p);
}

void FusedProbeKernel::tile(int g, int t, const float* q, const float* k, const float* v, float* out, float* buf,
                            RowState* st) {
  const int hd = shape_.head_dim, G = group_;
  const int64_t q_dim = int64_t(shape_.n_heads) * hd, kv_dim = int64_t(shape_.n_kv_heads) * hd;
  const int64_t L = shape_.length, last_row = L * shape_.repeats;  // rows L+1 .. R*L count
  const int64_t n = shape_.n_tokens();
  const int64_t i0 = int64_t(t) * tile_rows_;
  const int64_t rows = std::min<int64_t>(tile_rows_, n - i0);
  const int64_t M = G * rows;         // stacked row m = a * rows + r: query head g*G + a, position i0 + r
  const int64_t visible = i0 + rows;  // keys seen by the tile's last row; later key blocks are masked
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  float* S = buf;                               // [M][ld_]
  float* Qs = buf + size_t(M) * ld_;            // [M][hd]
  float* O = Qs + size_t(M) * hd;               // [M][hd]

  for (int a = 0; a < G; ++a)
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(Qs + (a * rows + r) * hd, q + (i0 + r) * q_dim + int64_t(g * G + a) * hd, sizeof(float) * hd);
  for (int64_t m = 0; m < M; ++m) st[m] = RowState{};

  for (int64_t j0 = 0; j0 < visible; j0 += key_block_) {
    const int64_t nb = std::min<int64_t>(key_block_, visible - j0);
    // S = scale * Q K^T for this key block (the head's columns of k, read in place).
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(M), static_cast<int>(nb), hd, scale, Qs,
                hd, k + j0 * kv_dim + int64_t(g) * hd, static_cast<int>(kv_dim), 0.0f, S, static_cast<int>(ld_));
    for (int64_t m = 0; m < M; ++m) {
      float* s = S + m * ld_;
      RowState& rs = st[m];
      const int64_t row = i0 + m % rows;                         // full index of the query
      const int64_t len = std::min<int64_t>(nb, row + 1 - j0);  // causal: keys <= row
      if (len <= 0) {
        std::fill(s, s + nb, 0.0f);
        continue;
      }
      const float bmax = row_max(s, len);
      if (bmax > rs.max) {  // online softmax: move the row to the new reference
        if (j0 > 0) {
          const float f = std::exp(rs.max - bmax);
          rs.sum *= f;
          rs.echo *= f;
          rs.ind *= f;
          if (out)
            for (int d = 0; d < hd; ++d) O[m * hd + d] *= f;
        }
        rs.max = bmax;
      }
      rs.sum += exp_shift_sum(s, len, rs.max);
      std::fill(s + len, s + nb, 0.0f);
      if (row > L && row <= last_row) {
        // Query i = row - 1 of the random part; its earlier occurrences j = i - m L sit at full
        // index key = j + 1 (echo), and the tokens after them at key + 1 (induction).
        for (int64_t key = row - L; key >= 1; key -= L) {
          if (key >= j0 && key < j0 + len) rs.echo += s[key - j0];
          if (key + 1 >= j0 && key + 1 < j0 + len) rs.ind += s[key + 1 - j0];
        }
      }
    }
    if (out)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(M), hd, static_cast<int>(nb), 1.0f,
                  S, static_cast<int>(ld_), v + j0 * kv_dim + int64_t(g) * hd, static_cast<int>(kv_dim),
                  j0 == 0 ? 0.0f : 1.0f, O, hd);
  }

  for (int a = 0; a < G; ++a) {
    double ind = 0.0, echo = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      const RowState& rs = st[a * rows + r];
      const double inv = 1.0 / rs.sum;
      ind += rs.ind * inv;
      echo += rs.echo * inv;
      if (out) {
        const float f = static_cast<float>(inv);
        const float* src = O + (a * rows + r) * hd;
        float* dst = out + (i0 + r) * q_dim + int64_t(g * G + a) * hd;
        for (int d = 0; d < hd; ++d) dst[d] = src[d] * f;
      }
    }
    ind_part_[size_t(g * G + a) * n_tiles_ + t] = ind;
    echo_part_[size_t(g * G + a) * n_tiles_ + t] = echo;
  }
}

void FusedProbeKernel::run(const float* q, const float* k, const float* v, float* out, double* induction,
                           double* echo) {
  const int KV = shape_.n_kv_heads, n_items = KV * n_tiles_;
  // Largest tiles (most keys) first, so the dynamic schedule ends balanced.
#pragma omp parallel num_threads(threads_)
  {
    // BLAS calls in here run single-threaded. OpenBLAS sees that by itself inside an active
    // team, but a team of one is inactive: cap this task's nested thread count (an ICV local to
    // the region, restored when it ends).
    omp_set_num_threads(1);
    const int th = omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
    for (int w = 0; w < n_items; ++w) {
      const int t = n_tiles_ - 1 - w / KV, g = w % KV;
      tile(g, t, q, k, v, out, scratch_[th], state_[th].data());
    }
  }
  // Fixed-order reduction: the same scores whatever the schedule.
  const double rows = static_cast<double>(shape_.repeats - 1) * shape_.length;
  for (int h = 0; h < shape_.n_heads; ++h) {
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
                               std::function<void(int)> on_layer, int tile_rows, int key_block)
    : config_(config),
      kernel_(FusedShape{config.n_heads, config.n_kv_heads, config.head_dim, length, repeats}, threads, tile_rows,
              key_block),
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
