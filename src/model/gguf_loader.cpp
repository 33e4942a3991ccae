// GGUF checkpoints (llama.cpp): architectures llama and mistral (q/k already in the interleaved
// Meta RoPE layout razor uses), qwen2 (q/k/v biases) and qwen3 (per-head q/k RMSNorm); llama.cpp
// runs the two Qwen architectures with NEOX (rotate_half) RoPE and stores their q/k rows in HF
// order, so those rows (and q/k biases and norms) are permuted per head to the interleaved layout.
//
// Matrices: ne = [cols, rows] -> razor Matrix rows x cols, row-major. F32 matrices point into the
// mapped file (when 4-byte aligned); BF16 matrices stay BF16 (pointing into the map when 2-byte
// aligned) when LoadOptions::keep_bf16 and every matrix is BF16, else everything is converted to
// F32 owned buffers (one matrix dtype per model). F16 is always converted. Norms and biases are
// owned F32 buffers. Every expected tensor's shape and dtype is checked before anything is built;
// tensors razor does not know (biases of other projections, MoE experts, rope_freqs) are errors
// rather than silently ignored.
#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "model/convert.h"
#include "model/gguf.h"
#include "razor/model.h"
#include "razor/tokenizer.h"

namespace razor {
namespace {

constexpr int64_t kMaxDim = 1 << 20;
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxHeads = 1 << 16;
constexpr int64_t kMaxVocab = int64_t(1) << 26;

// Source row for destination row r when q/k rows are permuted from rotate_half to interleaved
// (head_dim hd > 0), identity when hd == 0.
inline int64_t perm_row(int64_t r, int hd) {
  if (hd == 0) return r;
  const int64_t head = r / hd, j = r % hd;
  return head * hd + ((j % 2 == 0) ? j / 2 : j / 2 + hd / 2);
}

void convert_row(const uint8_t* src, gguf::TensorType s, DType d, void* dst, size_t n) {
  if (d == DType::BF16) {  // only BF16 -> BF16
    std::memcpy(dst, src, n * 2);
    return;
  }
  float* out = static_cast<float*>(dst);
  switch (s) {
    case gguf::TensorType::F32: std::memcpy(out, src, n * 4); break;
    case gguf::TensorType::F16: convert::f16_to_f32(src, out, n); break;
    case gguf::TensorType::BF16: convert::bf16_to_f32(src, out, n); break;
  }
}

std::string blk(int l, const char* rest) { return "blk." + std::to_string(l) + "." + rest; }

class Builder {
 public:
  Builder(Model& m, const gguf::File& f) : m_(m), f_(f) {}

  // Looks a tensor up and checks its shape (GGUF ne order) and dtype.
  const gguf::TensorInfo& expect(const std::string& name, const std::vector<int64_t>& ne) {
    const gguf::TensorInfo* t = f_.tensor(name);
    if (!t) f_.bad("missing tensor \"" + name + "\"");
    if (t->ne != ne)
      f_.bad("tensor \"" + name + "\" has shape " + gguf::shape_str(t->ne) + ", but the metadata implies " +
             gguf::shape_str(ne) + " (GGUF order: columns first)");
    expected_.insert(name);
    return *t;
  }

  // Notes a matrix's dtype and size for the dtype decisions.
  void check_matrix(const std::string& name, int64_t rows, int64_t cols) {
    const gguf::TensorInfo& t = expect(name, {cols, rows});
    dtype_elems_[gguf::tensor_type_name(static_cast<uint32_t>(t.type))] += t.numel;
  }
  const std::map<std::string, int64_t>& matrix_dtypes() const { return dtype_elems_; }
  const std::set<std::string>& expected() const { return expected_; }

  void set_matrix_dtype(DType d) { mat_dtype_ = d; }

