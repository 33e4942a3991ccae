// GGUF: the real stories260K-f32.gguf (same logits and tokens as the llama2.c files) and
// llama-2-tiny-random.gguf (F16 matrices, 32000-token SentencePiece vocab), synthetic checkpoints
// of every supported architecture and dtype cross-checked against the Hugging Face loader, the
// CLI, and bad input of every kind (each a one-line razor::Error naming the file, never a crash).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <random>

#include "checkpoint_writer.h"
#include "model/convert.h"
#include "razor/error.h"
#include "razor/model.h"
#include "razor/session.h"
#include "razor/tokenizer.h"
#include "test_util.h"

using razor::DType;
using razor::Matrix;
using razor::Model;
namespace tk = razor::testkit;

namespace {

// ---------------------------------------------------------------------------------------------
// An independent GGUF writer (for synthetic checkpoints and bad input)

template <typename T>
void put(std::string& o, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  o.append(b, sizeof(T));
}
void put_str(std::string& o, const std::string& s) {
  put<uint64_t>(o, s.size());
  o += s;
}

enum : uint32_t { kU32 = 4, kI32 = 5, kF32 = 6, kString = 8, kArray = 9 };
enum : uint32_t { kTF32 = 0, kTF16 = 1, kTBF16 = 30, kTQ4_0 = 2 };

struct GgufWriter {
  uint32_t version = 3;
  uint64_t alignment = 32;  // where the writer puts data (general.alignment is written by kv_u32)
  std::string kvs;
  uint64_t n_kv = 0;
  struct T {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    std::string data;
  };
  std::vector<T> tensors;
  // kv_u32 consults this first: a value replaces the one given, nullopt leaves the key out.
  std::map<std::string, std::optional<uint32_t>> u32_override;

  void key(const std::string& k, uint32_t type) {
    put_str(kvs, k);
    put<uint32_t>(kvs, type);
    ++n_kv;
  }
  void kv_u32(const std::string& k, uint32_t v) {
    if (auto it = u32_override.find(k); it != u32_override.end()) {
      if (!it->second) return;
      v = *it->second;
    }
    key(k, kU32), put<uint32_t>(kvs, v);
  }
  void kv_i32(const std::string& k, int32_t v) { key(k, kI32), put<int32_t>(kvs, v); }
  void kv_f32(const std::string& k, float v) { key(k, kF32), put<float>(kvs, v); }
  void kv_str(const std::string& k, const std::string& v) { key(k, kString), put_str(kvs, v); }
  void kv_strs(const std::string& k, const std::vector<std::string>& v) {
    key(k, kArray);
    put<uint32_t>(kvs, kString);
    put<uint64_t>(kvs, v.size());
    for (const auto& s : v) put_str(kvs, s);
  }
  void kv_f32s(const std::string& k, const std::vector<float>& v) {
    key(k, kArray);
    put<uint32_t>(kvs, kF32);
    put<uint64_t>(kvs, v.size());
    for (float x : v) put<float>(kvs, x);
  }
  void tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, std::string data) {
    tensors.push_back({name, std::move(ne), type, std::move(data)});
  }

  // Byte offsets of interest in the last build().
  size_t infos_begin = 0, data_begin = 0;

  std::string build() {
    std::string o = "GGUF";
    put<uint32_t>(o, version);
    put<uint64_t>(o, tensors.size());
    put<uint64_t>(o, n_kv);
    o += kvs;
    infos_begin = o.size();
    uint64_t off = 0;
    std::vector<uint64_t> offsets;
    for (const T& t : tensors) {
      off = (off + alignment - 1) / alignment * alignment;
      offsets.push_back(off);
      put_str(o, t.name);
      put<uint32_t>(o, static_cast<uint32_t>(t.ne.size()));
      for (uint64_t n : t.ne) put<uint64_t>(o, n);
      put<uint32_t>(o, t.type);
      put<uint64_t>(o, off);
      off += t.data.size();
    }
    o.resize((o.size() + alignment - 1) / alignment * alignment, '\0');
    data_begin = o.size();
    for (size_t i = 0; i < tensors.size(); ++i) {
      o.resize(data_begin + offsets[i], '\0');
      o += tensors[i].data;
    }
    return o;
  }
};

std::string encode(const std::vector<float>& v, uint32_t type) {
  std::string o;
  for (float x : v) {
    if (type == kTF32) put<float>(o, x);
    else if (type == kTF16) put<uint16_t>(o, razor::convert::f32_to_f16(x));
    else put<uint16_t>(o, razor::convert::f32_to_bf16(x));
  }
  return o;
}

uint32_t gguf_type(tk::DiskDType d) {
  return d == tk::DiskDType::F32 ? kTF32 : d == tk::DiskDType::F16 ? kTF16 : kTBF16;
}

// HF layout (rotate_half) row r of the interleaved row order, as llama.cpp's converter permutes
// llama q/k: interleaved[2i] = hf[i], interleaved[2i + 1] = hf[i + hd / 2] per head.
std::vector<float> to_interleaved(const tk::Tensor& t, int hd) {
  const int64_t rows = t.shape[0], cols = t.shape.size() > 1 ? t.shape[1] : 1;
  std::vector<float> out(t.values.size());
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t h = r / hd, j = r % hd;
    const int64_t src = h * hd + (j % 2 == 0 ? j / 2 : j / 2 + hd / 2);
    std::memcpy(&out[size_t(r * cols)], &t.values[size_t(src * cols)], size_t(cols) * 4);
  }
  return out;
}

