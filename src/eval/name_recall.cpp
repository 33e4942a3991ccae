// The name-recall task: a made-up name introduced early, filler past the window, then a cue after
// which the model must write the name again. Scored teacher-forced over the name's tokens: the
// story counts as recalled when every name token is the top-1 prediction (exactly when greedy
// decoding would reproduce the name).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "razor/error.h"
#include "razor/eval.h"

namespace razor {

namespace {
uint64_t story_seed(uint64_t seed, int i) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(i) + 1;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}
}  // namespace

NameRecallReport run_name_recall(const Model& model, const Tokenizer& tok, const HeadsFile& heads,
                                 const NameRecallOptions& opt) {
  const ModelConfig& c = model.config;
  if (opt.stories < 1) throw Error("--stories must be >= 1, got " + std::to_string(opt.stories));
  const int max_tokens = opt.max_tokens > 0 ? std::min(opt.max_tokens, c.max_seq_len) : c.max_seq_len;
  PolicyOptions base = opt.policy;
  if (!base.window) base.window = 32;
  {  // Check the options and the heads once, before any story.
    PolicyOptions check = base;
    check.kind = PolicyKind::Razor;
    build_policy(check, c, &heads);
  }
  const int W = *base.window;
  NameRecallReport rep;
  rep.model = model.path;
  rep.window = W;
  rep.sink = base.sink;
  rep.mode = compress_mode_name(base.mode);
  std::vector<double> kv_sum;
  for (int s = 0; s < opt.stories; ++s) {
    NameRecallStory st = make_name_recall_story(tok, story_seed(opt.seed, s), W + 16, max_tokens);
    const int T = static_cast<int>(st.tokens.size());
    std::vector<NamedPolicy> policies = comparison_policies(c, base, heads, st.prefill, T);
    if (rep.rows.empty()) {
      for (const NamedPolicy& p : policies) {
        NameRecallRow r;
        r.name = p.name;
        r.n_kv_heads = c.n_layers * c.n_kv_heads;
        r.n_retrieval = p.policy.is_full() ? r.n_kv_heads : p.policy.n_retrieval();
        r.window_min = 1 << 30;
        r.window_max = -1;
        rep.rows.push_back(r);
      }
      kv_sum.assign(policies.size(), 0.0);
    }
    for (size_t k = 0; k < policies.size(); ++k) {
      NameRecallRow& row = rep.rows[k];
      int top1 = 0, n = 0;
      double nll = 0;
      TeacherForcedRun run =
          teacher_force(model, st.tokens, st.prefill, policies[k].policy, opt.threads, [&](int i, const float* lg) {
            const int pos = st.prefill + i;
            if (pos < st.name_begin) return;
            const int V = c.vocab_size, target = st.tokens[pos];
            int best = 0;
            float mx = lg[0];
            for (int j = 1; j < V; ++j)
              if (lg[j] > mx) mx = lg[j], best = j;
            double sum = 0;
            for (int j = 0; j < V; ++j) sum += std::exp(static_cast<double>(lg[j]) - mx);
            nll += mx + std::log(sum) - lg[target];
            top1 += best == target;
            ++n;
          });
      row.stories += 1;
      row.recalled += top1 == n;
      row.name_tokens += n;
      row.name_tokens_top1 += top1;
      row.name_nll += nll;
      kv_sum[k] += static_cast<double>(run.kv_bytes) / std::max<size_t>(run.kv_bytes_full, 1);
      if (!policies[k].policy.is_full()) {
        const int w = run.window >= 0 ? run.window : policies[k].policy.window_for(st.prefill);
        row.window_min = std::min(row.window_min, w);
        row.window_max = std::max(row.window_max, w);
      }
    }
    rep.stories.push_back(std::move(st));
  }
  for (size_t k = 0; k < rep.rows.size(); ++k) {
    NameRecallRow& r = rep.rows[k];
    r.kv_fraction = kv_sum[k] / std::max(r.stories, 1);
    r.name_nll = r.name_tokens ? r.name_nll / r.name_tokens : 0;
  }
  return rep;
}

