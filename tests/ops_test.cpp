// Each numeric kernel against a naive double-precision reference on random data.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "ops/ops.h"

namespace {

using razor::DType;
using razor::Matrix;

std::vector<float> rand_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float round_bf16(float f) { return razor::ops::bf16_to_f32(to_bf16(f)); }

struct TestMatrix {
  std::vector<float> f32;     // the values (BF16: the rounded values)
  std::vector<uint16_t> bf16;
  Matrix m;
};

TestMatrix make_matrix(int64_t rows, int64_t cols, DType dt, uint32_t seed) {
  TestMatrix t;
  t.f32 = rand_vec(static_cast<size_t>(rows * cols), seed, -0.5f, 0.5f);
  t.m.dtype = dt;
  t.m.rows = rows;
  t.m.cols = cols;
  if (dt == DType::BF16) {
    t.bf16.resize(t.f32.size());
    for (size_t i = 0; i < t.f32.size(); ++i) {
      t.bf16[i] = to_bf16(t.f32[i]);
      t.f32[i] = razor::ops::bf16_to_f32(t.bf16[i]);
    }
    t.m.data = t.bf16.data();
  } else {
    t.m.data = t.f32.data();
  }
  return t;
}

// Checks Y against sum_c W[r][c] x[i][c] in double; the tolerance scales with sum |W||x|.
void check_matmul(const TestMatrix& W, const std::vector<float>& X, int64_t n, const std::vector<float>& Y,
                  double rel_tol, const char* what) {
  const int64_t rows = W.m.rows, cols = W.m.cols;
  double worst = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t r = 0; r < rows; ++r) {
      double ref = 0, mag = 0;
      for (int64_t c = 0; c < cols; ++c) {
        ref += double(W.f32[r * cols + c]) * X[i * cols + c];
        mag += std::fabs(double(W.f32[r * cols + c]) * X[i * cols + c]);
      }
      worst = std::max(worst, std::fabs(Y[i * rows + r] - ref) / (mag + 1e-30));
    }
  EXPECT_LE(worst, rel_tol) << what << " rows " << rows << " cols " << cols << " n " << n;
}

void matmul_against_reference(DType dt) {
  razor::ops::set_bf16_activations(false);
  for (int64_t n : {1, 2, 3, 4, 5, 17, 200}) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{67, 45}, {130, 256}, {33, 1000}, {16, 7}}) {
      TestMatrix W = make_matrix(rows, cols, dt, static_cast<uint32_t>(rows * 31 + cols + n));
      std::vector<float> X = rand_vec(static_cast<size_t>(n * cols), static_cast<uint32_t>(n + rows));
      std::vector<float> Y(static_cast<size_t>(n * rows), NAN);
      razor::ops::matmul(W.m, X.data(), n, Y.data());
      check_matmul(W, X, n, Y, 1e-5, dt == DType::BF16 ? "bf16" : "f32");
    }
  }
}

TEST(OpsMatmul, F32MatchesDoubleReference) { matmul_against_reference(DType::F32); }
TEST(OpsMatmul, Bf16MatchesDoubleReference) { matmul_against_reference(DType::BF16); }

// Big enough for the multithreaded paths (GEMV over 256 KiB of weights, panels of the GEMM).
TEST(OpsMatmul, LargeShapesMatchDoubleReference) {
  razor::ops::set_bf16_activations(false);
  for (DType dt : {DType::F32, DType::BF16})
    for (int64_t n : {1, 3, 40}) {
      TestMatrix W = make_matrix(700, 520, dt, static_cast<uint32_t>(n));
      std::vector<float> X = rand_vec(static_cast<size_t>(n * 520), static_cast<uint32_t>(n + 9));
      std::vector<float> Y(static_cast<size_t>(n * 700), NAN);
      razor::ops::matmul(W.m, X.data(), n, Y.data());
      check_matmul(W, X, n, Y, 1e-5, "large");
    }
}

