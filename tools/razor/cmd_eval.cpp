#include <cstdio>
#include <memory>

#include "commands.h"
#include "model_options.h"
#include "policy_options.h"
#include "razor/eval.h"
#include "razor/io.h"

namespace razor::cli {

namespace {
struct EvalArgs {
  ModelOptions model;
  PolicyArgs policy;
  std::string text, tokens;
  int prefill = 0;
  CLI::Option* prefill_option = nullptr;
  int max_tokens = 0;
  std::string dump_logits, json;
  bool compare = false;
  std::string task;
  int stories = 20;
};

void print(const std::string& s) { std::fwrite(s.data(), 1, s.size(), stdout); }

std::unique_ptr<Tokenizer> need_tokenizer(const EvalArgs& a, const Model& m) {
  auto tok = a.model.load_tokenizer(m);
  if (!tok) throw Error(a.model.model + ": no tokenizer found beside the model; pass --tokenizer FILE");
  return tok;
}

int run_name_recall_task(const EvalArgs& a, const Model& model) {
  if (!a.dump_logits.empty()) throw Error("--dump-logits does not apply to --task name-recall");
  if (a.prefill_option->count()) throw Error("--prefill does not apply to --task name-recall (each story sets its own)");
  // --compare is implied: the task always runs every policy.
  PolicyOptions po = a.policy.options();
  if (po.heads_path.empty()) throw Error("--task name-recall needs a heads file (--heads FILE, from razor probe)");
  HeadsFile heads = read_heads(po.heads_path);
  auto tok = need_tokenizer(a, model);
  NameRecallOptions o;
  o.stories = a.stories;
  o.seed = a.policy.seed;
  o.policy = po;
  o.threads = a.model.threads;
  o.max_tokens = a.max_tokens;
  NameRecallReport r = run_name_recall(model, *tok, heads, o);
  r.model = a.model.model;
  print(format_name_recall_table(r));
  if (!a.json.empty()) write_file_atomic(a.json, name_recall_json(r));
  return 0;
}

int run_eval_cmd(const EvalArgs& a) {
  if (a.prefill_option->count() && a.prefill < 1) throw Error("--prefill must be >= 1, got " + std::to_string(a.prefill));
  if (a.max_tokens < 0) throw Error("--max-tokens must be >= 0, got " + std::to_string(a.max_tokens));
  if (a.task.empty() && a.text.empty() && a.tokens.empty())
    throw Error("razor eval needs --text FILE, --tokens FILE.json or --task NAME");
  auto model = a.model.load();
  if (a.task == "name-recall") return run_name_recall_task(a, *model);

  EvalRequest req;
  req.policy = a.policy.options();
  req.compare = a.compare;
  req.threads = a.model.threads;
  req.model_name = a.model.model;
  // Check the policy before reading the text: a bad --heads or --window fails fast.
  if (!req.compare) build_policy(req.policy, model->config);
  const int limit = a.max_tokens > 0 ? a.max_tokens : 0;
  if (a.task == "long-story") {
    auto tok = need_tokenizer(a, *model);
    const int n = limit > 0 ? std::min(limit, model->config.max_seq_len) : std::min(model->config.max_seq_len, 500);
    req.tokens = synthetic_story(*tok, a.policy.seed, n, n);
    req.source = "built-in long-story, seed " + std::to_string(a.policy.seed);
  } else if (!a.tokens.empty()) {
    req.tokens = read_tokens_json(a.tokens, model->config.vocab_size);
    req.source = a.tokens;
  } else {
    auto tok = need_tokenizer(a, *model);
    req.tokens = tok->encode(read_file(a.text), true, false);
    req.source = a.text;
  }
  if (limit > 0 && static_cast<int>(req.tokens.size()) > limit) req.tokens.resize(limit);
  const int T = static_cast<int>(req.tokens.size());
  req.prefill = a.prefill_option->count() ? a.prefill : std::max(1, T / 2);

  const bool dump = !a.dump_logits.empty();
  EvalReport r = run_eval(*model, req, dump);
  print(format_eval_table(r));
  if (dump) {
    write_npy_f32(a.dump_logits, r.logits.data(), static_cast<size_t>(r.n_tokens - r.prefill),
                  static_cast<size_t>(r.vocab));
    std::fprintf(stderr, "logits of %s [%d, %d] written to %s\n", r.rows[r.logits_row].name.c_str(),
                 r.n_tokens - r.prefill, r.vocab, a.dump_logits.c_str());
  }
  if (!a.json.empty()) write_file_atomic(a.json, eval_report_json(r));
  return 0;
}
}  // namespace

void add_eval(CLI::App& app, Runner& run) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "Measure a KV policy against the full cache: perplexity, KL, top-1 agreement, KV bytes, speed");
  a->model.add(cmd);
  auto* text = cmd->add_option("--text", a->text, "text file to evaluate (tokenized with the llama2.c tokenizer)");
  auto* tokens = cmd->add_option("--tokens", a->tokens, "JSON array of token ids to evaluate");
  auto* task = cmd->add_option("--task", a->task,
                               "built-in evaluation: name-recall (recall a made-up name past the window, "
                               "all policies) or long-story (a generated story as the text)")
                   ->check(CLI::IsMember({"name-recall", "long-story"}));
  text->excludes(tokens)->excludes(task);
  tokens->excludes(task);
  a->prefill_option = cmd->add_option("--prefill", a->prefill,
                                      "P: tokens prefilled with full attention (default: half the tokens); "
                                      "the rest are teacher-forced one by one");
  add_policy_options(cmd, a->policy, "--seed");
  cmd->add_option("--max-tokens", a->max_tokens, "use at most N tokens of the input (0: all)");
  cmd->add_option("--dump-logits", a->dump_logits,
                  "write the evaluated policy's logits (razor's with --compare) as float32 .npy [T - P, vocab]");
  cmd->add_option("--json", a->json, "write the results as JSON");
  cmd->add_flag("--compare", a->compare,
                "run full, razor, streaming (same KV bytes as razor), random heads and razor without "
                "compensation; needs --heads");
  cmd->add_option("--stories", a->stories, "name-recall: number of stories (default 20)");
  cmd->callback([a, &run] { run = [a] { return run_eval_cmd(*a); }; });
}

}  // namespace razor::cli
