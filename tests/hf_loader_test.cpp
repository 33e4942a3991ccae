// Hugging Face safetensors loader: the real stories260K-hf checkpoint, synthetic Llama / Qwen2 /
// Qwen3 checkpoints in F32, F16, BF16, single-file and sharded, and every kind of bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <nlohmann/json.hpp>

#include "checkpoint_writer.h"
#include "model/convert.h"
#include "model/safetensors.h"
#include "razor/model.h"
#include "test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;
using razor::DType;
using razor::Matrix;
using razor::Model;
namespace tk = razor::testkit;

namespace {

using tk::small_config;

std::string make_ckpt(const tk::HfConfig& c, const tk::Weights& w,
                      tk::DiskDType dt = tk::DiskDType::F32, int shards = 1) {
  std::string dir = razor::test::temp_dir() + "/ckpt";
  tk::write_hf(dir, c, w, dt, shards);
  return dir;
}

// Element (r, c) of a matrix as float.
float at(const Matrix& m, int64_t r, int64_t c) {
  if (m.dtype == DType::BF16) return razor::convert::bf16_to_f32(m.bf16()[r * m.cols + c]);
  return m.f32()[r * m.cols + c];
}

// HF (rotate_half) row of interleaved row r.
int64_t hf_row(int64_t r, int hd) {
  int64_t h = r / hd, j = r % hd;
  return h * hd + (j % 2 == 0 ? j / 2 : j / 2 + hd / 2);
}

// Checks a loaded matrix against HF weights (optionally permuted per head), exactly.
void expect_matrix(const Matrix& m, const tk::Tensor& t, int perm_hd, const std::string& what) {
  ASSERT_EQ(m.rows, t.shape[0]) << what;
  ASSERT_EQ(m.cols, t.shape[1]) << what;
  for (int64_t r = 0; r < m.rows; ++r) {
    int64_t src = perm_hd ? hf_row(r, perm_hd) : r;
    for (int64_t c = 0; c < m.cols; ++c)
      ASSERT_EQ(at(m, r, c), t.values[size_t(src * m.cols + c)]) << what << " (" << r << ", " << c << ")";
  }
}

void expect_vector(const float* v, const tk::Tensor& t, int perm_hd, const std::string& what) {
  ASSERT_NE(v, nullptr) << what;
  for (int64_t i = 0; i < int64_t(t.values.size()); ++i) {
    int64_t src = perm_hd ? hf_row(i, perm_hd) : i;
    ASSERT_EQ(v[i], t.values[size_t(src)]) << what << " [" << i << "]";
  }
}

// Checks every weight of `m` against `w` (HF layout, values as stored).
void expect_weights(const Model& m, const tk::HfConfig& c, const tk::Weights& w) {
  const int hd = c.hd();
  expect_matrix(m.tok_embeddings, w.at("model.embed_tokens.weight"), 0, "embed");
  for (int l = 0; l < c.n_layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    const razor::LayerWeights& L = m.layers[size_t(l)];
    expect_vector(L.attn_norm, w.at(p + "input_layernorm.weight"), 0, p + "attn_norm");
    expect_matrix(L.wq, w.at(p + "self_attn.q_proj.weight"), hd, p + "wq");
    expect_matrix(L.wk, w.at(p + "self_attn.k_proj.weight"), hd, p + "wk");
    expect_matrix(L.wv, w.at(p + "self_attn.v_proj.weight"), 0, p + "wv");
    expect_matrix(L.wo, w.at(p + "self_attn.o_proj.weight"), 0, p + "wo");
    expect_vector(L.ffn_norm, w.at(p + "post_attention_layernorm.weight"), 0, p + "ffn_norm");
    expect_matrix(L.w1, w.at(p + "mlp.gate_proj.weight"), 0, p + "w1");
    expect_matrix(L.w2, w.at(p + "mlp.down_proj.weight"), 0, p + "w2");
    expect_matrix(L.w3, w.at(p + "mlp.up_proj.weight"), 0, p + "w3");
    if (c.has_bias()) {
      expect_vector(L.bq, w.at(p + "self_attn.q_proj.bias"), hd, p + "bq");
      expect_vector(L.bk, w.at(p + "self_attn.k_proj.bias"), hd, p + "bk");
      expect_vector(L.bv, w.at(p + "self_attn.v_proj.bias"), 0, p + "bv");
    } else {
      EXPECT_EQ(L.bq, nullptr);
    }
    if (c.has_qk_norm()) {
      expect_vector(L.q_norm, w.at(p + "self_attn.q_norm.weight"), hd, p + "q_norm");
      expect_vector(L.k_norm, w.at(p + "self_attn.k_norm.weight"), hd, p + "k_norm");
    } else {
      EXPECT_EQ(L.q_norm, nullptr);
    }
  }
  expect_vector(m.final_norm, w.at("model.norm.weight"), 0, "final_norm");
  if (c.tied) {
    EXPECT_EQ(m.output.data, m.tok_embeddings.data);
  } else {
    expect_matrix(m.output, w.at("lm_head.weight"), 0, "lm_head");
  }
}

// Raw safetensors editing for the bad-input tests.
struct Raw {
  json header;
  std::string data;
};

Raw read_raw(const std::string& path) {
  std::string bytes = razor::test::read_text(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[size_t(i)]);
  Raw r;
  r.header = json::parse(bytes.substr(8, n));
  r.data = bytes.substr(8 + n);
  return r;
}

void write_raw(const std::string& path, const std::string& header, const std::string& data,
               int64_t claimed_len = -1) {
  uint64_t n = claimed_len >= 0 ? uint64_t(claimed_len) : header.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xff);
  out += header;
  out += data;
  razor::test::write_text(path, out);
}

