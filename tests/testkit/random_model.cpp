#include "random_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

namespace razor::testkit {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in [-1, 1) from 24 random bits.
inline float unit(uint64_t bits) {
  return static_cast<float>(static_cast<int32_t>(bits >> 40) - (1 << 23)) * (1.0f / (1 << 23));
}

inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);  // round to nearest even (values here are finite)
  return static_cast<uint16_t>(u >> 16);
}

constexpr int64_t kChunk = 1 << 14;

// Fills count values center + half_width * U(-1, 1), a function of (seed, tensor id, index).
template <typename Store>
void fill(uint64_t seed, uint64_t tensor, int64_t count, float center, float half_width, Store store) {
  const int64_t chunks = (count + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks > 4)
  for (int64_t c = 0; c < chunks; ++c) {
    uint64_t s = splitmix64(seed ^ splitmix64(tensor * 0x100000001B3ull + static_cast<uint64_t>(c)));
    const int64_t end = std::min(count, (c + 1) * kChunk);
    for (int64_t i = c * kChunk; i < end; ++i) {
      s ^= s >> 12;  // xorshift64*
      s ^= s << 25;
      s ^= s >> 27;
      store(i, center + half_width * unit(s * 0x2545F4914F6CDD1Dull));
    }
  }
}

class Builder {
 public:
  Builder(Model& m, DType dtype, uint64_t seed) : m_(m), dtype_(dtype), seed_(seed) {}

  Matrix matrix(int64_t rows, int64_t cols, float std) {
    Matrix w;
    w.dtype = dtype_;
    w.rows = rows;
    w.cols = cols;
    const int64_t n = rows * cols;
    const float hw = std * std::sqrt(3.0f);
    if (dtype_ == DType::BF16) {
      auto buf = std::shared_ptr<uint16_t[]>(new uint16_t[static_cast<size_t>(n)]);
      uint16_t* p = buf.get();
      fill(seed_, next_++, n, 0.0f, hw, [p](int64_t i, float v) { p[i] = to_bf16(v); });
      w.data = p;
      m_.storage.push_back(std::shared_ptr<const void>(buf, buf.get()));
    } else {
      auto buf = std::shared_ptr<float[]>(new float[static_cast<size_t>(n)]);
      float* p = buf.get();
      fill(seed_, next_++, n, 0.0f, hw, [p](int64_t i, float v) { p[i] = v; });
      w.data = p;
      m_.storage.push_back(std::shared_ptr<const void>(buf, buf.get()));
    }
    return w;
  }

  const float* vec(int64_t n, float center, float half_width) {
    auto buf = std::shared_ptr<float[]>(new float[static_cast<size_t>(n)]);
    float* p = buf.get();
    fill(seed_, next_++, n, center, half_width, [p](int64_t i, float v) { p[i] = v; });
    m_.storage.push_back(std::shared_ptr<const void>(buf, buf.get()));
    return p;
  }
  const float* norm(int64_t n) { return vec(n, 1.0f, 0.1f); }
  const float* bias(int64_t n, float std) { return vec(n, 0.0f, std * std::sqrt(3.0f)); }

 private:
  Model& m_;
  DType dtype_;
  uint64_t seed_;
  uint64_t next_ = 1;
};

}  // namespace

std::unique_ptr<Model> make_random_model(const ModelConfig& config, DType dtype, uint64_t seed) {
  const ModelConfig& c = config;
  if (c.dim <= 0 || c.hidden_dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 ||
      c.head_dim <= 0 || c.vocab_size <= 0 || c.n_heads % c.n_kv_heads != 0 || c.head_dim % 2 != 0)
    throw Error("make_random_model: invalid model config");
  auto m = std::make_unique<Model>();
  m->config = c;
  m->path = "<random>";
  m->format = "random";
  m->source_dtype = dtype == DType::BF16 ? "BF16" : "F32";
  const float std = 0.02f;
  Builder b(*m, dtype, seed);
  m->tok_embeddings = b.matrix(c.vocab_size, c.dim, std);
  m->layers.resize(static_cast<size_t>(c.n_layers));
  for (LayerWeights& w : m->layers) {
    w.attn_norm = b.norm(c.dim);
    w.wq = b.matrix(c.q_dim(), c.dim, std);
    w.wk = b.matrix(c.kv_dim(), c.dim, std);
    w.wv = b.matrix(c.kv_dim(), c.dim, std);
    w.wo = b.matrix(c.dim, c.q_dim(), std);
    if (c.qkv_bias) {
      w.bq = b.bias(c.q_dim(), std);
      w.bk = b.bias(c.kv_dim(), std);
      w.bv = b.bias(c.kv_dim(), std);
    }
    if (c.qk_norm) {
      w.q_norm = b.norm(c.head_dim);
      w.k_norm = b.norm(c.head_dim);
    }
    w.ffn_norm = b.norm(c.dim);
    w.w1 = b.matrix(c.hidden_dim, c.dim, std);
    w.w2 = b.matrix(c.dim, c.hidden_dim, std);
    w.w3 = b.matrix(c.hidden_dim, c.dim, std);
  }
  m->final_norm = b.norm(c.dim);
  m->output = c.tied_embeddings ? m->tok_embeddings : b.matrix(c.vocab_size, c.dim, std);
  return m;
}

ModelConfig qwen25_05b_config() {
  ModelConfig c;
  c.arch = "qwen2";
  c.dim = 896;
  c.hidden_dim = 4864;
  c.n_layers = 24;
  c.n_heads = 14;
  c.n_kv_heads = 2;
  c.head_dim = 64;
  c.vocab_size = 151936;
  c.max_seq_len = 32768;
  c.norm_eps = 1e-6f;
  c.rope_theta = 1000000.0f;
  c.tied_embeddings = true;
  c.qkv_bias = true;
  c.qk_norm = false;
  c.bos_id = 151643;  // <|endoftext|>
  c.eos_id = 151645;  // <|im_end|>
  c.pad_id = 151643;
  return c;
}

}  // namespace razor::testkit
