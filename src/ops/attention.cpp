// Attention kernels. Prefill: query tiles against all visible keys with BLAS GEMMs and a
// vectorized softmax. Decode: one pass over K (16 keys at a time for all query heads of the
// group) and one over V, both streamed once per KV head, AVX-512 for head_dim a multiple of 16.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#include "ops/ops.h"

// GCC 12's AVX-512 intrinsics (unpack, extract, reductions) use a self-initialised "undefined"
// operand, which -Wmaybe-uninitialized reports once they are inlined: a false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace razor::ops {

namespace {

// Reference path (any head_dim, no AVX-512): query tiles of kAttnTile rows against all visible
// keys with two BLAS GEMMs; the scores tile lives in `scratch`.
void attend_causal_blas(const float* q, int64_t ldq, int64_t n, const float* K, const float* V, int64_t m,
                        int head_dim, float* out, int64_t ldo, float* scratch) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const int64_t past = m - n;  // tokens before the first query
  float inv[kAttnTile];
  for (int64_t i0 = 0; i0 < n; i0 += kAttnTile) {
    const int64_t rows = std::min(kAttnTile, n - i0);
    const int64_t visible = past + i0 + rows;  // keys seen by the tile's last row
    // S = scale * Q K^T over the visible keys; later rows of the tile see more keys.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(visible),
                head_dim, scale, q + i0 * ldq, static_cast<int>(ldq), K, head_dim, 0.0f, scratch,
                static_cast<int>(visible));
    for (int64_t r = 0; r < rows; ++r) {
      float* s = scratch + r * visible;
      const int64_t len = past + i0 + r + 1;
      inv[r] = 1.0f / exp_shifted_inplace(s, len);
      std::fill(s + len, s + visible, 0.0f);
    }
    // out = P V, then each row divided by its softmax denominator.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), head_dim,
                static_cast<int>(visible), 1.0f, scratch, static_cast<int>(visible), V, head_dim, 0.0f,
                out + i0 * ldo, static_cast<int>(ldo));
    for (int64_t r = 0; r < rows; ++r) {
      float* o = out + (i0 + r) * ldo;
      const float f = inv[r];
#pragma omp simd
      for (int d = 0; d < head_dim; ++d) o[d] *= f;
    }
  }
}

#if defined(__AVX512F__)

// Flash-style causal attention (online softmax over key blocks), head_dim = 16 * NV.
//
// K is transposed once per call into blocks of kBK keys, [block][d][kBK], so that a score row
// segment is a vector over keys. Queries go in tiles of up to kQT rows; for each key block the
// tile's micro-tiles of R = 24 / NV rows compute S = Q K^T (R x kBK, in registers), update their
// running max / denominator, rescale their output rows and accumulate P V with R x NV vector
// accumulators. Nothing of size m x n is materialised; a key block is reused by the whole query
// tile while it is in L1/L2.
constexpr int kBK = 64;
constexpr int kQT = 96;

// 64-byte aligned growable buffer (thread_local instances).
struct ThreadBuf {
  float* ptr = nullptr;
  size_t cap = 0;
  ~ThreadBuf() { std::free(ptr); }
  float* get(size_t n) {
    if (n > cap) {
      std::free(ptr);
      ptr = static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64));
      if (!ptr) throw Error("out of memory in attention scratch");
      cap = n;
    }
    return ptr;
  }
};

