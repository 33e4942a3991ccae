// The probe: tokens, scores (through the fused kernel in probe_kernel.cpp) and selection.
#include "razor/probe.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <sstream>

#include "probe/probe_kernel.h"
#include "razor/error.h"
#include "razor/session.h"

namespace razor {

namespace {

std::string num(double x) {
  std::ostringstream os;
  os.precision(17);
  os << x;
  return os.str();
}

// splitmix64: the same stream on every platform and compiler.
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n), unbiased: rejects the top 2^64 mod n values.
  uint64_t below(uint64_t n) {
    const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
    for (;;) {
      const uint64_t x = next();
      if (x >= threshold) return x % n;
    }
  }
};

constexpr int kRefLength = 2500;
constexpr int kRefLo = 10000, kRefHi = 12500;

bool ordinary(const ModelConfig& c, const Tokenizer* tok, int id) {
  if (tok) return !tok->is_special(id) && !tok->is_byte(id);
  return id != c.bos_id && id != c.eos_id && id != c.pad_id;
}

}  // namespace

void RARopeCompressConfig::validate() const {
  if (!(induction_head_ratio >= 0.0 && induction_head_ratio <= 1.0))
    throw Error("induction_head_ratio must lie in [0, 1], got " + num(induction_head_ratio));
  if (!(echo_head_ratio >= 0.0 && echo_head_ratio <= 1.0))
    throw Error("echo_head_ratio must lie in [0, 1], got " + num(echo_head_ratio));
  if (repeats < 2) throw Error("repeats must be at least 2, got " + std::to_string(repeats));
  if (length < 0) throw Error("length must be at least 1 (0 for the default), got " + std::to_string(length));
}

int probe_length(const ModelConfig& c, const RARopeCompressConfig& cfg) {
  cfg.validate();
  const int64_t max_len = std::max<int64_t>(0, (int64_t(c.max_seq_len) - 1) / cfg.repeats);
  if (cfg.length == 0) {
    if (max_len < 1)
      throw Error("the model's context of " + std::to_string(c.max_seq_len) + " tokens is too short for " +
                  std::to_string(cfg.repeats) + " repeats (need at least " + std::to_string(1 + cfg.repeats) +
                  " tokens)");
    return static_cast<int>(std::min<int64_t>(kRefLength, max_len));
  }
  const int64_t need = 1 + int64_t(cfg.length) * cfg.repeats;
  if (need > c.max_seq_len) {
    std::string hint = max_len >= 1 ? "use --length " + std::to_string(max_len) + " or less"
                                    : "use fewer --repeats";
    throw Error("probe length " + std::to_string(cfg.length) + " x " + std::to_string(cfg.repeats) +
                " repeats + 1 = " + std::to_string(need) + " tokens exceeds the model's context of " +
                std::to_string(c.max_seq_len) + " tokens (" + hint + ")");
  }
  return cfg.length;
}

int probe_prefix_token(const ModelConfig& c, const Tokenizer* tok) {
  int id = c.bos_id;
  if (tok) {
    std::vector<int> ids = tok->encode("", true, false);
    if (ids.empty()) ids = tok->encode("A", true, false);
    if (!ids.empty()) id = ids.back();
  }
  if (id < 0 || id >= c.vocab_size)
    throw Error("the model has no usable BOS id (" + std::to_string(id) + ") for the probe prefix; pass a tokenizer");
  return id;
}

std::vector<int> probe_id_pool(const ModelConfig& c, const Tokenizer* tok) {
  std::vector<int> pool;
  if (c.vocab_size > kRefHi) {
    bool all = true;
    for (int id = kRefLo; id <= kRefHi && all; ++id) all = ordinary(c, tok, id);
    if (all) {
      for (int id = kRefLo; id <= kRefHi; ++id) pool.push_back(id);
      return pool;
    }
  }
  for (int id = 0; id < c.vocab_size; ++id)
    if (ordinary(c, tok, id)) pool.push_back(id);
  if (pool.empty()) throw Error("the vocabulary has no ordinary token ids to draw the probe from");
  return pool;
}

std::vector<int> probe_tokens(const ModelConfig& c, const Tokenizer* tok, const RARopeCompressConfig& cfg) {
  const int L = probe_length(c, cfg);
  const int prefix = probe_prefix_token(c, tok);
  const std::vector<int> pool = probe_id_pool(c, tok);
  SplitMix64 rng{cfg.seed};
  std::vector<int> block(L);
  for (int& id : block) id = pool[rng.below(pool.size())];
  std::vector<int> tokens;
  tokens.reserve(1 + size_t(L) * cfg.repeats);
  tokens.push_back(prefix);
  for (int r = 0; r < cfg.repeats; ++r) tokens.insert(tokens.end(), block.begin(), block.end());
  return tokens;
}

