// The forward pass, llama2.c style: read it top to bottom in Session::forward.
#include "razor/session.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops/ops.h"

namespace razor {

// Activations for up to `rows` tokens at once; grown only when a longer batch arrives.
struct Session::Scratch {
  int64_t rows = 0;
  std::vector<float> x, xb, q, k, v, att, h1, h3, last;
  ops::Rope rope;

  void ensure(const ModelConfig& c, int64_t n) {
    if (n <= rows) return;
    rows = n;
    x.resize(n * c.dim);
    xb.resize(n * std::max(c.dim, c.q_dim()));
    q.resize(n * c.q_dim());
    k.resize(n * c.kv_dim());
    v.resize(n * c.kv_dim());
    att.resize(n * c.q_dim());
    h1.resize(n * c.hidden_dim);
    h3.resize(n * c.hidden_dim);
  }
};

Session::Session(const Model& model, const KVPolicy& policy, const SessionOptions& options)
    : model_(model), scratch_(std::make_unique<Scratch>()) {
  threads_ = options.threads > 0 ? options.threads : omp_get_num_procs();
  omp_set_num_threads(threads_);
  const int max_tokens = options.max_tokens > 0 ? options.max_tokens : model.config.max_seq_len;
  if (options.keep_cache) cache_ = std::make_unique<KVCache>(model.config, policy, max_tokens);
  scratch_->rope.init(model.config);
  scratch_->ensure(model.config, 1);
}

Session::~Session() = default;

void Session::prefill(const std::vector<int>& tokens, float* logits, bool all_logits,
                      PrefillAttention* attention) {
  if (tokens.empty()) return;
  if (attention && pos_ != 0) throw Error("prefill with a custom attention must start at position 0");
  forward(tokens.data(), static_cast<int>(tokens.size()), logits, all_logits, true, attention);
}

void Session::decode(int token, float* logits) { forward(&token, 1, logits, false, false, nullptr); }

void Session::forward(const int* tokens, int n, float* logits, bool all_logits, bool prefill,
                      PrefillAttention* attention) {
  const ModelConfig& c = model_.config;
  if (!cache_ && !attention) throw Error("session without a KV cache needs a prefill attention");
  if (cache_ && pos_ + n > cache_->max_tokens())
    throw Error("sequence of " + std::to_string(pos_ + n) + " tokens exceeds the session's " +
                std::to_string(cache_->max_tokens()) + " token limit");
  for (int i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= c.vocab_size)
      throw Error("token id " + std::to_string(tokens[i]) + " out of range [0, " +
                  std::to_string(c.vocab_size) + ")");
  Scratch& s = *scratch_;
  s.ensure(c, n);
  const int dim = c.dim, hd = c.head_dim, q_dim = c.q_dim(), kv_dim = c.kv_dim();
  float *x = s.x.data(), *xb = s.xb.data(), *q = s.q.data(), *k = s.k.data(), *v = s.v.data();
  float *att = s.att.data(), *h1 = s.h1.data(), *h3 = s.h3.data();

  for (int i = 0; i < n; ++i) ops::matrix_row(model_.tok_embeddings, tokens[i], x + int64_t(i) * dim);

  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& w = model_.layers[l];
    // Attention block.
    ops::rmsnorm(xb, x, w.attn_norm, n, dim, c.norm_eps);
    ops::matmul(w.wq, xb, n, q);
    ops::matmul(w.wk, xb, n, k);
    ops::matmul(w.wv, xb, n, v);
    if (c.qkv_bias) {
      for (int i = 0; i < n; ++i) {
        for (int j = 0; j < q_dim; ++j) q[int64_t(i) * q_dim + j] += w.bq[j];
        for (int j = 0; j < kv_dim; ++j) {
          k[int64_t(i) * kv_dim + j] += w.bk[j];
          v[int64_t(i) * kv_dim + j] += w.bv[j];
        }
      }
    }
    if (c.qk_norm) {  // Qwen3: RMSNorm over each head's vector, before RoPE
      ops::rmsnorm(q, q, w.q_norm, int64_t(n) * c.n_heads, hd, c.norm_eps);
      ops::rmsnorm(k, k, w.k_norm, int64_t(n) * c.n_kv_heads, hd, c.norm_eps);
    }
    s.rope.apply(q, n, c.n_heads, pos_);
    s.rope.apply(k, n, c.n_kv_heads, pos_);
    if (attention) {
      attention->attend(l, n, q, k, v, att);
    } else {
      cache_->append(l, n, k, v);
      cache_->attend(l, n, q, att);
      if (prefill) cache_->compress_layer(l, pos_ + n);
    }
    ops::matmul(w.wo, att, n, xb);
    for (int64_t i = 0; i < int64_t(n) * dim; ++i) x[i] += xb[i];

    // Feed-forward block (SwiGLU).
    ops::rmsnorm(xb, x, w.ffn_norm, n, dim, c.norm_eps);
    ops::matmul(w.w1, xb, n, h1);
    ops::matmul(w.w3, xb, n, h3);
    ops::swiglu(h1, h3, int64_t(n) * c.hidden_dim);
    ops::matmul(w.w2, h1, n, xb);
    for (int64_t i = 0; i < int64_t(n) * dim; ++i) x[i] += xb[i];
  }

  if (logits) {
    const int first = all_logits ? 0 : n - 1, rows = n - first;
    ops::rmsnorm(xb, x + int64_t(first) * dim, model_.final_norm, rows, dim, c.norm_eps);
    ops::matmul(model_.output, xb, rows, logits);
  }
  pos_ += n;
}

}  // namespace razor