// A GGUF checkpoint of `cfg` holding `w` (HF names and layout) the way llama.cpp's converter
// writes it: llama/mistral q/k rows permuted to the interleaved layout, qwen2/qwen3 as is; norms
// in F32 unless norm_type says otherwise.
GgufWriter gguf_of(const tk::HfConfig& cfg, const tk::Weights& w, tk::DiskDType dtype,
                   uint32_t norm_type = kTF32, uint32_t alignment = 32,
                   std::map<std::string, std::optional<uint32_t>> u32_override = {}) {
  GgufWriter g;
  g.alignment = alignment;
  g.u32_override = std::move(u32_override);
  const std::string& a = cfg.arch;
  const bool neox = a == "qwen2" || a == "qwen3";
  g.kv_str("general.architecture", a);
  g.kv_str("general.name", "synthetic");
  g.kv_u32(a + ".context_length", uint32_t(cfg.max_seq_len));
  g.kv_u32(a + ".embedding_length", uint32_t(cfg.dim));
  g.kv_u32(a + ".block_count", uint32_t(cfg.n_layers));
  g.kv_u32(a + ".feed_forward_length", uint32_t(cfg.hidden_dim));
  g.kv_u32(a + ".rope.dimension_count", uint32_t(cfg.hd()));
  g.kv_u32(a + ".attention.head_count", uint32_t(cfg.n_heads));
  g.kv_u32(a + ".attention.head_count_kv", uint32_t(cfg.n_kv_heads));
  if (cfg.head_dim > 0) {
    g.kv_u32(a + ".attention.key_length", uint32_t(cfg.head_dim));
    g.kv_u32(a + ".attention.value_length", uint32_t(cfg.head_dim));
  }
  g.kv_f32(a + ".attention.layer_norm_rms_epsilon", cfg.norm_eps);
  g.kv_f32(a + ".rope.freq_base", cfg.rope_theta);
  if (cfg.rope_scaling == razor::RopeScaling::Linear) {
    g.kv_str(a + ".rope.scaling.type", "linear");
    g.kv_f32(a + ".rope.scaling.factor", cfg.rope_factor);
  }
  g.kv_u32("general.alignment", alignment);
  g.kv_u32("tokenizer.ggml.bos_token_id", uint32_t(cfg.bos_id));
  g.kv_u32("tokenizer.ggml.eos_token_id", uint32_t(cfg.eos_id));

  const uint32_t mt = gguf_type(dtype);
  auto add = [&](const std::string& gname, const std::string& hname, bool is_norm, bool permute) {
    const tk::Tensor& t = w.at(hname);
    std::vector<uint64_t> ne(t.shape.rbegin(), t.shape.rend());
    std::vector<float> v = permute && !neox ? to_interleaved(t, cfg.hd()) : t.values;
    const uint32_t type = is_norm ? norm_type : mt;
    g.tensor(gname, ne, type, encode(v, type));
  };
  add("token_embd.weight", "model.embed_tokens.weight", false, false);
  for (int l = 0; l < cfg.n_layers; ++l) {
    const std::string h = "model.layers." + std::to_string(l) + ".", b = "blk." + std::to_string(l) + ".";
    add(b + "attn_norm.weight", h + "input_layernorm.weight", true, false);
    add(b + "attn_q.weight", h + "self_attn.q_proj.weight", false, true);
    add(b + "attn_k.weight", h + "self_attn.k_proj.weight", false, true);
    add(b + "attn_v.weight", h + "self_attn.v_proj.weight", false, false);
    add(b + "attn_output.weight", h + "self_attn.o_proj.weight", false, false);
    if (cfg.has_bias()) {
      add(b + "attn_q.bias", h + "self_attn.q_proj.bias", true, true);
      add(b + "attn_k.bias", h + "self_attn.k_proj.bias", true, true);
      add(b + "attn_v.bias", h + "self_attn.v_proj.bias", true, false);
    }
    if (cfg.has_qk_norm()) {
      add(b + "attn_q_norm.weight", h + "self_attn.q_norm.weight", true, false);
      add(b + "attn_k_norm.weight", h + "self_attn.k_norm.weight", true, false);
    }
    add(b + "ffn_norm.weight", h + "post_attention_layernorm.weight", true, false);
    add(b + "ffn_gate.weight", h + "mlp.gate_proj.weight", false, false);
    add(b + "ffn_up.weight", h + "mlp.up_proj.weight", false, false);
    add(b + "ffn_down.weight", h + "mlp.down_proj.weight", false, false);
  }
  add("output_norm.weight", "model.norm.weight", true, false);
  if (!cfg.tied) add("output.weight", "lm_head.weight", false, false);
  return g;
}

using tk::small_config;

std::string write_temp(const std::string& bytes, const std::string& name = "model.gguf") {
  std::string path = razor::test::temp_dir() + "/" + name;
  razor::test::write_text(path, bytes);
  return path;
}

std::vector<float> all_logits(const Model& m, const std::vector<int>& tokens) {
  std::vector<float> logits(tokens.size() * size_t(m.config.vocab_size));
  razor::Session s(m, razor::KVPolicy{}, {});
  s.prefill(tokens, logits.data(), true);
  return logits;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float d = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}

