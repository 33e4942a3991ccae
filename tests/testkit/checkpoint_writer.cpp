#include "checkpoint_writer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "model/convert.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace razor::testkit {

namespace {

[[noreturn]] void die(const std::string& m) { throw std::runtime_error("checkpoint_writer: " + m); }

size_t dtype_bytes(DiskDType d) { return d == DiskDType::F32 ? 4 : 2; }

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void check_config(const HfConfig& c) {
  if (c.arch != "llama" && c.arch != "mistral" && c.arch != "qwen2" && c.arch != "qwen3")
    die("unknown arch " + c.arch);
  if (c.qk_norm && c.arch != "qwen3") die("qk_norm needs arch qwen3");
  if (c.dim <= 0 || c.hidden_dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 ||
      c.vocab_size <= 0 || c.hd() <= 0 || c.n_heads % c.n_kv_heads != 0 || c.hd() % 2 != 0)
    die("inconsistent sizes");
}

std::string shard_name(int i, int n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05d-of-%05d.safetensors", i + 1, n);
  return buf;
}

void put(std::ofstream& f, const void* p, size_t n, const std::string& path) {
  f.write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
  if (!f) die("write failed: " + path);
}

// rotate_half (HF) row index of interleaved row r, per head of hd rows.
int64_t hf_row_of_interleaved(int64_t r, int hd) {
  int64_t head = r / hd, j = r % hd;
  return head * hd + ((j % 2 == 0) ? j / 2 : j / 2 + hd / 2);
}

}  // namespace

const char* dtype_name(DiskDType d) {
  switch (d) {
    case DiskDType::F32: return "F32";
    case DiskDType::F16: return "F16";
    case DiskDType::BF16: return "BF16";
  }
  return "?";
}

std::string HfConfig::architecture() const {
  if (arch == "llama") return "LlamaForCausalLM";
  if (arch == "mistral") return "MistralForCausalLM";
  if (arch == "qwen2") return "Qwen2ForCausalLM";
  if (arch == "qwen3") return "Qwen3ForCausalLM";
  die("unknown arch " + arch);
}

json HfConfig::to_json() const {
  json j;
  j["architectures"] = json::array({architecture()});
  j["model_type"] = arch;
  j["hidden_size"] = dim;
  j["intermediate_size"] = hidden_dim;
  j["num_hidden_layers"] = n_layers;
  j["num_attention_heads"] = n_heads;
  j["num_key_value_heads"] = n_kv_heads;
  if (head_dim > 0) j["head_dim"] = head_dim;
  j["vocab_size"] = vocab_size;
  j["max_position_embeddings"] = max_seq_len;
  j["rms_norm_eps"] = norm_eps;
  j["rope_theta"] = rope_theta;
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = tied;
  j["bos_token_id"] = bos_id;
  j["eos_token_id"] = eos_id;
  j["torch_dtype"] = "float32";
  if (arch != "qwen2") j["attention_bias"] = qkv_bias;
  switch (rope_scaling) {
    case RopeScaling::None: j["rope_scaling"] = nullptr; break;
    case RopeScaling::Linear: j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", rope_factor}}; break;
    case RopeScaling::Llama3:
      j["rope_scaling"] = {{"rope_type", "llama3"},
                           {"factor", rope_factor},
                           {"low_freq_factor", rope_low_freq_factor},
                           {"high_freq_factor", rope_high_freq_factor},
                           {"original_max_position_embeddings", rope_original_max_pos}};
      break;
  }
  return j;
}

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

HfConfig small_config(const std::string& arch) {
  HfConfig c;
  c.arch = arch;
  c.dim = 32;
  c.hidden_dim = 48;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 40;
  c.max_seq_len = 64;
  return c;
}