void write_raw(const std::string& path, const Raw& r) { write_raw(path, r.header.dump(), r.data); }

json read_json(const std::string& path) { return json::parse(razor::test::read_text(path)); }
void write_json(const std::string& path, const json& j) { razor::test::write_text(path, j.dump(2)); }

// Loads dir and expects a razor::Error whose message contains every string in `needles`.
void expect_load_error(const std::string& dir, const std::vector<std::string>& needles) {
  try {
    razor::load_hf(dir);
    FAIL() << "load_hf(" << dir << ") did not throw";
  } catch (const razor::Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const std::string& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

// A fresh valid small Llama checkpoint for a bad-input test to break.
struct Victim {
  tk::HfConfig cfg = small_config();
  tk::Weights w = tk::random_weights(cfg, 7);
  std::string dir;
  std::string st;
  explicit Victim(int shards = 1) {
    dir = make_ckpt(cfg, w, tk::DiskDType::F32, shards);
    st = dir + "/model.safetensors";
  }
  std::string config() const { return dir + "/config.json"; }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// The real checkpoint

TEST(HfLoader, Stories260KConfig) {
  REQUIRE_MODEL("stories260K-hf");
  std::string path = razor::test::model_path("stories260K-hf");
  auto m = razor::load_hf(path);
  const razor::ModelConfig& c = m->config;
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_seq_len, 512);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_EQ(c.rope_scaling, razor::RopeScaling::None);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.bos_id, 1);
  EXPECT_EQ(c.eos_id, 2);
  EXPECT_EQ(m->path, path);
  EXPECT_EQ(m->format, "hf-safetensors");
  EXPECT_EQ(m->source_dtype, "F32");
  EXPECT_EQ(m->weight_dtype(), DType::F32);
  ASSERT_EQ(m->layers.size(), 5u);
  EXPECT_EQ(m->output.data, m->tok_embeddings.data);
  EXPECT_EQ(m->layers[0].wq.rows, 64);
  EXPECT_EQ(m->layers[0].wk.rows, 32);
  EXPECT_EQ(m->layers[0].w2.cols, 172);
}

// After the load-time permutation, q/k (and everything else) equal the llama2.c file's bytes.
TEST(HfLoader, Stories260KMatchesLlama2cBytes) {
  REQUIRE_MODEL("stories260K-hf");
  REQUIRE_MODEL("stories260K.bin");
  auto m = razor::load_hf(razor::test::model_path("stories260K-hf"));
  std::ifstream f(razor::test::model_path("stories260K.bin"), std::ios::binary);
  int32_t h[7];
  f.read(reinterpret_cast<char*>(h), sizeof h);
  ASSERT_TRUE(f);
  const int64_t dim = h[0], hidden = h[1], L = h[2], heads = h[3], kvh = h[4], vocab = std::abs(h[5]);
  const int64_t kv_dim = dim / heads * kvh;
  ASSERT_EQ(dim, 64);
  auto read = [&](int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    f.read(reinterpret_cast<char*>(v.data()), std::streamsize(n * 4));
    EXPECT_TRUE(f);
    return v;
  };
  std::vector<float> emb = read(vocab * dim), rms_att = read(L * dim), wq = read(L * dim * dim),
                     wk = read(L * kv_dim * dim), wv = read(L * kv_dim * dim), wo = read(L * dim * dim),
                     rms_ffn = read(L * dim), w1 = read(L * hidden * dim), w2 = read(L * dim * hidden),
                     w3 = read(L * hidden * dim), rms_final = read(dim);
  auto same = [](const void* a, const float* b, int64_t n) { return std::memcmp(a, b, size_t(n) * 4) == 0; };
  EXPECT_TRUE(same(m->tok_embeddings.data, emb.data(), vocab * dim));
  EXPECT_TRUE(same(m->final_norm, rms_final.data(), dim));
  for (int64_t l = 0; l < L; ++l) {
    const razor::LayerWeights& w = m->layers[size_t(l)];
    EXPECT_TRUE(same(w.wq.data, wq.data() + l * dim * dim, dim * dim)) << "wq layer " << l;
    EXPECT_TRUE(same(w.wk.data, wk.data() + l * kv_dim * dim, kv_dim * dim)) << "wk layer " << l;
    EXPECT_TRUE(same(w.wv.data, wv.data() + l * kv_dim * dim, kv_dim * dim)) << "wv layer " << l;
    EXPECT_TRUE(same(w.wo.data, wo.data() + l * dim * dim, dim * dim)) << "wo layer " << l;
    EXPECT_TRUE(same(w.w1.data, w1.data() + l * hidden * dim, hidden * dim)) << "w1 layer " << l;
    EXPECT_TRUE(same(w.w2.data, w2.data() + l * dim * hidden, dim * hidden)) << "w2 layer " << l;
    EXPECT_TRUE(same(w.w3.data, w3.data() + l * hidden * dim, hidden * dim)) << "w3 layer " << l;
    EXPECT_TRUE(same(w.attn_norm, rms_att.data() + l * dim, dim)) << "rms_att layer " << l;
    EXPECT_TRUE(same(w.ffn_norm, rms_ffn.data() + l * dim, dim)) << "rms_ffn layer " << l;
  }
  // The HF file really is permuted (otherwise this test would prove nothing).
  razor::safetensors::File st(razor::test::model_path("stories260K-hf/model.safetensors"));
  const auto* q0 = st.find("model.layers.0.self_attn.q_proj.weight");
  ASSERT_NE(q0, nullptr);
  EXPECT_FALSE(same(q0->data, wq.data(), dim * dim));
}

TEST(HfLoader, LoadModelDispatchesDirectories) {
  REQUIRE_MODEL("stories260K-hf");
  auto m = razor::load_model(razor::test::model_path("stories260K-hf"));
  EXPECT_EQ(m->format, "hf-safetensors");
}

// ---------------------------------------------------------------------------------------------
// Synthetic checkpoints

TEST(HfLoader, LlamaWeightsPermutedExactly) {
  tk::HfConfig c = small_config();
  tk::Weights w = tk::random_weights(c, 1);
  auto m = razor::load_hf(make_ckpt(c, w));
  EXPECT_EQ(m->config.arch, "llama");
  EXPECT_EQ(m->config.head_dim, 8);
  EXPECT_EQ(m->config.norm_eps, 1e-5f);
  expect_weights(*m, c, w);
}

TEST(HfLoader, Qwen2HasBiases) {
  tk::HfConfig c = small_config("qwen2");
  c.tied = false;
  tk::Weights w = tk::random_weights(c, 2);
  auto m = razor::load_hf(make_ckpt(c, w));
  EXPECT_EQ(m->config.arch, "qwen2");
  EXPECT_TRUE(m->config.qkv_bias);
  EXPECT_FALSE(m->config.qk_norm);
  EXPECT_FALSE(m->config.tied_embeddings);
  expect_weights(*m, c, w);
}

TEST(HfLoader, Qwen3HasQkNormAndExplicitHeadDim) {
  tk::HfConfig c = small_config("qwen3");
  c.head_dim = 16;  // q_dim 64 != hidden 32, as in real Qwen3 models
  tk::Weights w = tk::random_weights(c, 3);
  auto m = razor::load_hf(make_ckpt(c, w));
  EXPECT_EQ(m->config.arch, "qwen3");
  EXPECT_TRUE(m->config.qk_norm);
  EXPECT_FALSE(m->config.qkv_bias);
  EXPECT_EQ(m->config.head_dim, 16);
  EXPECT_EQ(m->config.q_dim(), 64);
  EXPECT_EQ(m->layers[0].wq.rows, 64);
  EXPECT_EQ(m->layers[0].wo.cols, 64);
  expect_weights(*m, c, w);
}

TEST(HfLoader, MistralAndLlamaAttentionBias) {
  tk::HfConfig c = small_config("mistral");
  c.qkv_bias = true;  // attention_bias: true
  tk::Weights w = tk::random_weights(c, 4);
  auto m = razor::load_hf(make_ckpt(c, w));
  EXPECT_EQ(m->config.arch, "mistral");
  EXPECT_TRUE(m->config.qkv_bias);
  expect_weights(*m, c, w);
}

TEST(HfLoader, RopeScalingAndTokenIds) {
  tk::HfConfig c = small_config();
  c.rope_scaling = razor::RopeScaling::Llama3;
  c.rope_factor = 8;
  c.rope_low_freq_factor = 1;
  c.rope_high_freq_factor = 4;
  c.rope_original_max_pos = 32;
  c.rope_theta = 500000;
  tk::Weights w = tk::random_weights(c, 5);
  std::string dir = make_ckpt(c, w);
  json j = read_json(dir + "/config.json");
  j["eos_token_id"] = {7, 9};
  j["pad_token_id"] = 3;
  write_json(dir + "/config.json", j);
  auto m = razor::load_hf(dir);
  EXPECT_EQ(m->config.rope_scaling, razor::RopeScaling::Llama3);
  EXPECT_EQ(m->config.rope_factor, 8.0f);
  EXPECT_EQ(m->config.rope_low_freq_factor, 1.0f);
  EXPECT_EQ(m->config.rope_high_freq_factor, 4.0f);
  EXPECT_EQ(m->config.rope_original_max_pos, 32);
  EXPECT_EQ(m->config.rope_theta, 500000.0f);
  EXPECT_EQ(m->config.eos_id, 7);
  EXPECT_EQ(m->config.pad_id, 3);

  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  write_json(dir + "/config.json", j);
  m = razor::load_hf(dir);
  EXPECT_EQ(m->config.rope_scaling, razor::RopeScaling::Linear);
  EXPECT_EQ(m->config.rope_factor, 2.0f);
}

TEST(HfLoader, ConfigDefaults) {
  tk::HfConfig c = small_config();
  c.n_kv_heads = c.n_heads;
  tk::Weights w = tk::random_weights(c, 6);
  std::string dir = make_ckpt(c, w);
  json j = read_json(dir + "/config.json");
  for (const char* k : {"num_key_value_heads", "rope_theta", "tie_word_embeddings", "rope_scaling",
                        "bos_token_id", "eos_token_id", "max_position_embeddings", "rms_norm_eps"})
    j.erase(k);
  write_json(dir + "/config.json", j);
  auto m = razor::load_hf(dir);
  EXPECT_EQ(m->config.n_kv_heads, 4);
  EXPECT_EQ(m->config.rope_theta, 10000.0f);
  EXPECT_TRUE(m->config.tied_embeddings);  // not stated, no lm_head.weight
  EXPECT_EQ(m->config.bos_id, 1);
  EXPECT_EQ(m->config.eos_id, 2);
  EXPECT_EQ(m->config.max_seq_len, 2048);
  EXPECT_FLOAT_EQ(m->config.norm_eps, 1e-6f);
}

TEST(HfLoader, UntiedWhenLmHeadPresentAndTieUnstated) {
  tk::HfConfig c = small_config();
  c.tied = false;
  tk::Weights w = tk::random_weights(c, 8);
  std::string dir = make_ckpt(c, w);
  json j = read_json(dir + "/config.json");
  j.erase("tie_word_embeddings");
  write_json(dir + "/config.json", j);
  auto m = razor::load_hf(dir);
  EXPECT_FALSE(m->config.tied_embeddings);
  expect_weights(*m, c, w);
}

TEST(HfLoader, ExtraTensorsIgnored) {
  tk::HfConfig c = small_config();
  tk::Weights w = tk::random_weights(c, 9);
  w["model.layers.0.self_attn.rotary_emb.inv_freq"] = {{4}, {1, 0.1f, 0.01f, 0.001f}};
  auto m = razor::load_hf(make_ckpt(c, w));
  expect_weights(*m, c, w);
}

TEST(HfLoader, Bf16KeptAsBf16) {
  tk::HfConfig c = small_config("qwen2");
  tk::Weights w = tk::random_weights(c, 10);
  std::string dir = make_ckpt(c, w, tk::DiskDType::BF16);
  auto m = razor::load_hf(dir);
  EXPECT_EQ(m->source_dtype, "BF16");
  EXPECT_EQ(m->weight_dtype(), DType::BF16);
  EXPECT_EQ(m->layers[0].wq.dtype, DType::BF16);
  EXPECT_EQ(m->layers[1].w2.dtype, DType::BF16);
  // Stored values are the round-to-nearest-even BF16 of the F32 weights, bit for bit.
  const tk::Tensor& v = w.at("model.layers.1.self_attn.v_proj.weight");
  for (size_t i = 0; i < v.values.size(); ++i)
    ASSERT_EQ(m->layers[1].wv.bf16()[i], razor::convert::f32_to_bf16(v.values[i])) << i;
  // Everything, norms and biases included (those as F32), equals the rounded weights.
  expect_weights(*m, c, tk::round_weights(w, tk::DiskDType::BF16));
}

TEST(HfLoader, Bf16ConvertedWhenNotKept) {
  tk::HfConfig c = small_config("qwen3");
  tk::Weights w = tk::random_weights(c, 11);
  std::string dir = make_ckpt(c, w, tk::DiskDType::BF16);
  razor::LoadOptions opt;
  opt.keep_bf16 = false;
  auto m = razor::load_hf(dir, opt);
  EXPECT_EQ(m->source_dtype, "BF16");
  EXPECT_EQ(m->weight_dtype(), DType::F32);
  EXPECT_EQ(m->layers[0].wk.dtype, DType::F32);
  expect_weights(*m, c, tk::round_weights(w, tk::DiskDType::BF16));
}

TEST(HfLoader, F16ConvertedToF32) {
  tk::HfConfig c = small_config("qwen2");
  tk::Weights w = tk::random_weights(c, 12);
  auto m = razor::load_hf(make_ckpt(c, w, tk::DiskDType::F16));
  EXPECT_EQ(m->source_dtype, "F16");
  EXPECT_EQ(m->weight_dtype(), DType::F32);
  expect_weights(*m, c, tk::round_weights(w, tk::DiskDType::F16));
}

TEST(HfLoader, MixedDtypesBecomeF32) {
  // One BF16 file and one F32 file in a sharded checkpoint: one matrix dtype in memory.
  tk::HfConfig c = small_config();
  tk::Weights w = tk::round_weights(tk::random_weights(c, 13), tk::DiskDType::BF16);
  std::string dir = make_ckpt(c, w, tk::DiskDType::BF16, 2);
  std::string f32dir = make_ckpt(c, w, tk::DiskDType::F32, 2);
  fs::copy_file(f32dir + "/model-00002-of-00002.safetensors", dir + "/model-00002-of-00002.safetensors",
                fs::copy_options::overwrite_existing);
  auto m = razor::load_hf(dir);
  EXPECT_EQ(m->source_dtype, "mixed");
  EXPECT_EQ(m->weight_dtype(), DType::F32);
  for (const auto& L : m->layers) {
    EXPECT_EQ(L.wq.dtype, DType::F32);
    EXPECT_EQ(L.w2.dtype, DType::F32);
  }
  expect_weights(*m, c, w);
}

TEST(HfLoader, ShardedEqualsWhole) {
  tk::HfConfig c = small_config("qwen2");
  c.tied = false;
  tk::Weights w = tk::random_weights(c, 14);
  auto whole = razor::load_hf(make_ckpt(c, w, tk::DiskDType::BF16, 1));
  std::string sdir = make_ckpt(c, w, tk::DiskDType::BF16, 3);
  ASSERT_TRUE(fs::exists(sdir + "/model.safetensors.index.json"));
  ASSERT_TRUE(fs::exists(sdir + "/model-00003-of-00003.safetensors"));
  ASSERT_FALSE(fs::exists(sdir + "/model.safetensors"));
  auto sharded = razor::load_hf(sdir);
  EXPECT_EQ(sharded->source_dtype, "BF16");
  auto same_m = [](const Matrix& a, const Matrix& b) {
    return a.dtype == b.dtype && a.rows == b.rows && a.cols == b.cols &&
           std::memcmp(a.data, b.data, size_t(a.rows * a.cols) * (a.dtype == DType::BF16 ? 2 : 4)) == 0;
  };
  auto same_v = [](const float* a, const float* b, int n) { return std::memcmp(a, b, size_t(n) * 4) == 0; };
  const razor::ModelConfig& k = whole->config;
  EXPECT_TRUE(same_m(whole->tok_embeddings, sharded->tok_embeddings));
  EXPECT_TRUE(same_m(whole->output, sharded->output));
  EXPECT_TRUE(same_v(whole->final_norm, sharded->final_norm, k.dim));
  for (int l = 0; l < k.n_layers; ++l) {
    const auto &a = whole->layers[size_t(l)], &b = sharded->layers[size_t(l)];
    for (auto mp : {&razor::LayerWeights::wq, &razor::LayerWeights::wk, &razor::LayerWeights::wv,
                    &razor::LayerWeights::wo, &razor::LayerWeights::w1, &razor::LayerWeights::w2,
                    &razor::LayerWeights::w3})
      EXPECT_TRUE(same_m(a.*mp, b.*mp)) << "layer " << l;
    EXPECT_TRUE(same_v(a.attn_norm, b.attn_norm, k.dim));
    EXPECT_TRUE(same_v(a.ffn_norm, b.ffn_norm, k.dim));
    EXPECT_TRUE(same_v(a.bq, b.bq, k.q_dim()));
    EXPECT_TRUE(same_v(a.bk, b.bk, k.kv_dim()));
    EXPECT_TRUE(same_v(a.bv, b.bv, k.kv_dim()));
  }
}

TEST(HfLoader, UnalignedF32IsCopied) {
  Victim v;
  Raw r = read_raw(v.st);
  // Shift the data section by 2 bytes: every F32 tensor becomes misaligned.
  for (auto& [name, e] : r.header.items())
    if (name != "__metadata__")
      e["data_offsets"] = {e["data_offsets"][0].get<uint64_t>() + 2, e["data_offsets"][1].get<uint64_t>() + 2};
  std::string h = r.header.dump();
  while ((8 + h.size()) % 8) h += ' ';
  write_raw(v.st, h, std::string(2, '\0') + r.data);
  auto m = razor::load_hf(v.dir);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(m->layers[0].wv.data) % 4, 0u);
  expect_weights(*m, v.cfg, v.w);
}

