#include <sys/stat.h>

#include <cstdio>
#include <sstream>

#include "razor/model.h"

namespace razor {

std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& options) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail(path, "no such file or directory");
  if (S_ISDIR(st.st_mode)) return load_hf(path, options);
  auto ends_with = [&](const char* suffix) {
    std::string s(suffix);
    return path.size() >= s.size() && path.compare(path.size() - s.size(), s.size(), s) == 0;
  };
  if (ends_with(".gguf")) return load_gguf(path, options);
  return load_llama2c(path, options);
}

int64_t Model::n_params() const {
  const ModelConfig& c = config;
  int64_t per_layer = 2LL * c.dim + int64_t(c.q_dim()) * c.dim * 2 + 2LL * c.kv_dim() * c.dim +
                      3LL * c.hidden_dim * c.dim;
  if (c.qkv_bias) per_layer += c.q_dim() + 2LL * c.kv_dim();
  if (c.qk_norm) per_layer += 2LL * c.head_dim;
  int64_t n = per_layer * c.n_layers + int64_t(c.vocab_size) * c.dim + c.dim;
  if (!c.tied_embeddings) n += int64_t(c.vocab_size) * c.dim;
  return n;
}

size_t Model::kv_bytes_per_token() const {
  return size_t(2) * config.n_layers * config.kv_dim() * sizeof(float);
}

std::string describe(const Model& m) {
  const ModelConfig& c = m.config;
  std::ostringstream o;
  char params[32];
  std::snprintf(params, sizeof params, "%.2fM", m.n_params() / 1e6);
  o << "path:            " << m.path << "\n"
    << "format:          " << m.format << "\n"
    << "architecture:    " << c.arch << "\n"
    << "weights dtype:   " << m.source_dtype << " on disk, "
    << (m.weight_dtype() == DType::BF16 ? "BF16" : "F32") << " in memory\n"
    << "parameters:      " << m.n_params() << " (" << params << ")\n"
    << "layers:          " << c.n_layers << "\n"
    << "hidden size:     " << c.dim << "\n"
    << "ffn size:        " << c.hidden_dim << "\n"
    << "heads:           " << c.n_heads << " query, " << c.n_kv_heads << " key/value (head dim "
    << c.head_dim << ")\n"
    << "vocabulary:      " << c.vocab_size << "\n"
    << "max sequence:    " << c.max_seq_len << "\n"
    << "rope theta:      " << c.rope_theta
    << (c.rope_scaling == RopeScaling::Llama3   ? " (llama3 scaling)"
        : c.rope_scaling == RopeScaling::Linear ? " (linear scaling)"
                                                : "")
    << "\n"
    << "norm eps:        " << c.norm_eps << "\n"
    << "tied classifier: " << (c.tied_embeddings ? "yes" : "no") << "\n"
    << "qkv bias:        " << (c.qkv_bias ? "yes" : "no") << "\n"
    << "q/k norm:        " << (c.qk_norm ? "yes" : "no") << "\n"
    << "KV cache:        " << m.kv_bytes_per_token() << " bytes per token (float32)\n";
  return o.str();
}

}  // namespace razor
