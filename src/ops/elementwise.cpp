// Row-wise and element-wise kernels: RMSNorm, SwiGLU, RoPE, dot, exp. AVX-512 where available;
// OpenMP only for sizes where a parallel region pays for itself (decode stays on one thread).
#include <algorithm>
#include <cmath>

#include "ops/ops.h"

// GCC 12's AVX-512 intrinsics (extract, reductions) use a self-initialised "undefined" operand,
// which -Wmaybe-uninitialized reports once they are inlined: a false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace razor::ops {

namespace {

// Sum of squares of d floats.
inline float sum_squares(const float* x, int d) {
  int i = 0;
  float ss = 0.0f;
#if defined(__AVX512F__)
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  for (; i + 32 <= d; i += 32) {
    const __m512 u = _mm512_loadu_ps(x + i), v = _mm512_loadu_ps(x + i + 16);
    a0 = _mm512_fmadd_ps(u, u, a0);
    a1 = _mm512_fmadd_ps(v, v, a1);
  }
  if (i + 16 <= d) {
    const __m512 u = _mm512_loadu_ps(x + i);
    a0 = _mm512_fmadd_ps(u, u, a0);
    i += 16;
  }
  if (i < d) {
    const __m512 u = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << (d - i)) - 1), x + i);
    a1 = _mm512_fmadd_ps(u, u, a1);
    i = d;
  }
  ss = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
#endif
  for (; i < d; ++i) ss += x[i] * x[i];
  return ss;
}

inline void rmsnorm_row(float* o, const float* xr, const float* w, int d, float eps) {
  float ss = sum_squares(xr, d);
  ss /= static_cast<float>(d);
  ss += eps;
  ss = 1.0f / std::sqrt(ss);
  int i = 0;
#if defined(__AVX512F__)
  const __m512 s = _mm512_set1_ps(ss);
  for (; i + 16 <= d; i += 16)
    _mm512_storeu_ps(o + i, _mm512_mul_ps(_mm512_loadu_ps(w + i), _mm512_mul_ps(s, _mm512_loadu_ps(xr + i))));
#endif
  for (; i < d; ++i) o[i] = w[i] * (ss * xr[i]);
}

inline void swiglu_range(float* x, const float* y, int64_t b, int64_t e) {
  int64_t i = b;
#if defined(__AVX512F__)
  const __m512 one = _mm512_set1_ps(1.0f);
  auto f = [&](__m512 v, __m512 w) {
    const __m512 sig = _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), v))));
    return _mm512_mul_ps(_mm512_mul_ps(v, sig), w);
  };
  for (; i + 16 <= e; i += 16) _mm512_storeu_ps(x + i, f(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < e) {
    const __mmask16 m = static_cast<__mmask16>((1u << (e - i)) - 1);
    _mm512_mask_storeu_ps(x + i, m, f(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    i = e;
  }
#endif
  for (; i < e; ++i) {
    float v = x[i];
    v *= 1.0f / (1.0f + std::exp(-v));
    x[i] = v * y[i];
  }
}

}  // namespace

void rmsnorm(float* out, const float* x, const float* w, int64_t n, int d, float eps) {
#pragma omp parallel for schedule(static) if (n * d >= (1 << 16) && n > 1)
  for (int64_t r = 0; r < n; ++r) rmsnorm_row(out + r * d, x + r * d, w, d, eps);
}

void swiglu(float* x, const float* y, int64_t n) {
  constexpr int64_t kBlock = 1 << 14;
  if (n < 4 * kBlock) {
    swiglu_range(x, y, 0, n);
    return;
  }
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) swiglu_range(x, y, b * kBlock, std::min(n, (b + 1) * kBlock));
}

float dot(const float* a, const float* b, int n) {
  int i = 0;
  float s = 0.0f;
#if defined(__AVX512F__)
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  for (; i + 32 <= n; i += 32) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), a1);
  }
  if (i + 16 <= n) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), a0);
    i += 16;
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), a1);
    i = n;
  }
  s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
#endif
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

float exp_inplace(float* x, int64_t n) {
  int64_t i = 0;
  float sum = 0.0f;
#if defined(__AVX512F__)
  __m512 acc = _mm512_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    const __m512 e = exp512(_mm512_loadu_ps(x + i));
    _mm512_storeu_ps(x + i, e);
    acc = _mm512_add_ps(acc, e);
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 e = exp512(_mm512_maskz_loadu_ps(m, x + i));
    _mm512_mask_storeu_ps(x + i, m, e);
    acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(m, e));
    i = n;
  }
  sum = _mm512_reduce_add_ps(acc);