template <int NV>
void attend_causal_flash(const float* q, int64_t ldq, int64_t n, const float* K, const float* V, int64_t m,
                         float* out, int64_t ldo) {
  constexpr int hd = 16 * NV;
  constexpr int R = 24 / NV;              // rows per micro-tile
  constexpr int KW = kBK / 16;                    // key vectors per score row (64 keys)
  constexpr int SP = 1;                           // S passes per key block
  constexpr int RS = R * KW <= 24 ? R : 24 / KW;  // rows per S sub-pass (accumulators <= 24)
  static_assert(R % RS == 0, "micro-tile split");
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t past = m - n;
  const int64_t nblocks = (m + kBK - 1) / kBK;

  static thread_local ThreadBuf kt_buf, o_buf, ml_buf;
  float* KT = kt_buf.get(static_cast<size_t>(nblocks) * hd * kBK + 16);
  for (int64_t b = 0; b < nblocks; ++b) {
    float* dst = KT + b * hd * kBK;
    const int64_t kn = std::min<int64_t>(kBK, m - b * kBK);
    for (int64_t jj = 0; jj < kn; ++jj) {
      const float* src = K + (b * kBK + jj) * hd;
      for (int d = 0; d < hd; ++d) dst[d * kBK + jj] = src[d];
    }
    for (int64_t jj = kn; jj < kBK; ++jj)
      for (int d = 0; d < hd; ++d) dst[d * kBK + jj] = 0.0f;
  }
  constexpr int QT = (kQT + R - 1) / R * R;
  float* O = o_buf.get(static_cast<size_t>(QT) * hd);
  float* M = ml_buf.get(2 * QT + static_cast<size_t>(QT) * hd);  // running max, denominator, queries
  float* Qp = M + 2 * QT;  // the query tile, scaled, per micro-tile [d][R]
  float* L = M + QT;
  alignas(64) float P[R][kBK];
  const __m512 neg_inf = _mm512_set1_ps(-INFINITY);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

  for (int64_t q0 = 0; q0 < n; q0 += QT) {
    const int64_t qrows = std::min<int64_t>(QT, n - q0);
    std::fill(O, O + qrows * hd, 0.0f);
    std::fill(M, M + qrows, -INFINITY);
    std::fill(L, L + qrows, 0.0f);
    // Pack the tile's queries (times 1/sqrt(d)); rows past n repeat the last one (not stored).
    for (int64_t t0 = 0; t0 < qrows; t0 += R)
      for (int i = 0; i < R; ++i) {
        const float* src = q + (q0 + std::min<int64_t>(t0 + i, qrows - 1)) * ldq;
        for (int d = 0; d < hd; ++d) Qp[t0 * hd + d * R + i] = src[d] * scale;
      }
    const int64_t last_pos = past + q0 + qrows - 1;  // the tile's last query position
    for (int64_t b = 0; b * kBK <= last_pos; ++b) {
      const int64_t k0 = b * kBK;
      const float* KTb = KT + b * hd * kBK;
      for (int64_t t0 = 0; t0 < qrows; t0 += R) {
        const int rows = static_cast<int>(std::min<int64_t>(R, qrows - t0));
        const int64_t p_first = past + q0 + t0, p_last = p_first + rows - 1;
        if (p_last < k0) continue;  // every row of this micro-tile is before the block
        const float* Qt = Qp + t0 * hd;  // this micro-tile's queries, [d][R]
        // S = scale * Q K^T for the block.
        for (int sp = 0; sp < SP; ++sp)
          for (int i0 = 0; i0 < R; i0 += RS) {
            __m512 acc[RS][KW];
            for (int i = 0; i < RS; ++i)
              for (int w = 0; w < KW; ++w) acc[i][w] = _mm512_setzero_ps();
            const float* kt = KTb + sp * 16 * KW;
            for (int d = 0; d < hd; ++d) {
              __m512 kv[KW];
              for (int w = 0; w < KW; ++w) kv[w] = _mm512_load_ps(kt + d * kBK + 16 * w);
              for (int i = 0; i < RS; ++i) {
                const __m512 qb = _mm512_set1_ps(Qt[d * R + i0 + i]);
                for (int w = 0; w < KW; ++w) acc[i][w] = _mm512_fmadd_ps(qb, kv[w], acc[i][w]);
              }
            }
            for (int i = 0; i < RS; ++i)
              for (int w = 0; w < KW; ++w) _mm512_store_ps(&P[i0 + i][sp * 16 * KW + 16 * w], acc[i][w]);
          }
        // Causal mask, online softmax update, output rescale.
        const bool needs_mask = k0 + kBK - 1 > p_first;
        int64_t jend = 0;  // keys [k0, k0 + jend) are visible to some row of the micro-tile
        for (int i = 0; i < rows; ++i) {
          const int64_t pos = p_first + i;
          const int64_t visible = std::min<int64_t>(kBK, pos - k0 + 1);  // may be <= 0
          jend = std::max(jend, visible);
          __m512 sv[kBK / 16];
          for (int w = 0; w < kBK / 16; ++w) {
            sv[w] = _mm512_load_ps(&P[i][16 * w]);
            if (needs_mask) {
              const __mmask16 keep =
                  _mm512_cmplt_epi32_mask(_mm512_add_epi32(lane, _mm512_set1_epi32(16 * w)),
                                          _mm512_set1_epi32(static_cast<int>(std::max<int64_t>(visible, 0))));
              sv[w] = _mm512_mask_blend_ps(keep, neg_inf, sv[w]);
            }
          }
          __m512 mx = sv[0];
          for (int w = 1; w < kBK / 16; ++w) mx = _mm512_max_ps(mx, sv[w]);
          const float bmax = _mm512_reduce_max_ps(mx);
          float* Orow = O + (t0 + i) * hd;
          if (visible <= 0) {  // nothing visible in this block for this row
            for (int w = 0; w < kBK / 16; ++w) _mm512_store_ps(&P[i][16 * w], _mm512_setzero_ps());
            continue;
          }
          const float m_old = M[t0 + i], m_new = std::max(m_old, bmax);
          const __m512 vm = _mm512_set1_ps(m_new);
          __m512 sum = _mm512_setzero_ps();
          for (int w = 0; w < kBK / 16; ++w) {
            const __m512 e = exp512(_mm512_sub_ps(sv[w], vm));
            _mm512_store_ps(&P[i][16 * w], e);
            sum = _mm512_add_ps(sum, e);
          }
          const float alpha = m_old == -INFINITY ? 0.0f : _mm512_cvtss_f32(exp512(_mm512_set1_ps(m_old - m_new)));
          L[t0 + i] = L[t0 + i] * alpha + _mm512_reduce_add_ps(sum);
          M[t0 + i] = m_new;
          if (alpha != 1.0f) {
            const __m512 va = _mm512_set1_ps(alpha);
            for (int v = 0; v < NV; ++v) _mm512_store_ps(Orow + 16 * v, _mm512_mul_ps(_mm512_load_ps(Orow + 16 * v), va));
          }
        }
        // O += P V over the visible keys of the block.
        const int64_t jn = std::min<int64_t>(jend, m - k0);
        __m512 acc[R][NV];
        for (int i = 0; i < R; ++i)
          for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_load_ps(O + (t0 + std::min(i, rows - 1)) * hd + 16 * v);
        const float* Vb = V + k0 * hd;
        for (int64_t j = 0; j < jn; ++j) {
          __m512 vv[NV];
          for (int v = 0; v < NV; ++v) vv[v] = _mm512_loadu_ps(Vb + j * hd + 16 * v);
          for (int i = 0; i < R; ++i) {
            const __m512 pb = _mm512_set1_ps(P[i][j]);
            for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(pb, vv[v], acc[i][v]);
          }
        }
        for (int i = 0; i < rows; ++i)
          for (int v = 0; v < NV; ++v) _mm512_store_ps(O + (t0 + i) * hd + 16 * v, acc[i][v]);
      }
    }
    for (int64_t i = 0; i < qrows; ++i) {
      const __m512 inv = _mm512_set1_ps(1.0f / L[i]);
      float* o = out + (q0 + i) * ldo;
      for (int v = 0; v < NV; ++v) _mm512_storeu_ps(o + 16 * v, _mm512_mul_ps(_mm512_load_ps(O + i * hd + 16 * v), inv));
    }
  }
}