// Loads path and expects a one-line razor::Error naming the file and containing each needle.
void expect_load_error(const std::string& path, const std::vector<std::string>& needles = {}) {
  try {
    razor::load_model(path);
    ADD_FAILURE() << "load_model(" << path << ") did not throw";
  } catch (const razor::Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
    for (const std::string& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

// A valid small llama GGUF for the bad-input tests to break.
struct Victim {
  tk::HfConfig cfg = small_config();
  tk::Weights w = tk::random_weights(cfg, 11);
  GgufWriter g = gguf_of(cfg, w, tk::DiskDType::F32);
};

// ---------------------------------------------------------------------------------------------
// An independent reader for a few raw values of the real files

struct RawTensor {
  std::vector<uint64_t> ne;
  uint32_t type = 0;
  size_t data = 0;  // absolute file offset
};

std::map<std::string, RawTensor> raw_tensors(const std::string& bytes) {
  size_t o = 8;
  auto u32 = [&] { uint32_t v; std::memcpy(&v, &bytes[o], 4); o += 4; return v; };
  auto u64 = [&] { uint64_t v; std::memcpy(&v, &bytes[o], 8); o += 8; return v; };
  auto str = [&] { uint64_t n = u64(); std::string s = bytes.substr(o, n); o += n; return s; };
  const uint64_t nt = u64(), nkv = u64();
  uint64_t alignment = 32;
  std::function<void(uint32_t)> skip = [&](uint32_t t) {
    static const size_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (t == kString) str();
    else if (t == kArray) {
      uint32_t et = u32();
      uint64_t n = u64();
      for (uint64_t i = 0; i < n; ++i) skip(et);
    } else o += sz[t];
  };
  for (uint64_t i = 0; i < nkv; ++i) {
    std::string k = str();
    uint32_t t = u32();
    if (k == "general.alignment") {
      alignment = u32();
      continue;
    }
    skip(t);
  }
  std::vector<std::pair<std::string, RawTensor>> ts;
  for (uint64_t i = 0; i < nt; ++i) {
    std::string name = str();
    RawTensor r;
    uint32_t nd = u32();
    for (uint32_t d = 0; d < nd; ++d) r.ne.push_back(u64());
    r.type = u32();
    r.data = u64();
    ts.emplace_back(name, r);
  }
  const size_t start = (o + alignment - 1) / alignment * alignment;
  std::map<std::string, RawTensor> out;
  for (auto& [n, r] : ts) {
    r.data += start;
    out[n] = r;
  }
  return out;
}

// IEEE half -> float by the textbook formula (independent of razor::convert).
double half_value(uint16_t h) {
  const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  double v = e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
  return s ? -v : v;
}

float matrix_at(const Matrix& m, int64_t r, int64_t c) {
  if (m.dtype == DType::BF16) return razor::convert::bf16_to_f32(m.bf16()[r * m.cols + c]);
  return m.f32()[r * m.cols + c];
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Real files

TEST(GgufReal, Stories260KMatchesLlama2c) {
  REQUIRE_MODEL("stories260K-f32.gguf");
  REQUIRE_MODEL("stories260K.bin");
  auto g = razor::load_model(razor::test::model_path("stories260K-f32.gguf"));
  auto b = razor::load_model(razor::test::model_path("stories260K.bin"));
  const razor::ModelConfig &c = g->config, &cb = b->config;
  EXPECT_EQ(g->format, "gguf");
  EXPECT_EQ(g->source_dtype, "F32");
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.dim, cb.dim);
  EXPECT_EQ(c.hidden_dim, cb.hidden_dim);
  EXPECT_EQ(c.n_layers, cb.n_layers);
  EXPECT_EQ(c.n_heads, cb.n_heads);
  EXPECT_EQ(c.n_kv_heads, cb.n_kv_heads);
  EXPECT_EQ(c.head_dim, cb.head_dim);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_seq_len, 512);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_EQ(g->output.data, g->tok_embeddings.data);
  EXPECT_EQ(c.bos_id, 1);
  EXPECT_EQ(c.eos_id, 2);
  EXPECT_EQ(g->weight_dtype(), DType::F32);
  EXPECT_EQ(g->n_params(), b->n_params());

  std::vector<int> tokens{1};
  for (int i = 1; i < 128; ++i) tokens.push_back((i * 37 + 11) % 512);
  const auto lg = all_logits(*g, tokens), lb = all_logits(*b, tokens);
  EXPECT_LE(max_abs_diff(lg, lb), 1e-5f);
  EXPECT_EQ(lg, lb);  // same weights, same kernels: bitwise equal
}

TEST(GgufReal, Stories260KVocabEncodesLikeTok512) {
  REQUIRE_MODEL("stories260K-f32.gguf");
  REQUIRE_MODEL("tok512.bin");
  auto g = razor::load_gguf_tokenizer(razor::test::model_path("stories260K-f32.gguf"), 512);
  ASSERT_NE(g, nullptr);
  auto t = razor::Tokenizer::load_llama2c(razor::test::model_path("tok512.bin"), 512);
  ASSERT_EQ(g->vocab_size(), 512);
  EXPECT_EQ(g->encode("Once upon a time", true, false), t.encode("Once upon a time", true, false));
  for (const char* text : {"Once upon a time", "", "The cat sat on the mat. It was happy!",
                           "  two  spaces\nnewline", "caf\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x98\x80 <s>",
                           "Lily and Tom went to the park to play with a big red ball."}) {
    EXPECT_EQ(g->encode(text, true, true), t.encode(text, true, true)) << text;
    EXPECT_EQ(g->encode(text, false, false), t.encode(text, false, false)) << text;
  }
  // Same pieces up to the space representation (and the BOS/EOS spelling), same scores.
  for (int id = 3; id < 512; ++id) {
    EXPECT_EQ(g->piece(id), t.piece(id)) << id;
    EXPECT_EQ(g->score(id), t.score(id)) << id;
    EXPECT_EQ(g->decode(1, id), t.decode(1, id)) << id;
    EXPECT_EQ(g->decode(5, id), t.decode(5, id)) << id;
    EXPECT_EQ(g->is_byte(id), t.is_byte(id)) << id;
  }
  EXPECT_TRUE(g->is_special(0) && g->is_special(1) && g->is_special(2));
  EXPECT_EQ(g->path(), razor::test::model_path("stories260K-f32.gguf"));
  // Vocabulary sizes: a smaller model uses the first pieces; a larger one is an error.
  EXPECT_EQ(razor::load_gguf_tokenizer(razor::test::model_path("stories260K-f32.gguf"), 300)->vocab_size(), 300);
  EXPECT_THROW(razor::load_gguf_tokenizer(razor::test::model_path("stories260K-f32.gguf"), 513), razor::Error);
}

TEST(GgufReal, TinyRandomF16) {
  REQUIRE_MODEL("llama-2-tiny-random.gguf");
  const std::string path = razor::test::model_path("llama-2-tiny-random.gguf");
  auto m = razor::load_model(path);
  const razor::ModelConfig& c = m->config;
  EXPECT_EQ(m->format, "gguf");
  EXPECT_EQ(m->source_dtype, "F16");
  EXPECT_EQ(m->weight_dtype(), DType::F32);
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.dim, 8);
  EXPECT_EQ(c.hidden_dim, 32);
  EXPECT_EQ(c.n_layers, 1);
  EXPECT_EQ(c.n_heads, 2);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.max_seq_len, 4096);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_FALSE(c.tied_embeddings);
  EXPECT_NE(m->output.data, m->tok_embeddings.data);

  // F16 -> F32 exact: compare against values read straight from the file.
  const std::string bytes = razor::test::read_text(path);
  auto raw = raw_tensors(bytes);
  auto check = [&](const std::string& name, const Matrix& mat) {
    ASSERT_TRUE(raw.count(name)) << name;
    const RawTensor& r = raw[name];
    ASSERT_EQ(r.type, kTF16) << name;
    ASSERT_EQ(uint64_t(mat.cols), r.ne[0]) << name;
    ASSERT_EQ(uint64_t(mat.rows), r.ne[1]) << name;
    const int64_t n = mat.rows * mat.cols;
    for (int64_t i : {int64_t(0), int64_t(1), n / 3, n / 2 + 5, n - 1}) {
      uint16_t h;
      std::memcpy(&h, &bytes[r.data + size_t(i) * 2], 2);
      EXPECT_EQ(double(matrix_at(mat, i / mat.cols, i % mat.cols)), half_value(h)) << name << " [" << i << "]";
    }
  };
  check("token_embd.weight", m->tok_embeddings);
  check("output.weight", m->output);
  check("blk.0.attn_q.weight", m->layers[0].wq);
  check("blk.0.attn_k.weight", m->layers[0].wk);
  check("blk.0.ffn_down.weight", m->layers[0].w2);
  check("blk.0.ffn_gate.weight", m->layers[0].w1);
  // F32 norms: bit-exact copies.
  const RawTensor& norm = raw["blk.0.attn_norm.weight"];
  EXPECT_EQ(norm.type, kTF32);
  EXPECT_EQ(std::memcmp(m->layers[0].attn_norm, &bytes[norm.data], 8 * 4), 0);

  std::vector<int> tokens{1, 15043, 3186, 29892, 920, 526, 366, 29973};
  const auto logits = all_logits(*m, tokens);
  ASSERT_EQ(logits.size(), tokens.size() * 32000);
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));

  // The embedded Llama-2 SentencePiece vocabulary.
  auto tok = razor::load_gguf_tokenizer(path, c.vocab_size);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->encode("Hello world", true, false), (std::vector<int>{1, 15043, 3186}));
  EXPECT_EQ(tok->encode("Once upon a time", true, false), (std::vector<int>{1, 9038, 2501, 263, 931}));
  EXPECT_EQ(tok->decode(1, 15043), "Hello");
  EXPECT_EQ(tok->decode(15043, 3186), " world");
}