TEST(HfLoader, WeightsOutliveDeletedFiles) {
  // The model keeps its files alive: delete the directory, the weights stay readable.
  tk::HfConfig c = small_config();
  tk::Weights w = tk::random_weights(c, 15);
  std::string dir = make_ckpt(c, w);
  auto m = razor::load_hf(dir);
  fs::remove_all(dir);
  expect_weights(*m, c, w);
}

// ---------------------------------------------------------------------------------------------
// Bad input: one-line razor::Error naming the offending file

TEST(HfLoaderBadInput, NonexistentPath) {
  std::string dir = razor::test::temp_dir() + "/nope";
  expect_load_error(dir, {dir});
}

TEST(HfLoaderBadInput, NotADirectory) {
  std::string f = razor::test::temp_dir() + "/file.bin";
  razor::test::write_text(f, "x");
  expect_load_error(f, {f, "not a directory"});
}

TEST(HfLoaderBadInput, MissingConfig) {
  Victim v;
  fs::remove(v.config());
  expect_load_error(v.dir, {"config.json"});
}

TEST(HfLoaderBadInput, BadConfigJson) {
  Victim v;
  razor::test::write_text(v.config(), "{\"hidden_size\": 32,");
  expect_load_error(v.dir, {v.config(), "JSON"});
}