#endif  // __AVX512F__

}  // namespace

void attend_causal(const float* q, int64_t ldq, int64_t n, const float* K, const float* V, int64_t m,
                   int head_dim, float* out, int64_t ldo, float* scratch) {
  if (n <= 0) return;
#if defined(__AVX512F__)
  switch (head_dim) {
    case 64: return attend_causal_flash<4>(q, ldq, n, K, V, m, out, ldo);
    case 128: return attend_causal_flash<8>(q, ldq, n, K, V, m, out, ldo);
    case 32: return attend_causal_flash<2>(q, ldq, n, K, V, m, out, ldo);
    case 16: return attend_causal_flash<1>(q, ldq, n, K, V, m, out, ldo);
    default: break;
  }
#endif
  attend_causal_blas(q, ldq, n, K, V, m, head_dim, out, ldo, scratch);
}

namespace {

#if defined(__AVX512F__)

// Sums of 16 vectors, lane j of the result = horizontal sum of a[j].
inline __m512 hsum16(const __m512 (&a)[16]) {
  __m512 u[4];
  for (int g = 0; g < 4; ++g) {
    const __m512 *x = a + 4 * g;
    const __m512 t01 = _mm512_add_ps(_mm512_unpacklo_ps(x[0], x[1]), _mm512_unpackhi_ps(x[0], x[1]));
    const __m512 t23 = _mm512_add_ps(_mm512_unpacklo_ps(x[2], x[3]), _mm512_unpackhi_ps(x[2], x[3]));
    // per 128-bit block b: [x0_b, x1_b, x2_b, x3_b] (partial sums over that block)
    u[g] = _mm512_add_ps(_mm512_shuffle_ps(t01, t23, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(t01, t23, _MM_SHUFFLE(3, 2, 3, 2)));
  }
  const __m512 w01 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x44), _mm512_shuffle_f32x4(u[0], u[1], 0xEE));
  const __m512 w23 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x44), _mm512_shuffle_f32x4(u[2], u[3], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_f32x4(w01, w23, 0x88), _mm512_shuffle_f32x4(w01, w23, 0xDD));
}

