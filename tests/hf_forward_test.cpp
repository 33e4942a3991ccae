// razor's forward pass on Hugging Face checkpoints against the test kit's independent naive
// HF-layout reference (rotate_half RoPE, double accumulation): Llama, GQA, Qwen2 biases, Qwen3
// q/k norms, RoPE scaling, BF16/F16 storage, shards; and the real stories260K-hf against its
// llama2.c twin.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "checkpoint_writer.h"
#include "razor/model.h"
#include "razor/session.h"
#include "test_util.h"

namespace tk = razor::testkit;

namespace {

constexpr float kStd = 0.15f;  // large enough for sharp attention and visible RoPE effects

tk::HfConfig base_config(const std::string& arch = "llama") {
  tk::HfConfig c;
  c.arch = arch;
  c.dim = 64;
  c.hidden_dim = 96;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 4;
  c.vocab_size = 97;
  c.max_seq_len = 128;
  return c;
}

std::vector<int> random_tokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(0, vocab - 1);
  std::vector<int> t(static_cast<size_t>(n));
  for (int& x : t) x = d(rng);
  return t;
}

// All-position logits [T * vocab] from a full-cache session.
std::vector<float> razor_logits(const razor::Model& m, const std::vector<int>& tokens) {
  razor::Session s(m, razor::KVPolicy{}, razor::SessionOptions{});
  std::vector<float> out(tokens.size() * static_cast<size_t>(m.config.vocab_size));
  s.prefill(tokens, out.data(), /*all_logits=*/true);
  return out;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<std::vector<float>>& ref) {
  double d = 0;
  const size_t V = ref.empty() ? 0 : ref[0].size();
  EXPECT_EQ(a.size(), ref.size() * V);
  for (size_t t = 0; t < ref.size(); ++t)
    for (size_t v = 0; v < V; ++v) d = std::max(d, std::fabs(double(a[t * V + v]) - ref[t][v]));
  return d;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) d = std::max(d, std::fabs(double(a[i]) - b[i]));
  return d;
}

double max_abs(const std::vector<std::vector<float>>& ref) {
  double m = 0;
  for (const auto& row : ref)
    for (float x : row) m = std::max(m, std::fabs(double(x)));
  return m;
}

std::string write(const tk::HfConfig& c, const tk::Weights& w, tk::DiskDType dt = tk::DiskDType::F32,
                  int shards = 1) {
  std::string dir = razor::test::temp_dir() + "/ckpt";
  tk::write_hf(dir, c, w, dt, shards);
  return dir;
}

// Loads the checkpoint of (c, w) and checks razor's logits against the reference.
void check_against_reference(const tk::HfConfig& c, uint64_t seed, int n_tokens = 40,
                             double tol = 1e-4) {
  tk::Weights w = tk::random_weights(c, seed, kStd);
  auto m = razor::load_hf(write(c, w));
  std::vector<int> tokens = random_tokens(n_tokens, c.vocab_size, uint32_t(seed));
  auto ref = tk::reference_logits(c, w, tokens);
  ASSERT_GT(max_abs(ref), 0.5) << "degenerate test model";
  double d = max_abs_diff(razor_logits(*m, tokens), ref);
  EXPECT_LE(d, tol) << c.arch;
  ::testing::Test::RecordProperty("max_abs_diff", std::to_string(d));
}

}  // namespace

TEST(HfForward, LlamaMatchesReference) { check_against_reference(base_config(), 101); }

TEST(HfForward, MistralGqaMatchesReference) {
  tk::HfConfig c = base_config("mistral");
  c.n_heads = 8;
  c.n_kv_heads = 2;
  c.tied = false;
  check_against_reference(c, 102);
}

TEST(HfForward, Qwen2BiasesMatchReference) {
  tk::HfConfig c = base_config("qwen2");
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.tied = false;
  c.rope_theta = 1000000.0f;
  c.norm_eps = 1e-6f;
  check_against_reference(c, 103);
}

TEST(HfForward, Qwen3QkNormMatchesReference) {
  tk::HfConfig c = base_config("qwen3");
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 32;  // q_dim 128 != hidden 64
  c.norm_eps = 1e-6f;
  check_against_reference(c, 104);
}