TEST(HfLoaderBadInput, MissingConfigField) {
  Victim v;
  json j = read_json(v.config());
  j.erase("hidden_size");
  write_json(v.config(), j);
  expect_load_error(v.dir, {v.config(), "hidden_size"});
}

TEST(HfLoaderBadInput, WrongTypeConfigField) {
  Victim v;
  json j = read_json(v.config());
  j["num_hidden_layers"] = "two";
  write_json(v.config(), j);
  expect_load_error(v.dir, {v.config(), "num_hidden_layers"});
}

TEST(HfLoaderBadInput, NonPositiveSize) {
  Victim v;
  json j = read_json(v.config());
  j["intermediate_size"] = 0;
  write_json(v.config(), j);
  expect_load_error(v.dir, {v.config(), "intermediate_size"});
}

TEST(HfLoaderBadInput, AbsurdSize) {
  Victim v;
  json j = read_json(v.config());
  j["vocab_size"] = int64_t(1) << 40;
  write_json(v.config(), j);
  expect_load_error(v.dir, {v.config(), "vocab_size"});
}

TEST(HfLoaderBadInput, HeadsNotDivisibleByKvHeads) {
  Victim v;
  json j = read_json(v.config());
  j["num_key_value_heads"] = 3;
  write_json(v.config(), j);
  expect_load_error(v.dir, {v.config(), "num_key_value_heads"});
}

