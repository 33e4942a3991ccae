// llama2.c checkpoints: v0 (fp32, 7-int32 header), v1 (fp32, "ak42" 256-byte header) and
// v2 (Q8_0, "ak42" 256-byte header, dequantized at load). v0/v1 fp32 weights are memory-mapped.
#include <cmath>
#include <cstring>
#include <limits>

#include "razor/io.h"
#include "razor/model.h"

namespace razor {
namespace {

constexpr uint32_t kMagic = 0x616b3432;  // "ak42"
constexpr int64_t kMaxDim = 1 << 20;

struct Header {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

// Walks the file front to back, handing out typed views; every step is bounds-checked.
class Cursor {
 public:
  Cursor(const MappedFile& f, size_t offset) : f_(f), off_(offset) {}
  const uint8_t* take(int64_t bytes, const char* what) {
    if (bytes < 0 || static_cast<uint64_t>(bytes) > f_.size() - off_)
      fail(f_.path(), std::string("truncated: ") + what + " needs " + std::to_string(bytes) +
                          " bytes at offset " + std::to_string(off_) + ", file has " +
                          std::to_string(f_.size()));
    const uint8_t* p = f_.data() + off_;
    off_ += static_cast<size_t>(bytes);
    return p;
  }
  const float* floats(int64_t n, const char* what) {
    return reinterpret_cast<const float*>(take(n * 4, what));
  }
  size_t offset() const { return off_; }

