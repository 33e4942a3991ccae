#pragma once
// In-memory models with random weights, for benchmarks and kernel tests: no checkpoint file,
// built in well under a second per 100M parameters (a cheap counter-based PRNG, filled in
// parallel with OpenMP; the values depend only on (seed, tensor, element), not on threads).
//
// Matrices (embedding, projections, classifier) are uniform with standard deviation 0.02,
// biases (config.qkv_bias) likewise, norm weights (attention/FFN/final, q/k norms when
// config.qk_norm) uniform in [0.9, 1.1]. Matrices are stored as `dtype` (BF16: float rounded to
// nearest even); everything lives in one 2 MiB-aligned anonymous mapping owned through
// Model::storage, advised as transparent huge pages unless huge_pages is false (decode streams
// the weights once per token; huge pages cut the TLB misses: ~16 -> ~28 GB/s on one core of the
// benchmark machine).
#include <cstdint>
#include <memory>

#include "razor/model.h"

namespace razor::testkit {

std::unique_ptr<razor::Model> make_random_model(const razor::ModelConfig& config, razor::DType dtype,
                                                uint64_t seed, bool huge_pages = true);

// Qwen2.5-0.5B's shape: hidden 896, 24 layers, 14 heads, 2 KV heads (head_dim 64), intermediate
// 4864, vocab 151936, q/k/v biases, rope theta 1e6, eps 1e-6, tied embeddings, 32768 positions.
razor::ModelConfig qwen25_05b_config();

}  // namespace razor::testkit

// Also reachable without the namespace, as benchmarks spell it.
using razor::testkit::make_random_model;
using razor::testkit::qwen25_05b_config;