// The opt-in BF16-activation GEMM equals the product of the BF16-rounded activations (exact
// products, F32 accumulation), and stays within BF16 rounding of the exact result.
TEST(OpsMatmul, Bf16ActivationsMatchReferenceOfRoundedActivations) {
  if (!razor::ops::bf16_gemm_available()) GTEST_SKIP() << "built without AVX512-BF16";
  razor::ops::set_bf16_activations(true);
  for (int n : {16, 17, 200}) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{67, 45}, {130, 256}, {33, 1100}}) {
      TestMatrix W = make_matrix(rows, cols, DType::BF16, static_cast<uint32_t>(rows + cols + n));
      std::vector<float> X = rand_vec(static_cast<size_t>(n * cols), static_cast<uint32_t>(7 * n + rows));
      std::vector<float> Y(static_cast<size_t>(n * rows), NAN);
      razor::ops::matmul(W.m, X.data(), n, Y.data());
      std::vector<float> Xr(X);
      for (float& x : Xr) x = round_bf16(x);
      check_matmul(W, Xr, n, Y, 1e-5, "bf16 activations vs rounded");
      check_matmul(W, X, n, Y, 8e-3, "bf16 activations vs exact");
    }
  }
  {  // More rows than one packed block of X (4104).
    TestMatrix W = make_matrix(40, 70, DType::BF16, 77);
    const int64_t n = 4200;
    std::vector<float> X = rand_vec(static_cast<size_t>(n * 70), 78);
    std::vector<float> Y(static_cast<size_t>(n * 40), NAN);
    razor::ops::matmul(W.m, X.data(), n, Y.data());
    std::vector<float> Xr(X);
    for (float& x : Xr) x = round_bf16(x);
    check_matmul(W, Xr, n, Y, 1e-5, "bf16 activations, several row blocks");
  }
  // F32 weights are never affected; small n keeps the exact path.
  TestMatrix F = make_matrix(40, 64, DType::F32, 5);
  TestMatrix B = make_matrix(40, 64, DType::BF16, 6);
  std::vector<float> X = rand_vec(20 * 64, 9), Y(20 * 40);
  razor::ops::matmul(F.m, X.data(), 20, Y.data());
  check_matmul(F, X, 20, Y, 1e-5, "f32 weights with bf16 activations on");
  razor::ops::matmul(B.m, X.data(), 8, Y.data());
  check_matmul(B, X, 8, Y, 1e-5, "bf16 weights, n below the bf16-activation threshold");
  razor::ops::set_bf16_activations(false);
}

TEST(Ops, MatrixRow) {
  TestMatrix B = make_matrix(5, 9, DType::BF16, 3);
  std::vector<float> row(9);
  razor::ops::matrix_row(B.m, 3, row.data());
  for (int c = 0; c < 9; ++c) EXPECT_EQ(row[c], B.f32[3 * 9 + c]);
}

TEST(Ops, RmsnormMatchesReference) {
  for (int d : {7, 16, 64, 100, 896}) {
    const int64_t n = 5;
    auto x = rand_vec(n * d, d, -3.0f, 3.0f), w = rand_vec(d, d + 1, 0.5f, 1.5f);
    std::vector<float> out(n * d);
    razor::ops::rmsnorm(out.data(), x.data(), w.data(), n, d, 1e-5f);
    for (int64_t r = 0; r < n; ++r) {
      double ss = 0;
      for (int i = 0; i < d; ++i) ss += double(x[r * d + i]) * x[r * d + i];
      const double s = 1.0 / std::sqrt(ss / d + 1e-5);
      for (int i = 0; i < d; ++i) EXPECT_NEAR(out[r * d + i], w[i] * s * x[r * d + i], 2e-6 * (1 + std::fabs(w[i] * s * x[r * d + i])));
    }
    // In place.
    std::vector<float> y(x);
    razor::ops::rmsnorm(y.data(), y.data(), w.data(), n, d, 1e-5f);
    EXPECT_EQ(y, out);
  }
}

TEST(Ops, SwigluMatchesReference) {
  for (int64_t n : {1, 15, 16, 33, 100000, 300001}) {
    auto x = rand_vec(n, uint32_t(n), -30.0f, 30.0f), y = rand_vec(n, uint32_t(n + 1), -2.0f, 2.0f);
    if (n > 4) x[3] = -100.0f, x[4] = 100.0f;
    std::vector<float> out(x);
    razor::ops::swiglu(out.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double v = x[i], ref = v / (1.0 + std::exp(-v)) * y[i];
      ASSERT_NEAR(out[i], ref, 1e-6 * std::fabs(ref) + 1e-30) << "x=" << x[i] << " y=" << y[i];
    }
  }
}

