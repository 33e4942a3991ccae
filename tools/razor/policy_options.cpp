#include "policy_options.h"

namespace razor::cli {

PolicyOptions PolicyArgs::options() const {
  PolicyOptions o;
  o.kind = parse_policy_kind(policy);
  o.heads_path = heads;
  o.sink = sink;
  if (window_option && window_option->count() > 0) o.window = window;
  o.compress_threshold = compress_threshold;
  o.compress_ratio = compress_ratio;
  o.mode = parse_compress_mode(mode);
  o.compensation = !no_compensation;
  o.seed = seed;
  return o;
}

void add_policy_options(CLI::App* cmd, PolicyArgs& a, const std::string& seed_flag) {
  cmd->add_option("--policy", a.policy,
                  "KV cache policy: full, razor (retrieval heads from --heads), streaming (sinks + window, "
                  "no compensation), random (as many heads as --heads, seeded); default: razor with --heads, "
                  "else full")
      ->check(CLI::IsMember({"auto", "full", "razor", "streaming", "random"}));
  cmd->add_option("--heads", a.heads, "retrieval heads file (.pt or .json, from razor probe)");
  cmd->add_option("--sink", a.sink, "N0: sink tokens every compressed head keeps (default 4)");
  a.window_option = cmd->add_option("--window", a.window,
                                    "W: recent tokens a compressed head keeps (default max(S0, prompt / C))");
  auto* s0 = cmd->add_option("--compress-threshold", a.compress_threshold,
                             "S0: smallest automatic window (default 4000)");
  auto* c = cmd->add_option("--compress-ratio", a.compress_ratio, "C: automatic window = prompt / C (default 5)");
  a.window_option->excludes(s0)->excludes(c);
  cmd->add_option("--mode", a.mode,
                  "static: compress once after the prompt; rolling: keep dropping the window's oldest token")
      ->check(CLI::IsMember({"static", "rolling"}));
  cmd->add_flag("--no-compensation", a.no_compensation, "drop the compensation token (ablation)");
  if (!seed_flag.empty()) cmd->add_option(seed_flag, a.seed, "seed of the random policy (and built-in tasks)");
}

}  // namespace razor::cli
