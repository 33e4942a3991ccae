// Hugging Face checkpoints: a directory with config.json and model.safetensors, or shards listed
// in model.safetensors.index.json. Architectures: LlamaForCausalLM, MistralForCausalLM,
// Qwen2ForCausalLM (q/k/v biases), Qwen3ForCausalLM (per-head q/k RMSNorm).
//
// In-memory layout (see razor/model.h): matrices stay row-major [out, in] as nn.Linear stores
// them. q_proj/k_proj rows (and the q/k biases and q/k norm weights) are permuted per head from
// HF's rotate_half RoPE layout to razor's interleaved one: inter[2i] = hf[i],
// inter[2i + 1] = hf[i + head_dim / 2].
//
// Dtypes: F32 matrices point into the mapped file when 4-byte aligned; BF16 matrices stay BF16
// (pointing into the map when 2-byte aligned) when LoadOptions::keep_bf16 and every matrix of the
// checkpoint is BF16, else everything is converted to F32 (so a model has one matrix dtype).
// F16 is always converted. Norms, biases and q/k norms are always owned F32 buffers.
#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "model/convert.h"
#include "model/safetensors.h"
#include "razor/io.h"
#include "razor/model.h"

namespace razor {
namespace {

using nlohmann::json;
namespace st = safetensors;

constexpr int64_t kMaxDim = 1 << 20;
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxHeads = 1 << 16;

// ---------------------------------------------------------------------------------------------
// config.json

struct HfConfig {
  ModelConfig c;
  bool tie_stated = false;
  bool attention_bias = false;  // llama/mistral/qwen3 attention_bias (q, k, v and o biases)
};

class ConfigReader {
 public:
  ConfigReader(const json& j, std::string path) : j_(j), path_(std::move(path)) {}

  [[noreturn]] void bad(const std::string& m) const { fail(path_, m); }

