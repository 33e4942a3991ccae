// Teacher-forced evaluation of KV policies against the full cache (razor eval).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "razor/error.h"
#include "razor/eval.h"
#include "razor/session.h"

namespace razor {

namespace {
using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// log-sum-exp of a logit row, in double.
double log_sum_exp(const float* x, int n) {
  float mx = x[0];
  for (int i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  double s = 0;
  for (int i = 0; i < n; ++i) s += std::exp(static_cast<double>(x[i]) - mx);
  return mx + std::log(s);
}

int argmax_row(const float* x, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

// Log-probabilities and argmax of the full cache at every scored position.
struct Reference {
  int vocab = 0;
  std::vector<float> logits;  // [n][vocab]
  std::vector<double> lse;    // [n]: log-sum-exp of each row
  std::vector<int> top;
};

// Accumulates the statistics of one policy over the scored tokens.
struct Scorer {
  const Reference* ref;  // the full cache's run
  const std::vector<int>* tokens;
  int prefill;
  double nll_sum = 0, kl_sum = 0, kl_max = 0;
  int agree = 0, n = 0;

  void add(int i, const float* logits) {
    const int V = ref->vocab;
    const int target = (*tokens)[prefill + i];
    const double lse = log_sum_exp(logits, V);
    nll_sum += lse - logits[target];
    {
      // Both sides as logit - lse in double: identical rows give exactly 0.
      const float* lf = ref->logits.data() + static_cast<size_t>(i) * V;
      const double lse_f = ref->lse[i];
      double kl = 0;
      for (int j = 0; j < V; ++j) {
        const double lp = static_cast<double>(lf[j]) - lse_f, lq = static_cast<double>(logits[j]) - lse;
        kl += std::exp(lp) * (lp - lq);
      }
      kl = std::max(kl, 0.0);  // rounding can leave a tiny negative value for equal rows
      kl_sum += kl;
      kl_max = std::max(kl_max, kl);
      agree += argmax_row(logits, V) == ref->top[i];
    }
    ++n;
  }
};

EvalRow make_row(const std::string& name, const KVPolicy& p, const ModelConfig& c, int n_prompt) {
  EvalRow r;
  r.name = name;
  r.description = describe_policy(p, c, n_prompt);
  r.n_kv_heads = c.n_layers * c.n_kv_heads;
  r.n_retrieval = p.is_full() ? r.n_kv_heads : p.n_retrieval();
  r.window = p.is_full() ? -1 : p.window_for(n_prompt);
  r.sink = p.is_full() ? 0 : p.sink;
  r.compensation = !p.is_full() && p.compensation;
  return r;
}

void finish_row(EvalRow& r, const Scorer& s, const TeacherForcedRun& run) {
  r.kv_bytes = run.kv_bytes;
  r.kv_bytes_full = run.kv_bytes_full;
  r.n_scored = s.n;
  r.nll = s.n ? s.nll_sum / s.n : 0;
  r.ppl = std::exp(r.nll);
  r.kl_mean = s.n ? s.kl_sum / s.n : 0;
  r.kl_max = s.kl_max;
  r.top1_agreement = s.n ? static_cast<double>(s.agree) / s.n : 1;
  r.prefill_seconds = run.prefill_seconds;
  r.decode_seconds = run.decode_seconds;
  r.decode_tokens_per_s = run.decode_seconds > 0 ? run.decode_steps / run.decode_seconds : 0;
  if (run.window >= 0) r.window = run.window;
}

std::string policy_row_name(const PolicyOptions& o) {
  const PolicyKind k = o.resolved_kind();
  std::string name = policy_kind_name(k);
  if ((k == PolicyKind::Razor || k == PolicyKind::Random) && !o.compensation) name += "-no-comp";
  return name;
}
}  // namespace

TeacherForcedRun teacher_force(const Model& model, const std::vector<int>& tokens, int prefill,
                               const KVPolicy& policy, int threads,
                               const std::function<void(int i, const float* logits)>& on_logits) {
  const int T = static_cast<int>(tokens.size());
  if (prefill < 1 || prefill >= T) throw Error("teacher_force: prefill must lie in [1, " + std::to_string(T) + ")");
  SessionOptions so;
  so.threads = threads;
  so.max_tokens = T;
  Session session(model, policy, so);
  std::vector<float> logits(model.config.vocab_size);
  const std::vector<int> prompt(tokens.begin(), tokens.begin() + prefill);
  TeacherForcedRun run;
  auto t0 = clock_type::now();
  session.prefill(prompt, logits.data());
  run.prefill_seconds = seconds_since(t0);
  if (on_logits) on_logits(0, logits.data());
  for (int i = 1; i < T - prefill; ++i) {
    auto t1 = clock_type::now();
    session.decode(tokens[prefill + i - 1], logits.data());
    run.decode_seconds += seconds_since(t1);
    ++run.decode_steps;
    if (on_logits) on_logits(i, logits.data());
  }
  run.kv_bytes = session.cache().bytes_held();
  run.kv_bytes_full = session.cache().bytes_full(T);
  run.window = session.cache().window();
  return run;
}

std::vector<NamedPolicy> comparison_policies(const ModelConfig& c, const PolicyOptions& base, const HeadsFile& heads,
                                             int n_prompt, int max_tokens) {
  std::vector<NamedPolicy> out;
  PolicyOptions o = base;
  o.compensation = true;
  o.kind = PolicyKind::Full;
  out.push_back({"full", build_policy(o, c, &heads)});
  o.kind = PolicyKind::Razor;
  KVPolicy razor = build_policy(o, c, &heads);
  out.push_back({"razor", razor});
  const size_t budget = predicted_kv_bytes(c, razor, n_prompt, max_tokens);
  o.kind = PolicyKind::Streaming;
  KVPolicy streaming = build_policy(o, c, &heads);
  if (auto s = streaming_at_bytes(c, streaming, budget, n_prompt, max_tokens)) {
    streaming = *s;
  } else {
    streaming.window = 0;  // even W = 0 holds more than razor (tiny prompts): the smallest one
  }
  out.push_back({"streaming", streaming});
  o.kind = PolicyKind::Random;
  out.push_back({"random", build_policy(o, c, &heads)});
  o.kind = PolicyKind::Razor;
  o.compensation = false;
  out.push_back({"razor-no-comp", build_policy(o, c, &heads)});
  return out;
}

EvalReport run_eval(const Model& model, const EvalRequest& req, bool keep_logits) {
  const ModelConfig& c = model.config;
  const int T = static_cast<int>(req.tokens.size()), P = req.prefill, V = c.vocab_size;
  const std::string& src = req.source.empty() ? std::string("input") : req.source;
  if (T == 0) fail(src, "no tokens to evaluate");
  if (T > c.max_seq_len)
    fail(src, std::to_string(T) + " tokens exceed the model's " + std::to_string(c.max_seq_len) +
                  "-token context (use --max-tokens)");
  for (int i = 0; i < T; ++i)
    if (req.tokens[i] < 0 || req.tokens[i] >= V)
      fail(src, "token id " + std::to_string(req.tokens[i]) + " at index " + std::to_string(i) +
                    " is outside the vocabulary [0, " + std::to_string(V) + ")");
  if (P < 1) throw Error("--prefill must be >= 1, got " + std::to_string(P));
  if (P >= T)
    fail(src, "--prefill " + std::to_string(P) + " leaves nothing to score: the text has " + std::to_string(T) +
                  " tokens (prefill must be at most " + std::to_string(T - 1) + ")");

  // The policies, built (and checked) before any compute.
  std::vector<NamedPolicy> policies;
  int logits_of = 0;
  if (req.compare) {
    if (req.policy.heads_path.empty()) throw Error("--compare needs a heads file (--heads FILE, from razor probe)");
    HeadsFile heads = read_heads(req.policy.heads_path);
    policies = comparison_policies(c, req.policy, heads, P, T);
    logits_of = 1;  // razor
  } else {
    PolicyOptions full = req.policy;
    full.kind = PolicyKind::Full;
    policies.push_back({"full", build_policy(full, c)});
    if (req.policy.resolved_kind() != PolicyKind::Full) {
      policies.push_back({policy_row_name(req.policy), build_policy(req.policy, c)});
      logits_of = 1;
    }
  }

  EvalReport rep;
  rep.model = req.model_name.empty() ? model.path : req.model_name;
  rep.source = req.source;
  rep.n_tokens = T;
  rep.prefill = P;
  rep.vocab = V;
  const int n = T - P;
  Reference ref;
  ref.vocab = V;
  ref.logits.resize(static_cast<size_t>(n) * V);
  ref.lse.resize(n);
  ref.top.resize(n);
  if (keep_logits) {
    rep.logits.resize(static_cast<size_t>(n) * V);
    rep.logits_row = logits_of;
  }
  for (size_t k = 0; k < policies.size(); ++k) {
    const bool is_ref = k == 0;
    Scorer s{is_ref ? nullptr : &ref, &req.tokens, P};
    const bool keep = keep_logits && static_cast<int>(k) == logits_of;
    TeacherForcedRun run = teacher_force(model, req.tokens, P, policies[k].policy, req.threads, [&](int i, const float* lg) {
      if (is_ref) {
        const double lse = log_sum_exp(lg, V);
        std::copy(lg, lg + V, ref.logits.data() + static_cast<size_t>(i) * V);
        ref.lse[i] = lse;
        ref.top[i] = argmax_row(lg, V);
        s.nll_sum += lse - lg[req.tokens[P + i]];
        s.agree += 1;
        ++s.n;
      } else {
        s.add(i, lg);
      }
      if (keep) std::copy(lg, lg + V, rep.logits.data() + static_cast<size_t>(i) * V);
    });
    EvalRow row = make_row(policies[k].name, policies[k].policy, c, P);
    finish_row(row, s, run);
    rep.rows.push_back(row);
  }
  return rep;
}

namespace {
std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string pad(const std::string& s, size_t w, bool left) {
  if (s.size() >= w) return s;
  return left ? s + std::string(w - s.size(), ' ') : std::string(w - s.size(), ' ') + s;
}

// Aligned columns: first column left, the others right-aligned.
std::string render(const std::vector<std::vector<std::string>>& cells) {
  std::vector<size_t> w;
  for (const auto& row : cells)
    for (size_t i = 0; i < row.size(); ++i) {
      if (w.size() <= i) w.push_back(0);
      w[i] = std::max(w[i], row[i].size());
    }
  std::string out;
  for (const auto& row : cells) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i) line += "  ";
      line += pad(row[i], w[i], i == 0);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}
}  // namespace

std::string format_eval_table(const EvalReport& r) {
  std::string out;
  out += "model: " + r.model + "\n";
  out += "tokens: " + std::to_string(r.n_tokens) + " (" + (r.source.empty() ? "input" : r.source) + "), prefill " +
         std::to_string(r.prefill) + ", scored " + std::to_string(r.n_tokens - r.prefill) + "\n";
  std::vector<std::vector<std::string>> cells = {{"policy", "retrieval", "N0", "W", "KV bytes", "KV/full", "PPL",
                                                  "mean KL", "max KL", "top-1", "decode tok/s"}};
  for (const EvalRow& e : r.rows) {
    cells.push_back({e.name, std::to_string(e.n_retrieval) + "/" + std::to_string(e.n_kv_heads),
                     e.window < 0 ? "-" : std::to_string(e.sink), e.window < 0 ? "-" : std::to_string(e.window),
                     std::to_string(e.kv_bytes), fmt("%.1f%%", 100.0 * e.kv_bytes / std::max<size_t>(e.kv_bytes_full, 1)),
                     fmt("%.3f", e.ppl), fmt("%.5f", e.kl_mean), fmt("%.4f", e.kl_max),
                     fmt("%.1f%%", 100.0 * e.top1_agreement), fmt("%.0f", e.decode_tokens_per_s)});
  }
  out += render(cells);
  return out;
}

std::string eval_report_json(const EvalReport& r) {
  nlohmann::ordered_json j;
  j["model"] = r.model;
  j["source"] = r.source;
  j["tokens"] = r.n_tokens;
  j["prefill"] = r.prefill;
  j["scored"] = r.n_tokens - r.prefill;
  j["vocab"] = r.vocab;
  auto rows = nlohmann::ordered_json::array();
  for (const EvalRow& e : r.rows) {
    nlohmann::ordered_json x;
    x["policy"] = e.name;
    x["description"] = e.description;
    x["retrieval_kv_heads"] = e.n_retrieval;
    x["kv_heads"] = e.n_kv_heads;
    x["sink"] = e.window < 0 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(e.sink);
    x["window"] = e.window < 0 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(e.window);
    x["compensation"] = e.compensation;
    x["kv_bytes"] = e.kv_bytes;
    x["kv_bytes_full"] = e.kv_bytes_full;
    x["kv_fraction"] = static_cast<double>(e.kv_bytes) / std::max<size_t>(e.kv_bytes_full, 1);
    x["scored_tokens"] = e.n_scored;
    x["nll"] = e.nll;
    x["perplexity"] = e.ppl;
    x["kl_mean"] = e.kl_mean;
    x["kl_max"] = e.kl_max;
    x["top1_agreement"] = e.top1_agreement;
    x["prefill_seconds"] = e.prefill_seconds;
    x["decode_seconds"] = e.decode_seconds;
    x["decode_tokens_per_s"] = e.decode_tokens_per_s;
    rows.push_back(x);
  }
  j["results"] = rows;
  return j.dump(2) + "\n";
}

}  // namespace razor
