// The head-wise compressed KV cache (SPEC section 4): exactness where nothing is dropped, the
// compensation token's arithmetic, rolling-mode means, and the bytes it reports.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "razor/kv_cache.h"
#include "razor/model.h"
#include "razor/policy.h"
#include "razor/session.h"
#include "test_util.h"

namespace {

using razor::CompressMode;
using razor::KVCache;
using razor::KVPolicy;
using razor::test::model_path;

std::vector<int> some_tokens(int n, int vocab, int seed) {
  std::vector<int> t{1};
  uint32_t s = static_cast<uint32_t>(seed) * 2654435761u + 12345u;
  while (static_cast<int>(t.size()) < n) {
    s = s * 1664525u + 1013904223u;
    t.push_back(3 + static_cast<int>((s >> 8) % static_cast<uint32_t>(vocab - 3)));
  }
  return t;
}

// Logits of every continuation position: prefill P tokens, then decode the rest one by one.
std::vector<float> run(const razor::Model& m, const KVPolicy& p, const std::vector<int>& tokens, int P) {
  const int T = static_cast<int>(tokens.size()), V = m.config.vocab_size;
  razor::Session s(m, p, {.threads = 1, .max_tokens = T});
  std::vector<float> out(static_cast<size_t>(T - P) * V);
  s.prefill(std::vector<int>(tokens.begin(), tokens.begin() + P), out.data());
  for (int i = 1; i < T - P; ++i) s.decode(tokens[P + i - 1], out.data() + static_cast<size_t>(i) * V);
  return out;
}

std::vector<std::vector<bool>> table(const razor::ModelConfig& c, bool value) {
  return std::vector<std::vector<bool>>(c.n_layers, std::vector<bool>(c.n_kv_heads, value));
}

TEST(KvCache, WindowCoveringTheSequenceReproducesFullLogitsExactly) {
  REQUIRE_MODEL("stories3M-q80.bin");
  auto model = razor::load_model(model_path("stories3M-q80.bin"));
  const int T = 160, P = 80;
  auto tokens = some_tokens(T, model->config.vocab_size, 5);
  const auto full = run(*model, KVPolicy{}, tokens, P);
  for (CompressMode mode : {CompressMode::Static, CompressMode::Rolling})
    for (bool comp : {true, false}) {
      KVPolicy p;
      p.retrieval = table(model->config, false);  // every head compressed ...
      p.sink = 4;
      p.window = T;  // ... with a window covering the whole sequence
      p.mode = mode;
      p.compensation = comp;
      EXPECT_EQ(run(*model, p, tokens, P), full) << "mode " << int(mode) << " compensation " << comp;
    }
  KVPolicy exact;  // sinks + window = the whole sequence exactly
  exact.retrieval = table(model->config, false);
  exact.sink = 4;
  exact.window = T - 4;
  exact.mode = CompressMode::Rolling;
  EXPECT_EQ(run(*model, exact, tokens, P), full);
}

TEST(KvCache, AllHeadsRetrievalReproducesFullLogitsExactly) {
  REQUIRE_MODEL("stories3M-q80.bin");
  auto model = razor::load_model(model_path("stories3M-q80.bin"));
  const int T = 120, P = 60;
  auto tokens = some_tokens(T, model->config.vocab_size, 9);
  const auto full = run(*model, KVPolicy{}, tokens, P);
  KVPolicy p;
  p.retrieval = table(model->config, true);
  p.sink = 1;
  p.window = 2;  // would drop almost everything, were any head compressed
  p.mode = CompressMode::Rolling;
  EXPECT_EQ(run(*model, p, tokens, P), full);
  // And a compressing policy really does change them (the comparison above is not vacuous).
  p.retrieval = table(model->config, false);
  EXPECT_NE(run(*model, p, tokens, P), full);
}

razor::ModelConfig tiny_config() {
  razor::ModelConfig c;
  c.dim = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.vocab_size = 16;
  c.max_seq_len = 64;
  return c;
}

std::vector<float> randn(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Attention of one query head over explicit kept rows plus, when D is not empty, the compensation
// token (mean key/value of D) counted |D| times; computed directly in double.
std::vector<double> reference_attention(const float* q, const std::vector<const float*>& keys,
                                        const std::vector<const float*>& values,
                                        const std::vector<const float*>& dropped_k,
                                        const std::vector<const float*>& dropped_v, int hd, bool compensation) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<double> logit;
  std::vector<std::vector<double>> val;
  for (size_t j = 0; j < keys.size(); ++j) {
    double s = 0;
    for (int d = 0; d < hd; ++d) s += static_cast<double>(q[d]) * keys[j][d];
    logit.push_back(s * scale);
    val.emplace_back(values[j], values[j] + hd);
  }
  if (compensation && !dropped_k.empty()) {
    std::vector<double> km(hd, 0.0), vm(hd, 0.0);
    for (size_t j = 0; j < dropped_k.size(); ++j)
      for (int d = 0; d < hd; ++d) {
        km[d] += dropped_k[j][d];
        vm[d] += dropped_v[j][d];
      }
    double s = 0;
    for (int d = 0; d < hd; ++d) {
      km[d] /= dropped_k.size();
      vm[d] /= dropped_v.size();
      s += static_cast<double>(q[d]) * km[d];
    }
    logit.push_back(s * scale + std::log(static_cast<double>(dropped_k.size())));
    val.push_back(vm);
  }
  double mx = -1e300;
  for (double l : logit) mx = std::max(mx, l);
  double z = 0;
  for (double& l : logit) z += (l = std::exp(l - mx));
  std::vector<double> out(hd, 0.0);
  for (size_t j = 0; j < logit.size(); ++j)
    for (int d = 0; d < hd; ++d) out[d] += logit[j] / z * val[j][d];
  return out;
}

TEST(KvCache, CompensationMatchesDirectComputation) {
  const razor::ModelConfig c = tiny_config();
  const int hd = c.head_dim, kv_dim = c.kv_dim(), G = c.group_size();
  const int N = 20, extra = 3;  // prompt tokens, then decoded tokens
  std::mt19937 rng(42);
  const auto K = randn(static_cast<size_t>(N + extra) * kv_dim, rng);
  const auto Vv = randn(static_cast<size_t>(N + extra) * kv_dim, rng);
  for (bool comp : {true, false})
    for (CompressMode mode : {CompressMode::Static, CompressMode::Rolling}) {
      KVPolicy p;
      p.retrieval = {{false, true}, {false, false}};  // layer 0: kv head 1 keeps everything
      p.sink = 2;
      p.window = 5;
      p.mode = mode;
      p.compensation = comp;
      KVCache cache(c, p, N + extra);
      for (int l = 0; l < c.n_layers; ++l) {
        cache.append(l, N, K.data(), Vv.data());
        cache.compress_layer(l, N);
      }
      EXPECT_EQ(cache.window(), 5);
      for (int t = N; t < N + extra; ++t) {
        const size_t row = static_cast<size_t>(t) * kv_dim;
        for (int l = 0; l < c.n_layers; ++l) cache.append(l, 1, K.data() + row, Vv.data() + row);
        const int n_seen = t + 1;
        const auto q = randn(c.q_dim(), rng);
        for (int l = 0; l < c.n_layers; ++l) {
          std::vector<float> out(c.q_dim());
          cache.attend(l, 1, q.data(), out.data());
          for (int g = 0; g < c.n_kv_heads; ++g) {
            // Which positions this head keeps: all (retrieval), or sinks + window (static: the
            // window of the prompt plus every later token; rolling: the last W tokens).
            const bool retrieval = p.retrieval[l][g];
            const int window_start = mode == CompressMode::Static ? N - p.window : n_seen - p.window;
            std::vector<const float*> kk, vv, dk, dv;
            for (int pos = 0; pos < n_seen; ++pos) {
              const float* kp = K.data() + static_cast<size_t>(pos) * kv_dim + g * hd;
              const float* vp = Vv.data() + static_cast<size_t>(pos) * kv_dim + g * hd;
              const bool kept = retrieval || pos < p.sink || pos >= window_start;
              (kept ? kk : dk).push_back(kp);
              (kept ? vv : dv).push_back(vp);
            }
            EXPECT_EQ(cache.head(l, g).dropped, static_cast<int64_t>(dk.size()));
            EXPECT_EQ(cache.head(l, g).rows, static_cast<int>(kk.size()));
            for (int r = 0; r < G; ++r) {
              const int hq = g * G + r;
              auto want = reference_attention(q.data() + hq * hd, kk, vv, dk, dv, hd, comp);
              for (int d = 0; d < hd; ++d)
                EXPECT_NEAR(out[hq * hd + d], want[d], 2e-5)
                    << "layer " << l << " head " << hq << " t " << t << " comp " << comp << " mode " << int(mode);
            }
          }
        }
      }
    }
}

TEST(KvCache, RollingIncrementalMeansEqualMeansRecomputedFromScratch) {
  const razor::ModelConfig c = tiny_config();
  const int hd = c.head_dim, kv_dim = c.kv_dim();
  const int N = 12, total = 60;
  std::mt19937 rng(7);
  const auto K = randn(static_cast<size_t>(total) * kv_dim, rng);
  const auto Vv = randn(static_cast<size_t>(total) * kv_dim, rng);
  KVPolicy p;
  p.retrieval = table(c, false);
  p.sink = 3;
  p.window = 4;
  p.mode = CompressMode::Rolling;
  KVCache cache(c, p, total);
  for (int l = 0; l < c.n_layers; ++l) {
    cache.append(l, N, K.data(), Vv.data());
    cache.compress_layer(l, N);
  }
  for (int t = N; t <= total; ++t) {
    if (t > N)
      for (int l = 0; l < c.n_layers; ++l)
        cache.append(l, 1, K.data() + static_cast<size_t>(t - 1) * kv_dim, Vv.data() + static_cast<size_t>(t - 1) * kv_dim);
    // D = [N0, t - W) after t tokens.
    for (int g = 0; g < c.n_kv_heads; ++g) {
      const razor::HeadCache& h = cache.head(0, g);
      const int d_end = t - p.window;
      ASSERT_EQ(h.dropped, d_end - p.sink);
      for (int d = 0; d < hd; ++d) {
        double ks = 0, vs = 0;
        for (int pos = p.sink; pos < d_end; ++pos) {
          ks += K[static_cast<size_t>(pos) * kv_dim + g * hd + d];
          vs += Vv[static_cast<size_t>(pos) * kv_dim + g * hd + d];
        }
        EXPECT_NEAR(h.k_sum[d] / h.dropped, ks / (d_end - p.sink), 1e-12);
        EXPECT_NEAR(h.v_sum[d] / h.dropped, vs / (d_end - p.sink), 1e-12);
      }
      // The rows held are exactly the sinks and the last W keys, in some order.
      std::multiset<float> held, want;
      for (int r = 0; r < h.rows; ++r) held.insert(h.k[static_cast<size_t>(r) * hd]);
      for (int pos = 0; pos < t; ++pos)
        if (pos < p.sink || pos >= d_end) want.insert(K[static_cast<size_t>(pos) * kv_dim + g * hd]);
      EXPECT_EQ(held, want) << "t " << t;
      EXPECT_EQ(h.k.capacity(), static_cast<size_t>(p.sink + p.window) * hd);  // never grows
    }
  }
}

size_t allocated(const KVCache& cache, const razor::ModelConfig& c) {
  size_t b = 0;
  for (int l = 0; l < c.n_layers; ++l)
    for (int g = 0; g < c.n_kv_heads; ++g) {
      const razor::HeadCache& h = cache.head(l, g);
      b += (h.k.capacity() + h.v.capacity()) * sizeof(float) + (h.k_sum.capacity() + h.v_sum.capacity()) * sizeof(double);
    }
  return b;
}

TEST(KvCache, BytesHeldEqualAllocatedCapacityPerPolicy) {
  const razor::ModelConfig c = tiny_config();
  const int kv_dim = c.kv_dim(), hd = c.head_dim;
  const int N = 30, total = 45;
  std::mt19937 rng(3);
  const auto K = randn(static_cast<size_t>(total) * kv_dim, rng);
  struct Case {
    const char* name;
    KVPolicy p;
  };
  std::vector<Case> cases;
  cases.push_back({"full", KVPolicy{}});
  for (CompressMode mode : {CompressMode::Static, CompressMode::Rolling})
    for (bool comp : {true, false}) {
      KVPolicy razor;
      razor.retrieval = {{true, false}, {false, false}};
      razor.sink = 4;
      razor.window = 6;
      razor.mode = mode;
      razor.compensation = comp;
      cases.push_back({"razor", razor});
      KVPolicy streaming = razor;
      streaming.retrieval = table(c, false);
      cases.push_back({"streaming", streaming});
    }
  for (const Case& k : cases) {
    KVCache cache(c, k.p, total);
    for (int l = 0; l < c.n_layers; ++l) {
      cache.append(l, N, K.data(), K.data());
      cache.compress_layer(l, N);
    }
    const size_t after_prefill = cache.bytes_held();
    EXPECT_EQ(after_prefill, allocated(cache, c)) << k.name;
    EXPECT_EQ(after_prefill, razor::predicted_kv_bytes(c, k.p, N, total)) << k.name;
    for (int t = N; t < total; ++t)
      for (int l = 0; l < c.n_layers; ++l)
        cache.append(l, 1, K.data() + static_cast<size_t>(t) * kv_dim, K.data() + static_cast<size_t>(t) * kv_dim);
    EXPECT_EQ(cache.bytes_held(), allocated(cache, c)) << k.name;
    EXPECT_EQ(cache.bytes_held(), after_prefill) << k.name << ": the cache grew after the prompt";
    // What each head holds, counted by hand.
    const size_t row = 2 * hd * sizeof(float), comp = k.p.compensation ? 2 * hd * sizeof(double) : 0;
    size_t want = 0;
    for (int l = 0; l < c.n_layers; ++l)
      for (int g = 0; g < c.n_kv_heads; ++g) {
        const bool r = k.p.retrieval.empty() || k.p.retrieval[l][g];
        const size_t rows = r ? total
                              : k.p.mode == CompressMode::Rolling ? k.p.sink + 6
                                                                  : k.p.sink + 6 + (total - N);
        want += rows * row + (r ? 0 : comp);
      }
    EXPECT_EQ(cache.bytes_held(), want) << k.name;
  }
  // Static mode with a window covering the prompt drops nothing: no compensation token, and
  // exactly the bytes of the full cache.
  KVPolicy wide;
  wide.retrieval = table(c, false);
  wide.window = N;
  KVCache w(c, wide, total);
  for (int l = 0; l < c.n_layers; ++l) {
    w.append(l, N, K.data(), K.data());
    w.compress_layer(l, N);
  }
  EXPECT_EQ(w.head(0, 0).dropped, 0);
  EXPECT_EQ(w.bytes_held(), allocated(w, c));
  EXPECT_EQ(w.bytes_held(), w.bytes_full(total));
  EXPECT_EQ(w.bytes_held(), razor::predicted_kv_bytes(c, wide, N, total));

  KVCache full(c, KVPolicy{}, total);
  for (int l = 0; l < c.n_layers; ++l) full.append(l, 1, K.data(), K.data());
  EXPECT_EQ(full.bytes_held(), full.bytes_full(total));
}

TEST(KvCache, PolicyValidation) {
  const razor::ModelConfig c = tiny_config();
  KVPolicy p;
  p.sink = -1;
  EXPECT_THROW(KVCache(c, p, 10), razor::Error);
  p = {};
  p.window = -2;
  EXPECT_THROW(KVCache(c, p, 10), razor::Error);
  p = {};
  p.compress_ratio = 0;
  EXPECT_THROW(KVCache(c, p, 10), razor::Error);
  p = {};
  p.retrieval = {{true, false}};  // one layer of two
  EXPECT_THROW(KVCache(c, p, 10), razor::Error);
  p.retrieval = {{true}, {false}};  // one kv head of two
  EXPECT_THROW(KVCache(c, p, 10), razor::Error);
}

TEST(KvCache, AutomaticWindowFollowsThresholdAndRatio) {
  KVPolicy p;
  EXPECT_EQ(p.window_for(100), 4000);  // S0 = 4000 dominates short prompts
  EXPECT_EQ(p.window_for(30000), 6000);  // N / C
  p.compress_threshold = 10;
  p.compress_ratio = 4;
  EXPECT_EQ(p.window_for(100), 25);
  EXPECT_EQ(p.window_for(20), 10);
  p.window = 7;
  EXPECT_EQ(p.window_for(100), 7);
}

}  // namespace