TEST(GgufReal, CliInfoAndGenerate) {
  REQUIRE_MODEL("stories260K-f32.gguf");
  REQUIRE_MODEL("llama-2-tiny-random.gguf");
  for (const char* name : {"stories260K-f32.gguf", "llama-2-tiny-random.gguf"}) {
    auto r = razor::test::run_cli({"info", razor::test::model_path(name)});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_NE(r.out.find("gguf"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("architecture:    llama"), std::string::npos) << r.out;
  }
  auto tiny = razor::test::run_cli({"info", razor::test::model_path("llama-2-tiny-random.gguf")});
  EXPECT_NE(tiny.out.find("F16 on disk"), std::string::npos) << tiny.out;
  EXPECT_NE(tiny.out.find("32000"), std::string::npos) << tiny.out;

  // generate uses the embedded vocabulary and matches the llama2.c checkpoint + tok512.bin.
  REQUIRE_MODEL("stories260K.bin");
  auto g = razor::test::run_cli({"generate", razor::test::model_path("stories260K-f32.gguf"), "--prompt",
                                 "Once upon a time", "-n", "40"});
  auto b = razor::test::run_cli({"generate", razor::test::model_path("stories260K.bin"), "--tokenizer",
                                 razor::test::model_path("tok512.bin"), "--prompt", "Once upon a time", "-n", "40"});
  EXPECT_EQ(g.rc, 0) << g.err;
  EXPECT_EQ(b.rc, 0) << b.err;
  EXPECT_FALSE(g.out.empty());
  EXPECT_EQ(g.out, b.out);

  // Bad input through the CLI: one line naming the file, non-zero exit.
  std::string bad = write_temp("GGUF\x03", "bad.gguf");
  auto e = razor::test::run_cli({"info", bad});
  EXPECT_NE(e.rc, 0);
  EXPECT_NE(e.err.find(bad), std::string::npos) << e.err;
}

// ---------------------------------------------------------------------------------------------
// Synthetic checkpoints against the Hugging Face loader

namespace {
void cross_check(tk::HfConfig cfg, tk::DiskDType dtype, uint32_t norm_type = kTF32, bool keep_bf16 = true) {
  SCOPED_TRACE(cfg.arch + " " + tk::dtype_name(dtype));
  tk::Weights w = tk::round_weights(tk::random_weights(cfg, 5), dtype);
  if (norm_type == kTF16) w = tk::round_weights(w, tk::DiskDType::F16);  // norms must survive F16
  const std::string dir = razor::test::temp_dir() + "/hf";
  tk::write_hf(dir, cfg, w, dtype);
  GgufWriter g = gguf_of(cfg, w, dtype, norm_type);
  const std::string path = write_temp(g.build());
  razor::LoadOptions opts;
  opts.keep_bf16 = keep_bf16;
  auto hf = razor::load_hf(dir, opts);
  auto gg = razor::load_gguf(path, opts);
  const razor::ModelConfig &a = gg->config, &b = hf->config;
  EXPECT_EQ(a.arch, b.arch);
  EXPECT_EQ(a.dim, b.dim);
  EXPECT_EQ(a.hidden_dim, b.hidden_dim);
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.n_kv_heads, b.n_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.max_seq_len, b.max_seq_len);
  EXPECT_EQ(a.norm_eps, b.norm_eps);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.rope_scaling, b.rope_scaling);
  EXPECT_EQ(a.rope_factor, b.rope_factor);
  EXPECT_EQ(a.tied_embeddings, b.tied_embeddings);
  EXPECT_EQ(a.qkv_bias, b.qkv_bias);
  EXPECT_EQ(a.qk_norm, b.qk_norm);
  EXPECT_EQ(a.bos_id, b.bos_id);
  EXPECT_EQ(a.eos_id, b.eos_id);
  EXPECT_EQ(gg->weight_dtype(), hf->weight_dtype());
  EXPECT_EQ(gg->source_dtype, tk::dtype_name(dtype));
  std::vector<int> tokens;
  for (int i = 0; i < 24; ++i) tokens.push_back((i * 7 + 3) % cfg.vocab_size);
  EXPECT_EQ(all_logits(*gg, tokens), all_logits(*hf, tokens));
}
}  // namespace