  const json* get(const char* key) const {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  bool has(const char* key) const { return get(key) != nullptr; }

  int64_t integer(const json& v, const std::string& key, int64_t lo, int64_t hi) const {
    int64_t x;
    if (v.is_number_integer()) {
      x = v.get<int64_t>();
    } else if (v.is_number_float() && std::isfinite(v.get<double>()) &&
               v.get<double>() == std::floor(v.get<double>()) && std::fabs(v.get<double>()) < 1e15) {
      x = static_cast<int64_t>(v.get<double>());
    } else {
      bad("field \"" + key + "\" must be an integer, got " + v.dump());
    }
    if (x < lo || x > hi)
      bad("field \"" + key + "\" = " + std::to_string(x) + " is out of range [" + std::to_string(lo) +
          ", " + std::to_string(hi) + "]");
    return x;
  }
  int req_int(const char* key, int64_t lo, int64_t hi) const {
    const json* v = get(key);
    if (!v) bad(std::string("missing field \"") + key + "\"");
    return static_cast<int>(integer(*v, key, lo, hi));
  }
  int opt_int(const char* key, int def, int64_t lo, int64_t hi) const {
    const json* v = get(key);
    return v ? static_cast<int>(integer(*v, key, lo, hi)) : def;
  }
  double number(const json& v, const std::string& key) const {
    if (!v.is_number() || !std::isfinite(v.get<double>()))
      bad("field \"" + key + "\" must be a number, got " + v.dump());
    return v.get<double>();
  }
  double opt_positive(const char* key, double def) const {
    const json* v = get(key);
    if (!v) return def;
    double x = number(*v, key);
    if (!(x > 0)) bad(std::string("field \"") + key + "\" must be positive");
    return x;
  }
  bool opt_bool(const char* key, bool def) const {
    const json* v = get(key);
    if (!v) return def;
    if (!v->is_boolean()) bad(std::string("field \"") + key + "\" must be true or false");
    return v->get<bool>();
  }
  // A token id: an integer, or a list of them (the first is used); absent/null/empty -> def.
  int token_id(const char* key, int def) const {
    const json* v = get(key);
    if (!v) return def;
    if (v->is_array()) {
      if (v->empty()) return def;
      return static_cast<int>(integer((*v)[0], key, -1, kMaxDim * 64));
    }
    return static_cast<int>(integer(*v, key, -1, kMaxDim * 64));
  }

 private:
  const json& j_;
  std::string path_;
};

HfConfig parse_config(const json& j, const std::string& path) {
  if (!j.is_object()) fail(path, "not a JSON object");
  ConfigReader r(j, path);
  HfConfig h;
  ModelConfig& c = h.c;

  // Architecture: architectures[0], or model_type when architectures is absent.
  std::string arch_name;
  if (const json* a = r.get("architectures")) {
    if (!a->is_array() || a->empty() || !(*a)[0].is_string())
      r.bad("field \"architectures\" must be a non-empty list of strings");
    arch_name = (*a)[0].get<std::string>();
    if (arch_name == "LlamaForCausalLM") c.arch = "llama";
    else if (arch_name == "MistralForCausalLM") c.arch = "mistral";
    else if (arch_name == "Qwen2ForCausalLM") c.arch = "qwen2";
    else if (arch_name == "Qwen3ForCausalLM") c.arch = "qwen3";
    else
      r.bad("unknown architecture " + arch_name +
            " (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)");
  } else if (const json* mt = r.get("model_type")) {
    std::string t = mt->is_string() ? mt->get<std::string>() : mt->dump();
    if (t == "llama" || t == "mistral" || t == "qwen2" || t == "qwen3") c.arch = t;
    else r.bad("unknown architecture " + t + " (model_type; no \"architectures\" field)");
  } else {
    r.bad("missing field \"architectures\"");
  }
  const bool qwen = c.arch == "qwen2" || c.arch == "qwen3";

  c.dim = r.req_int("hidden_size", 1, kMaxDim);
  c.hidden_dim = r.req_int("intermediate_size", 1, kMaxDim);
  c.n_layers = r.req_int("num_hidden_layers", 1, kMaxLayers);
  c.n_heads = r.req_int("num_attention_heads", 1, kMaxHeads);
  c.n_kv_heads = r.opt_int("num_key_value_heads", c.n_heads, 1, kMaxHeads);
  c.vocab_size = r.req_int("vocab_size", 1, kMaxDim * 64);
  if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0)
    r.bad("num_attention_heads (" + std::to_string(c.n_heads) +
          ") is not a multiple of num_key_value_heads (" + std::to_string(c.n_kv_heads) + ")");
  if (r.has("head_dim")) {
    c.head_dim = r.req_int("head_dim", 1, kMaxDim);
  } else {
    if (c.dim % c.n_heads != 0)
      r.bad("hidden_size (" + std::to_string(c.dim) + ") is not divisible by num_attention_heads (" +
            std::to_string(c.n_heads) + ") and head_dim is not given");
    c.head_dim = c.dim / c.n_heads;
  }
  if (c.head_dim % 2 != 0) r.bad("head_dim (" + std::to_string(c.head_dim) + ") must be even for RoPE");
  if (c.head_dim > 1024) r.bad("head_dim (" + std::to_string(c.head_dim) + ") is larger than 1024");
  if (int64_t(c.n_heads) * c.head_dim > kMaxDim)
    r.bad("num_attention_heads * head_dim is too large");

  // Defaults follow the transformers config classes.
  int def_max_pos = c.arch == "llama" ? 2048 : c.arch == "mistral" ? 4096 * 32 : 32768;
  c.max_seq_len = r.opt_int("max_position_embeddings", def_max_pos, 1, int64_t(1) << 30);
  c.norm_eps = static_cast<float>(r.opt_positive("rms_norm_eps", 1e-6));
  c.rope_theta = static_cast<float>(r.opt_positive("rope_theta", 10000.0));