#endif
  for (; i < n; ++i) {
    x[i] = std::exp(x[i]);
    sum += x[i];
  }
  return sum;
}

float exp_shifted_inplace(float* x, int64_t n) {
  if (n <= 0) return 0.0f;
  int64_t i = 0;
  float mx = -INFINITY;
#if defined(__AVX512F__)
  __m512 vm = _mm512_set1_ps(-INFINITY);
  for (; i + 16 <= n; i += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(x + i));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    vm = _mm512_mask_max_ps(vm, m, vm, _mm512_maskz_loadu_ps(m, x + i));
    i = n;
  }
  mx = _mm512_reduce_max_ps(vm);
  const __m512 vmx = _mm512_set1_ps(mx);
  __m512 acc = _mm512_setzero_ps();
  i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vmx));
    _mm512_storeu_ps(x + i, e);
    acc = _mm512_add_ps(acc, e);
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vmx));
    _mm512_mask_storeu_ps(x + i, m, e);
    acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(m, e));
  }
  return _mm512_reduce_add_ps(acc);
#else
  for (; i < n; ++i) mx = std::max(mx, x[i]);
  float sum = 0.0f;
  for (i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  return sum;
#endif
}

void Rope::init(const ModelConfig& c) {
  head_dim = c.head_dim;
  const int half = head_dim / 2;
  for (int i = 0; i < half; ++i) {
    // Same float expression as llama2.c run.c: 1 / theta^(2i / head_dim).
    float freq = 1.0f / std::pow(c.rope_theta, static_cast<float>(2 * i) / static_cast<float>(head_dim));
    if (c.rope_scaling == RopeScaling::Linear) {
      freq /= c.rope_factor;
    } else if (c.rope_scaling == RopeScaling::Llama3) {
      // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, smooth in between.
      const float low_wavelen = c.rope_original_max_pos / c.rope_low_freq_factor;
      const float high_wavelen = c.rope_original_max_pos / c.rope_high_freq_factor;
      const float wavelen = 2.0f * static_cast<float>(M_PI) / freq;
      if (wavelen > low_wavelen) {
        freq /= c.rope_factor;
      } else if (wavelen >= high_wavelen) {
        float smooth = (c.rope_original_max_pos / wavelen - c.rope_low_freq_factor) /
                       (c.rope_high_freq_factor - c.rope_low_freq_factor);
        freq = (1.0f - smooth) * freq / c.rope_factor + smooth * freq;
      }
    }
    inv_freq[i] = freq;
  }
}

void Rope::apply(float* x, int64_t n, int n_heads, int64_t pos0) const {
  const int half = head_dim / 2;
  const int64_t stride = static_cast<int64_t>(n_heads) * head_dim;
#pragma omp parallel for schedule(static) if (n > 16)
  for (int64_t r = 0; r < n; ++r) {
    // Per pair i: cos and sin of pos * inv_freq[i], once per row for all heads. Laid out per
    // element (both elements of a pair), the sine negated on the even element, so that
    // v' = v * c + swap_pairs(v) * s.
    alignas(64) float c2[1024], s2[1024];
    const float pos = static_cast<float>(pos0 + r);
    for (int i = 0; i < half; ++i) {
      const float val = pos * inv_freq[i];
      const float cv = std::cos(val), sv = std::sin(val);
      c2[2 * i] = c2[2 * i + 1] = cv;
      s2[2 * i] = -sv;
      s2[2 * i + 1] = sv;
    }
    float* row = x + r * stride;
    for (int h = 0; h < n_heads; ++h) {
      float* v = row + h * head_dim;
      int i = 0;
#if defined(__AVX512F__)
      for (; i + 16 <= head_dim; i += 16) {
        const __m512 a = _mm512_loadu_ps(v + i);
        const __m512 sw = _mm512_permute_ps(a, 0xB1);  // (b, a) per pair
        // even: a*c - b*s, odd: b*c + a*s (one rounding of a product less than the plain formula)
        _mm512_storeu_ps(v + i, _mm512_fmadd_ps(a, _mm512_load_ps(c2 + i), _mm512_mul_ps(sw, _mm512_load_ps(s2 + i))));
      }
#endif
      for (; i + 1 < head_dim; i += 2) {
        const float a = v[i], b = v[i + 1], cv = c2[i], sv = s2[i + 1];
        v[i] = a * cv - b * sv;
        v[i + 1] = a * sv + b * cv;
      }
    }
  }
}

}  // namespace razor::ops