TEST(Ops, ExpMatchesReference) {
  std::vector<float> x;
  for (float v = -103.0f; v <= 80.0f; v += 0.0137f) x.push_back(v);
  x.push_back(0.0f);
  x.push_back(-0.0f);
  x.push_back(88.5f);
  std::vector<float> e(x);
  const float sum = razor::ops::exp_inplace(e.data(), static_cast<int64_t>(e.size()));
  double ref_sum = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double ref = std::exp(double(x[i]));
    ref_sum += ref;
    if (ref > 1.2e-38)  // normal range: relative error
      ASSERT_NEAR(e[i], ref, 1e-6 * ref) << x[i];
    else
      ASSERT_NEAR(e[i], ref, 1e-44) << x[i];
  }
  EXPECT_NEAR(sum, ref_sum, 1e-5 * ref_sum);
  float big[2] = {89.0f, 200.0f};  // beyond FLT_MAX
  razor::ops::exp_inplace(big, 2);
  EXPECT_EQ(big[0], INFINITY);
  EXPECT_EQ(big[1], INFINITY);
  // Shifted: exp(x - max), the sum of those.
  std::vector<float> s = rand_vec(1001, 4, -20.0f, 20.0f);
  std::vector<float> t(s);
  const float tsum = razor::ops::exp_shifted_inplace(t.data(), 1001);
  const float mx = *std::max_element(s.begin(), s.end());
  double rs = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const double ref = std::exp(double(s[i] - mx));  // the float difference, as the kernel forms it
    rs += ref;
    ASSERT_NEAR(t[i], ref, 1e-6 * ref + 1e-30);
  }
  EXPECT_NEAR(tsum, rs, 1e-5 * rs);
  // Infinities.
  float inf[3] = {-INFINITY, 0.0f, -INFINITY};
  EXPECT_FLOAT_EQ(razor::ops::exp_inplace(inf, 3), 1.0f);
  EXPECT_EQ(inf[0], 0.0f);
}

TEST(Ops, DotMatchesReference) {
  for (int n : {0, 1, 15, 16, 17, 64, 1000}) {
    auto a = rand_vec(n, n + 1), b = rand_vec(n, n + 2);
    double ref = 0, mag = 0;
    for (int i = 0; i < n; ++i) ref += double(a[i]) * b[i], mag += std::fabs(double(a[i]) * b[i]);
    EXPECT_NEAR(razor::ops::dot(a.data(), b.data(), n), ref, 1e-6 * mag + 1e-30);
  }
}

TEST(Ops, RopeMatchesDirectFormula) {
  for (int hd : {8, 32, 64, 128}) {
    razor::ModelConfig c;
    c.head_dim = hd;
    c.rope_theta = hd == 64 ? 1000000.0f : 10000.0f;
    razor::ops::Rope rope;
    rope.init(c);
    for (int i = 0; i < hd / 2; ++i)
      EXPECT_NEAR(rope.inv_freq[i], std::pow(double(c.rope_theta), -2.0 * i / hd), 1e-6 * rope.inv_freq[i]);
    const int heads = 3;
    for (int64_t pos0 : {int64_t(0), int64_t(5), int64_t(30000)}) {
      const int64_t n = 20;  // > 16: the parallel path too
      auto x = rand_vec(n * heads * hd, uint32_t(hd + pos0));
      std::vector<float> y(x);
      rope.apply(y.data(), n, heads, pos0);
      for (int64_t r = 0; r < n; ++r)
        for (int h = 0; h < heads; ++h)
          for (int i = 0; i < hd / 2; ++i) {
            // The angle as the kernel forms it (float position times float frequency), then
            // cos/sin in double.
            const float ang = static_cast<float>(pos0 + r) * rope.inv_freq[i];
            const double cs = std::cos(double(ang)), sn = std::sin(double(ang));
            const size_t at = (r * heads + h) * hd + 2 * i;
            const double a = x[at], b = x[at + 1];
            ASSERT_NEAR(y[at], a * cs - b * sn, 1e-6);
            ASSERT_NEAR(y[at + 1], a * sn + b * cs, 1e-6);
          }
    }
  }
}

// Naive causal attention of queries at positions past..past+n-1 against m = past + n keys.
std::vector<double> naive_attention(const std::vector<float>& q, int64_t ldq, int64_t n, const std::vector<float>& K,
                                    const std::vector<float>& V, int64_t m, int hd) {
  std::vector<double> out(n * hd, 0.0);
  const int64_t past = m - n;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t len = past + i + 1;
    std::vector<double> s(len);
    double mx = -1e300;
    for (int64_t j = 0; j < len; ++j) {
      double d = 0;
      for (int k = 0; k < hd; ++k) d += double(q[i * ldq + k]) * K[j * hd + k];
      s[j] = d / std::sqrt(double(hd));
      mx = std::max(mx, s[j]);
    }
    double sum = 0;
    for (double& v : s) sum += (v = std::exp(v - mx));
    for (int64_t j = 0; j < len; ++j)
      for (int k = 0; k < hd; ++k) out[i * hd + k] += s[j] / sum * V[j * hd + k];
  }
  return out;
}