TEST(GgufSynthetic, LlamaF32MatchesHf) { cross_check(small_config(), tk::DiskDType::F32); }
TEST(GgufSynthetic, LlamaF16MatchesHf) { cross_check(small_config(), tk::DiskDType::F16, kTF16); }
TEST(GgufSynthetic, LlamaBF16KeptAndConverted) {
  cross_check(small_config(), tk::DiskDType::BF16);
  cross_check(small_config(), tk::DiskDType::BF16, kTF32, /*keep_bf16=*/false);
}
TEST(GgufSynthetic, LlamaUntiedLinearRope) {
  tk::HfConfig c = small_config();
  c.tied = false;
  c.rope_scaling = razor::RopeScaling::Linear;
  c.rope_factor = 2.0f;
  c.rope_theta = 50000.0f;
  c.norm_eps = 1e-6f;
  cross_check(c, tk::DiskDType::F32);
}
TEST(GgufSynthetic, MistralMatchesHf) { cross_check(small_config("mistral"), tk::DiskDType::F32); }
TEST(GgufSynthetic, Qwen2MatchesHf) {
  tk::HfConfig c = small_config("qwen2");
  c.bos_id = 3;
  c.eos_id = 4;
  cross_check(c, tk::DiskDType::F32);
  cross_check(c, tk::DiskDType::BF16);
}
TEST(GgufSynthetic, Qwen3MatchesHf) {
  tk::HfConfig c = small_config("qwen3");
  c.head_dim = 16;  // != dim / n_heads
  c.bos_id = 3;
  c.eos_id = 4;
  cross_check(c, tk::DiskDType::F32);
}

