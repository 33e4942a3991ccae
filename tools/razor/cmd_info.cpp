#include <cstdio>
#include <memory>

#include "commands.h"
#include "model_options.h"

namespace razor::cli {

void add_info(CLI::App& app, Runner& run) {
  auto opts = std::make_shared<ModelOptions>();
  CLI::App* cmd = app.add_subcommand("info", "Print a checkpoint's architecture, shapes and KV-cache cost");
  cmd->add_option("MODEL", opts->model, "checkpoint path")->required();
  cmd->callback([opts, &run] {
    run = [opts] {
      auto model = opts->load();
      std::fputs(describe(*model).c_str(), stdout);
      return 0;
    };
  });
}

}  // namespace razor::cli