TEST(HfLoaderBadInput, OddHeadDim) {
  Victim v;
  json j = read_json(v.config());
  j["head_dim"] = 7;
  write_json(v.config(), j);
  expect_load_error(v.dir, {v.config(), "head_dim"});
}

TEST(HfLoaderBadInput, HeadDimInconsistentWithTensorShape) {
  Victim v;
  json j = read_json(v.config());
  j["head_dim"] = 16;  // heads * head_dim = 64, but q_proj has 32 rows
  write_json(v.config(), j);
  expect_load_error(v.dir, {"model.safetensors", "q_proj", "config.json"});
}

TEST(HfLoaderBadInput, VocabInconsistentWithEmbedding) {
  Victim v;
  json j = read_json(v.config());
  j["vocab_size"] = 41;
  write_json(v.config(), j);
  expect_load_error(v.dir, {v.st, "embed_tokens"});
}

TEST(HfLoaderBadInput, UnknownArchitecture) {
  Victim v;
  json j = read_json(v.config());
  j["architectures"] = {"GPT2LMHeadModel"};
  write_json(v.config(), j);
  expect_load_error(v.dir, {v.config(), "unknown architecture GPT2LMHeadModel"});
}

TEST(HfLoaderBadInput, UnsupportedRopeScaling) {
  Victim v;
  json j = read_json(v.config());
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  write_json(v.config(), j);
  expect_load_error(v.dir, {v.config(), "yarn"});
}

