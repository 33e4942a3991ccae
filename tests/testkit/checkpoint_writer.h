#pragma once
// Synthetic checkpoints for tests and benchmarks: an HF-style config, random weights in HF layout
// (rotate_half q/k rows), writers for Hugging Face safetensors directories (single file or shards
// + index) and llama2.c v0 files, and an independent naive reference forward pass in HF layout.
//
// Memory: `Weights` holds every value as float (4 bytes per parameter), fine for test models.
// For big models (the bench's 0.5B-shaped checkpoint) use the streaming overload of write_hf with
// tensor_specs() + random_fill(): values are generated per chunk of 1M elements while writing, so
// memory stays at a few MB whatever the model size. random_fill(cfg, seed, std) and
// random_weights(cfg, seed, std) produce the same values.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "razor/model.h"

namespace razor::testkit {

enum class DiskDType { F32, F16, BF16 };
const char* dtype_name(DiskDType d);  // "F32", "F16", "BF16"

struct HfConfig {
  std::string arch = "llama";  // llama | mistral | qwen2 | qwen3
  int dim = 64;                // hidden_size
  int hidden_dim = 128;        // intermediate_size
  int n_layers = 2;
  int n_heads = 4;
  int n_kv_heads = 2;
  int head_dim = 0;            // 0: dim / n_heads (and head_dim is not written to config.json)
  int vocab_size = 256;
  int max_seq_len = 256;
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  bool tied = true;            // tie_word_embeddings; untied writes lm_head.weight
  bool qkv_bias = false;       // q/k/v biases; always on for qwen2 (attention_bias for the others)
  bool qk_norm = false;        // per-head q/k RMSNorm; always on for qwen3, impossible elsewhere
  RopeScaling rope_scaling = RopeScaling::None;
  float rope_factor = 8.0f;
  float rope_low_freq_factor = 1.0f;
  float rope_high_freq_factor = 4.0f;
  int rope_original_max_pos = 8192;
  int bos_id = 1;
  int eos_id = 2;

  int hd() const { return head_dim > 0 ? head_dim : dim / n_heads; }
  int q_dim() const { return n_heads * hd(); }
  int kv_dim() const { return n_kv_heads * hd(); }
  bool has_bias() const { return qkv_bias || arch == "qwen2"; }
  bool has_qk_norm() const { return qk_norm || arch == "qwen3"; }
  std::string architecture() const;  // "LlamaForCausalLM", ...
  nlohmann::json to_json() const;    // config.json contents
};

// A tiny GQA model (dim 32, ffn 48, 2 layers, 4 heads, 2 KV heads, vocab 40, context 64): the
// shape the loader tests write in every format.
HfConfig small_config(const std::string& arch = "llama");

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> values;  // row-major
};
using Weights = std::map<std::string, Tensor>;

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  int64_t numel() const;
};

// Every tensor an HF checkpoint of this config holds (HF names, shapes [out, in], HF order).
std::vector<TensorSpec> tensor_specs(const HfConfig& cfg);

// Writes elements [begin, begin + count) (row-major) of `spec` into out.
using TensorFill =
    std::function<void(const TensorSpec& spec, int64_t begin, int64_t count, float* out)>;

// Deterministic random values, a function of (seed, tensor name, element index) only:
// matrices uniform with standard deviation `std`, biases likewise (nonzero), norm weights
// (input/post_attention/final/q/k norms) uniform in [0.9, 1.1].
TensorFill random_fill(const HfConfig& cfg, uint64_t seed, float std = 0.02f);
Weights random_weights(const HfConfig& cfg, uint64_t seed, float std = 0.02f);

// The values a checkpoint of `dtype` stores (F32: unchanged; F16/BF16 round to nearest even).
Weights round_weights(const Weights& w, DiskDType dtype);

// A Hugging Face directory: config.json plus model.safetensors (n_shards == 1) or
// model-0000i-of-0000n.safetensors + model.safetensors.index.json. Tensors go to shards round
// robin (so any tensor may be in any shard). Every tensor of `w` is written (extra or missing
// tensors are the caller's choice). The directory is created if needed.
void write_hf(const std::string& dir, const HfConfig& cfg, const Weights& w,
              DiskDType dtype = DiskDType::F32, int n_shards = 1);
// Streaming: values come from `fill` chunk by chunk (see the note at the top).
void write_hf(const std::string& dir, const HfConfig& cfg, const std::vector<TensorSpec>& specs,
              const TensorFill& fill, DiskDType dtype = DiskDType::F32, int n_shards = 1);

// One safetensors file (header padded with spaces to a multiple of 8 bytes).
void write_safetensors(const std::string& path, const std::vector<TensorSpec>& specs,
                       const TensorFill& fill, DiskDType dtype);

// A llama2.c v0 checkpoint (fp32, 7-int32 header) of a Llama-shaped config (no biases, no q/k
// norm, head_dim == dim / n_heads): same weights, q/k rows converted from HF rotate_half order
// to llama2.c's interleaved order; vocab_size negative in the header when untied. The llama2.c
// format has no rope theta, eps or scaling fields (readers assume 10000 and 1e-5).
void write_llama2c_v0(const std::string& path, const HfConfig& cfg, const Weights& w);

// Naive HF-layout forward pass (plain loops, double accumulation): rotate_half RoPE with the
// config's scaling, q/k/v biases, per-head q/k RMSNorm before RoPE, GQA, causal softmax, SwiGLU,
// tied or untied head. Returns logits [tokens.size()][vocab].
std::vector<std::vector<float>> reference_logits(const HfConfig& cfg, const Weights& w,
                                                 const std::vector<int>& tokens);

}  // namespace razor::testkit