  if (const json* rs = r.get("rope_scaling")) {
    if (!rs->is_object()) r.bad("field \"rope_scaling\" must be an object or null");
    std::string type;
    for (const char* k : {"rope_type", "type"}) {
      auto it = rs->find(k);
      if (it != rs->end() && !it->is_null()) {
        if (!it->is_string()) r.bad(std::string("rope_scaling.") + k + " must be a string");
        type = it->get<std::string>();
        break;
      }
    }
    ConfigReader sr(*rs, path);
    auto factor = [&](const char* key) {
      const json* v = sr.get(key);
      if (!v) r.bad(std::string("rope_scaling (") + type + ") is missing \"" + key + "\"");
      double x = sr.number(*v, std::string("rope_scaling.") + key);
      if (!(x > 0)) r.bad(std::string("rope_scaling.") + key + " must be positive");
      return x;
    };
    if (type == "llama3") {
      c.rope_scaling = RopeScaling::Llama3;
      c.rope_factor = static_cast<float>(factor("factor"));
      c.rope_low_freq_factor = static_cast<float>(factor("low_freq_factor"));
      c.rope_high_freq_factor = static_cast<float>(factor("high_freq_factor"));
      const json* om = sr.get("original_max_position_embeddings");
      if (!om) r.bad("rope_scaling (llama3) is missing \"original_max_position_embeddings\"");
      c.rope_original_max_pos = static_cast<int>(
          sr.integer(*om, "rope_scaling.original_max_position_embeddings", 1, int64_t(1) << 30));
      if (!(c.rope_high_freq_factor > c.rope_low_freq_factor))
        r.bad("rope_scaling: high_freq_factor must be greater than low_freq_factor");
    } else if (type == "linear") {
      c.rope_scaling = RopeScaling::Linear;
      c.rope_factor = static_cast<float>(factor("factor"));
    } else if (type == "default") {
      c.rope_scaling = RopeScaling::None;
    } else if (type.empty()) {
      r.bad("rope_scaling has no \"rope_type\"");
    } else {
      r.bad("unsupported rope_scaling type \"" + type + "\" (supported: llama3, linear)");
    }
  }

  if (const json* act = r.get("hidden_act")) {
    if (!act->is_string() || act->get<std::string>() != "silu")
      r.bad("unsupported hidden_act " + act->dump() + " (only silu)");
  }
  if (r.opt_bool("mlp_bias", false)) r.bad("mlp_bias is not supported");

  h.tie_stated = r.has("tie_word_embeddings");
  c.tied_embeddings = r.opt_bool("tie_word_embeddings", false);
  h.attention_bias = c.arch != "qwen2" && r.opt_bool("attention_bias", false);
  c.qkv_bias = c.arch == "qwen2" || h.attention_bias;
  c.qk_norm = c.arch == "qwen3";

  c.bos_id = r.token_id("bos_token_id", qwen ? -1 : 1);
  c.eos_id = r.token_id("eos_token_id", qwen ? -1 : 2);
  c.pad_id = r.token_id("pad_token_id", -1);
  if (c.bos_id >= c.vocab_size)
    r.bad("bos_token_id " + std::to_string(c.bos_id) + " is outside the vocabulary (vocab_size " +
          std::to_string(c.vocab_size) + ")");
  if (c.eos_id >= c.vocab_size)
    r.bad("eos_token_id " + std::to_string(c.eos_id) + " is outside the vocabulary (vocab_size " +
          std::to_string(c.vocab_size) + ")");
  if (c.pad_id >= c.vocab_size || c.pad_id < 0) c.pad_id = -1;
  return h;
}

// ---------------------------------------------------------------------------------------------
// Tensors across one file or many shards

struct TensorRef {
  const st::File* file = nullptr;
  const st::TensorInfo* info = nullptr;
};

class TensorSet {
 public:
  explicit TensorSet(const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    fs::path index = dir / "model.safetensors.index.json";
    fs::path single = dir / "model.safetensors";
    std::error_code ec;
    if (fs::exists(index, ec)) {
      where_ = index.string();
      open_sharded(dir, where_);
    } else if (fs::exists(single, ec)) {
      files_.push_back(std::make_unique<st::File>(single.string()));
      where_ = single.string();
      for (const auto& [name, info] : files_[0]->tensors()) refs_[name] = {files_[0].get(), &info};
    } else {
      fail(dir.string(), "no model.safetensors or model.safetensors.index.json in the directory");
    }
  }

  // Where a missing tensor should have been: the single file, or the index.
  const std::string& where() const { return where_; }
  const TensorRef* find(const std::string& name) const {
    auto it = refs_.find(name);
    return it == refs_.end() ? nullptr : &it->second;
  }
  const std::vector<std::unique_ptr<st::File>>& files() const { return files_; }

