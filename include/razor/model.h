#pragma once
// One in-memory model for every checkpoint format (llama2.c, Hugging Face safetensors, GGUF).
// Weights are row-major matrices y = W x (rows = outputs). q/k projections are stored in the
// interleaved RoPE convention of llama2.c/Meta (pairs (2i, 2i+1) rotate together); loaders for
// rotate_half checkpoints (Hugging Face) permute rows at load so one RoPE kernel serves all.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "razor/error.h"

namespace razor {

// Weight dtypes the compute kernels read directly. F16 and Q8_0 are converted at load.
enum class DType : uint8_t { F32, BF16 };

struct Matrix {
  DType dtype = DType::F32;
  const void* data = nullptr;
  int64_t rows = 0, cols = 0;

  const float* f32() const { return static_cast<const float*>(data); }
  const uint16_t* bf16() const { return static_cast<const uint16_t*>(data); }
};

enum class RopeScaling : uint8_t { None, Linear, Llama3 };

struct ModelConfig {
  std::string arch = "llama";  // llama | mistral | qwen2 | qwen3
  int dim = 0;                 // hidden_size
  int hidden_dim = 0;          // intermediate_size
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int vocab_size = 0;
  int max_seq_len = 0;
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling = RopeScaling::None;
  float rope_factor = 1.0f;             // linear and llama3
  float rope_low_freq_factor = 1.0f;    // llama3
  float rope_high_freq_factor = 4.0f;   // llama3
  int rope_original_max_pos = 8192;     // llama3
  bool tied_embeddings = true;
  bool qkv_bias = false;  // Qwen2: biases on q, k, v projections
  bool qk_norm = false;   // Qwen3: per-head RMSNorm on q and k (before RoPE)
  int bos_id = 1;
  int eos_id = 2;
  int pad_id = -1;

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  int group_size() const { return n_heads / n_kv_heads; }  // query heads per KV head
};

struct LayerWeights {
  const float* attn_norm = nullptr;  // [dim]
  Matrix wq, wk, wv, wo;             // wq [q_dim x dim], wk/wv [kv_dim x dim], wo [dim x q_dim]
  const float* bq = nullptr;         // [q_dim]   (qkv_bias)
  const float* bk = nullptr;         // [kv_dim]  (qkv_bias)
  const float* bv = nullptr;         // [kv_dim]  (qkv_bias)
  const float* q_norm = nullptr;     // [head_dim] (qk_norm)
  const float* k_norm = nullptr;     // [head_dim] (qk_norm)
  const float* ffn_norm = nullptr;   // [dim]
  Matrix w1, w2, w3;                 // gate [hidden x dim], down [dim x hidden], up [hidden x dim]
};

struct Model {
  ModelConfig config;
  std::string path;         // what was loaded
  std::string format;       // "llama2c-v0", "llama2c-v2-q80", "hf-safetensors", "gguf"
  std::string source_dtype; // on-disk dtype of the matrices: "F32", "F16", "BF16", "Q8_0"
  Matrix tok_embeddings;    // [vocab x dim]
  std::vector<LayerWeights> layers;
  const float* final_norm = nullptr;  // [dim]
  Matrix output;                      // [vocab x dim]; same data as tok_embeddings when tied

  // Keeps mapped files and converted buffers alive for the pointers above.
  std::vector<std::shared_ptr<const void>> storage;

  int64_t n_params() const;           // unique parameters (tied classifier counted once)
  size_t kv_bytes_per_token() const;  // float32 K + V over all layers
  DType weight_dtype() const { return tok_embeddings.dtype; }
};

struct LoadOptions {
  // Keep BF16 matrices as BF16 (compute reads them directly); false converts to F32.
  bool keep_bf16 = true;
};

// Detects the format from the path: a directory (Hugging Face), *.gguf, or a llama2.c file.
std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& options = {});

std::unique_ptr<Model> load_llama2c(const std::string& path, const LoadOptions& options = {});
std::unique_ptr<Model> load_hf(const std::string& dir, const LoadOptions& options = {});
std::unique_ptr<Model> load_gguf(const std::string& path, const LoadOptions& options = {});

// Human-readable summary (razor info).
std::string describe(const Model& model);

}  // namespace razor