std::vector<TensorSpec> tensor_specs(const HfConfig& c) {
  check_config(c);
  const int64_t D = c.dim, H = c.hidden_dim, Q = c.q_dim(), KV = c.kv_dim(), V = c.vocab_size;
  std::vector<TensorSpec> s;
  s.push_back({"model.embed_tokens.weight", {V, D}});
  for (int l = 0; l < c.n_layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    s.push_back({p + "input_layernorm.weight", {D}});
    s.push_back({p + "self_attn.q_proj.weight", {Q, D}});
    s.push_back({p + "self_attn.k_proj.weight", {KV, D}});
    s.push_back({p + "self_attn.v_proj.weight", {KV, D}});
    if (c.has_bias()) {
      s.push_back({p + "self_attn.q_proj.bias", {Q}});
      s.push_back({p + "self_attn.k_proj.bias", {KV}});
      s.push_back({p + "self_attn.v_proj.bias", {KV}});
    }
    if (c.has_qk_norm()) {
      s.push_back({p + "self_attn.q_norm.weight", {c.hd()}});
      s.push_back({p + "self_attn.k_norm.weight", {c.hd()}});
    }
    s.push_back({p + "self_attn.o_proj.weight", {D, Q}});
    s.push_back({p + "post_attention_layernorm.weight", {D}});
    s.push_back({p + "mlp.gate_proj.weight", {H, D}});
    s.push_back({p + "mlp.up_proj.weight", {H, D}});
    s.push_back({p + "mlp.down_proj.weight", {D, H}});
  }
  s.push_back({"model.norm.weight", {D}});
  if (!c.tied) s.push_back({"lm_head.weight", {V, D}});
  return s;
}

TensorFill random_fill(const HfConfig& cfg, uint64_t seed, float std) {
  check_config(cfg);
  return [seed, std](const TensorSpec& spec, int64_t begin, int64_t count, float* out) {
    const uint64_t base = splitmix64(seed ^ fnv1a(spec.name));
    const bool norm = ends_with(spec.name, "norm.weight");
    const double a = std::sqrt(3.0) * std;  // uniform [-a, a] has standard deviation std
    for (int64_t i = 0; i < count; ++i) {
      uint64_t r = splitmix64(base + static_cast<uint64_t>(begin + i) * 0xd1b54a32d192ed03ull);
      double u = static_cast<double>(r >> 40) * (2.0 / 16777216.0) - 1.0;  // [-1, 1)
      out[i] = static_cast<float>(norm ? 1.0 + 0.1 * u : a * u);
    }
  };
}

Weights random_weights(const HfConfig& cfg, uint64_t seed, float std) {
  TensorFill fill = random_fill(cfg, seed, std);
  Weights w;
  for (const TensorSpec& s : tensor_specs(cfg)) {
    Tensor t;
    t.shape = s.shape;
    t.values.resize(static_cast<size_t>(s.numel()));
    fill(s, 0, s.numel(), t.values.data());
    w.emplace(s.name, std::move(t));
  }
  return w;
}

Weights round_weights(const Weights& w, DiskDType dtype) {
  Weights r = w;
  if (dtype == DiskDType::F32) return r;
  for (auto& [name, t] : r)
    for (float& v : t.values)
      v = dtype == DiskDType::BF16 ? convert::bf16_to_f32(convert::f32_to_bf16(v))
                                   : convert::f16_to_f32(convert::f32_to_f16(v));
  return r;
}

void write_safetensors(const std::string& path, const std::vector<TensorSpec>& specs,
                       const TensorFill& fill, DiskDType dtype) {
  const size_t esz = dtype_bytes(dtype);
  json header = json::object();
  header["__metadata__"] = {{"format", "pt"}, {"source", "razor testkit"}};
  uint64_t off = 0;
  for (const TensorSpec& s : specs) {
    uint64_t n = static_cast<uint64_t>(s.numel()) * esz;
    header[s.name] = {{"dtype", dtype_name(dtype)}, {"shape", s.shape}, {"data_offsets", {off, off + n}}};
    off += n;
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');

  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) die("cannot create " + path);
  uint8_t len[8];
  uint64_t hn = h.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(hn >> (8 * i));
  put(f, len, 8, path);
  put(f, h.data(), h.size(), path);

  constexpr int64_t kChunk = 1 << 20;
  std::vector<float> buf;
  std::vector<uint16_t> half;
  for (const TensorSpec& s : specs) {
    const int64_t n = s.numel();
    for (int64_t b = 0; b < n; b += kChunk) {
      const int64_t cnt = std::min(kChunk, n - b);
      buf.resize(static_cast<size_t>(cnt));
      fill(s, b, cnt, buf.data());
      if (dtype == DiskDType::F32) {
        put(f, buf.data(), static_cast<size_t>(cnt) * 4, path);
      } else {
        half.resize(static_cast<size_t>(cnt));
        if (dtype == DiskDType::BF16) convert::f32_to_bf16(buf.data(), half.data(), half.size());
        else convert::f32_to_f16(buf.data(), half.data(), half.size());
        put(f, half.data(), half.size() * 2, path);
      }
    }
  }
  f.close();
  if (!f) die("write failed: " + path);
}

