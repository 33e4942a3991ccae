#pragma once
// Shared helpers for the test suite: where the real models are, scratch directories, running the CLI.
#include <string>
#include <vector>

namespace razor::test {

// ../shared/models (absolute). Tests needing a model call require_model(), which skips when absent.
std::string models_dir();
std::string model_path(const std::string& name);  // models_dir()/name
bool have_model(const std::string& name);

// A fresh, empty directory under $TMPDIR for this test; removed at process exit.
std::string temp_dir();

struct CmdResult {
  int rc = -1;
  std::string out, err;
};
// Runs the razor CLI with args (no shell), capturing stdout and stderr.
CmdResult run_cli(const std::vector<std::string>& args);

void write_text(const std::string& path, const std::string& text);
std::string read_text(const std::string& path);

}  // namespace razor::test

#define REQUIRE_MODEL(name)                                                   \
  do {                                                                        \
    if (!razor::test::have_model(name)) GTEST_SKIP() << "missing model " << name; \
  } while (0)
