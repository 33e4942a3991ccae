#include <cstdio>
#include <memory>

#include "commands.h"
#include "model_options.h"
#include "policy_options.h"
#include "razor/policy.h"
#include "razor/generate.h"
#include "razor/session.h"

namespace razor::cli {

namespace {
struct GenerateArgs {
  ModelOptions model;
  std::string prompt;
  int n = 256;
  float temperature = 0.0f;
  float top_p = 0.9f;
  uint64_t seed = 0;
  PolicyArgs policy;
};

int run_generate(const GenerateArgs& a) {
  auto model = a.model.load();
  auto tok = a.model.load_tokenizer(*model);
  if (!tok) throw Error(a.model.model + ": no tokenizer found; pass --tokenizer FILE");
  std::vector<int> prompt = tok->encode(a.prompt, true, false);
  const int max_seq = model->config.max_seq_len;
  if (static_cast<int>(prompt.size()) > max_seq)
    throw Error("prompt of " + std::to_string(prompt.size()) + " tokens exceeds the model's " +
                std::to_string(max_seq) + "-token context");
  GenerateOptions g;
  g.max_new_tokens = std::min(a.n, max_seq - static_cast<int>(prompt.size()));
  g.temperature = a.temperature;
  g.top_p = a.top_p;
  g.seed = a.seed;
  SessionOptions so;
  so.threads = a.model.threads;
  so.max_tokens = static_cast<int>(prompt.size()) + g.max_new_tokens;
  const KVPolicy policy = build_policy(a.policy.options(), model->config);
  Session session(*model, policy, so);
  GenerateResult r = generate(session, prompt, g, [&](int prev, int t) {
    std::string piece = tok->decode(prev, t);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  });
  std::printf("\n");
  std::fprintf(stderr, "prefill: %zu tokens, %.1f tokens/s; decode: %zu tokens, %.1f tokens/s\n",
               prompt.size(), prompt.size() / std::max(r.prefill_seconds, 1e-9), r.tokens.size(),
               r.tokens.size() / std::max(r.decode_seconds, 1e-9));
  const KVCache& c = session.cache();
  std::fprintf(stderr, "policy: %s\n", describe_policy(policy, model->config, static_cast<int>(prompt.size())).c_str());
  std::fprintf(stderr, "KV cache: %zu bytes held, %zu bytes for a full cache of %d tokens (%.1f%%)\n",
               c.bytes_held(), c.bytes_full(session.pos()), session.pos(),
               100.0 * c.bytes_held() / std::max<size_t>(c.bytes_full(session.pos()), 1));
  return 0;
}
}  // namespace

void add_generate(CLI::App& app, Runner& run) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text from a prompt");
  a->model.add(cmd);
  cmd->add_option("--prompt", a->prompt, "prompt text")->required();
  cmd->add_option("-n,--tokens", a->n, "tokens to generate (capped by the model's context)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--temperature", a->temperature, "0 = greedy")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", a->top_p, "nucleus sampling mass")->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("--seed", a->seed, "sampling seed");
  add_policy_options(cmd, a->policy, "--policy-seed");
  cmd->callback([a, &run] { run = [a] { return run_generate(*a); }; });
}

}  // namespace razor::cli
