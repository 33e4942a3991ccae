#pragma once
// Each razor subcommand lives in its own cmd_*.cpp: it declares its options on the CLI11 app and
// calls the library. No command holds logic of its own.
#include <CLI/CLI.hpp>
#include <functional>

namespace razor::cli {

// A registered command runs when CLI11 selects its subcommand; it returns the exit code.
using Runner = std::function<int()>;

void add_info(CLI::App& app, Runner& run);
void add_generate(CLI::App& app, Runner& run);
void add_probe(CLI::App& app, Runner& run);
void add_heads(CLI::App& app, Runner& run);
void add_eval(CLI::App& app, Runner& run);

}  // namespace razor::cli