std::string format_name_recall_table(const NameRecallReport& r) {
  std::string out = "model: " + r.model + "\n";
  int min_len = 1 << 30, max_len = 0, min_gap = 1 << 30;
  for (const NameRecallStory& s : r.stories) {
    min_len = std::min(min_len, static_cast<int>(s.tokens.size()));
    max_len = std::max(max_len, static_cast<int>(s.tokens.size()));
    min_gap = std::min(min_gap, s.name_begin - s.last_mention_end);
  }
  out += "task: name-recall, " + std::to_string(r.stories.size()) + " stories of " + std::to_string(min_len) + "-" +
         std::to_string(max_len) + " tokens, name last seen >= " + std::to_string(min_gap) +
         " tokens before the cue; N0=" + std::to_string(r.sink) + ", W=" + std::to_string(r.window) + ", " + r.mode +
         "\n";
  std::vector<std::vector<std::string>> cells = {
      {"policy", "retrieval", "W", "KV/full", "recall", "name-token top-1", "name NLL"}};
  for (const NameRecallRow& e : r.rows) {
    std::string w = "-";
    if (e.window_max >= 0)
      w = e.window_min == e.window_max ? std::to_string(e.window_min)
                                       : std::to_string(e.window_min) + "-" + std::to_string(e.window_max);
    cells.push_back({e.name, std::to_string(e.n_retrieval) + "/" + std::to_string(e.n_kv_heads), w,
                     fmt("%.1f%%", 100.0 * e.kv_fraction),
                     std::to_string(e.recalled) + "/" + std::to_string(e.stories) + " (" +
                         fmt("%.0f%%", 100.0 * e.recalled / std::max(e.stories, 1)) + ")",
                     fmt("%.1f%%", 100.0 * e.name_tokens_top1 / std::max(e.name_tokens, 1)), fmt("%.3f", e.name_nll)});
  }
  std::vector<size_t> w;
  for (const auto& row : cells)
    for (size_t i = 0; i < row.size(); ++i) {
      if (w.size() <= i) w.push_back(0);
      w[i] = std::max(w[i], row[i].size());
    }
  for (const auto& row : cells) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i) line += "  ";
      const std::string& s = row[i];
      const std::string fill(w[i] - s.size(), ' ');
      line += i == 0 ? s + fill : fill + s;
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string name_recall_json(const NameRecallReport& r) {
  nlohmann::ordered_json j;
  j["model"] = r.model;
  j["task"] = "name-recall";
  j["sink"] = r.sink;
  j["window"] = r.window;
  j["mode"] = r.mode;
  auto stories = nlohmann::ordered_json::array();
  for (const NameRecallStory& s : r.stories) {
    nlohmann::ordered_json x;
    x["name"] = s.name;
    x["tokens"] = s.tokens.size();
    x["prefill"] = s.prefill;
    x["name_begin"] = s.name_begin;
    x["last_mention_end"] = s.last_mention_end;
    x["text"] = s.text;
    stories.push_back(x);
  }
  j["stories"] = stories;
  auto rows = nlohmann::ordered_json::array();
  for (const NameRecallRow& e : r.rows) {
    nlohmann::ordered_json x;
    x["policy"] = e.name;
    x["retrieval_kv_heads"] = e.n_retrieval;
    x["kv_heads"] = e.n_kv_heads;
    x["window_min"] = e.window_max < 0 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(e.window_min);
    x["window_max"] = e.window_max < 0 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(e.window_max);
    x["kv_fraction"] = e.kv_fraction;
    x["recalled"] = e.recalled;
    x["stories"] = e.stories;
    x["recall"] = static_cast<double>(e.recalled) / std::max(e.stories, 1);
    x["name_tokens_top1"] = e.name_tokens_top1;
    x["name_tokens"] = e.name_tokens;
    x["name_nll"] = e.name_nll;
    rows.push_back(x);
  }
  j["results"] = rows;
  return j.dump(2) + "\n";
}

}  // namespace razor