TEST(HfForward, Llama3RopeScalingMatchesReference) {
  tk::HfConfig c = base_config();
  c.n_heads = 2;
  c.n_kv_heads = 1;  // head_dim 32: 16 frequencies spread over all three llama3 regimes
  c.rope_scaling = razor::RopeScaling::Llama3;
  c.rope_factor = 8.0f;
  c.rope_low_freq_factor = 1.0f;
  c.rope_high_freq_factor = 4.0f;
  c.rope_original_max_pos = 64;
  check_against_reference(c, 105, 64);
}

TEST(HfForward, LinearRopeScalingMatchesReference) {
  tk::HfConfig c = base_config();
  c.rope_scaling = razor::RopeScaling::Linear;
  c.rope_factor = 4.0f;
  check_against_reference(c, 106);
}

// The scaling really changes the logits (so the tests above test something).
TEST(HfForward, RopeScalingMatters) {
  tk::HfConfig c = base_config();
  c.n_heads = 2;
  c.n_kv_heads = 1;
  tk::Weights w = tk::random_weights(c, 107, kStd);
  std::vector<int> tokens = random_tokens(64, c.vocab_size, 107);
  auto plain = tk::reference_logits(c, w, tokens);
  c.rope_scaling = razor::RopeScaling::Llama3;
  c.rope_original_max_pos = 64;
  auto m = razor::load_hf(write(c, w));
  EXPECT_GT(max_abs_diff(razor_logits(*m, tokens), plain), 1e-2);
}

// Without the load-time rotate_half -> interleaved permutation of q/k the logits are far off
// (so the reference comparisons above do check it): feed razor q/k rows already interleaved,
// which the loader then scrambles.
TEST(HfForward, PermutationMatters) {
  tk::HfConfig c = base_config("qwen2");
  c.n_kv_heads = 2;
  tk::Weights w = tk::random_weights(c, 113, kStd);
  tk::Weights wrong = w;
  const int hd = c.hd();
  for (auto& [name, t] : wrong) {
    if (name.find("q_proj") == std::string::npos && name.find("k_proj") == std::string::npos) continue;
    const tk::Tensor& src = w.at(name);
    const int64_t rows = t.shape[0], cols = t.shape.size() > 1 ? t.shape[1] : 1;
    for (int64_t r = 0; r < rows; ++r) {
      int64_t h = r / hd, j = r % hd;
      int64_t from = h * hd + (j % 2 == 0 ? j / 2 : j / 2 + hd / 2);
      std::copy_n(src.values.begin() + from * cols, cols, t.values.begin() + r * cols);
    }
  }
  auto m = razor::load_hf(write(c, wrong));
  std::vector<int> tokens = random_tokens(40, c.vocab_size, 113);
  EXPECT_GT(max_abs_diff(razor_logits(*m, tokens), tk::reference_logits(c, w, tokens)), 1e-2);
}

// Qwen2 with all-zero biases is Llama with the same other weights.
TEST(HfForward, ZeroBiasQwen2EqualsLlama) {
  tk::HfConfig q = base_config("qwen2");
  q.n_kv_heads = 2;
  q.norm_eps = 1e-5f;
  tk::Weights w = tk::random_weights(q, 108, kStd);
  tk::HfConfig l = q;
  l.arch = "llama";
  tk::Weights wl = w;
  for (auto it = wl.begin(); it != wl.end();) it = it->first.ends_with(".bias") ? wl.erase(it) : std::next(it);
  for (auto& [name, t] : w)
    if (name.ends_with(".bias")) std::fill(t.values.begin(), t.values.end(), 0.0f);
  auto mq = razor::load_hf(write(q, w));
  auto ml = razor::load_hf(write(l, wl));
  ASSERT_TRUE(mq->config.qkv_bias);
  ASSERT_FALSE(ml->config.qkv_bias);
  std::vector<int> tokens = random_tokens(32, q.vocab_size, 108);
  EXPECT_LE(max_abs_diff(razor_logits(*mq, tokens), razor_logits(*ml, tokens)), 1e-6);
}