void write_hf(const std::string& dir, const HfConfig& cfg, const std::vector<TensorSpec>& specs,
              const TensorFill& fill, DiskDType dtype, int n_shards) {
  check_config(cfg);
  if (n_shards < 1 || static_cast<size_t>(n_shards) > std::max<size_t>(specs.size(), 1))
    die("n_shards must be in [1, number of tensors]");
  fs::create_directories(dir);
  {
    std::ofstream f(dir + "/config.json", std::ios::trunc);
    f << cfg.to_json().dump(2) << "\n";
    if (!f) die("cannot write " + dir + "/config.json");
  }
  if (n_shards == 1) {
    write_safetensors(dir + "/model.safetensors", specs, fill, dtype);
    return;
  }
  std::vector<std::vector<TensorSpec>> groups(static_cast<size_t>(n_shards));
  json weight_map = json::object();
  uint64_t total = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    size_t g = i % static_cast<size_t>(n_shards);
    groups[g].push_back(specs[i]);
    weight_map[specs[i].name] = shard_name(static_cast<int>(g), n_shards);
    total += static_cast<uint64_t>(specs[i].numel()) * dtype_bytes(dtype);
  }
  for (int g = 0; g < n_shards; ++g)
    write_safetensors(dir + "/" + shard_name(g, n_shards), groups[static_cast<size_t>(g)], fill, dtype);
  json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  std::ofstream f(dir + "/model.safetensors.index.json", std::ios::trunc);
  f << index.dump(2) << "\n";
  if (!f) die("cannot write index in " + dir);
}

void write_hf(const std::string& dir, const HfConfig& cfg, const Weights& w, DiskDType dtype,
              int n_shards) {
  std::vector<TensorSpec> specs;
  for (const auto& [name, t] : w) {
    TensorSpec s{name, t.shape};
    if (static_cast<size_t>(s.numel()) != t.values.size()) die("tensor " + name + ": values != shape");
    specs.push_back(std::move(s));
  }
  TensorFill fill = [&w](const TensorSpec& s, int64_t begin, int64_t count, float* out) {
    const Tensor& t = w.at(s.name);
    std::memcpy(out, t.values.data() + begin, static_cast<size_t>(count) * sizeof(float));
  };
  write_hf(dir, cfg, specs, fill, dtype, n_shards);
}

void write_llama2c_v0(const std::string& path, const HfConfig& c, const Weights& w) {
  check_config(c);
  if (c.arch != "llama" && c.arch != "mistral") die("llama2.c needs a Llama-shaped config");
  if (c.has_bias() || c.has_qk_norm()) die("llama2.c has no biases or q/k norms");
  if (c.hd() * c.n_heads != c.dim) die("llama2.c needs head_dim == dim / n_heads");
  auto get = [&](const std::string& name) -> const Tensor& {
    auto it = w.find(name);
    if (it == w.end()) die("missing tensor " + name);
    return it->second;
  };
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) die("cannot create " + path);
  int32_t hdr[7] = {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads,
                    c.tied ? c.vocab_size : -c.vocab_size, c.max_seq_len};
  put(f, hdr, sizeof hdr, path);
  auto whole = [&](const std::string& name) {
    const Tensor& t = get(name);
    put(f, t.values.data(), t.values.size() * 4, path);
  };
  auto interleaved = [&](const std::string& name) {
    const Tensor& t = get(name);
    const int64_t rows = t.shape[0], cols = t.shape[1];
    for (int64_t r = 0; r < rows; ++r)
      put(f, t.values.data() + hf_row_of_interleaved(r, c.hd()) * cols, static_cast<size_t>(cols) * 4, path);
  };
  auto each_layer = [&](const char* rest, bool permute) {
    for (int l = 0; l < c.n_layers; ++l) {
      std::string name = "model.layers." + std::to_string(l) + "." + rest;
      permute ? interleaved(name) : whole(name);
    }
  };
  whole("model.embed_tokens.weight");
  each_layer("input_layernorm.weight", false);
  each_layer("self_attn.q_proj.weight", true);
  each_layer("self_attn.k_proj.weight", true);
  each_layer("self_attn.v_proj.weight", false);
  each_layer("self_attn.o_proj.weight", false);
  each_layer("post_attention_layernorm.weight", false);
  each_layer("mlp.gate_proj.weight", false);
  each_layer("mlp.down_proj.weight", false);
  each_layer("mlp.up_proj.weight", false);
  whole("model.norm.weight");
  // Legacy freq_cis_real / freq_cis_imag [seq_len][head_dim / 2] (ignored by readers).
  const int half = c.hd() / 2;
  for (int part = 0; part < 2; ++part) {
    std::vector<float> row(static_cast<size_t>(half));
    for (int p = 0; p < c.max_seq_len; ++p) {
      for (int i = 0; i < half; ++i) {
        double ang = p * std::pow(10000.0, -2.0 * i / c.hd());
        row[static_cast<size_t>(i)] = static_cast<float>(part == 0 ? std::cos(ang) : std::sin(ang));
      }
      put(f, row.data(), row.size() * 4, path);
    }
  }
  if (!c.tied) whole("lm_head.weight");
  f.close();
  if (!f) die("write failed: " + path);
}

