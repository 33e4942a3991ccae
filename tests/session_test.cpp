// Forward-pass invariants on real checkpoints.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "razor/generate.h"
#include "razor/model.h"
#include "razor/session.h"
#include "test_util.h"

namespace {

using razor::test::model_path;

std::vector<int> some_tokens(int n, int vocab, int seed) {
  std::vector<int> t{1};
  uint32_t s = static_cast<uint32_t>(seed) * 2654435761u + 12345u;
  while (static_cast<int>(t.size()) < n) {
    s = s * 1664525u + 1013904223u;
    t.push_back(3 + static_cast<int>((s >> 8) % static_cast<uint32_t>(vocab - 3)));
  }
  return t;
}

TEST(Session, PrefillLogitsEqualDecodeLogitsStories3M) {
  REQUIRE_MODEL("stories3M-q80.bin");
  auto model = razor::load_model(model_path("stories3M-q80.bin"));
  const int T = 256, V = model->config.vocab_size;
  auto tokens = some_tokens(T, V, 7);
  std::vector<float> batched(static_cast<size_t>(T) * V), step(V);
  razor::Session a(*model, {}, {.threads = 2, .max_tokens = T});
  a.prefill(tokens, batched.data(), true);
  razor::Session b(*model, {}, {.threads = 2, .max_tokens = T});
  double max_diff = 0;
  for (int i = 0; i < T; ++i) {
    b.decode(tokens[i], step.data());
    for (int j = 0; j < V; ++j)
      max_diff = std::max(max_diff, static_cast<double>(std::fabs(step[j] - batched[size_t(i) * V + j])));
  }
  EXPECT_LE(max_diff, 1e-4);
  EXPECT_GT(max_diff, 0.0);  // two different code paths (GEMM vs GEMV, tiles vs rows)
}

TEST(Session, LastLogitsEqualRowOfAllLogits) {
  REQUIRE_MODEL("stories260K.bin");
  auto model = razor::load_model(model_path("stories260K.bin"));
  const int T = 40, V = model->config.vocab_size;
  auto tokens = some_tokens(T, V, 3);
  std::vector<float> all(static_cast<size_t>(T) * V), last(V);
  razor::Session a(*model, {}, {.threads = 1, .max_tokens = T});
  a.prefill(tokens, all.data(), true);
  razor::Session b(*model, {}, {.threads = 1, .max_tokens = T});
  b.prefill(tokens, last.data());
  for (int j = 0; j < V; ++j) EXPECT_NEAR(last[j], all[size_t(T - 1) * V + j], 1e-5);
}

TEST(Session, RejectsOutOfRangeTokensAndOverflow) {
  REQUIRE_MODEL("stories260K.bin");
  auto model = razor::load_model(model_path("stories260K.bin"));
  razor::Session s(*model, {}, {.threads = 1, .max_tokens = 4});
  std::vector<float> logits(model->config.vocab_size);
  EXPECT_THROW(s.prefill({1, 512}, logits.data()), razor::Error);
  EXPECT_THROW(s.prefill({1, -1}, logits.data()), razor::Error);
  EXPECT_THROW(s.prefill({1, 2, 3, 4, 5}, logits.data()), razor::Error);
  s.prefill({1, 2, 3, 4}, logits.data());
  EXPECT_THROW(s.decode(5, logits.data()), razor::Error);
}

TEST(Session, GreedySamplerIsArgmaxAndSeededSamplingRepeats) {
  std::vector<float> logits{0.1f, 2.0f, -1.0f, 1.9f};
  razor::Sampler greedy(0.0f, 1.0f, 1);
  EXPECT_EQ(greedy.sample(logits.data(), 4), 1);
  razor::Sampler a(1.0f, 0.9f, 42), b(1.0f, 0.9f, 42);
  int counts[4] = {0, 0, 0, 0};
  for (int i = 0; i < 2000; ++i) {
    int x = a.sample(logits.data(), 4);
    EXPECT_EQ(x, b.sample(logits.data(), 4));
    counts[x]++;
  }
  // top-p 0.9 keeps tokens 1 and 3 (p = 0.46, 0.42) and 0 (0.08); token 2 (0.02) never.
  EXPECT_EQ(counts[2], 0);
  EXPECT_GT(counts[1], counts[0]);
  EXPECT_GT(counts[3], counts[0]);
}

}  // namespace