std::vector<std::vector<double>> reduce_kv_max(const std::vector<std::vector<double>>& scores, int n_kv) {
  std::vector<std::vector<double>> out;
  out.reserve(scores.size());
  for (size_t l = 0; l < scores.size(); ++l) {
    const int H = static_cast<int>(scores[l].size());
    if (n_kv <= 0 || H % n_kv != 0)
      throw Error("layer " + std::to_string(l) + ": " + std::to_string(H) + " query heads are not a multiple of " +
                  std::to_string(n_kv) + " kv heads");
    const int group = H / n_kv;
    std::vector<double> kv(n_kv);
    for (int g = 0; g < n_kv; ++g) {
      double m = scores[l][size_t(g) * group];
      for (int h = g * group + 1; h < (g + 1) * group; ++h)
        if (scores[l][h] > m || std::isnan(scores[l][h])) m = scores[l][h];
      kv[g] = m;
    }
    out.push_back(std::move(kv));
  }
  return out;
}

int64_t round_half_even(double x) {
  const double f = std::floor(x);
  const double frac = x - f;  // exact
  double r = f;
  if (frac > 0.5 || (frac == 0.5 && std::fmod(f, 2.0) != 0.0)) r = f + 1.0;
  return static_cast<int64_t>(r);
}

HeadMap select_heads(const std::vector<std::vector<double>>& kv_scores, double ratio) {
  if (!(ratio >= 0.0 && ratio <= 1.0)) throw Error("head ratio must lie in [0, 1], got " + num(ratio));
  std::vector<double> all;
  for (size_t l = 0; l < kv_scores.size(); ++l)
    for (size_t h = 0; h < kv_scores[l].size(); ++h) {
      if (!std::isfinite(kv_scores[l][h]))
        throw Error("score of layer " + std::to_string(l) + " kv head " + std::to_string(h) + " is not finite");
      all.push_back(kv_scores[l][h]);
    }
  const int64_t k = round_half_even(static_cast<double>(all.size()) * ratio);
  HeadMap out;
  if (k <= 0 || all.empty()) return out;
  std::nth_element(all.begin(), all.begin() + (k - 1), all.end(), std::greater<double>());
  const double cut = all[k - 1];  // the k-th largest
  for (size_t l = 0; l < kv_scores.size(); ++l)
    for (size_t h = 0; h < kv_scores[l].size(); ++h)
      if (kv_scores[l][h] >= cut) out[static_cast<int>(l)].push_back(static_cast<int>(h));
  return out;
}

RARopeCompressor::RARopeCompressor(const Model& model, const Tokenizer* tokenizer, RARopeCompressConfig cfg,
                                   int threads)
    : model_(model), cfg_(cfg), threads_(threads > 0 ? threads : omp_get_num_procs()) {
  cfg_.validate();
  const ModelConfig& c = model.config;
  if (c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0)
    throw Error(model.path + ": invalid head layout for the probe");
  length_ = probe_length(c, cfg_);
  tokens_ = probe_tokens(c, tokenizer, cfg_);
}

const ProbeRecord& RARopeCompressor::run(const ProbeProgress& progress) {
  if (done_) return record_;
  const ModelConfig& c = model_.config;
  const auto t0 = std::chrono::steady_clock::now();
  const int T = static_cast<int>(tokens_.size());

  probe::ProbeAttention attention(c, length_, cfg_.repeats, threads_, [&](int layer) {
    if (progress) progress(layer, c.n_layers);
  });
  SessionOptions so;
  so.threads = threads_;
  so.max_tokens = T;
  so.keep_cache = false;
  Session session(model_, KVPolicy{}, so);
  session.prefill(tokens_, nullptr, false, &attention);
  if (progress) progress(c.n_layers, c.n_layers);

  ProbeRecord& r = record_;
  r = ProbeRecord{};
  r.n_layers = c.n_layers;
  r.n_heads = c.n_heads;
  r.n_kv_heads = c.n_kv_heads;
  r.head_dim = c.head_dim;
  r.induction_head_ratio = cfg_.induction_head_ratio;
  r.echo_head_ratio = cfg_.echo_head_ratio;
  r.length = length_;
  r.repeats = cfg_.repeats;
  r.seed = cfg_.seed;
  r.model = model_.path;
  r.tokens = tokens_;
  r.induction_scores = std::move(attention.induction);
  r.echo_scores = std::move(attention.echo);
  for (int l = 0; l < c.n_layers; ++l)
    for (int h = 0; h < c.n_heads; ++h)
      if (!std::isfinite(r.induction_scores[l][h]) || !std::isfinite(r.echo_scores[l][h]))
        throw Error(model_.path + ": probe scores are not finite (layer " + std::to_string(l) + " head " +
                    std::to_string(h) + "): the model produced NaN or Inf");
  r.kv_induction = reduce_kv_max(r.induction_scores, c.n_kv_heads);
  r.kv_echo = reduce_kv_max(r.echo_scores, c.n_kv_heads);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  done_ = true;
  return record_;
}

HeadsFile RARopeCompressor::heads(const ProbeProgress& progress) {
  run(progress);
  HeadsFile f;
  f.prefix_matching = select_heads(record_.kv_induction, cfg_.induction_head_ratio);
  f.copying = select_heads(record_.kv_echo, cfg_.echo_head_ratio);
  f.probe = record_;
  return f;
}

HeadsFile RARopeCompressor::get_compress_heads(const std::string& save_path, const std::string& json_path) {
  HeadsFile f = heads();
  if (!save_path.empty()) write_heads_pt(save_path, f);
  if (!json_path.empty()) write_heads_json(json_path, f);
  return f;
}

}  // namespace razor