TEST(HfLoaderBadInput, IncompleteLlama3RopeScaling) {
  Victim v;
  json j = read_json(v.config());
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  write_json(v.config(), j);
  expect_load_error(v.dir, {v.config(), "low_freq_factor"});
}

TEST(HfLoaderBadInput, TiedFalseButNoLmHead) {
  Victim v;
  json j = read_json(v.config());
  j["tie_word_embeddings"] = false;
  write_json(v.config(), j);
  expect_load_error(v.dir, {v.st, "lm_head.weight"});
}

TEST(HfLoaderBadInput, NoWeightsFile) {
  Victim v;
  fs::remove(v.st);
  expect_load_error(v.dir, {v.dir, "model.safetensors"});
}

TEST(HfLoaderBadInput, EmptyFile) {
  Victim v;
  razor::test::write_text(v.st, "");
  expect_load_error(v.dir, {v.st, "truncated"});
}

TEST(HfLoaderBadInput, TruncatedFile) {
  Victim v;
  std::string bytes = razor::test::read_text(v.st);
  razor::test::write_text(v.st, bytes.substr(0, bytes.size() - 100));
  expect_load_error(v.dir, {v.st});
}

TEST(HfLoaderBadInput, TruncatedInHeader) {
  Victim v;
  std::string bytes = razor::test::read_text(v.st);
  razor::test::write_text(v.st, bytes.substr(0, 40));
  expect_load_error(v.dir, {v.st, "header length"});
}

TEST(HfLoaderBadInput, HeaderLengthOutOfRange) {
  Victim v;
  Raw r = read_raw(v.st);
  write_raw(v.st, r.header.dump(), r.data, int64_t(1) << 50);
  expect_load_error(v.dir, {v.st, "header length"});
}

TEST(HfLoaderBadInput, HeaderNotJson) {
  Victim v;
  Raw r = read_raw(v.st);
  std::string h = r.header.dump();
  h[h.size() / 2] = '\x01';
  write_raw(v.st, h, r.data);
  expect_load_error(v.dir, {v.st, "JSON"});
}

