// Matrix products Y[n][N] = X[n][K] * W[N][K]^T with F32 or BF16 weights.
//
// Paths:
//  - n <= 4 (decode): GEMV kernels that read each weight once for all n rows, AVX-512, one
//    sequential stream per thread; matrices from 1 MiB up are split over threads (see
//    threads_for). BF16 weights are widened exactly (bf16 -> f32 is a shift).
//  - F32, n > 4: BLAS sgemm.
//  - BF16, n > 4, default: exact. Each thread widens a panel of weight rows to F32 and calls
//    sgemm on it (single-threaded inside the region); results equal F32 weights of the same values.
//  - BF16, n >= 16, opt-in (set_bf16_activations / RAZOR_BF16_ACT=1): activations are rounded to
//    BF16 and the product uses AVX512-BF16 vdpbf16ps (F32 accumulation), about twice the F32 FMA
//    rate. Each product then carries the activation's rounding error (relative 2^-9).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "ops/ops.h"

// GCC 12's AVX-512 intrinsics (extract, reductions) use a self-initialised "undefined" operand,
// which -Wmaybe-uninitialized reports once they are inlined: a false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace razor::ops {
namespace {

bool env_bf16_act() {
  const char* e = std::getenv("RAZOR_BF16_ACT");
  return e && *e && std::strcmp(e, "0") != 0;
}
std::atomic<bool> g_bf16_act{env_bf16_act()};

// 64-byte aligned growable scratch (one per thread via thread_local).
template <typename T>
struct AlignedBuf {
  T* ptr = nullptr;
  size_t cap = 0;
  ~AlignedBuf() { std::free(ptr); }
  T* get(size_t n) {
    if (n > cap) {
      std::free(ptr);
      size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
      ptr = static_cast<T*>(std::aligned_alloc(64, bytes));
      if (!ptr) throw Error("out of memory in matmul scratch");
      cap = n;
    }
    return ptr;
  }
};

// Threads for a GEMV over `bytes` of weights. A GEMV streams its weights once and is bound by
// memory bandwidth: on the target machine (2-core Zen 4 VM) one thread streams ~16 GB/s and two
// ~30 GB/s, so matrices from 1 MiB up are split into one contiguous row range per thread;
// smaller ones (L2/L3-resident, a few microseconds of work) stay on the calling thread, where
// an OpenMP region would cost more than it saves.
int threads_for(int64_t bytes) {
  if (omp_in_parallel()) return 1;
  const int nt = omp_get_max_threads();
  return bytes >= (int64_t(1) << 20) ? nt : 1;
}

// [begin, end) of part t of nt over count items, boundaries multiples of align.
inline void split(int64_t count, int t, int nt, int64_t align, int64_t& begin, int64_t& end) {
  const int64_t units = (count + align - 1) / align;
  begin = std::min(count, units * t / nt * align);
  end = std::min(count, units * (t + 1) / nt * align);
}

// ---------------------------------------------------------------------------------------------
// GEMV (n <= 4)

#if defined(__AVX512F__)

// Rows are processed one at a time so that each thread reads its weights as one sequential
// stream (interleaving several short rows defeats the hardware prefetchers: measured 2-2.5x
// less bandwidth with 4 interleaved rows of a 896-column matrix). Four accumulators per
// activation row keep the FMA latency hidden.

// F32 weights, N activation rows.
template <int N>
void gemv_f32_rows(const float* w, int64_t cols, const float* X, float* Y, int64_t ldy, int64_t r0, int64_t r1) {
  const int64_t c64 = cols & ~int64_t(63);
  for (int64_t r = r0; r < r1; ++r) {
    const float* p = w + r * cols;
    __m512 acc[N][4];
    for (int i = 0; i < N; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = _mm512_setzero_ps();
    for (int64_t c = 0; c < c64; c += 64) {
      const __m512 w0 = _mm512_loadu_ps(p + c), w1 = _mm512_loadu_ps(p + c + 16);
      const __m512 w2 = _mm512_loadu_ps(p + c + 32), w3 = _mm512_loadu_ps(p + c + 48);
      for (int i = 0; i < N; ++i) {
        const float* x = X + i * cols + c;
        acc[i][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x), acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + 16), acc[i][1]);
        acc[i][2] = _mm512_fmadd_ps(w2, _mm512_loadu_ps(x + 32), acc[i][2]);
        acc[i][3] = _mm512_fmadd_ps(w3, _mm512_loadu_ps(x + 48), acc[i][3]);
      }
    }
    for (int64_t c = c64; c < cols; c += 16) {
      const __mmask16 m = cols - c >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (cols - c)) - 1);
      const __m512 wv = _mm512_maskz_loadu_ps(m, p + c);
      for (int i = 0; i < N; ++i) acc[i][0] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, X + i * cols + c), acc[i][0]);
    }
    for (int i = 0; i < N; ++i)
      Y[i * ldy + r] = _mm512_reduce_add_ps(
          _mm512_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]), _mm512_add_ps(acc[i][2], acc[i][3])));
  }
}

