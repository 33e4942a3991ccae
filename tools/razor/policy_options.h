#pragma once
// The KV-policy options shared by `razor eval` and `razor generate` (SPEC section 5):
//   --policy full|razor|streaming|random  --heads FILE  --sink N0
//   --window W | --compress-threshold S0 --compress-ratio C  --mode static|rolling
//   --no-compensation  --seed S (random heads)
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "razor/policy.h"

namespace razor::cli {

struct PolicyArgs {
  std::string policy = "auto";  // auto: razor with --heads, else full
  std::string heads;
  int sink = 4;
  int window = -1;
  int compress_threshold = 4000;
  int compress_ratio = 5;
  std::string mode = "static";
  bool no_compensation = false;
  uint64_t seed = 0;
  CLI::Option* window_option = nullptr;

  // After parsing: the library options (validated later by build_policy).
  PolicyOptions options() const;
};

// Registers the options on `cmd`, bound to `args` (which must outlive parsing). seed_flag names
// the random-heads seed option; pass "" to leave it out (e.g. when --seed already means the
// sampling seed, register it as "--policy-seed" instead).
void add_policy_options(CLI::App* cmd, PolicyArgs& args, const std::string& seed_flag = "--seed");

}  // namespace razor::cli