// ---------------------------------------------------------------------------------------------
// Reference forward pass

namespace {

// y[r] = sum_c W[r][c] x[c] (+ b[r])
std::vector<double> linear(const Tensor& W, const std::vector<double>& x, const Tensor* b = nullptr) {
  const int64_t rows = W.shape[0], cols = W.shape[1];
  if (static_cast<int64_t>(x.size()) != cols) die("linear: size mismatch");
  std::vector<double> y(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const float* w = W.values.data() + r * cols;
    double s = 0;
    for (int64_t k = 0; k < cols; ++k) s += static_cast<double>(w[k]) * x[static_cast<size_t>(k)];
    if (b) s += b->values[static_cast<size_t>(r)];
    y[static_cast<size_t>(r)] = s;
  }
  return y;
}

void rmsnorm(double* x, int64_t n, const float* w, double eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  double inv = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps);
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] * inv * w[i];
}

std::vector<double> inv_freqs(const HfConfig& c) {
  const int hd = c.hd();
  std::vector<double> inv(static_cast<size_t>(hd / 2));
  for (int i = 0; i < hd / 2; ++i) inv[static_cast<size_t>(i)] = 1.0 / std::pow(static_cast<double>(c.rope_theta), 2.0 * i / hd);
  if (c.rope_scaling == RopeScaling::Linear) {
    for (double& f : inv) f /= c.rope_factor;
  } else if (c.rope_scaling == RopeScaling::Llama3) {
    // transformers' _compute_llama3_parameters
    const double factor = c.rope_factor, lo = c.rope_low_freq_factor, hi = c.rope_high_freq_factor;
    const double old_ctx = c.rope_original_max_pos;
    const double low_wl = old_ctx / lo, high_wl = old_ctx / hi;
    for (double& f : inv) {
      const double wl = 2.0 * M_PI / f;
      if (wl < high_wl) continue;                 // high frequency: unchanged
      if (wl > low_wl) { f /= factor; continue; }  // low frequency: scaled
      const double smooth = (old_ctx / wl - lo) / (hi - lo);
      f = (1.0 - smooth) * f / factor + smooth * f;
    }
  }
  return inv;
}

// rotate_half RoPE on one head vector x[hd] at position pos.
void rope_hf(double* x, int hd, const std::vector<double>& inv, int64_t pos) {
  const int h = hd / 2;
  for (int i = 0; i < h; ++i) {
    const double a = static_cast<double>(pos) * inv[static_cast<size_t>(i)];
    const double cs = std::cos(a), sn = std::sin(a);
    const double x1 = x[i], x2 = x[i + h];
    x[i] = x1 * cs - x2 * sn;
    x[i + h] = x2 * cs + x1 * sn;
  }
}

}  // namespace