 private:
  void open_sharded(const std::filesystem::path& dir, const std::string& index_path) {
    json j = json::parse(read_file(index_path), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) fail(index_path, "not valid JSON");
    if (!j.is_object()) fail(index_path, "not a JSON object");
    auto wm = j.find("weight_map");
    if (wm == j.end() || !wm->is_object()) fail(index_path, "missing or invalid \"weight_map\"");
    if (wm->empty()) fail(index_path, "\"weight_map\" is empty");
    std::map<std::string, std::string> tensor_shard;
    std::set<std::string> shards;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it->is_string()) fail(index_path, "weight_map entry \"" + it.key() + "\" is not a file name");
      std::string shard = it->get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos ||
          shard.find('\\') != std::string::npos || shard.find("..") != std::string::npos ||
          shard.find('\0') != std::string::npos)
        fail(index_path, "invalid shard file name \"" + shard + "\" (must be a plain file name)");
      tensor_shard[it.key()] = shard;
      shards.insert(shard);
    }
    std::map<std::string, const st::File*> by_name;
    for (const std::string& shard : shards) {
      std::string p = (dir / shard).string();
      std::error_code ec;
      if (!std::filesystem::exists(p, ec))
        fail(p, "missing shard (listed in model.safetensors.index.json)");
      files_.push_back(std::make_unique<st::File>(p));
      by_name[shard] = files_.back().get();
    }
    // Every tensor of every shard is available; duplicates across shards are an error.
    for (const auto& f : files_) {
      for (const auto& [name, info] : f->tensors()) {
        auto [it, inserted] = refs_.emplace(name, TensorRef{f.get(), &info});
        if (!inserted)
          fail(f->path(), "tensor \"" + name + "\" is also in " + it->second.file->path());
      }
    }
    for (const auto& [name, shard] : tensor_shard) {
      const st::File* f = by_name.at(shard);
      if (!f->find(name))
        fail(f->path(), "tensor \"" + name + "\" is listed for this shard in " + index_path +
                            " but is not in it");
    }
  }

  std::vector<std::unique_ptr<st::File>> files_;
  std::map<std::string, TensorRef> refs_;
  std::string where_;
};

// ---------------------------------------------------------------------------------------------
// Building the model

enum class Src { F32, F16, BF16 };

Src src_dtype(const std::string& d) {
  if (d == "F32") return Src::F32;
  if (d == "F16") return Src::F16;
  return Src::BF16;
}

// Source row for destination row r when q/k rows are permuted from rotate_half to interleaved
// (head_dim hd > 0), identity when hd == 0.
inline int64_t perm_row(int64_t r, int hd) {
  if (hd == 0) return r;
  int64_t head = r / hd, j = r % hd;
  int64_t src = (j % 2 == 0) ? j / 2 : j / 2 + hd / 2;
  return head * hd + src;
}

// Converts n elements of one row into F32 or BF16.
void convert_row(const uint8_t* src, Src s, DType d, void* dst, size_t n) {
  if (d == DType::BF16) {  // only BF16 -> BF16
    std::memcpy(dst, src, n * 2);
    return;
  }
  float* out = static_cast<float*>(dst);
  switch (s) {
    case Src::F32: std::memcpy(out, src, n * 4); break;
    case Src::F16: convert::f16_to_f32(src, out, n); break;
    case Src::BF16: convert::bf16_to_f32(src, out, n); break;
  }
}

class Builder {
 public:
  Builder(Model& m, const TensorSet& ts, const std::string& config_path)
      : m_(m), ts_(ts), config_path_(config_path) {}

  // Looks a tensor up and checks its shape and dtype.
  const TensorRef& expect(const std::string& name, const std::vector<int64_t>& shape) {
    const TensorRef* r = ts_.find(name);
    if (!r) fail(ts_.where(), "missing tensor \"" + name + "\"");
    const st::TensorInfo& t = *r->info;
    if (t.shape != shape)
      fail(r->file->path(), "tensor \"" + name + "\" has shape " + st::shape_str(t.shape) +
                                ", but config.json implies " + st::shape_str(shape));
    if (t.dtype != "F32" && t.dtype != "F16" && t.dtype != "BF16")
      fail(r->file->path(), "tensor \"" + name + "\" has unsupported dtype " + t.dtype +
                                " (supported: F32, F16, BF16)");
    return *r;
  }

  void set_matrix_dtype(DType d) { mat_dtype_ = d; }