TEST(Ops, AttendCausalMatchesNaive) {
  for (int hd : {16, 48, 64}) {
    for (auto [n, past] : {std::pair<int64_t, int64_t>{1, 0}, {5, 0}, {70, 0}, {130, 0}, {3, 40}, {100, 37}}) {
      const int64_t m = n + past, ldq = hd * 2 + 3, ldo = hd + 5;
      auto q = rand_vec(n * ldq, uint32_t(n + hd), -2.0f, 2.0f);
      auto K = rand_vec(m * hd, uint32_t(m + 1), -2.0f, 2.0f), V = rand_vec(m * hd, uint32_t(m + 2));
      std::vector<float> out(n * ldo, NAN), scratch(razor::ops::kAttnTile * m);
      razor::ops::attend_causal(q.data(), ldq, n, K.data(), V.data(), m, hd, out.data(), ldo, scratch.data());
      auto ref = naive_attention(q, ldq, n, K, V, m, hd);
      for (int64_t i = 0; i < n; ++i)
        for (int k = 0; k < hd; ++k)
          ASSERT_NEAR(out[i * ldo + k], ref[i * hd + k], 1e-5) << "hd " << hd << " n " << n << " past " << past;
    }
  }
}

TEST(Ops, AttendDecodeMatchesNaive) {
  for (int hd : {16, 24, 32, 64, 128}) {
    for (int g : {1, 3, 7, 8}) {
      for (int64_t m : {1, 15, 16, 17, 300, 1500}) {
        for (bool comp : {false, true}) {
          auto q = rand_vec(g * hd, uint32_t(hd * g + m), -2.0f, 2.0f);
          auto K = rand_vec(m * hd, uint32_t(m + hd), -2.0f, 2.0f), V = rand_vec(m * hd, uint32_t(m + 7));
          auto kc = rand_vec(hd, 11, -2.0f, 2.0f), vc = rand_vec(hd, 12);
          const float comp_log = std::log(5.0f);
          std::vector<float> out(g * hd, NAN), scratch(g * (m + 1) + 16);
          razor::ops::attend_decode(q.data(), g, K.data(), V.data(), m, hd, comp ? kc.data() : nullptr,
                                    comp ? vc.data() : nullptr, comp_log, out.data(), scratch.data());
          for (int r = 0; r < g; ++r) {
            // Reference: softmax over the m keys plus (optionally) the compensation logit.
            std::vector<double> s(m + 1);
            double mx = -1e300;
            const int64_t cols = m + (comp ? 1 : 0);
            for (int64_t j = 0; j < cols; ++j) {
              const float* k = j < m ? K.data() + j * hd : kc.data();
              double d = 0;
              for (int t = 0; t < hd; ++t) d += double(q[r * hd + t]) * k[t];
              s[j] = d / std::sqrt(double(hd)) + (j == m ? double(comp_log) : 0.0);
              mx = std::max(mx, s[j]);
            }
            double sum = 0;
            for (int64_t j = 0; j < cols; ++j) sum += (s[j] = std::exp(s[j] - mx));
            for (int t = 0; t < hd; ++t) {
              double ref = 0;
              for (int64_t j = 0; j < cols; ++j) ref += s[j] / sum * (j < m ? V[j * hd + t] : vc[t]);
              ASSERT_NEAR(out[r * hd + t], ref, 1e-5) << "hd " << hd << " g " << g << " m " << m << " comp " << comp;
            }
          }
        }
      }
    }
  }
}

// The compensation token counts as |D| tokens: |D| copies of (k^, v^) give the same output.
TEST(Ops, AttendDecodeCompensationEqualsCopies) {
  const int hd = 64, g = 2, m = 10, copies = 6;
  auto q = rand_vec(g * hd, 1), K = rand_vec(m * hd, 2), V = rand_vec(m * hd, 3);
  auto kc = rand_vec(hd, 4), vc = rand_vec(hd, 5);
  std::vector<float> Kx(K), Vx(V);
  for (int c = 0; c < copies; ++c) {
    Kx.insert(Kx.end(), kc.begin(), kc.end());
    Vx.insert(Vx.end(), vc.begin(), vc.end());
  }
  std::vector<float> a(g * hd), b(g * hd), s(g * (m + copies + 1));
  razor::ops::attend_decode(q.data(), g, K.data(), V.data(), m, hd, kc.data(), vc.data(), std::log(float(copies)),
                            a.data(), s.data());
  razor::ops::attend_decode(q.data(), g, Kx.data(), Vx.data(), m + copies, hd, nullptr, nullptr, 0.0f, b.data(),
                            s.data());
  for (int i = 0; i < g * hd; ++i) EXPECT_NEAR(a[i], b[i], 1e-6);
}

}  // namespace