 private:
  const MappedFile& f_;
  size_t off_;
};

void check_shape(const std::string& path, const Header& h) {
  auto bad = [&](const std::string& m) { fail(path, "invalid llama2.c header: " + m); };
  if (h.dim <= 0 || h.hidden_dim <= 0 || h.n_layers <= 0 || h.n_heads <= 0 || h.n_kv_heads <= 0 ||
      h.vocab_size == 0 || h.seq_len <= 0)
    bad("sizes must be positive");
  if (h.dim > kMaxDim || h.hidden_dim > kMaxDim || h.n_layers > 4096 || h.n_heads > 4096 ||
      std::abs(static_cast<int64_t>(h.vocab_size)) > (1 << 24) || h.seq_len > (1 << 24))
    bad("sizes out of range");
  if (h.dim % h.n_heads != 0) bad("dim not divisible by n_heads");
  if (h.n_heads % h.n_kv_heads != 0) bad("n_heads not divisible by n_kv_heads");
  if ((h.dim / h.n_heads) % 2 != 0) bad("head size must be even");
}

ModelConfig config_from(const Header& h, bool tied) {
  ModelConfig c;
  c.arch = "llama";
  c.dim = h.dim;
  c.hidden_dim = h.hidden_dim;
  c.n_layers = h.n_layers;
  c.n_heads = h.n_heads;
  c.n_kv_heads = h.n_kv_heads;
  c.head_dim = h.dim / h.n_heads;
  c.vocab_size = std::abs(h.vocab_size);
  c.max_seq_len = h.seq_len;
  c.tied_embeddings = tied;
  return c;
}

Matrix f32_matrix(const float* p, int64_t rows, int64_t cols) {
  return Matrix{DType::F32, p, rows, cols};
}

// Q8_0 tensor: int8[numel] then float32 scales[numel / group]; w = q * scale per group.
const float* dequant_q80(Cursor& cur, Model& m, int64_t numel, int group, const char* what) {
  const int8_t* q = reinterpret_cast<const int8_t*>(cur.take(numel, what));
  const float* s = cur.floats(numel / group, what);
  auto buf = std::make_shared<std::vector<float>>(static_cast<size_t>(numel));
  float* out = buf->data();
  for (int64_t g = 0; g < numel / group; ++g) {
    float scale;
    std::memcpy(&scale, s + g, 4);
    for (int i = 0; i < group; ++i) out[g * group + i] = static_cast<float>(q[g * group + i]) * scale;
  }
  m.storage.push_back(buf);
  return out;
}

}  // namespace

std::unique_ptr<Model> load_llama2c(const std::string& path, const LoadOptions&) {
  auto file = std::make_shared<MappedFile>(path);
  auto model = std::make_unique<Model>();
  model->path = path;
  model->storage.push_back(file);
  if (file->size() < sizeof(Header)) fail(path, "truncated: too small for a llama2.c header");

  uint32_t magic;
  std::memcpy(&magic, file->data(), 4);
  int version = 0;
  Header h{};
  bool tied = true;
  int group = 0;
  if (magic == kMagic) {
    if (file->size() < 256) fail(path, "truncated: too small for a llama2.c v1/v2 header");
    int32_t v;
    std::memcpy(&v, file->data() + 4, 4);
    if (v != 1 && v != 2) fail(path, "unsupported llama2.c version " + std::to_string(v));
    version = v;
    std::memcpy(&h, file->data() + 8, sizeof h);
    tied = file->data()[36] != 0;
    if (version == 2) {
      std::memcpy(&group, file->data() + 37, 4);
      if (group <= 0 || group > 4096) fail(path, "invalid Q8_0 group size " + std::to_string(group));
    }
  } else {
    std::memcpy(&h, file->data(), sizeof h);
    tied = h.vocab_size > 0;
  }
  check_shape(path, h);
  ModelConfig& c = model->config;
  c = config_from(h, tied);
  const int64_t L = c.n_layers, dim = c.dim, hid = c.hidden_dim, kv = c.kv_dim(), V = c.vocab_size;
  model->layers.resize(static_cast<size_t>(L));

  if (version == 0 || version == 1) {
    model->format = version == 0 ? "llama2c-v0" : "llama2c-v1";
    model->source_dtype = "F32";
    Cursor cur(*file, version == 0 ? sizeof(Header) : 256);
    const float *emb = nullptr, *att_norm = nullptr, *ffn_norm = nullptr, *final_norm = nullptr;
    const float *wq, *wk, *wv, *wo, *w1, *w2, *w3;
    if (version == 0) {
      emb = cur.floats(V * dim, "token embeddings");
      att_norm = cur.floats(L * dim, "attention norms");
    } else {
      att_norm = cur.floats(L * dim, "attention norms");
      ffn_norm = cur.floats(L * dim, "ffn norms");
      final_norm = cur.floats(dim, "final norm");
      emb = cur.floats(V * dim, "token embeddings");
    }
    wq = cur.floats(L * dim * dim, "wq");
    wk = cur.floats(L * kv * dim, "wk");
    wv = cur.floats(L * kv * dim, "wv");
    wo = cur.floats(L * dim * dim, "wo");
    if (version == 0) ffn_norm = cur.floats(L * dim, "ffn norms");
    w1 = cur.floats(L * hid * dim, "w1");
    w2 = cur.floats(L * dim * hid, "w2");
    w3 = cur.floats(L * hid * dim, "w3");
    if (version == 0) {
      final_norm = cur.floats(dim, "final norm");
      cur.floats(static_cast<int64_t>(c.max_seq_len) * c.head_dim, "RoPE tables");  // unused
    }
    const float* cls = tied ? emb : cur.floats(V * dim, "classifier");
    model->tok_embeddings = f32_matrix(emb, V, dim);
    model->output = f32_matrix(cls, V, dim);
    model->final_norm = final_norm;
    for (int64_t l = 0; l < L; ++l) {
      LayerWeights& w = model->layers[l];
      w.attn_norm = att_norm + l * dim;
      w.ffn_norm = ffn_norm + l * dim;
      w.wq = f32_matrix(wq + l * dim * dim, dim, dim);
      w.wk = f32_matrix(wk + l * kv * dim, kv, dim);
      w.wv = f32_matrix(wv + l * kv * dim, kv, dim);
      w.wo = f32_matrix(wo + l * dim * dim, dim, dim);
      w.w1 = f32_matrix(w1 + l * hid * dim, hid, dim);
      w.w2 = f32_matrix(w2 + l * dim * hid, dim, hid);
      w.w3 = f32_matrix(w3 + l * hid * dim, hid, dim);
    }
  } else {
    model->format = "llama2c-v2-q80";
    model->source_dtype = "Q8_0";
    for (int64_t n : {dim * dim, kv * dim, hid * dim, V * dim})
      if (n % group != 0) fail(path, "tensor size not a multiple of the Q8_0 group size");
    Cursor cur(*file, 256);
    // fp32 norms are copied so the model does not depend on their alignment in the file.
    auto norms = std::make_shared<std::vector<float>>(static_cast<size_t>((2 * L + 1) * dim));
    std::memcpy(norms->data(), cur.take((2 * L + 1) * dim * 4, "norms"), norms->size() * 4);
    model->storage.push_back(norms);
    const float* nb = norms->data();
    const float* emb = dequant_q80(cur, *model, V * dim, group, "token embeddings");
    // Each layer's matrix is its own quantized tensor (int8 values, then its scales), grouped
    // by kind: all wq, then all wk, ...
    auto per_layer = [&](Matrix LayerWeights::*field, int64_t rows, int64_t cols, const char* what) {
      for (int64_t l = 0; l < L; ++l)
        model->layers[l].*field = f32_matrix(dequant_q80(cur, *model, rows * cols, group, what), rows, cols);
    };
    per_layer(&LayerWeights::wq, dim, dim, "wq");
    per_layer(&LayerWeights::wk, kv, dim, "wk");
    per_layer(&LayerWeights::wv, kv, dim, "wv");
    per_layer(&LayerWeights::wo, dim, dim, "wo");
    per_layer(&LayerWeights::w1, hid, dim, "w1");
    per_layer(&LayerWeights::w2, dim, hid, "w2");
    per_layer(&LayerWeights::w3, hid, dim, "w3");
    const float* cls = tied ? emb : dequant_q80(cur, *model, V * dim, group, "classifier");
    model->tok_embeddings = f32_matrix(emb, V, dim);
    model->output = f32_matrix(cls, V, dim);
    model->final_norm = nb + 2 * L * dim;
    for (int64_t l = 0; l < L; ++l) {
      model->layers[l].attn_norm = nb + l * dim;
      model->layers[l].ffn_norm = nb + (L + l) * dim;
    }
  }
  return model;
}

}  // namespace razor