  // A [rows, cols] matrix; perm_hd > 0 permutes rows per head from rotate_half to interleaved.
  Matrix matrix(const std::string& name, int64_t rows, int64_t cols, int perm_hd = 0) {
    const TensorRef& r = expect(name, {rows, cols});
    const st::TensorInfo& t = *r.info;
    Src s = src_dtype(t.dtype);
    Matrix mat;
    mat.dtype = mat_dtype_;
    mat.rows = rows;
    mat.cols = cols;
    const uintptr_t addr = reinterpret_cast<uintptr_t>(t.data);
    if (perm_hd == 0 && ((s == Src::F32 && mat_dtype_ == DType::F32 && addr % 4 == 0) ||
                         (s == Src::BF16 && mat_dtype_ == DType::BF16 && addr % 2 == 0))) {
      mat.data = t.data;
      keep_map(r.file);
      return mat;
    }
    const size_t esz_in = t.elem_size;
    const size_t ucols = static_cast<size_t>(cols);
    if (mat_dtype_ == DType::BF16) {
      // for_overwrite: no zero fill, every page is touched once (by the conversion).
      auto buf = std::make_shared_for_overwrite<uint16_t[]>(static_cast<size_t>(rows * cols));
      uint16_t* out = buf.get();
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 20))
      for (int64_t i = 0; i < rows; ++i)
        convert_row(t.data + perm_row(i, perm_hd) * ucols * esz_in, s, DType::BF16, out + i * cols,
                    ucols);
      mat.data = out;
      m_.storage.push_back(std::move(buf));
    } else {
      auto buf = std::make_shared_for_overwrite<float[]>(static_cast<size_t>(rows * cols));
      float* out = buf.get();
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 20))
      for (int64_t i = 0; i < rows; ++i)
        convert_row(t.data + perm_row(i, perm_hd) * ucols * esz_in, s, DType::F32, out + i * cols,
                    ucols);
      mat.data = out;
      m_.storage.push_back(std::move(buf));
    }
    return mat;
  }

  // A vector of n values as an owned F32 buffer; perm_hd > 0 permutes per head as above.
  const float* vector(const std::string& name, int64_t n, int perm_hd = 0) {
    const TensorRef& r = expect(name, {n});
    const st::TensorInfo& t = *r.info;
    Src s = src_dtype(t.dtype);
    auto buf = std::make_shared<std::vector<float>>(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      convert_row(t.data + perm_row(i, perm_hd) * t.elem_size, s, DType::F32, buf->data() + i, 1);
    const float* p = buf->data();
    m_.storage.push_back(std::move(buf));
    return p;
  }

 private:
  void keep_map(const st::File* f) {
    if (kept_.insert(f).second) m_.storage.push_back(f->map());
  }

  Model& m_;
  const TensorSet& ts_;
  std::string config_path_;
  DType mat_dtype_ = DType::F32;
  std::set<const st::File*> kept_;
};

}  // namespace

