// razor: RazorAttention KV-cache compression for RoPE language models.
#include <cstdio>
#include <exception>

#include "commands.h"
#include "razor/error.h"

int main(int argc, char** argv) {
  CLI::App app{"razor: find retrieval heads, run with a head-wise compressed KV cache, measure it"};
  app.require_subcommand(1);
  razor::cli::Runner run;
  razor::cli::add_info(app, run);
  razor::cli::add_generate(app, run);
  razor::cli::add_probe(app, run);
  razor::cli::add_heads(app, run);
  razor::cli::add_eval(app, run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line, like every other razor error.
    std::fprintf(stderr, "razor: error: %s (see razor --help)\n", e.what());
    return e.get_exit_code() != 0 ? e.get_exit_code() : 2;
  }
  try {
    return run ? run() : 0;
  } catch (const razor::Error& e) {
    std::fprintf(stderr, "razor: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "razor: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "razor: error: %s\n", e.what());
    return 1;
  }
}