// BF16 weights. A 32-bit lane of 32 loaded bf16 values holds elements (2j, 2j+1): shifting left
// by 16 gives element 2j as f32, masking the low half gives element 2j+1. Activations are
// pre-permuted to match: per 32 columns, 16 even then 16 odd ones (zero-padded to 32).
template <int N>
void gemv_bf16_rows(const uint16_t* w, int64_t cols, const float* xp, int64_t ldxp, float* Y, int64_t ldy,
                    int64_t r0, int64_t r1) {
  const __m512i hi = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
  const int64_t c64 = cols & ~int64_t(63);
  for (int64_t r = r0; r < r1; ++r) {
    const uint16_t* p = w + r * cols;
    __m512 acc[N][4];
    for (int i = 0; i < N; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = _mm512_setzero_ps();
    for (int64_t c = 0; c < c64; c += 64) {
      const __m512i v = _mm512_loadu_si512(p + c), u = _mm512_loadu_si512(p + c + 32);
      const __m512 ve = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
      const __m512 vo = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
      const __m512 ue = _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
      const __m512 uo = _mm512_castsi512_ps(_mm512_and_si512(u, hi));
      for (int i = 0; i < N; ++i) {
        const float* x = xp + i * ldxp + c;
        acc[i][0] = _mm512_fmadd_ps(ve, _mm512_load_ps(x), acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(vo, _mm512_load_ps(x + 16), acc[i][1]);
        acc[i][2] = _mm512_fmadd_ps(ue, _mm512_load_ps(x + 32), acc[i][2]);
        acc[i][3] = _mm512_fmadd_ps(uo, _mm512_load_ps(x + 48), acc[i][3]);
      }
    }
    for (int64_t c = c64; c < cols; c += 32) {
      const __mmask32 m = cols - c >= 32 ? ~__mmask32(0) : static_cast<__mmask32>((uint64_t(1) << (cols - c)) - 1);
      const __m512i v = _mm512_maskz_loadu_epi16(m, p + c);
      const __m512 ve = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
      const __m512 vo = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
      for (int i = 0; i < N; ++i) {
        const float* x = xp + i * ldxp + c;
        acc[i][0] = _mm512_fmadd_ps(ve, _mm512_load_ps(x), acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(vo, _mm512_load_ps(x + 16), acc[i][1]);
      }
    }
    for (int i = 0; i < N; ++i)
      Y[i * ldy + r] = _mm512_reduce_add_ps(
          _mm512_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]), _mm512_add_ps(acc[i][2], acc[i][3])));
  }
}

template <typename F>
void dispatch_n(int64_t n, F&& f) {
  switch (n) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    default: f(std::integral_constant<int, 4>{}); break;
  }
}

void f32_gemv(const Matrix& W, const float* X, int64_t n, float* Y) {
  const int64_t rows = W.rows, cols = W.cols;
  const int nt = threads_for(rows * cols * 4);
  auto run = [&](int t, int nth) {
    int64_t r0, r1;
    split(rows, t, nth, 16, r0, r1);
    dispatch_n(n, [&](auto N) { gemv_f32_rows<decltype(N)::value>(W.f32(), cols, X, Y, rows, r0, r1); });
  };
  if (nt <= 1) {
    run(0, 1);
    return;
  }
#pragma omp parallel num_threads(nt)
  run(omp_get_thread_num(), omp_get_num_threads());
}