TEST(HfForward, Bf16CloseToF32OfRoundedWeights) {
  tk::HfConfig c = base_config("qwen2");
  c.n_kv_heads = 2;
  tk::Weights w = tk::random_weights(c, 109, kStd);
  tk::Weights rounded = tk::round_weights(w, tk::DiskDType::BF16);
  auto mb = razor::load_hf(write(c, w, tk::DiskDType::BF16));
  auto mf = razor::load_hf(write(c, rounded, tk::DiskDType::F32));
  ASSERT_EQ(mb->weight_dtype(), razor::DType::BF16);
  ASSERT_EQ(mf->weight_dtype(), razor::DType::F32);
  std::vector<int> tokens = random_tokens(40, c.vocab_size, 109);
  std::vector<float> lb = razor_logits(*mb, tokens);
  EXPECT_LE(max_abs_diff(lb, razor_logits(*mf, tokens)), 1e-4);
  EXPECT_LE(max_abs_diff(lb, tk::reference_logits(c, rounded, tokens)), 1e-4);
  // Converting at load (keep_bf16 = false) gives the same model as F32 of the rounded weights.
  razor::LoadOptions opt;
  opt.keep_bf16 = false;
  auto mc = razor::load_hf(write(c, w, tk::DiskDType::BF16), opt);
  EXPECT_LE(max_abs_diff(razor_logits(*mc, tokens), razor_logits(*mf, tokens)), 1e-6);
}

TEST(HfForward, F16MatchesReferenceOfRoundedWeights) {
  tk::HfConfig c = base_config("qwen3");
  c.n_kv_heads = 2;
  tk::Weights w = tk::random_weights(c, 110, kStd);
  auto m = razor::load_hf(write(c, w, tk::DiskDType::F16));
  std::vector<int> tokens = random_tokens(40, c.vocab_size, 110);
  EXPECT_LE(max_abs_diff(razor_logits(*m, tokens),
                         tk::reference_logits(c, tk::round_weights(w, tk::DiskDType::F16), tokens)),
            1e-4);
}

TEST(HfForward, ShardedEqualsWholeExactly) {
  tk::HfConfig c = base_config("qwen2");
  c.n_kv_heads = 2;
  c.tied = false;
  tk::Weights w = tk::random_weights(c, 111, kStd);
  auto whole = razor::load_hf(write(c, w, tk::DiskDType::BF16, 1));
  auto sharded = razor::load_hf(write(c, w, tk::DiskDType::BF16, 4));
  std::vector<int> tokens = random_tokens(40, c.vocab_size, 111);
  std::vector<float> a = razor_logits(*whole, tokens), b = razor_logits(*sharded, tokens);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

// The test kit's llama2.c writer and razor's two loaders agree on a synthetic GQA Llama.
TEST(HfForward, SyntheticLlama2cTwinMatches) {
  tk::HfConfig c = base_config();
  c.n_heads = 8;
  c.n_kv_heads = 2;
  c.tied = false;
  tk::Weights w = tk::random_weights(c, 112, kStd);
  auto hf = razor::load_hf(write(c, w));
  std::string bin = razor::test::temp_dir() + "/twin.bin";
  tk::write_llama2c_v0(bin, c, w);
  auto l2c = razor::load_llama2c(bin);
  std::vector<int> tokens = random_tokens(48, c.vocab_size, 112);
  std::vector<float> a = razor_logits(*hf, tokens);
  EXPECT_LE(max_abs_diff(a, razor_logits(*l2c, tokens)), 1e-5);
  EXPECT_LE(max_abs_diff(a, tk::reference_logits(c, w, tokens)), 1e-4);
}

TEST(HfForward, Stories260KHfMatchesLlama2c) {
  REQUIRE_MODEL("stories260K-hf");
  REQUIRE_MODEL("stories260K.bin");
  auto hf = razor::load_hf(razor::test::model_path("stories260K-hf"));
  auto bin = razor::load_llama2c(razor::test::model_path("stories260K.bin"));
  std::vector<int> tokens = random_tokens(128, 512, 260);
  tokens[0] = 1;  // BOS
  std::vector<float> a = razor_logits(*hf, tokens), b = razor_logits(*bin, tokens);
  EXPECT_LE(max_abs_diff(a, b), 1e-5);
}