  // A rows x cols matrix; perm_hd > 0 permutes rows per head from rotate_half to interleaved.
  Matrix matrix(const std::string& name, int64_t rows, int64_t cols, int perm_hd = 0) {
    const gguf::TensorInfo& t = expect(name, {cols, rows});
    Matrix mat;
    mat.dtype = mat_dtype_;
    mat.rows = rows;
    mat.cols = cols;
    const uintptr_t addr = reinterpret_cast<uintptr_t>(t.data);
    if (perm_hd == 0 &&
        ((t.type == gguf::TensorType::F32 && mat_dtype_ == DType::F32 && addr % 4 == 0) ||
         (t.type == gguf::TensorType::BF16 && mat_dtype_ == DType::BF16 && addr % 2 == 0))) {
      mat.data = t.data;
      keep_map();
      return mat;
    }
    const size_t ucols = static_cast<size_t>(cols);
    const size_t n = static_cast<size_t>(rows * cols);
    if (mat_dtype_ == DType::BF16) {
      auto buf = std::make_shared<std::vector<uint16_t>>(n);
      uint16_t* out = buf->data();
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 20))
      for (int64_t i = 0; i < rows; ++i)
        convert_row(t.data + perm_row(i, perm_hd) * ucols * t.elem_size, t.type, DType::BF16, out + i * cols,
                    ucols);
      mat.data = out;
      m_.storage.push_back(std::move(buf));
    } else {
      auto buf = std::make_shared<std::vector<float>>(n);
      float* out = buf->data();
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 20))
      for (int64_t i = 0; i < rows; ++i)
        convert_row(t.data + perm_row(i, perm_hd) * ucols * t.elem_size, t.type, DType::F32, out + i * cols,
                    ucols);
      mat.data = out;
      m_.storage.push_back(std::move(buf));
    }
    return mat;
  }

  // A vector of n values as an owned F32 buffer; perm_hd > 0 permutes per head as above.
  const float* vector(const std::string& name, int64_t n, int perm_hd = 0) {
    const gguf::TensorInfo& t = expect(name, {n});
    auto buf = std::make_shared<std::vector<float>>(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      convert_row(t.data + perm_row(i, perm_hd) * t.elem_size, t.type, DType::F32, buf->data() + i, 1);
    const float* p = buf->data();
    m_.storage.push_back(std::move(buf));
    return p;
  }

 private:
  void keep_map() {
    if (!kept_) m_.storage.push_back(f_.map());
    kept_ = true;
  }

  Model& m_;
  const gguf::File& f_;
  DType mat_dtype_ = DType::F32;
  bool kept_ = false;
  std::set<std::string> expected_;
  std::map<std::string, int64_t> dtype_elems_;
};

// Model hyperparameters from the metadata.
ModelConfig read_config(const gguf::File& f, bool* neox) {
  ModelConfig c;
  auto arch_name = f.get_string("general.architecture");
  if (!arch_name) f.bad("missing metadata \"general.architecture\"");
  const std::string& a = *arch_name;
  if (a != "llama" && a != "mistral" && a != "qwen2" && a != "qwen3")
    f.bad("unsupported architecture \"" + gguf::printable(a) + "\" (supported: llama, mistral, qwen2, qwen3)");
  c.arch = a;
  *neox = a == "qwen2" || a == "qwen3";
  auto key = [&](const char* k) { return a + "." + k; };
  auto req = [&](const char* k, int64_t lo, int64_t hi) {
    auto v = f.get_int(key(k), lo, hi);
    if (!v) f.bad("missing metadata \"" + key(k) + "\"");
    return static_cast<int>(*v);
  };
  c.dim = req("embedding_length", 1, kMaxDim);
  c.hidden_dim = req("feed_forward_length", 1, kMaxDim);
  c.n_layers = req("block_count", 1, kMaxLayers);
  c.n_heads = req("attention.head_count", 1, kMaxHeads);
  c.n_kv_heads = static_cast<int>(f.get_int(key("attention.head_count_kv"), 1, kMaxHeads).value_or(c.n_heads));
  c.max_seq_len = req("context_length", 1, int64_t(1) << 30);
  if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0)
    f.bad(key("attention.head_count") + " (" + std::to_string(c.n_heads) + ") is not a multiple of " +
          key("attention.head_count_kv") + " (" + std::to_string(c.n_kv_heads) + ")");
  if (auto kl = f.get_int(key("attention.key_length"), 1, 1024)) {
    c.head_dim = static_cast<int>(*kl);
  } else {
    if (c.dim % c.n_heads != 0)
      f.bad(key("embedding_length") + " (" + std::to_string(c.dim) + ") is not divisible by " +
            key("attention.head_count") + " (" + std::to_string(c.n_heads) + ")");
    c.head_dim = c.dim / c.n_heads;
  }
  if (auto vl = f.get_int(key("attention.value_length"), 1, 1024); vl && *vl != c.head_dim)
    f.bad(key("attention.value_length") + " (" + std::to_string(*vl) + ") differs from the key length (" +
          std::to_string(c.head_dim) + "): not supported");
  if (c.head_dim % 2 != 0) f.bad("head dimension " + std::to_string(c.head_dim) + " must be even for RoPE");
  if (c.head_dim > 1024) f.bad("head dimension " + std::to_string(c.head_dim) + " is larger than 1024");
  if (int64_t(c.n_heads) * c.head_dim > kMaxDim) f.bad("head_count * head dimension is too large");
  if (auto rd = f.get_int(key("rope.dimension_count"), 0, kMaxDim); rd && *rd != c.head_dim)
    f.bad(key("rope.dimension_count") + " (" + std::to_string(*rd) + ") differs from the head dimension (" +
          std::to_string(c.head_dim) + "): partial RoPE is not supported");

  auto eps = f.get_float(key("attention.layer_norm_rms_epsilon"));
  if (!eps) f.bad("missing metadata \"" + key("attention.layer_norm_rms_epsilon") + "\"");
  if (!(*eps > 0)) f.bad(key("attention.layer_norm_rms_epsilon") + " must be positive");
  c.norm_eps = static_cast<float>(*eps);
  c.rope_theta = static_cast<float>(f.get_float(key("rope.freq_base")).value_or(10000.0));
  if (!(c.rope_theta > 0)) f.bad(key("rope.freq_base") + " must be positive");

  // RoPE scaling: none or linear; llama3-style frequency factors come as a rope_freqs tensor
  // (rejected with the other unknown tensors).
  std::string scaling = f.get_string(key("rope.scaling.type")).value_or("none");
  double factor = f.get_float(key("rope.scaling.factor")).value_or(0.0);
  if (scaling == "none" && factor == 0.0) {
    if (auto lin = f.get_float(key("rope.scale_linear")); lin && *lin != 1.0) {  // older key
      scaling = "linear";
      factor = *lin;
    }
  }
  if (scaling == "linear") {
    if (!(factor > 0)) f.bad(key("rope.scaling.factor") + " must be positive for linear RoPE scaling");
    if (factor != 1.0) {
      c.rope_scaling = RopeScaling::Linear;
      c.rope_factor = static_cast<float>(factor);
    }
  } else if (scaling != "none") {
    f.bad("unsupported RoPE scaling \"" + gguf::printable(scaling) + "\" (supported: none, linear)");
  }

  const bool qwen = *neox;
  c.qk_norm = a == "qwen3";
  c.qkv_bias = a == "qwen2" || f.tensor("blk.0.attn_q.bias") != nullptr;
  c.bos_id = static_cast<int>(f.get_int("tokenizer.ggml.bos_token_id", -1, kMaxVocab).value_or(qwen ? -1 : 1));
  c.eos_id = static_cast<int>(f.get_int("tokenizer.ggml.eos_token_id", -1, kMaxVocab).value_or(qwen ? -1 : 2));
  c.pad_id = static_cast<int>(f.get_int("tokenizer.ggml.padding_token_id", -1, kMaxVocab).value_or(-1));
  return c;
}

}  // namespace

