#include "commands.h"

namespace razor::cli {

void add_heads(CLI::App& app, Runner& run) { (void)app; (void)run; }

}  // namespace razor::cli
