#pragma once
// A llama2.c v0 (fp32, tied) checkpoint with hand-built attention circuits, for testing the probe.
//
// Residual stream (dim = n_heads * head_dim): dims [0, 24) hold the token's identity (a unit
// vector u_t, pairwise dot products <= 0.5), dims [24, 48) receive the previous token's identity,
// dim 48 is a constant 1. Attention norms are 1/sqrt(dim), so each layer reads x / |x|.
//  - previous-token head (layer 0): constant query and key on the constant dim, placed in the
//    highest-frequency RoPE pairs with the key rotated by one position's angle, so q.k peaks at
//    relative offset -1; its value copies u_t and its output lands in dims [24, 48).
//  - echo head: query and key both read u_t through the lowest-frequency RoPE pairs (nearly
//    position independent), so it attends to earlier occurrences of the current token.
//  - induction head: query reads u_t, key reads the previous-token dims, so it attends to the
//    tokens that followed earlier occurrences of the current token.
// Every other head has random small q/k/v weights and writes nothing (wo = 0); FFNs are zero.
#include <cstdint>
#include <string>

namespace razor::testkit {

struct PlantedSpec {
  int n_layers = 32, n_heads = 4, n_kv_heads = 2, head_dim = 64;
  int vocab_size = 64, seq_len = 65, hidden_dim = 16;
  // Query heads carrying the circuits (their KV head is head / (n_heads / n_kv_heads)).
  int prev_layer = 0, prev_head = 0;
  int echo_layer = 3, echo_head = 1;
  int induction_layer = 5, induction_head = 3;
  uint64_t seed = 7;
};

// Writes the checkpoint; throws std::runtime_error on a spec that cannot hold the circuits.
void write_planted_model(const std::string& path, const PlantedSpec& spec = {});

}  // namespace razor::testkit