std::unique_ptr<Model> load_gguf(const std::string& path, const LoadOptions& options) {
  gguf::File f(path);
  bool neox = false;
  ModelConfig c = read_config(f, &neox);

  // Vocabulary size from the embedding's shape [dim, vocab].
  const gguf::TensorInfo* emb = f.tensor("token_embd.weight");
  if (!emb) f.bad("missing tensor \"token_embd.weight\"");
  if (emb->ne.size() != 2 || emb->ne[0] != c.dim)
    f.bad("tensor \"token_embd.weight\" has shape " + gguf::shape_str(emb->ne) + ", expected [" +
          std::to_string(c.dim) + ", vocab]");
  if (emb->ne[1] > kMaxVocab) f.bad("vocabulary of " + std::to_string(emb->ne[1]) + " tokens is too large");
  c.vocab_size = static_cast<int>(emb->ne[1]);
  if (auto vs = f.get_int(c.arch + ".vocab_size", 1, kMaxVocab); vs && *vs != c.vocab_size)
    f.bad(c.arch + ".vocab_size (" + std::to_string(*vs) + ") differs from token_embd.weight (" +
          std::to_string(c.vocab_size) + " rows)");
  for (auto [id, what] : {std::pair{c.bos_id, "bos"}, std::pair{c.eos_id, "eos"}})
    if (id >= c.vocab_size)
      f.bad(std::string("tokenizer.ggml.") + what + "_token_id " + std::to_string(id) +
            " is outside the vocabulary (" + std::to_string(c.vocab_size) + " tokens)");
  if (c.pad_id >= c.vocab_size) c.pad_id = -1;
  c.tied_embeddings = f.tensor("output.weight") == nullptr;

  const int64_t D = c.dim, H = c.hidden_dim, Q = c.q_dim(), KV = c.kv_dim(), V = c.vocab_size;
  const int hd = c.head_dim;
  const int perm = neox ? hd : 0;

  // Validate every expected tensor before allocating anything, and decide the matrix dtype.
  auto model = std::make_unique<Model>();
  Builder b(*model, f);
  b.check_matrix("token_embd.weight", V, D);
  if (!c.tied_embeddings) b.check_matrix("output.weight", V, D);
  b.expect("output_norm.weight", {D});
  for (int l = 0; l < c.n_layers; ++l) {
    b.check_matrix(blk(l, "attn_q.weight"), Q, D);
    b.check_matrix(blk(l, "attn_k.weight"), KV, D);
    b.check_matrix(blk(l, "attn_v.weight"), KV, D);
    b.check_matrix(blk(l, "attn_output.weight"), D, Q);
    b.check_matrix(blk(l, "ffn_gate.weight"), H, D);
    b.check_matrix(blk(l, "ffn_up.weight"), H, D);
    b.check_matrix(blk(l, "ffn_down.weight"), D, H);
    b.expect(blk(l, "attn_norm.weight"), {D});
    b.expect(blk(l, "ffn_norm.weight"), {D});
    if (c.qkv_bias) {
      b.expect(blk(l, "attn_q.bias"), {Q});
      b.expect(blk(l, "attn_k.bias"), {KV});
      b.expect(blk(l, "attn_v.bias"), {KV});
    }
    if (c.qk_norm) {
      b.expect(blk(l, "attn_q_norm.weight"), {hd});
      b.expect(blk(l, "attn_k_norm.weight"), {hd});
    }
  }
  for (const auto& [name, t] : f.tensors())
    if (!b.expected().count(name))
      f.bad("unexpected tensor \"" + gguf::printable(name) + "\": not part of a " + c.arch +
            " model as razor runs it (unsupported feature or corrupt file)");

  const auto& dtypes = b.matrix_dtypes();
  const bool keep_bf16 = options.keep_bf16 && dtypes.size() == 1 && dtypes.begin()->first == "BF16";
  b.set_matrix_dtype(keep_bf16 ? DType::BF16 : DType::F32);
  // The dtype holding most matrix parameters (ties: the name that sorts first).
  auto dominant = std::max_element(dtypes.begin(), dtypes.end(), [](const auto& x, const auto& y) {
    return x.second < y.second;
  });

  model->config = c;
  model->path = path;
  model->format = "gguf";
  model->source_dtype = dominant->first;

  model->tok_embeddings = b.matrix("token_embd.weight", V, D);
  model->layers.resize(static_cast<size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& w = model->layers[static_cast<size_t>(l)];
    w.attn_norm = b.vector(blk(l, "attn_norm.weight"), D);
    w.wq = b.matrix(blk(l, "attn_q.weight"), Q, D, perm);
    w.wk = b.matrix(blk(l, "attn_k.weight"), KV, D, perm);
    w.wv = b.matrix(blk(l, "attn_v.weight"), KV, D);
    w.wo = b.matrix(blk(l, "attn_output.weight"), D, Q);
    if (c.qkv_bias) {
      w.bq = b.vector(blk(l, "attn_q.bias"), Q, perm);
      w.bk = b.vector(blk(l, "attn_k.bias"), KV, perm);
      w.bv = b.vector(blk(l, "attn_v.bias"), KV);
    }
    if (c.qk_norm) {
      w.q_norm = b.vector(blk(l, "attn_q_norm.weight"), hd, perm);
      w.k_norm = b.vector(blk(l, "attn_k_norm.weight"), hd, perm);
    }
    w.ffn_norm = b.vector(blk(l, "ffn_norm.weight"), D);
    w.w1 = b.matrix(blk(l, "ffn_gate.weight"), H, D);
    w.w2 = b.matrix(blk(l, "ffn_down.weight"), D, H);
    w.w3 = b.matrix(blk(l, "ffn_up.weight"), H, D);
  }
  model->final_norm = b.vector("output_norm.weight", D);
  model->output = c.tied_embeddings ? model->tok_embeddings : b.matrix("output.weight", V, D);
  return model;
}

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::string& gguf_path, int vocab_size) {
  if (vocab_size <= 0) fail(gguf_path, "invalid vocabulary size " + std::to_string(vocab_size));
  gguf::File f(gguf_path);
  auto kind = f.get_string("tokenizer.ggml.model");
  if (kind && *kind != "llama") return nullptr;  // gpt2 BPE and others: not a SentencePiece vocab
  if (!f.find("tokenizer.ggml.tokens")) return nullptr;
  std::vector<std::string> pieces = *f.get_strings("tokenizer.ggml.tokens");
  auto scores = f.get_floats("tokenizer.ggml.scores");
  if (!scores) f.bad("missing metadata \"tokenizer.ggml.scores\" (needed with tokenizer.ggml.tokens)");
  if (scores->size() != pieces.size())
    f.bad("tokenizer.ggml.scores has " + std::to_string(scores->size()) + " entries but tokenizer.ggml.tokens has " +
          std::to_string(pieces.size()));
  if (pieces.size() < static_cast<size_t>(vocab_size))
    f.bad("embedded vocabulary has " + std::to_string(pieces.size()) + " tokens, the model needs " +
          std::to_string(vocab_size));
  pieces.resize(static_cast<size_t>(vocab_size));
  scores->resize(static_cast<size_t>(vocab_size));
  return std::make_unique<Tokenizer>(Tokenizer::from_vocab(std::move(pieces), std::move(*scores), gguf_path));
}

}  // namespace razor