void bf16_gemv(const Matrix& W, const float* X, int64_t n, float* Y) {
  const int64_t rows = W.rows, cols = W.cols;
  const int64_t ldxp = (cols + 31) / 32 * 32;
  static thread_local AlignedBuf<float> xbuf;
  float* xp = xbuf.get(static_cast<size_t>(n * ldxp));
  for (int64_t i = 0; i < n; ++i) {
    const float* x = X + i * cols;
    float* o = xp + i * ldxp;
    for (int64_t c0 = 0; c0 < ldxp; c0 += 32)
      for (int j = 0; j < 16; ++j) {
        const int64_t e = c0 + 2 * j, od = e + 1;
        o[c0 + j] = e < cols ? x[e] : 0.0f;
        o[c0 + 16 + j] = od < cols ? x[od] : 0.0f;
      }
  }
  const int nt = threads_for(rows * cols * 2);
  auto run = [&](int t, int nth) {
    int64_t r0, r1;
    split(rows, t, nth, 16, r0, r1);
    dispatch_n(n, [&](auto N) { gemv_bf16_rows<decltype(N)::value>(W.bf16(), cols, xp, ldxp, Y, rows, r0, r1); });
  };
  if (nt <= 1) {
    run(0, 1);
    return;
  }
#pragma omp parallel num_threads(nt)
  run(omp_get_thread_num(), omp_get_num_threads());
}

#else  // portable fallbacks

void f32_gemv(const Matrix& W, const float* X, int64_t n, float* Y) {
  const int64_t rows = W.rows, cols = W.cols;
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 16))
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i) Y[i * rows + r] = dot(W.f32() + r * cols, X + i * cols, static_cast<int>(cols));
}

void bf16_gemv(const Matrix& W, const float* X, int64_t n, float* Y) {
  const int64_t rows = W.rows, cols = W.cols;
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 16))
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t* w = W.bf16() + r * cols;
      const float* x = X + i * cols;
      float s = 0.0f;
      for (int64_t c = 0; c < cols; ++c) s += bf16_to_f32(w[c]) * x[c];
      Y[i * rows + r] = s;
    }
}

#endif

// ---------------------------------------------------------------------------------------------
// BF16 weights, many rows, exact: widen a panel of weight rows to F32 and run sgemm on it.
// Threads own contiguous row ranges (so X is packed by BLAS once per panel, panels are large).