TEST(GgufSynthetic, VersionTwoAndAlignment) {
  Victim v;
  const std::vector<int> tokens{1, 5, 9, 2, 30};
  const auto ref = all_logits(*razor::load_model(write_temp(v.g.build())), tokens);
  v.g.version = 2;
  EXPECT_EQ(all_logits(*razor::load_model(write_temp(v.g.build())), tokens), ref);
  // Other alignments, declared and used; 1 leaves F32 data unaligned in memory (copied at load).
  for (uint32_t al : {1u, 8u, 64u, 4096u}) {
    SCOPED_TRACE(al);
    auto m = razor::load_model(write_temp(gguf_of(v.cfg, v.w, tk::DiskDType::F32, kTF32, al).build()));
    EXPECT_EQ(all_logits(*m, tokens), ref);
  }
  // No general.alignment key: 32.
  auto m = razor::load_model(
      write_temp(gguf_of(v.cfg, v.w, tk::DiskDType::F32, kTF32, 32, {{"general.alignment", std::nullopt}}).build()));
  EXPECT_EQ(all_logits(*m, tokens), ref);
  // A declared alignment the data does not follow.
  expect_load_error(
      write_temp(gguf_of(v.cfg, v.w, tk::DiskDType::F32, kTF32, 32, {{"general.alignment", 4096u}}).build()),
      {"alignment"});
}

TEST(GgufSynthetic, ConfigFromMetadata) {
  Victim v;
  auto with = [&](std::map<std::string, std::optional<uint32_t>> o) {
    return write_temp(gguf_of(v.cfg, v.w, tk::DiskDType::F32, kTF32, 32, std::move(o)).build());
  };
  // head_count_kv and rope.dimension_count are optional (rope.freq_base too: 10000).
  auto mha = razor::load_model(with({{"llama.rope.dimension_count", std::nullopt}}));
  EXPECT_EQ(mha->config.n_kv_heads, 2);
  expect_load_error(with({{"llama.embedding_length", std::nullopt}}), {"missing metadata \"llama.embedding_length\""});
  expect_load_error(with({{"llama.context_length", std::nullopt}}), {"llama.context_length"});
  expect_load_error(with({{"llama.block_count", 0u}}), {"llama.block_count", "out of range"});
  expect_load_error(with({{"llama.attention.head_count", 3u}}), {"llama.attention.head_count"});
  expect_load_error(with({{"llama.attention.head_count_kv", 3u}}), {"not a multiple"});
  expect_load_error(with({{"llama.rope.dimension_count", 4u}}), {"partial RoPE"});
  expect_load_error(with({{"llama.feed_forward_length", 50u}}), {"blk.0.ffn_gate.weight", "[32, 50]"});
  expect_load_error(with({{"tokenizer.ggml.bos_token_id", 40u}}), {"bos_token_id 40"});
  expect_load_error(with({{"llama.block_count", 3u}}), {"missing tensor \"blk.2.attn_q.weight\""});
  // Tensors the metadata does not account for (here layer 1 of 2) are an error, not ignored.
  expect_load_error(with({{"llama.block_count", 1u}}), {"unexpected tensor \"blk.1."});
}

TEST(GgufSynthetic, EmbeddedVocabulary) {
  Victim v;
  std::vector<std::string> pieces{"<unk>", "<s>", "</s>"};
  std::vector<float> scores{0, 0, 0};
  for (int b = 0; b < 37; ++b) {  // 40 pieces: a few words with the SentencePiece space
    static const char* words[] = {"\xe2\x96\x81", "h", "i", "\xe2\x96\x81h", "\xe2\x96\x81hi"};
    pieces.push_back(b < 5 ? std::string(words[b]) : std::string("x").append(std::to_string(b)));
    scores.push_back(b < 5 ? -float(b) : -100.0f);
  }
  v.g.kv_str("tokenizer.ggml.model", "llama");
  v.g.kv_strs("tokenizer.ggml.tokens", pieces);
  v.g.kv_f32s("tokenizer.ggml.scores", scores);
  const std::string path = write_temp(v.g.build());
  auto tok = razor::load_gguf_tokenizer(path, 40);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->piece(3), " ");
  EXPECT_EQ(tok->piece(7), " hi");
  EXPECT_EQ(tok->encode("hi", true, false), (std::vector<int>{1, 7}));
  EXPECT_EQ(tok->decode(1, 7), "hi");

  // No vocabulary, or a kind razor cannot use: nullptr.
  Victim none;
  EXPECT_EQ(razor::load_gguf_tokenizer(write_temp(none.g.build()), 40), nullptr);
  Victim gpt2;
  gpt2.g.kv_str("tokenizer.ggml.model", "gpt2");
  gpt2.g.kv_strs("tokenizer.ggml.tokens", pieces);
  EXPECT_EQ(razor::load_gguf_tokenizer(write_temp(gpt2.g.build()), 40), nullptr);
  // Malformed: scores missing, wrong count, wrong types.
  Victim noscores;
  noscores.g.kv_strs("tokenizer.ggml.tokens", pieces);
  EXPECT_THROW(razor::load_gguf_tokenizer(write_temp(noscores.g.build()), 40), razor::Error);
  Victim fewer;
  fewer.g.kv_strs("tokenizer.ggml.tokens", pieces);
  fewer.g.kv_f32s("tokenizer.ggml.scores", std::vector<float>(39, 0.0f));
  EXPECT_THROW(razor::load_gguf_tokenizer(write_temp(fewer.g.build()), 40), razor::Error);
  Victim wrong;
  wrong.g.kv_u32("tokenizer.ggml.tokens", 5);
  EXPECT_THROW(razor::load_gguf_tokenizer(write_temp(wrong.g.build()), 40), razor::Error);

  // The CLI uses it for generate.
  auto r = razor::test::run_cli({"generate", path, "--prompt", "hi", "-n", "2"});
  EXPECT_EQ(r.rc, 0) << r.err;
}