TEST(HfLoaderBadInput, TensorOffsetsOutOfRange) {
  Victim v;
  Raw r = read_raw(v.st);
  auto& e = r.header["model.norm.weight"];
  uint64_t size = r.data.size();
  uint64_t len = e["data_offsets"][1].get<uint64_t>() - e["data_offsets"][0].get<uint64_t>();
  e["data_offsets"] = {size - len + 4, size + 4};
  write_raw(v.st, r);
  expect_load_error(v.dir, {v.st, "model.norm.weight", "data_offsets"});
}

TEST(HfLoaderBadInput, TensorOffsetsReversed) {
  Victim v;
  Raw r = read_raw(v.st);
  auto& e = r.header["model.norm.weight"];
  e["data_offsets"] = {e["data_offsets"][1], e["data_offsets"][0]};
  write_raw(v.st, r);
  expect_load_error(v.dir, {v.st, "model.norm.weight"});
}

TEST(HfLoaderBadInput, TensorOffsetsHuge) {
  Victim v;
  Raw r = read_raw(v.st);
  r.header["model.norm.weight"]["data_offsets"] = {uint64_t(-1) - 8, uint64_t(-1)};
  write_raw(v.st, r);
  expect_load_error(v.dir, {v.st, "model.norm.weight"});
}

TEST(HfLoaderBadInput, DtypeSizeMismatch) {
  // F16 with the byte span of F32 data: the offsets do not match dtype * shape.
  Victim v;
  Raw r = read_raw(v.st);
  r.header["model.layers.0.self_attn.q_proj.weight"]["dtype"] = "F16";
  write_raw(v.st, r);
  expect_load_error(v.dir, {v.st, "q_proj"});
}

TEST(HfLoaderBadInput, UnsupportedDtype) {
  Victim v;
  Raw r = read_raw(v.st);
  r.header["model.layers.1.mlp.up_proj.weight"]["dtype"] = "I32";
  write_raw(v.st, r);
  expect_load_error(v.dir, {v.st, "up_proj", "I32"});
}

TEST(HfLoaderBadInput, UnknownDtype) {
  Victim v;
  Raw r = read_raw(v.st);
  r.header["model.norm.weight"]["dtype"] = "F33";
  write_raw(v.st, r);
  expect_load_error(v.dir, {v.st, "F33"});
}

TEST(HfLoaderBadInput, ShapeMismatch) {
  // Same element count, wrong shape.
  Victim v;
  Raw r = read_raw(v.st);
  r.header["model.layers.0.mlp.down_proj.weight"]["shape"] = {48, 32};
  write_raw(v.st, r);
  expect_load_error(v.dir, {v.st, "down_proj", "[48, 32]"});
}

TEST(HfLoaderBadInput, NegativeShape) {
  Victim v;
  Raw r = read_raw(v.st);
  r.header["model.norm.weight"]["shape"] = {-32};
  write_raw(v.st, r);
  expect_load_error(v.dir, {v.st, "model.norm.weight"});
}

TEST(HfLoaderBadInput, MissingTensor) {
  Victim v;
  tk::Weights w = v.w;
  w.erase("model.layers.1.self_attn.k_proj.weight");
  tk::write_hf(v.dir, v.cfg, w);
  expect_load_error(v.dir, {v.st, "model.layers.1.self_attn.k_proj.weight"});
}

TEST(HfLoaderBadInput, Qwen2MissingBias) {
  tk::HfConfig c = small_config("qwen2");
  tk::Weights w = tk::random_weights(c, 16);
  w.erase("model.layers.0.self_attn.v_proj.bias");
  std::string dir = make_ckpt(c, w);
  expect_load_error(dir, {"model.safetensors", "v_proj.bias"});
}

TEST(HfLoaderBadInput, NonzeroOutputBias) {
  tk::HfConfig c = small_config();
  tk::Weights w = tk::random_weights(c, 17);
  w["model.layers.0.self_attn.o_proj.bias"] = {{32}, std::vector<float>(32, 0.5f)};
  std::string dir = make_ckpt(c, w);
  expect_load_error(dir, {"model.safetensors", "o_proj.bias"});
}

TEST(HfLoaderBadInput, MissingShard) {
  Victim v(3);
  fs::remove(v.dir + "/model-00002-of-00003.safetensors");
  expect_load_error(v.dir, {"model-00002-of-00003.safetensors"});
}

TEST(HfLoaderBadInput, BadIndexJson) {
  Victim v(2);
  razor::test::write_text(v.dir + "/model.safetensors.index.json", "{\"weight_map\": [");
  expect_load_error(v.dir, {"model.safetensors.index.json"});
}

TEST(HfLoaderBadInput, IndexWithoutWeightMap) {
  Victim v(2);
  write_json(v.dir + "/model.safetensors.index.json", json{{"metadata", json::object()}});
  expect_load_error(v.dir, {"model.safetensors.index.json", "weight_map"});
}

