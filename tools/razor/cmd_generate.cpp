#include "commands.h"

namespace razor::cli {

void add_generate(CLI::App& app, Runner& run) { (void)app; (void)run; }

}  // namespace razor::cli