std::vector<std::vector<float>> reference_logits(const HfConfig& c, const Weights& w,
                                                 const std::vector<int>& tokens) {
  check_config(c);
  auto get = [&](const std::string& name) -> const Tensor& {
    auto it = w.find(name);
    if (it == w.end()) die("reference_logits: missing tensor " + name);
    return it->second;
  };
  const int64_t T = static_cast<int64_t>(tokens.size());
  const int D = c.dim, hd = c.hd(), NH = c.n_heads, NKV = c.n_kv_heads, group = NH / NKV;
  const double eps = c.norm_eps;
  const std::vector<double> inv = inv_freqs(c);
  const Tensor& emb = get("model.embed_tokens.weight");

  std::vector<std::vector<double>> x(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    const int tok = tokens[static_cast<size_t>(t)];
    if (tok < 0 || tok >= c.vocab_size) die("reference_logits: token out of range");
    x[static_cast<size_t>(t)].assign(emb.values.begin() + int64_t(tok) * D,
                                     emb.values.begin() + int64_t(tok + 1) * D);
  }

  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const Tensor& attn_norm = get(p + "input_layernorm.weight");
    const Tensor& wq = get(p + "self_attn.q_proj.weight");
    const Tensor& wk = get(p + "self_attn.k_proj.weight");
    const Tensor& wv = get(p + "self_attn.v_proj.weight");
    const Tensor& wo = get(p + "self_attn.o_proj.weight");
    const Tensor* bq = c.has_bias() ? &get(p + "self_attn.q_proj.bias") : nullptr;
    const Tensor* bk = c.has_bias() ? &get(p + "self_attn.k_proj.bias") : nullptr;
    const Tensor* bv = c.has_bias() ? &get(p + "self_attn.v_proj.bias") : nullptr;
    const Tensor* qn = c.has_qk_norm() ? &get(p + "self_attn.q_norm.weight") : nullptr;
    const Tensor* kn = c.has_qk_norm() ? &get(p + "self_attn.k_norm.weight") : nullptr;

    std::vector<std::vector<double>> q(static_cast<size_t>(T)), k(static_cast<size_t>(T)),
        v(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> h = x[static_cast<size_t>(t)];
      rmsnorm(h.data(), D, attn_norm.values.data(), eps);
      auto& qt = q[static_cast<size_t>(t)];
      auto& kt = k[static_cast<size_t>(t)];
      qt = linear(wq, h, bq);
      kt = linear(wk, h, bk);
      v[static_cast<size_t>(t)] = linear(wv, h, bv);
      for (int hh = 0; hh < NH; ++hh) {
        if (qn) rmsnorm(qt.data() + hh * hd, hd, qn->values.data(), eps);
        rope_hf(qt.data() + hh * hd, hd, inv, t);
      }
      for (int hh = 0; hh < NKV; ++hh) {
        if (kn) rmsnorm(kt.data() + hh * hd, hd, kn->values.data(), eps);
        rope_hf(kt.data() + hh * hd, hd, inv, t);
      }
    }
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    std::vector<double> scores(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> att(static_cast<size_t>(NH) * hd, 0.0);
      for (int hh = 0; hh < NH; ++hh) {
        const int kvh = hh / group;
        const double* qh = q[static_cast<size_t>(t)].data() + hh * hd;
        double mx = -INFINITY;
        for (int64_t s = 0; s <= t; ++s) {
          const double* kh = k[static_cast<size_t>(s)].data() + kvh * hd;
          double d = 0;
          for (int i = 0; i < hd; ++i) d += qh[i] * kh[i];
          scores[static_cast<size_t>(s)] = d * scale;
          mx = std::max(mx, d * scale);
        }
        double sum = 0;
        for (int64_t s = 0; s <= t; ++s) sum += (scores[static_cast<size_t>(s)] = std::exp(scores[static_cast<size_t>(s)] - mx));
        double* out = att.data() + hh * hd;
        for (int64_t s = 0; s <= t; ++s) {
          const double pr = scores[static_cast<size_t>(s)] / sum;
          const double* vh = v[static_cast<size_t>(s)].data() + kvh * hd;
          for (int i = 0; i < hd; ++i) out[i] += pr * vh[i];
        }
      }
      std::vector<double> o = linear(wo, att);
      for (int i = 0; i < D; ++i) x[static_cast<size_t>(t)][static_cast<size_t>(i)] += o[static_cast<size_t>(i)];
    }

    const Tensor& ffn_norm = get(p + "post_attention_layernorm.weight");
    const Tensor& gate = get(p + "mlp.gate_proj.weight");
    const Tensor& up = get(p + "mlp.up_proj.weight");
    const Tensor& down = get(p + "mlp.down_proj.weight");
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> h = x[static_cast<size_t>(t)];
      rmsnorm(h.data(), D, ffn_norm.values.data(), eps);
      std::vector<double> g = linear(gate, h), u = linear(up, h);
      for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
      std::vector<double> d = linear(down, g);
      for (int i = 0; i < D; ++i) x[static_cast<size_t>(t)][static_cast<size_t>(i)] += d[static_cast<size_t>(i)];
    }
  }

  const Tensor& fnorm = get("model.norm.weight");
  const Tensor& head = c.tied ? emb : get("lm_head.weight");
  std::vector<std::vector<float>> logits(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> h = x[static_cast<size_t>(t)];
    rmsnorm(h.data(), D, fnorm.values.data(), eps);
    std::vector<double> y = linear(head, h);
    logits[static_cast<size_t>(t)].assign(y.begin(), y.end());
  }
  return logits;
}

}  // namespace razor::testkit