// s[r * lds + j] = scale * q_r . K_j for g heads and keys [0, m); head_dim = 16 * NV.
template <int NV>
void qk_logits(const float* q, int g, const float* K, int64_t m, float scale, float* s, int64_t lds) {
  constexpr int hd = 16 * NV;
  const __m512 vs = _mm512_set1_ps(scale);
  int64_t j0 = 0;
  for (; j0 + 16 <= m; j0 += 16) {
    const float* kb = K + j0 * hd;
    for (int r = 0; r < g; ++r) {
      __m512 qv[NV];
      for (int v = 0; v < NV; ++v) qv[v] = _mm512_loadu_ps(q + r * hd + 16 * v);
      __m512 acc[16];
#pragma GCC unroll 16
      for (int jj = 0; jj < 16; ++jj) {
        __m512 a = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kb + jj * hd));
        for (int v = 1; v < NV; ++v) a = _mm512_fmadd_ps(qv[v], _mm512_loadu_ps(kb + jj * hd + 16 * v), a);
        acc[jj] = a;
      }
      _mm512_storeu_ps(s + r * lds + j0, _mm512_mul_ps(hsum16(acc), vs));
    }
  }
  for (; j0 < m; ++j0) {
    const float* k = K + j0 * hd;
    for (int r = 0; r < g; ++r) {
      __m512 a = _mm512_mul_ps(_mm512_loadu_ps(q + r * hd), _mm512_loadu_ps(k));
      for (int v = 1; v < NV; ++v) a = _mm512_fmadd_ps(_mm512_loadu_ps(q + r * hd + 16 * v), _mm512_loadu_ps(k + 16 * v), a);
      s[r * lds + j0] = _mm512_reduce_add_ps(a) * scale;
    }
  }
}

