// Greedy generation must reproduce, token for token, what the llama2.c reference programs print.
#include <gtest/gtest.h>

#include <string>

#include "razor/generate.h"
#include "razor/model.h"
#include "razor/tokenizer.h"
#include "test_util.h"

namespace {

using razor::test::model_path;

// run.c semantics: `steps` positions in all, prompt tokens (after BOS) echoed, greedy after.
std::string run_like_llama2c(const std::string& model_file, const std::string& tok_file,
                             const std::string& prompt, int steps) {
  auto model = razor::load_model(model_path(model_file));
  auto tok = razor::Tokenizer::load_llama2c(model_path(tok_file), model->config.vocab_size);
  std::vector<int> ids = tok.encode(prompt, true, false);
  razor::Session session(*model, razor::KVPolicy{}, {.threads = 2, .max_tokens = steps + 1});
  razor::GenerateOptions opt;
  opt.max_new_tokens = steps - static_cast<int>(ids.size()) + 1;
  std::string text;
  razor::generate(session, ids, opt, [&](int prev, int t) { text += tok.decode(prev, t); });
  return text;
}

std::string golden(const std::string& name) {
  std::string g = razor::test::read_text(model_path("golden/" + name));
  if (!g.empty() && g.back() == '\n') g.pop_back();  // run.c prints a final newline
  return g;
}

TEST(GoldenGeneration, Stories260KFromBos) {
  REQUIRE_MODEL("stories260K.bin");
  EXPECT_EQ(run_like_llama2c("stories260K.bin", "tok512.bin", "", 200), golden("stories260K_t0_n200.txt"));
}

TEST(GoldenGeneration, Stories260KZoo) {
  REQUIRE_MODEL("stories260K.bin");
  EXPECT_EQ(run_like_llama2c("stories260K.bin", "tok512.bin", "Zoo", 60), golden("stories260K_t0_n60_Zoo.txt"));
}

TEST(GoldenGeneration, Llama2xsOnceUponATime) {
  REQUIRE_MODEL("llama2xs-260K.bin");
  EXPECT_EQ(run_like_llama2c("llama2xs-260K.bin", "tok512.bin", "Once upon a time", 150),
            golden("llama2xs_t0_n150_OnceUponATime.txt"));
}

TEST(GoldenGeneration, Stories3MDequantizedFloat) {
  REQUIRE_MODEL("stories3M-q80.bin");
  EXPECT_EQ(run_like_llama2c("stories3M-q80.bin", "tok4096.bin", "Once upon a time", 200),
            golden("stories3M-f32dequant_run_t0_n200_OnceUponATime.txt"));
}

}  // namespace