// ---------------------------------------------------------------------------------------------
// Bad input: one test per kind

TEST(GgufBadInput, Truncated) {
  Victim v;
  const std::string full = v.g.build();
  ASSERT_NO_THROW(razor::load_model(write_temp(full)));
  std::vector<size_t> cuts;
  // Every byte of the fixed header and the first entries, then a stride through the rest of the
  // metadata and tensor infos (a prime, so cuts land at every field position), then the data.
  for (size_t n = 0; n < 128; ++n) cuts.push_back(n);
  for (size_t n = 128; n <= v.g.data_begin; n += 7) cuts.push_back(n);
  for (size_t n = v.g.data_begin - 8; n <= v.g.data_begin; ++n) cuts.push_back(n);
  for (size_t n = v.g.data_begin; n < full.size(); n += 1999) cuts.push_back(n);
  cuts.push_back(full.size() - 1);
  const std::string path = razor::test::temp_dir() + "/cut.gguf";
  for (size_t n : cuts) {
    SCOPED_TRACE("cut at " + std::to_string(n));
    razor::test::write_text(path, full.substr(0, n));
    expect_load_error(path);
    if (::testing::Test::HasFailure()) break;
  }
  expect_load_error(write_temp(full.substr(0, v.g.infos_begin + 10)), {"truncated"});
}

TEST(GgufBadInput, WrongMagic) {
  Victim v;
  std::string b = v.g.build();
  b[0] = 'G', b[1] = 'G', b[2] = 'M', b[3] = 'L';
  expect_load_error(write_temp(b), {"bad magic"});
  b[0] = 'F', b[1] = 'U', b[2] = 'G', b[3] = 'G';  // byte-swapped
  expect_load_error(write_temp(b), {"bad magic"});
  Victim ver;
  ver.g.version = 1;
  expect_load_error(write_temp(ver.g.build()), {"unsupported GGUF version 1"});
  ver.g.version = 0x03000000;  // a big-endian file
  expect_load_error(write_temp(ver.g.build()), {"big-endian"});
}

TEST(GgufBadInput, KvStringLengthBeyondFile) {
  // The first kv is general.architecture = "llama": its key length is at 24, the value's length
  // at 24 + 8 + 20 + 4.
  const size_t key_at = 24, value_at = 24 + 8 + std::strlen("general.architecture") + 4;
  Victim v;
  const std::string b = v.g.build();
  uint64_t n;
  std::memcpy(&n, &b[value_at], 8);
  ASSERT_EQ(n, 5u);
  for (uint64_t extra : {uint64_t(1), uint64_t(1) << 20, uint64_t(1) << 62, ~uint64_t(0)}) {
    SCOPED_TRACE(extra);
    // One byte (or more) beyond what is left after the length field; or simply huge.
    auto beyond = [&](size_t at) {
      const uint64_t left = b.size() - (at + 8);
      return extra <= (uint64_t(1) << 20) ? left + extra : extra;
    };
    std::string x = b;
    const uint64_t vlen = beyond(value_at);
    std::memcpy(&x[value_at], &vlen, 8);
    expect_load_error(write_temp(x), {"general.architecture", "remain"});
    std::string k = b;
    const uint64_t klen = beyond(key_at);
    std::memcpy(&k[key_at], &klen, 8);
    expect_load_error(write_temp(k), {"metadata key 0", "remain"});
  }
}

TEST(GgufBadInput, TensorOffsetOutOfRange) {
  for (uint64_t off : {uint64_t(1) << 20, uint64_t(1) << 40, ~uint64_t(0) - 31, uint64_t(0)}) {
    Victim v;
    std::string b = v.g.build();
    // The last tensor info ends right before the padding: patch its offset (its final 8 bytes).
    size_t info_end = v.g.infos_begin;
    for (const auto& t : v.g.tensors) info_end += 8 + t.name.size() + 4 + 8 * t.ne.size() + 4 + 8;
    uint64_t old;
    std::memcpy(&old, &b[info_end - 8], 8);
    ASSERT_EQ(old + 32 * 4, b.size() - v.g.data_begin);  // the last tensor ends the file
    const uint64_t bad = off == 0 ? old + 32 : off;  // 0: the next aligned offset, just past the end
    std::memcpy(&b[info_end - 8], &bad, 8);
    expect_load_error(write_temp(b), {"output_norm.weight", "outside the data section"});
  }
  // A misaligned offset.
  Victim v;
  std::string b = v.g.build();
  const size_t first = v.g.infos_begin + 8 + std::strlen("token_embd.weight") + 4 + 16 + 4;
  const uint64_t odd = 4;
  std::memcpy(&b[first], &odd, 8);
  expect_load_error(write_temp(b), {"token_embd.weight", "alignment"});
}