std::unique_ptr<Model> load_hf(const std::string& dir_path, const LoadOptions& options) {
  namespace fs = std::filesystem;
  struct stat stt {};
  if (::stat(dir_path.c_str(), &stt) != 0) fail(dir_path, "no such file or directory");
  if (!S_ISDIR(stt.st_mode))
    fail(dir_path, "not a directory (a Hugging Face checkpoint is a directory with config.json)");
  const fs::path dir(dir_path);
  const std::string config_path = (dir / "config.json").string();
  if (::stat(config_path.c_str(), &stt) != 0)
    fail(config_path, "missing (a Hugging Face checkpoint directory needs config.json)");
  json cj = json::parse(read_file(config_path), nullptr, /*allow_exceptions=*/false);
  if (cj.is_discarded()) fail(config_path, "not valid JSON");
  HfConfig hc = parse_config(cj, config_path);
  ModelConfig& c = hc.c;

  TensorSet ts(dir);
  const bool has_lm_head = ts.find("lm_head.weight") != nullptr;
  if (!hc.tie_stated) c.tied_embeddings = !has_lm_head;

  const int64_t D = c.dim, H = c.hidden_dim, Q = c.q_dim(), KV = c.kv_dim(), V = c.vocab_size;
  const int hd = c.head_dim;
  auto lname = [](int l, const char* rest) { return "model.layers." + std::to_string(l) + "." + rest; };

  // Validate every expected tensor (presence, shape, dtype) before allocating anything, and
  // decide the in-memory matrix dtype.
  auto model = std::make_unique<Model>();
  Builder b(*model, ts, config_path);
  std::set<std::string> matrix_dtypes;
  auto check_matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    matrix_dtypes.insert(b.expect(name, {rows, cols}).info->dtype);
  };
  check_matrix("model.embed_tokens.weight", V, D);
  if (!c.tied_embeddings) check_matrix("lm_head.weight", V, D);
  b.expect("model.norm.weight", {D});
  for (int l = 0; l < c.n_layers; ++l) {
    check_matrix(lname(l, "self_attn.q_proj.weight"), Q, D);
    check_matrix(lname(l, "self_attn.k_proj.weight"), KV, D);
    check_matrix(lname(l, "self_attn.v_proj.weight"), KV, D);
    check_matrix(lname(l, "self_attn.o_proj.weight"), D, Q);
    check_matrix(lname(l, "mlp.gate_proj.weight"), H, D);
    check_matrix(lname(l, "mlp.up_proj.weight"), H, D);
    check_matrix(lname(l, "mlp.down_proj.weight"), D, H);
    b.expect(lname(l, "input_layernorm.weight"), {D});
    b.expect(lname(l, "post_attention_layernorm.weight"), {D});
    if (c.qkv_bias) {
      b.expect(lname(l, "self_attn.q_proj.bias"), {Q});
      b.expect(lname(l, "self_attn.k_proj.bias"), {KV});
      b.expect(lname(l, "self_attn.v_proj.bias"), {KV});
    }
    if (c.qk_norm) {
      b.expect(lname(l, "self_attn.q_norm.weight"), {hd});
      b.expect(lname(l, "self_attn.k_norm.weight"), {hd});
    }
    // An output-projection bias (attention_bias in Llama/Qwen3) has no place in the model:
    // accept it only when it is all zeros.
    std::string ob = lname(l, "self_attn.o_proj.bias");
    if (const TensorRef* r = ts.find(ob)) {
      b.expect(ob, {D});
      const float* v = b.vector(ob, D);
      for (int64_t i = 0; i < D; ++i)
        if (v[i] != 0.0f)
          fail(r->file->path(), "tensor \"" + ob + "\": output-projection biases are not supported");
    }
  }

  const bool keep_bf16 = options.keep_bf16 && matrix_dtypes.size() == 1 && *matrix_dtypes.begin() == "BF16";
  b.set_matrix_dtype(keep_bf16 ? DType::BF16 : DType::F32);

  model->config = c;
  model->path = dir_path;
  model->format = "hf-safetensors";
  model->source_dtype = matrix_dtypes.size() == 1 ? *matrix_dtypes.begin() : "mixed";

  model->tok_embeddings = b.matrix("model.embed_tokens.weight", V, D);
  model->layers.resize(static_cast<size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& w = model->layers[static_cast<size_t>(l)];
    w.attn_norm = b.vector(lname(l, "input_layernorm.weight"), D);
    w.wq = b.matrix(lname(l, "self_attn.q_proj.weight"), Q, D, hd);
    w.wk = b.matrix(lname(l, "self_attn.k_proj.weight"), KV, D, hd);
    w.wv = b.matrix(lname(l, "self_attn.v_proj.weight"), KV, D);
    w.wo = b.matrix(lname(l, "self_attn.o_proj.weight"), D, Q);
    if (c.qkv_bias) {
      w.bq = b.vector(lname(l, "self_attn.q_proj.bias"), Q, hd);
      w.bk = b.vector(lname(l, "self_attn.k_proj.bias"), KV, hd);
      w.bv = b.vector(lname(l, "self_attn.v_proj.bias"), KV);
    }
    if (c.qk_norm) {
      w.q_norm = b.vector(lname(l, "self_attn.q_norm.weight"), hd, hd);
      w.k_norm = b.vector(lname(l, "self_attn.k_norm.weight"), hd, hd);
    }
    w.ffn_norm = b.vector(lname(l, "post_attention_layernorm.weight"), D);
    w.w1 = b.matrix(lname(l, "mlp.gate_proj.weight"), H, D);
    w.w2 = b.matrix(lname(l, "mlp.down_proj.weight"), D, H);
    w.w3 = b.matrix(lname(l, "mlp.up_proj.weight"), H, D);
  }
  model->final_norm = b.vector("model.norm.weight", D);
  model->output = c.tied_embeddings ? model->tok_embeddings : b.matrix("lm_head.weight", V, D);
  return model;
}

}  // namespace razor
