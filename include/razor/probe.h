#pragma once
// The probe (SPEC section 2): finds retrieval heads without data, as msModelSlim's
//   RARopeCompressConfig(induction_head_ratio=0.14, echo_head_ratio=0.01)
//   RARopeCompressor(model, tokenizer, cfg).get_compress_heads(save_path)
// does. The model reads one prefix token followed by a block of L random ids repeated R times, in
// one causal prefill; every query head gets an echo score (attention to earlier occurrences of the
// current token) and an induction score (attention to the tokens that followed them). KV heads
// take the max over their query heads; the top ratio of KV heads on each score are selected.
//
//   razor::RARopeCompressor probe(*model, tokenizer.get(), {});
//   razor::HeadsFile heads = probe.get_compress_heads("heads.pt", "heads.json");
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "razor/heads.h"
#include "razor/model.h"
#include "razor/tokenizer.h"

namespace razor {

struct RARopeCompressConfig {
  double induction_head_ratio = 0.14;  // share of KV heads selected as induction (prefix matching)
  double echo_head_ratio = 0.01;       // share of KV heads selected as echo (copying)
  int length = 0;                      // L, the random block; 0: min(2500, (max_seq_len - 1) / repeats)
  int repeats = 4;                     // R
  uint64_t seed = 0;                   // the random ids are a function of the seed only

  // Ratios in [0, 1] (NaN rejected), repeats >= 2, length >= 0. Throws razor::Error.
  void validate() const;
};

// L for this model: cfg.length, or the default. Throws razor::Error when the sequence 1 + L * R
// does not fit the model's context (the message names the largest length that does).
int probe_length(const ModelConfig& config, const RARopeCompressConfig& cfg);

// The prefix token: the last id of tokenizer.encode("", bos) (BOS for llama2.c tokenizers), or of
// encode("A") when that is empty; without a tokenizer, config.bos_id.
int probe_prefix_token(const ModelConfig& config, const Tokenizer* tokenizer);

// The ids the random block is drawn from: [10000, 12500] when the vocabulary has more than 12500
// ids and all of those are ordinary, else every ordinary id (tokenizer: neither special nor byte
// fallback; no tokenizer: all but BOS, EOS and pad).
std::vector<int> probe_id_pool(const ModelConfig& config, const Tokenizer* tokenizer);

// The probe sequence: prefix, then L ids drawn uniformly from probe_id_pool() with a portable
// generator (splitmix64, unbiased ranges), repeated R times. Length 1 + L * R.
std::vector<int> probe_tokens(const ModelConfig& config, const Tokenizer* tokenizer,
                              const RARopeCompressConfig& cfg);

// GQA: [layer][query head] -> [layer][kv head], each KV head the max over its query heads
// (query head h belongs to KV head h / (n_heads / n_kv_heads)).
std::vector<std::vector<double>> reduce_kv_max(const std::vector<std::vector<double>>& head_scores,
                                               int n_kv_heads);

// Python's round() on a double: nearest integer, halves to even.
int64_t round_half_even(double x);

// Pools every (layer, kv head) score, k = round_half_even(N * ratio); k == 0 selects nothing,
// otherwise every head whose score is >= the k-th largest (ties at the cut included).
// Throws razor::Error for a ratio outside [0, 1] or a non-finite score.
HeadMap select_heads(const std::vector<std::vector<double>>& kv_scores, double ratio);

// Per layer of the prefill: layers_started in [0, n_layers], then n_layers when done.
using ProbeProgress = std::function<void(int layers_done, int n_layers)>;

class RARopeCompressor {
 public:
  // tokenizer may be nullptr (the prefix is then config.bos_id). threads 0: all cores.
  // Validates the config and draws the tokens (throws razor::Error); the model runs in run().
  RARopeCompressor(const Model& model, const Tokenizer* tokenizer, RARopeCompressConfig cfg = {},
                   int threads = 0);

  const RARopeCompressConfig& config() const { return cfg_; }
  const std::vector<int>& tokens() const { return tokens_; }
  int length() const { return length_; }

  // One causal prefill over the probe sequence with fused score computation. Runs once; later
  // calls return the stored record.
  const ProbeRecord& run(const ProbeProgress& progress = {});
  bool done() const { return done_; }

  // The selection (runs the probe first if needed), with the probe record attached.
  HeadsFile heads(const ProbeProgress& progress = {});

  // As msModelSlim: writes the selection to save_path as a PyTorch .pt (skipped when empty) and,
  // when json_path is given, the .json with the probe record. Both written atomically.
  HeadsFile get_compress_heads(const std::string& save_path, const std::string& json_path = "");

 private:
  const Model& model_;
  RARopeCompressConfig cfg_;
  int threads_;
  int length_ = 0;
  std::vector<int> tokens_;
  ProbeRecord record_;
  bool done_ = false;
};

}  // namespace razor