// out[r] += sum_j p[r * ldp + j] V_j for HG heads, keys [j0, j1); head_dim = 16 * NV.
template <int NV, int HG>
void pv_accumulate(const float* p, int64_t ldp, const float* V, int64_t j0, int64_t j1, float* out) {
  constexpr int hd = 16 * NV;
  __m512 acc[HG][NV];
  for (int r = 0; r < HG; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_loadu_ps(out + r * hd + 16 * v);
  for (int64_t j = j0; j < j1; ++j) {
    __m512 vv[NV];
    for (int v = 0; v < NV; ++v) vv[v] = _mm512_loadu_ps(V + j * hd + 16 * v);
    for (int r = 0; r < HG; ++r) {
      const __m512 pr = _mm512_set1_ps(p[r * ldp + j]);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(pr, vv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < HG; ++r)
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(out + r * hd + 16 * v, acc[r][v]);
}

template <int NV, int H = 2>
void pv_group(int hg, const float* p, int64_t ldp, const float* V, int64_t j0, int64_t j1, float* out) {
  if constexpr (H <= 8 && H * NV <= 24) {
    if (hg == H) return pv_accumulate<NV, H>(p, ldp, V, j0, j1, out);
    return pv_group<NV, H + 1>(hg, p, ldp, V, j0, j1, out);
  } else {
    for (int r = 0; r < hg; ++r) pv_accumulate<NV, 1>(p + r * ldp, ldp, V, j0, j1, out + r * 16 * NV);
  }
}

template <int NV>
void attend_decode_avx512(const float* q, int g, const float* K, const float* V, int64_t m, const float* kc,
                          const float* vc, float comp_log, float* out, float* scratch) {
  constexpr int hd = 16 * NV;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t cols = m + (kc ? 1 : 0);
  qk_logits<NV>(q, g, K, m, scale, scratch, cols);
  if (kc)
    for (int r = 0; r < g; ++r) scratch[r * cols + m] = dot(q + r * hd, kc, hd) * scale + comp_log;
  float inv[64];
  float* invp = g <= 64 ? inv : nullptr;
  std::vector<float> inv_big;
  if (!invp) {
    inv_big.resize(static_cast<size_t>(g));
    invp = inv_big.data();
  }
  for (int r = 0; r < g; ++r) invp[r] = 1.0f / exp_shifted_inplace(scratch + r * cols, cols);
  std::fill(out, out + static_cast<int64_t>(g) * hd, 0.0f);
  // Heads in groups whose accumulators fit in registers; keys in chunks that stay in L1 while
  // every group reads them.
  const int max_hg = std::max(1, std::min(8, 24 / NV));
  const int n_groups = (g + max_hg - 1) / max_hg;
  constexpr int64_t chunk = 4096 / hd;  // 16 KiB of V
  for (int64_t j0 = 0; j0 < m; j0 += chunk) {
    const int64_t j1 = std::min(m, j0 + chunk);
    for (int gi = 0, r0 = 0; gi < n_groups; ++gi) {
      const int hg = (g - r0 + (n_groups - gi) - 1) / (n_groups - gi);
      pv_group<NV>(hg, scratch + r0 * cols, cols, V, j0, j1, out + r0 * hd);
      r0 += hg;
    }
  }
  for (int r = 0; r < g; ++r) {
    float* o = out + r * hd;
    const float f = invp[r];
    const __m512 vf = _mm512_set1_ps(f);
    if (vc) {
      const __m512 pc = _mm512_set1_ps(scratch[r * cols + m]);
      for (int v = 0; v < NV; ++v)
        _mm512_storeu_ps(o + 16 * v,
                         _mm512_mul_ps(_mm512_fmadd_ps(pc, _mm512_loadu_ps(vc + 16 * v), _mm512_loadu_ps(o + 16 * v)), vf));
    } else {
      for (int v = 0; v < NV; ++v) _mm512_storeu_ps(o + 16 * v, _mm512_mul_ps(_mm512_loadu_ps(o + 16 * v), vf));
    }
  }
}

#endif  // __AVX512F__

void attend_decode_generic(const float* q, int g, const float* K, const float* V, int64_t m, int head_dim,
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
    const float inv = 1.0f / exp_shifted_inplace(s, cols);
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

}  // namespace

void attend_decode(const float* q, int g, const float* K, const float* V, int64_t m, int head_dim,
                   const float* kc, const float* vc, float comp_log, float* out, float* scratch) {
  if (m <= 0 && !kc) {  // nothing visible
    std::fill(out, out + static_cast<int64_t>(g) * head_dim, 0.0f);
    return;
  }
#if defined(__AVX512F__)
  switch (head_dim) {
    case 32: return attend_decode_avx512<2>(q, g, K, V, m, kc, vc, comp_log, out, scratch);
    case 64: return attend_decode_avx512<4>(q, g, K, V, m, kc, vc, comp_log, out, scratch);
    case 128: return attend_decode_avx512<8>(q, g, K, V, m, kc, vc, comp_log, out, scratch);
    case 16: return attend_decode_avx512<1>(q, g, K, V, m, kc, vc, comp_log, out, scratch);
    default: break;
  }
#endif
  attend_decode_generic(q, g, K, V, m, head_dim, kc, vc, comp_log, out, scratch);
}

}  // namespace razor::ops
