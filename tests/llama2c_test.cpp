// llama2.c checkpoints: shapes from the real files, and bad input of every kind.
#include <gtest/gtest.h>

#include <cstring>
#include <algorithm>
#include <filesystem>
#include <fstream>

#include "razor/model.h"
#include "test_util.h"

namespace {

using razor::test::model_path;
using razor::test::read_text;
using razor::test::temp_dir;
using razor::test::write_text;

TEST(Llama2c, RealCheckpointShapes) {
  REQUIRE_MODEL("stories3M-q80.bin");
  auto m = razor::load_model(model_path("stories3M-q80.bin"));
  EXPECT_EQ(m->format, "llama2c-v2-q80");
  EXPECT_EQ(m->config.dim, 192);
  EXPECT_EQ(m->config.hidden_dim, 512);
  EXPECT_EQ(m->config.n_layers, 6);
  EXPECT_EQ(m->config.n_kv_heads, 2);
  EXPECT_EQ(m->config.vocab_size, 4096);
  auto x = razor::load_model(model_path("llama2xs-260K.bin"));
  EXPECT_EQ(x->config.hidden_dim, 192);
  EXPECT_EQ(x->config.max_seq_len, 256);
  auto t = razor::load_model(model_path("tangpoem-750K.bin"));
  EXPECT_EQ(t->config.n_heads, t->config.n_kv_heads);
  EXPECT_EQ(t->config.vocab_size, 2048);
}

TEST(Llama2c, Q80DequantizationMatchesFile) {
  REQUIRE_MODEL("stories3M-q80.bin");
  auto m = razor::load_model(model_path("stories3M-q80.bin"));
  // First group of the token embedding: int8 values right after the norms, scale after all of them.
  std::string f = read_text(model_path("stories3M-q80.bin"));
  const size_t norms = (2 * 6 + 1) * 192 * 4;
  const size_t q0 = 256 + norms, s0 = q0 + 4096 * 192;
  float scale;
  std::memcpy(&scale, f.data() + s0, 4);
  for (int i = 0; i < 64; ++i)
    EXPECT_EQ(m->tok_embeddings.f32()[i], static_cast<float>(static_cast<int8_t>(f[q0 + i])) * scale);
}

void expect_error(const std::string& path, const std::string& what) {
  try {
    razor::load_model(path);
    FAIL() << "no error for " << path;
  } catch (const razor::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(Llama2c, TruncatedFile) {
  REQUIRE_MODEL("stories260K.bin");
  std::string f = read_text(model_path("stories260K.bin"));
  std::string dir = temp_dir();
  for (size_t cut : {size_t(10), size_t(100), f.size() / 2, f.size() - 4}) {
    std::string p = dir + "/cut" + std::to_string(cut) + ".bin";
    write_text(p, f.substr(0, cut));
    expect_error(p, "truncated");
  }
  std::string q = read_text(model_path("stories3M-q80.bin"));
  write_text(dir + "/q.bin", q.substr(0, q.size() - 1000));
  expect_error(dir + "/q.bin", "truncated");
}

TEST(Llama2c, BadHeaders) {
  std::string dir = temp_dir();
  auto header = [&](std::vector<int32_t> h) {
    std::string s(reinterpret_cast<const char*>(h.data()), h.size() * 4);
    s.resize(4096, '\0');
    std::string p = dir + "/h" + std::to_string(h[0]) + "_" + std::to_string(h[3]) + ".bin";
    write_text(p, s);
    return p;
  };
  expect_error(header({0, 16, 1, 2, 2, 32, 16}), "positive");
  expect_error(header({64, 16, 1, 3, 3, 32, 16}), "divisible");
  expect_error(header({64, 16, 1, 8, 3, 32, 16}), "divisible");
  expect_error(header({1 << 28, 16, 1, 8, 8, 32, 16}), "out of range");
  // "ak42" magic with an unknown version.
  std::string v(256, '\0');
  std::memcpy(v.data(), "24ka", 4);
  v[4] = 7;
  write_text(dir + "/v7.bin", v);
  expect_error(dir + "/v7.bin", "version 7");
}

TEST(Llama2c, MissingAndDirectoryPaths) {
  expect_error(temp_dir() + "/nope.bin", "no such file");
  std::string d = temp_dir() + "/empty-hf";
  std::filesystem::create_directories(d);
  expect_error(d, "config.json");
}

TEST(Cli, InfoAndGenerate) {
  REQUIRE_MODEL("stories260K.bin");
  auto info = razor::test::run_cli({"info", model_path("stories3M-q80.bin")});
  EXPECT_EQ(info.rc, 0) << info.err;
  EXPECT_NE(info.out.find("6 query, 2 key/value"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("3072 bytes per token"), std::string::npos) << info.out;
  auto gen = razor::test::run_cli({"generate", model_path("stories260K.bin"), "--prompt", "Zoo", "-n", "57"});
  EXPECT_EQ(gen.rc, 0) << gen.err;
  // run.c's 60 steps cover BOS + the 3 prompt tokens of "Zoo" and 57 new ones.
  std::string golden = read_text(model_path("golden/stories260K_t0_n60_Zoo.txt"));
  EXPECT_EQ(gen.out, golden);
  EXPECT_NE(gen.err.find("tokens/s"), std::string::npos);
  auto bad = razor::test::run_cli({"generate", model_path("nope.bin"), "--prompt", "x"});
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(bad.err.find("nope.bin"), std::string::npos);
  EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
}

}  // namespace