TEST(HfLoaderBadInput, IndexPathTraversal) {
  Victim v(2);
  std::string idx = v.dir + "/model.safetensors.index.json";
  json j = read_json(idx);
  j["weight_map"]["model.norm.weight"] = "../evil.safetensors";
  write_json(idx, j);
  expect_load_error(v.dir, {idx, "../evil.safetensors"});
  j["weight_map"]["model.norm.weight"] = "sub/x.safetensors";
  write_json(idx, j);
  expect_load_error(v.dir, {idx, "sub/x.safetensors"});
}

TEST(HfLoaderBadInput, IndexListsTensorInWrongShard) {
  Victim v(2);
  std::string idx = v.dir + "/model.safetensors.index.json";
  json j = read_json(idx);
  auto& wm = j["weight_map"];
  std::string name = "model.norm.weight";
  wm[name] = wm[name] == "model-00001-of-00002.safetensors" ? "model-00002-of-00002.safetensors"
                                                            : "model-00001-of-00002.safetensors";
  write_json(idx, j);
  expect_load_error(v.dir, {name, "model.safetensors.index.json"});
}

TEST(HfLoaderBadInput, ShardedMissingTensorNamesIndex) {
  tk::HfConfig c = small_config();
  tk::Weights w = tk::random_weights(c, 18);
  w.erase("model.layers.0.mlp.gate_proj.weight");
  std::string dir = make_ckpt(c, w, tk::DiskDType::F32, 2);
  expect_load_error(dir, {"model.safetensors.index.json", "gate_proj"});
}

TEST(HfLoaderBadInput, ShardCorrupt) {
  Victim v(2);
  std::string shard = v.dir + "/model-00002-of-00002.safetensors";
  std::string bytes = razor::test::read_text(shard);
  razor::test::write_text(shard, bytes.substr(0, bytes.size() / 2));
  expect_load_error(v.dir, {shard});
}

// Random byte corruption of the safetensors header, the index and config.json: every outcome is
// a successful load or a razor::Error, never a crash or another exception (run under ASan too).
TEST(HfLoaderBadInput, RandomCorruptionIsAnErrorOrALoad) {
  Victim v(2);
  const std::vector<std::string> files = {v.dir + "/model-00001-of-00002.safetensors",
                                          v.dir + "/model.safetensors.index.json", v.config()};
  std::mt19937 rng(1234);
  int errors = 0, loads = 0;
  for (const std::string& f : files) {
    const std::string orig = razor::test::read_text(f);
    size_t span = orig.size();
    if (f.ends_with(".safetensors")) {
      uint64_t n = 0;
      for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(orig[size_t(i)]);
      span = 8 + n;
    }
    for (int iter = 0; iter < 150; ++iter) {
      std::string bytes = orig;
      int flips = 1 + int(rng() % 3);
      for (int k = 0; k < flips; ++k) {
        size_t pos = rng() % span;
        const char pool[] = "0123456789[]{}\",:-. \x00\xff" "9e";
        bytes[pos] = (rng() % 2) ? char(rng() & 0xff) : pool[rng() % (sizeof pool - 1)];
      }
      if (rng() % 8 == 0) bytes.resize(rng() % bytes.size());
      razor::test::write_text(f, bytes);
      try {
        razor::load_hf(v.dir);
        ++loads;
      } catch (const razor::Error& e) {
        ++errors;
        EXPECT_NE(std::string(e.what()).find(v.dir), std::string::npos) << e.what();
      } catch (const std::exception& e) {
        ADD_FAILURE() << "non-razor exception for a corrupt " << f << ": " << e.what();
      }
    }
    razor::test::write_text(f, orig);
  }
  EXPECT_GT(errors, 100);
  razor::load_hf(v.dir);  // restored
}

// ---------------------------------------------------------------------------------------------
// Conversions

TEST(HfConvert, Bf16RoundsToNearestEven) {
  using namespace razor::convert;
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even (1.0).
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3f80);
  // 1.0078125 + 2^-8 is halfway between 0x3f81 and 0x3f82: ties to even (0x3f82).
  EXPECT_EQ(f32_to_bf16(1.01171875f), 0x3f82);
  EXPECT_EQ(f32_to_bf16(1.0040f), 0x3f81);  // above halfway: up
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_bf16(INFINITY), 0x7f80);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  EXPECT_EQ(f32_to_bf16(3.4e38f), 0x7f80);  // rounds past the largest bf16: infinity
  for (float x : {0.1f, -3.75f, 1e-20f, 12345.678f}) {
    float y = bf16_to_f32(f32_to_bf16(x));
    EXPECT_NEAR(y, x, std::fabs(x) / 256);
  }
}

TEST(HfConvert, F16RoundTrips) {
  using namespace razor::convert;
  // Every finite half survives half -> float -> half.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;  // NaN payloads
    ASSERT_EQ(f32_to_f16(f16_to_f32(uint16_t(h))), h) << std::hex << h;
  }
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);   // halfway to 65536: even -> infinity
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // tie to even zero
  EXPECT_EQ(f32_to_f16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie to even
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(NAN))));
}