TEST(GgufBadInput, WrongTensorShape) {
  Victim v;
  for (auto& t : v.g.tensors)
    if (t.name == "blk.1.attn_k.weight") t.ne = {32, 8}, t.data.resize(32 * 8 * 4);  // kv_dim is 16
  expect_load_error(write_temp(v.g.build()), {"blk.1.attn_k.weight", "[32, 8]", "[32, 16]"});
  Victim n;
  for (auto& t : n.g.tensors)
    if (t.name == "output_norm.weight") t.ne = {16, 2};
  expect_load_error(write_temp(n.g.build()), {"output_norm.weight", "[16, 2]", "[32]"});
  Victim e;  // embedding columns != embedding_length
  for (auto& t : e.g.tensors)
    if (t.name == "token_embd.weight") t.ne = {40, 32};
  expect_load_error(write_temp(e.g.build()), {"token_embd.weight"});
  Victim m;  // a missing tensor
  m.g.tensors.erase(m.g.tensors.begin() + 3);
  expect_load_error(write_temp(m.g.build()), {"missing tensor"});
  Victim x;  // an unknown one
  x.g.tensor("rope_freqs.weight", {4}, kTF32, std::string(16, '\0'));
  expect_load_error(write_temp(x.g.build()), {"unexpected tensor \"rope_freqs.weight\""});
  Victim h;  // a key given twice
  h.g.kv_u32("llama.rope.dimension_count", 8);
  expect_load_error(write_temp(h.g.build()), {"duplicate metadata key \"llama.rope.dimension_count\""});
}

TEST(GgufBadInput, UnsupportedTensorType) {
  Victim v;
  for (auto& t : v.g.tensors)
    if (t.name == "blk.0.ffn_up.weight") t.type = kTQ4_0;
  expect_load_error(write_temp(v.g.build()), {"blk.0.ffn_up.weight", "unsupported tensor type 2", "Q4_0"});
  Victim u;
  u.g.tensors[0].type = 1000;
  expect_load_error(write_temp(u.g.build()), {"unsupported tensor type 1000"});
  GgufWriter g;
  g.kv_str("general.architecture", "gemma");
  expect_load_error(write_temp(g.build()), {"unsupported architecture \"gemma\""});
  GgufWriter t;
  t.kv_u32("general.architecture", 7);
  expect_load_error(write_temp(t.build()), {"must be a string"});
  GgufWriter mv;
  mv.key("general.name", 13);
  put<uint32_t>(mv.kvs, 0);
  expect_load_error(write_temp(mv.build()), {"unknown value type 13"});
}

TEST(GgufBadInput, HugeCounts) {
  auto patch = [](std::string b, size_t at, uint64_t v) {
    std::memcpy(&b[at], &v, 8);
    return b;
  };
  Victim v;
  const std::string b = v.g.build();
  for (uint64_t n : {uint64_t(1) << 32, uint64_t(1) << 62, ~uint64_t(0)}) {
    expect_load_error(write_temp(patch(b, 8, n)), {"tensor count"});
    expect_load_error(write_temp(patch(b, 16, n)), {"metadata count"});
  }
  // An array with a huge element count, of numbers and of strings; nested arrays.
  for (uint32_t et : {kF32, kString}) {
    GgufWriter g;
    g.key("tokenizer.ggml.scores", kArray);
    put<uint32_t>(g.kvs, et);
    put<uint64_t>(g.kvs, uint64_t(1) << 61);
    put<float>(g.kvs, 1.0f);
    expect_load_error(write_temp(g.build()), {"claims 2305843009213693952 elements"});
  }
  GgufWriter nested;
  nested.key("x", kArray);
  put<uint32_t>(nested.kvs, kArray);
  put<uint64_t>(nested.kvs, 1);
  expect_load_error(write_temp(nested.build()), {"nested arrays"});
  // Tensor dimensions: too many, zero, huge, and a product that overflows 64 bits.
  for (auto ne : {std::vector<uint64_t>{1, 1, 1, 1, 1}, std::vector<uint64_t>{0},
                  std::vector<uint64_t>{uint64_t(1) << 40}, std::vector<uint64_t>{10000, 10000, 10000, 10000}}) {
    Victim t;
    t.g.tensors[0].ne = ne;
    expect_load_error(write_temp(t.g.build()), {"token_embd.weight"});
  }
  Victim d;
  d.g.tensors[0].ne.clear();
  expect_load_error(write_temp(d.g.build()), {"0 dimensions"});
  // Model sizes out of range.
  Victim s;
  s.g.kv_u32("llama.vocab_size", 0x7fffffff);
  expect_load_error(write_temp(s.g.build()), {"llama.vocab_size"});
  // Alignment that is not a power of two or zero.
  for (uint32_t al : {0u, 3u, 48u}) {
    GgufWriter w;
    w.kv_u32("general.alignment", al);
    expect_load_error(write_temp(w.build()), {"general.alignment"});
  }
}

// Random corruption of the header region: always a razor::Error or a model, never a crash
// (meaningful under ASan/UBSan).
TEST(GgufBadInput, RandomCorruption) {
  Victim v;
  const std::string full = v.g.build();
  std::mt19937 rng(1234);
  const std::string path = razor::test::temp_dir() + "/fuzz.gguf";
  int errors = 0;
  for (int iter = 0; iter < 300; ++iter) {
    std::string b = full;
    const int flips = 1 + int(rng() % 4);
    for (int i = 0; i < flips; ++i) {
      const size_t at = rng() % v.g.data_begin;
      b[at] = static_cast<char>(iter % 3 == 0 ? 0xff : rng());
    }
    razor::test::write_text(path, b);
    try {
      auto m = razor::load_model(path);
      (void)razor::load_gguf_tokenizer(path, m->config.vocab_size);
    } catch (const razor::Error& e) {
      ++errors;
      EXPECT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0u) << e.what();
    }
  }
  EXPECT_GT(errors, 50);
}