void bf16_gemm_exact(const Matrix& W, const float* X, int64_t n, float* Y) {
  const int64_t rows = W.rows, cols = W.cols;
  // Panel: up to 16 MiB of F32 weights (at least 16 rows), so that a thread usually makes one
  // sgemm call for its whole range: BLAS packs X once per call, and X is large in a prefill.
  const int64_t panel = std::max<int64_t>(16, ((int64_t(1) << 22) / std::max<int64_t>(cols, 1)) / 16 * 16);
  const int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
#pragma omp parallel num_threads(nt)
  {
    int64_t b, e;
    split(rows, omp_get_thread_num(), omp_get_num_threads(), 16, b, e);
    static thread_local AlignedBuf<float> wbuf;
    float* buf = wbuf.get(static_cast<size_t>(std::min(panel, std::max<int64_t>(e - b, 1)) * cols));
    for (int64_t r0 = b; r0 < e; r0 += panel) {
      const int64_t nr = std::min(panel, e - r0);
      const uint16_t* src = W.bf16() + r0 * cols;
      const int64_t count = nr * cols;
      int64_t i = 0;
#if defined(__AVX512F__)
      for (; i + 16 <= count; i += 16) {
        __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
        _mm512_store_ps(buf + i, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
      }
#endif
      for (; i < count; ++i) buf[i] = bf16_to_f32(src[i]);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(nr),
                  static_cast<int>(cols), 1.0f, X, static_cast<int>(cols), buf, static_cast<int>(cols), 0.0f,
                  Y + r0, static_cast<int>(rows));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// BF16 weights and BF16-rounded activations: AVX512-BF16 GEMM.
//
// X is packed once into micro-panels of kMR rows, [panel][pair p][kMR] dwords, where a dword is
// the bf16 pair (x[2p], x[2p+1]). Each thread owns a range of 32-row weight micro-panels; it packs
// a block of up to 4 of them over a K slice into [micro-panel][pair][32] dwords (L2-resident) and
// runs the kMR x 32 micro-kernel over every X micro-panel: 2 weight loads, kMR broadcasts and
// 2*kMR vdpbf16ps per pair.

#if defined(__AVX512BF16__)

constexpr int kMR = 12;
constexpr int kNR = 32;
constexpr int64_t kKcPairs = 2560;  // K slice (pairs) per packed weight block
constexpr int kJBlock = 2;         // weight micro-panels per packed block

inline uint16_t f32_to_bf16_rne(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN stays NaN
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

template <int MR>
inline void bf16_kernel(const uint32_t* __restrict xp, const uint32_t* __restrict wp, int64_t P, float* y,
                        int64_t ldy, int rows, __mmask16 m0, __mmask16 m1, bool accumulate) {
  __m512 a0[MR], a1[MR];
  for (int i = 0; i < MR; ++i) a0[i] = a1[i] = _mm512_setzero_ps();
  for (int64_t p = 0; p < P; ++p) {
    const __m512bh w0 = (__m512bh)_mm512_load_si512(wp + p * kNR);
    const __m512bh w1 = (__m512bh)_mm512_load_si512(wp + p * kNR + 16);
    const uint32_t* xr = xp + p * MR;
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512bh b = (__m512bh)_mm512_set1_epi32(static_cast<int>(xr[i]));
      a0[i] = _mm512_dpbf16_ps(a0[i], b, w0);
      a1[i] = _mm512_dpbf16_ps(a1[i], b, w1);
    }
  }
  for (int i = 0; i < MR && i < rows; ++i) {
    float* yr = y + i * ldy;
    if (accumulate) {
      a0[i] = _mm512_add_ps(a0[i], _mm512_maskz_loadu_ps(m0, yr));
      a1[i] = _mm512_add_ps(a1[i], _mm512_maskz_loadu_ps(m1, yr + 16));
    }
    _mm512_mask_storeu_ps(yr, m0, a0[i]);
    _mm512_mask_storeu_ps(yr + 16, m1, a1[i]);
  }
}

// Rows [0, n) of X into rows [0, n) of Y (row stride W.rows).
void bf16_gemm_native_block(const Matrix& W, const float* X, int64_t n, float* Y) {
  const int64_t N = W.rows, K = W.cols, P = (K + 1) / 2;
  const int64_t NP = (n + kMR - 1) / kMR;  // X micro-panels
  const int64_t NJ = (N + kNR - 1) / kNR;  // weight micro-panels
  static thread_local AlignedBuf<uint32_t> xbuf;
  uint32_t* xp = xbuf.get(static_cast<size_t>(NP * P * kMR));
  const int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  const int64_t kblocks = (P + kKcPairs - 1) / kKcPairs;
  const int64_t kc = (P + kblocks - 1) / kblocks;
#pragma omp parallel num_threads(nt)
  {
    // Pack X (rows beyond n are zero).
#pragma omp for schedule(static)
    for (int64_t ip = 0; ip < NP; ++ip) {
      uint32_t* dst = xp + ip * P * kMR;
      for (int i = 0; i < kMR; ++i) {
        const int64_t row = ip * kMR + i;
        if (row >= n) {
          for (int64_t p = 0; p < P; ++p) dst[p * kMR + i] = 0;
          continue;
        }
        const float* x = X + row * K;
        int64_t p = 0;
        for (; p + 16 <= K / 2; p += 16) {
          // 32 floats -> 32 bf16 (RNE) = 16 dwords of pairs.
          const __m512 lo = _mm512_loadu_ps(x + 2 * p), hi = _mm512_loadu_ps(x + 2 * p + 16);
          alignas(64) uint32_t tmp[16];
          _mm512_store_si512(tmp, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
          for (int j = 0; j < 16; ++j) dst[(p + j) * kMR + i] = tmp[j];
        }
        for (; p < P; ++p) {
          const uint32_t a = f32_to_bf16_rne(x[2 * p]);
          const uint32_t b = 2 * p + 1 < K ? f32_to_bf16_rne(x[2 * p + 1]) : 0u;
          dst[p * kMR + i] = a | (b << 16);
        }
      }
    }
    // (implicit barrier)
    int64_t j0, j1;
    split(NJ, omp_get_thread_num(), omp_get_num_threads(), 1, j0, j1);
    static thread_local AlignedBuf<uint32_t> wbuf;
    uint32_t* wp = wbuf.get(static_cast<size_t>(kJBlock * kc * kNR));
    const uint16_t* w = W.bf16();
    for (int64_t jb = j0; jb < j1; jb += kJBlock) {
      const int nj = static_cast<int>(std::min<int64_t>(kJBlock, j1 - jb));
      for (int64_t pc0 = 0; pc0 < P; pc0 += kc) {
        const int64_t pcn = std::min(kc, P - pc0);
        // Pack weights: [jj][p][32 rows].
        for (int jj = 0; jj < nj; ++jj) {
          uint32_t* dst = wp + jj * pcn * kNR;
          for (int rr = 0; rr < kNR; ++rr) {
            const int64_t r = (jb + jj) * kNR + rr;
            if (r >= N) {
              for (int64_t p = 0; p < pcn; ++p) dst[p * kNR + rr] = 0;
              continue;
            }
            const uint16_t* wr = w + r * K;
            for (int64_t p = 0; p < pcn; ++p) {
              const int64_t q = pc0 + p;
              uint32_t v;
              if (2 * q + 1 < K) {
                std::memcpy(&v, wr + 2 * q, 4);
              } else {
                v = wr[2 * q];
              }
              dst[p * kNR + rr] = v;
            }
          }
        }
        for (int64_t ip = 0; ip < NP; ++ip) {
          const int rows = static_cast<int>(std::min<int64_t>(kMR, n - ip * kMR));
          for (int jj = 0; jj < nj; ++jj) {
            const int64_t c0 = (jb + jj) * kNR;
            const int64_t valid = std::min<int64_t>(kNR, N - c0);
            const __mmask16 m0 = static_cast<__mmask16>(valid >= 16 ? 0xFFFF : (1u << valid) - 1);
            const __mmask16 m1 = static_cast<__mmask16>(valid >= 32 ? 0xFFFF : valid <= 16 ? 0 : (1u << (valid - 16)) - 1);
            bf16_kernel<kMR>(xp + (ip * P + pc0) * kMR, wp + jj * pcn * kNR, pcn, Y + ip * kMR * N + c0, N, rows,
                             m0, m1, pc0 > 0);
          }
        }
      }
    }
  }
}

// X in blocks of rows, so that its packed copy stays bounded (4104 rows x K bf16: 40 MB at
// K = 4864) however long the prompt; the weights are re-packed per block (cheap next to the
// block's products).
constexpr int64_t kRowBlock = kMR * 342;

void bf16_gemm_native(const Matrix& W, const float* X, int64_t n, float* Y) {
  for (int64_t r0 = 0; r0 < n; r0 += kRowBlock)
    bf16_gemm_native_block(W, X + r0 * W.cols, std::min(kRowBlock, n - r0), Y + r0 * W.rows);
}

#endif  // __AVX512BF16__

}  // namespace

void set_bf16_activations(bool on) { g_bf16_act.store(on); }
bool bf16_activations() { return g_bf16_act.load(); }

bool bf16_gemm_available() {
#if defined(__AVX512BF16__)
  return true;
#else
  return false;
#endif
}

void matmul(const Matrix& W, const float* X, int64_t n, float* Y) {
  if (n <= 0 || W.rows <= 0) return;
  if (W.cols == 0) {
    std::fill(Y, Y + n * W.rows, 0.0f);
    return;
  }
  if (W.dtype == DType::BF16) {
    if (n <= 4) {
      bf16_gemv(W, X, n, Y);
      return;
    }
#if defined(__AVX512BF16__)
    if (n >= 16 && bf16_activations()) {
      bf16_gemm_native(W, X, n, Y);
      return;
    }
#endif
    bf16_gemm_exact(W, X, n, Y);
    return;
  }
  if (n <= 4) {
    f32_gemv(W, X, n, Y);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(W.rows),
              static_cast<int>(W.cols), 1.0f, X, static_cast<int>(W.cols), W.f32(), static_cast<int>(W.cols), 0.0f,
              Y, static_cast<int>(W.rows));
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
