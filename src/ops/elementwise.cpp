#include <cmath>

#include "ops/ops.h"

namespace razor::ops {

void rmsnorm(float* out, const float* x, const float* w, int64_t n, int d, float eps) {
#pragma omp parallel for schedule(static) if (n > 16)
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * d;
    float* o = out + r * d;
    float ss = 0.0f;
    for (int i = 0; i < d; ++i) ss += xr[i] * xr[i];
    ss /= static_cast<float>(d);
    ss += eps;
    ss = 1.0f / std::sqrt(ss);
    for (int i = 0; i < d; ++i) o[i] = w[i] * (ss * xr[i]);
  }
}

void swiglu(float* x, const float* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i];
    v *= 1.0f / (1.0f + std::exp(-v));
    x[i] = v * y[i];
  }
}

float dot(const float* a, const float* b, int n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
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
    float cs[256], sn[256];
    const float pos = static_cast<float>(pos0 + r);
    for (int i = 0; i < half; ++i) {
      float val = pos * inv_freq[i];
      cs[i] = std::cos(val);
      sn[i] = std::sin(val);
    }
    float* row = x + r * stride;
    for (int h = 0; h < n_heads; ++h) {
      float* v = row + h * head_dim;
      for (int i = 0; i < half; ++i) {
        float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * cs[i] - b * sn[i];
        v[2 * i + 1] = a * sn[i] + b * cs[i];
      }
    }
  }
}

}  // namespace razor::ops
