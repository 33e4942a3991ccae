// razor eval and the policy helper: policies built from heads files, .npy and token-file I/O,
// bad input, and the evidence on stories3M (razor vs streaming at equal KV bytes, name recall).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "razor/eval.h"
#include "razor/heads.h"
#include "razor/policy.h"
#include "razor/session.h"
#include "razor/tokenizer.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using razor::test::model_path;
using razor::test::run_cli;
using razor::test::temp_dir;

razor::ModelConfig config_6x2() {  // stories3M's shape
  razor::ModelConfig c;
  c.dim = 192;
  c.n_layers = 6;
  c.n_heads = 6;
  c.n_kv_heads = 2;
  c.head_dim = 32;
  c.vocab_size = 4096;
  c.max_seq_len = 512;
  return c;
}

std::string write_heads(const razor::HeadMap& induction, const razor::HeadMap& echo, const std::string& ext = ".json") {
  razor::HeadsFile h;
  h.prefix_matching = induction;
  h.copying = echo;
  const std::string path = temp_dir() + "/heads" + ext;
  razor::write_heads(path, h);
  return path;
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const razor::Error& e) {
    return e.what();
  }
  return "(no error)";
}

// ---- the policy helper ---------------------------------------------------------------------

TEST(EvalPolicy, BuildsEachKind) {
  const auto c = config_6x2();
  const std::string heads = write_heads({{2, {0}}, {4, {1}}}, {{0, {0}}});
  razor::PolicyOptions o;
  EXPECT_TRUE(razor::build_policy(o, c).is_full());  // auto without heads: full
  o.heads_path = heads;
  o.window = 32;
  razor::KVPolicy r = razor::build_policy(o, c);  // auto with heads: razor
  EXPECT_EQ(r.n_retrieval(), 3);
  EXPECT_TRUE(r.retrieval[2][0] && r.retrieval[4][1] && r.retrieval[0][0]);
  EXPECT_TRUE(r.compensation);
  EXPECT_EQ(r.window, 32);
  EXPECT_EQ(r.sink, 4);

  o.kind = razor::PolicyKind::Streaming;
  razor::KVPolicy s = razor::build_policy(o, c);
  EXPECT_EQ(s.n_retrieval(), 0);
  EXPECT_FALSE(s.is_full());
  EXPECT_FALSE(s.compensation);

  o.kind = razor::PolicyKind::Random;
  o.seed = 11;
  razor::KVPolicy a = razor::build_policy(o, c), b = razor::build_policy(o, c);
  EXPECT_EQ(a.n_retrieval(), 3);
  EXPECT_EQ(a.retrieval, b.retrieval);  // seeded
  std::set<std::vector<std::vector<bool>>> draws;
  for (uint64_t seed = 0; seed < 8; ++seed) {
    o.seed = seed;
    draws.insert(razor::build_policy(o, c).retrieval);
  }
  EXPECT_GT(draws.size(), 4u);  // and the seed matters

  o.kind = razor::PolicyKind::Full;
  EXPECT_TRUE(razor::build_policy(o, c).is_full());
  o.kind = razor::PolicyKind::Razor;
  o.compensation = false;
  EXPECT_FALSE(razor::build_policy(o, c).compensation);
}

TEST(EvalPolicy, RejectsHeadsOutsideTheModel) {
  const auto c = config_6x2();
  razor::PolicyOptions o;
  o.kind = razor::PolicyKind::Razor;
  o.heads_path = write_heads({{6, {0}}}, {});
  std::string e = error_of([&] { razor::build_policy(o, c); });
  EXPECT_NE(e.find(o.heads_path), std::string::npos) << e;
  EXPECT_NE(e.find("layer 6"), std::string::npos) << e;
  EXPECT_NE(e.find("6 layers"), std::string::npos) << e;

  o.heads_path = write_heads({{1, {0}}}, {{3, {2}}}, ".pt");
  e = error_of([&] { razor::build_policy(o, c); });
  EXPECT_NE(e.find("2 kv heads"), std::string::npos) << e;

  // Random draws as many heads as the file names: the file is checked all the same.
  o.kind = razor::PolicyKind::Random;
  EXPECT_THROW(razor::build_policy(o, c), razor::Error);

  // A .json probe record of another model's shape.
  razor::HeadsFile h;
  h.prefix_matching = {{0, {0}}};
  razor::ProbeRecord p;
  p.n_layers = 5;
  p.n_heads = 8;
  p.n_kv_heads = 4;
  p.head_dim = 8;
  p.length = 4;
  p.repeats = 2;
  p.tokens.assign(9, 7);
  p.induction_scores.assign(5, std::vector<double>(8, 0.0));
  p.echo_scores = p.induction_scores;
  p.kv_induction.assign(5, std::vector<double>(4, 0.0));
  p.kv_echo = p.kv_induction;
  h.probe = p;
  o.heads_path = temp_dir() + "/other.json";
  razor::write_heads_json(o.heads_path, h);
  o.kind = razor::PolicyKind::Razor;
  e = error_of([&] { razor::build_policy(o, c); });
  EXPECT_NE(e.find("5 layers"), std::string::npos) << e;
}

TEST(EvalPolicy, RejectsBadSizesAndMissingHeads) {
  const auto c = config_6x2();
  auto err = [&](razor::PolicyOptions o) { return error_of([&] { razor::build_policy(o, c); }); };
  razor::PolicyOptions o;
  o.kind = razor::PolicyKind::Streaming;
  o.sink = -1;
  EXPECT_NE(err(o).find("--sink must be >= 0"), std::string::npos);
  o.sink = 513;
  EXPECT_NE(err(o).find("larger than the model's 512-token context"), std::string::npos);
  o.sink = 4;
  o.window = -1;
  EXPECT_NE(err(o).find("--window must be >= 0"), std::string::npos);
  o.window = 600;
  EXPECT_NE(err(o).find("--window 600 is larger"), std::string::npos);
  o.window.reset();
  o.compress_ratio = 0;
  EXPECT_NE(err(o).find("--compress-ratio"), std::string::npos);
  o.compress_ratio = 5;
  o.compress_threshold = -3;
  EXPECT_NE(err(o).find("--compress-threshold"), std::string::npos);
  o.compress_threshold = 4000;
  o.kind = razor::PolicyKind::Razor;
  EXPECT_NE(err(o).find("needs a heads file"), std::string::npos);
  o.kind = razor::PolicyKind::Random;
  EXPECT_NE(err(o).find("needs a heads file"), std::string::npos);
  o.heads_path = temp_dir() + "/missing.json";
  EXPECT_NE(err(o).find("missing.json"), std::string::npos);
  EXPECT_THROW(razor::parse_policy_kind("razr"), razor::Error);
  EXPECT_THROW(razor::parse_compress_mode("sliding"), razor::Error);
}

TEST(EvalPolicy, StreamingAtEqualBytesTakesTheLargestWindowThatFits) {
  const auto c = config_6x2();
  for (razor::CompressMode mode : {razor::CompressMode::Static, razor::CompressMode::Rolling}) {
    razor::KVPolicy razor_p;
    razor_p.retrieval = razor::retrieval_table(c, {{2, 0}, {4, 1}});
    razor_p.sink = 4;
    razor_p.window = 32;
    razor_p.mode = mode;
    const int P = 256, T = 500;
    const size_t budget = razor::predicted_kv_bytes(c, razor_p, P, T);
    auto s = razor::streaming_at_bytes(c, razor_p, budget, P, T);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->n_retrieval(), 0);
    EXPECT_FALSE(s->compensation);
    EXPECT_LE(razor::predicted_kv_bytes(c, *s, P, T), budget);
    razor::KVPolicy wider = *s;
    wider.window = s->window + 1;
    EXPECT_GT(razor::predicted_kv_bytes(c, wider, P, T), budget);
    EXPECT_GT(s->window, 32);  // the bytes razor spends on full heads buy streaming a wider window
  }
}

// ---- .npy and token files ------------------------------------------------------------------

TEST(EvalIo, NpyHeaderIsVersion1LittleEndianFloat32) {
  const std::vector<float> x = {1.0f, -2.5f, 3.25f, 0.0f, 7.0f, 8.0f};
  const std::string b = razor::npy_f32(x.data(), 2, 3);
  ASSERT_GE(b.size(), 10u);
  EXPECT_EQ(b.substr(0, 6), std::string("\x93NUMPY", 6));
  EXPECT_EQ(b[6], 1);
  EXPECT_EQ(b[7], 0);
  const size_t hlen = static_cast<unsigned char>(b[8]) | (static_cast<unsigned char>(b[9]) << 8);
  EXPECT_EQ((10 + hlen) % 64, 0u);
  const std::string header = b.substr(10, hlen);
  EXPECT_EQ(header.back(), '\n');
  EXPECT_NE(header.find("'descr': '<f4'"), std::string::npos);
  EXPECT_NE(header.find("'fortran_order': False"), std::string::npos);
  EXPECT_NE(header.find("'shape': (2, 3)"), std::string::npos);
  ASSERT_EQ(b.size(), 10 + hlen + x.size() * 4);
  EXPECT_EQ(std::memcmp(b.data() + 10 + hlen, x.data(), x.size() * 4), 0);

  const std::string path = temp_dir() + "/x.npy";
  razor::write_npy_f32(path, x.data(), 2, 3);
  EXPECT_EQ(razor::test::read_text(path), b);
}

TEST(EvalIo, TokenFilesAreValidated) {
  const std::string dir = temp_dir();
  auto err = [&](const std::string& name, const std::string& body) {
    const std::string path = dir + "/" + name;
    razor::test::write_text(path, body);
    std::string e = error_of([&] { razor::read_tokens_json(path, 100); });
    EXPECT_NE(e.find(path), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
    return e;
  };
  const std::string good = dir + "/good.json";
  razor::test::write_text(good, "[1, 5, 99]");
  EXPECT_EQ(razor::read_tokens_json(good, 100), (std::vector<int>{1, 5, 99}));
  EXPECT_NE(err("obj.json", "{\"tokens\": [1]}").find("expected a JSON array"), std::string::npos);
  EXPECT_NE(err("empty.json", "[]").find("empty"), std::string::npos);
  EXPECT_NE(err("str.json", "[1, \"two\"]").find("element 1 is not an integer"), std::string::npos);
  EXPECT_NE(err("float.json", "[1, 2.5]").find("element 1 is not an integer"), std::string::npos);
  EXPECT_NE(err("range.json", "[1, 100]").find("outside the vocabulary [0, 100)"), std::string::npos);
  EXPECT_NE(err("neg.json", "[-1]").find("outside the vocabulary"), std::string::npos);
  EXPECT_NE(err("bad.json", "[1, 2").find("not valid JSON"), std::string::npos);
  EXPECT_THROW(razor::read_tokens_json(dir + "/none.json", 100), razor::Error);
}

// ---- the library on a small real model -----------------------------------------------------

std::vector<int> story_tokens(const razor::Model& m, int n) {
  auto tok = razor::Tokenizer::load_llama2c(razor::find_tokenizer_beside(m.path, m.config.vocab_size), m.config.vocab_size);
  return razor::synthetic_story(tok, 3, n, n);
}

TEST(EvalRun, WindowCoveringTheTextHasZeroKlAndLogitsMatchTeacherForcing) {
  REQUIRE_MODEL("stories260K.bin");
  auto m = razor::load_model(model_path("stories260K.bin"));
  const auto tokens = story_tokens(*m, 120);
  razor::EvalRequest req;
  req.tokens = tokens;
  req.prefill = 50;
  req.threads = 1;
  req.policy.kind = razor::PolicyKind::Streaming;
  req.policy.window = 120;
  razor::EvalReport r = razor::run_eval(*m, req, true);
  ASSERT_EQ(r.rows.size(), 2u);
  EXPECT_EQ(r.rows[0].name, "full");
  EXPECT_EQ(r.rows[1].name, "streaming");
  EXPECT_EQ(r.rows[1].kl_mean, 0.0);
  EXPECT_EQ(r.rows[1].kl_max, 0.0);
  EXPECT_EQ(r.rows[1].top1_agreement, 1.0);
  EXPECT_EQ(r.rows[1].ppl, r.rows[0].ppl);
  EXPECT_EQ(r.rows[0].n_scored, 70);
  EXPECT_GT(r.rows[0].ppl, 1.0);
  EXPECT_EQ(r.rows[0].kv_bytes, r.rows[0].kv_bytes_full);

  // The dumped logits are the teacher-forced ones of the evaluated policy.
  const int V = m->config.vocab_size;
  ASSERT_EQ(r.logits.size(), static_cast<size_t>(70) * V);
  razor::KVPolicy p = razor::build_policy(req.policy, m->config);
  std::vector<float> direct(r.logits.size());
  razor::teacher_force(*m, tokens, 50, p, 1, [&](int i, const float* lg) {
    std::copy(lg, lg + V, direct.begin() + static_cast<size_t>(i) * V);
  });
  EXPECT_EQ(direct, r.logits);

  // A small window does cost something, and the bytes say so.
  req.policy.window = 8;
  razor::EvalReport s = razor::run_eval(*m, req, false);
  EXPECT_GT(s.rows[1].kl_mean, 0.0);
  EXPECT_LE(s.rows[1].top1_agreement, 1.0);
  EXPECT_LT(s.rows[1].kv_bytes, s.rows[1].kv_bytes_full);
  EXPECT_GE(s.rows[1].kl_max, s.rows[1].kl_mean);
}

TEST(EvalRun, RejectsBadRequests) {
  REQUIRE_MODEL("stories260K.bin");
  auto m = razor::load_model(model_path("stories260K.bin"));
  razor::EvalRequest req;
  req.tokens = story_tokens(*m, 40);
  req.source = "story.txt";
  req.threads = 1;
  auto err = [&](razor::EvalRequest r) { return error_of([&] { razor::run_eval(*m, r, false); }); };
  req.prefill = 40;
  EXPECT_NE(err(req).find("leaves nothing to score: the text has 40 tokens"), std::string::npos) << err(req);
  req.prefill = 0;
  EXPECT_NE(err(req).find("--prefill must be >= 1"), std::string::npos);
  req.prefill = 20;
  req.compare = true;
  EXPECT_NE(err(req).find("--compare needs a heads file"), std::string::npos);
  req.compare = false;
  req.tokens[3] = 512;
  EXPECT_NE(err(req).find("outside the vocabulary"), std::string::npos);
  req.tokens.assign(600, 5);
  EXPECT_NE(err(req).find("exceed the model's 512-token context"), std::string::npos);
}

// ---- the CLI: bad input ----------------------------------------------------------------------

void expect_cli_error(const std::vector<std::string>& args, const std::string& needle) {
  auto r = run_cli(args);
  EXPECT_NE(r.rc, 0) << r.out << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr: " << r.err;
  // One line (CLI11's own parse errors may add a usage hint; ours never do).
  if (r.err.rfind("razor: error:", 0) == 0) {
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  }
}

TEST(EvalCli, BadInputGetsAOneLineErrorAndNoOutputFile) {
  REQUIRE_MODEL("stories260K.bin");
  const std::string m = model_path("stories260K.bin"), dir = temp_dir();
  const std::string text = dir + "/t.txt", out = dir + "/out.json", npy = dir + "/out.npy";
  razor::test::write_text(text, "Once upon a time, there was a little girl named Lily. She liked to play.");
  const std::string bad_heads = write_heads({{5, {0}}}, {});  // stories260K has layers 0..4
  const std::string bad_kv = write_heads({{1, {4}}}, {});      // and kv heads 0..3
  const std::vector<std::string> common = {"--json", out, "--dump-logits", npy, "--threads", "1"};
  auto with = [&](std::vector<std::string> a) {
    a.insert(a.begin(), {"eval", m});
    a.insert(a.end(), common.begin(), common.end());
    return a;
  };
  expect_cli_error(with({"--text", text, "--heads", bad_heads}), "layer 5");
  expect_cli_error(with({"--text", text, "--heads", bad_kv}), "4 kv heads per layer");
  expect_cli_error(with({"--text", text, "--heads", bad_heads, "--compare"}), "layer 5");
  expect_cli_error(with({"--text", text, "--policy", "streaming", "--window", "-3"}), "--window must be >= 0");
  expect_cli_error(with({"--text", text, "--policy", "streaming", "--sink", "-1"}), "--sink must be >= 0");
  expect_cli_error(with({"--text", text, "--policy", "streaming", "--window", "100000"}), "larger than the model");
  expect_cli_error(with({"--text", text, "--prefill", "500"}), "leaves nothing to score");
  expect_cli_error(with({"--text", text, "--prefill", "0"}), "--prefill must be >= 1");
  expect_cli_error(with({"--text", dir + "/nothere.txt"}), "nothere.txt");
  expect_cli_error(with({"--text", text, "--policy", "razor"}), "needs a heads file");
  expect_cli_error(with({"--text", text, "--compare"}), "--compare needs a heads file");
  expect_cli_error(with({}), "needs --text FILE");
  const std::string tok_bad = dir + "/bad.json", tok_range = dir + "/range.json";
  razor::test::write_text(tok_bad, "[1, 2, \"x\"]");
  razor::test::write_text(tok_range, "[1, 2, 512]");
  expect_cli_error(with({"--tokens", tok_bad}), "element 2 is not an integer");
  expect_cli_error(with({"--tokens", tok_range}), "outside the vocabulary [0, 512)");
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(npy));
}

TEST(EvalCli, TokensFileDumpLogitsAndJson) {
  REQUIRE_MODEL("stories260K.bin");
  auto model = razor::load_model(model_path("stories260K.bin"));
  const auto tokens = story_tokens(*model, 60);
  const std::string dir = temp_dir(), tj = dir + "/tokens.json", out = dir + "/r.json", npy = dir + "/l.npy";
  razor::test::write_text(tj, nlohmann::json(tokens).dump());
  auto r = run_cli({"eval", model_path("stories260K.bin"), "--tokens", tj, "--prefill", "24", "--policy", "streaming",
                    "--window", "8", "--sink", "2", "--mode", "rolling", "--dump-logits", npy, "--json", out,
                    "--threads", "1"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("streaming"), std::string::npos) << r.out;
  auto j = nlohmann::json::parse(razor::test::read_text(out));
  EXPECT_EQ(j["tokens"], 60);
  EXPECT_EQ(j["prefill"], 24);
  ASSERT_EQ(j["results"].size(), 2u);
  EXPECT_EQ(j["results"][1]["policy"], "streaming");
  EXPECT_EQ(j["results"][1]["window"], 8);
  EXPECT_EQ(j["results"][1]["sink"], 2);
  EXPECT_LT(j["results"][1]["kv_fraction"].get<double>(), 0.5);
  const std::string b = razor::test::read_text(npy);
  ASSERT_GT(b.size(), 10u);
  const size_t hlen = static_cast<unsigned char>(b[8]) | (static_cast<unsigned char>(b[9]) << 8);
  EXPECT_NE(b.find("'shape': (36, 512)"), std::string::npos);
  EXPECT_EQ(b.size(), 10 + hlen + 36u * 512u * 4u);
}

// ---- the evidence on stories3M ---------------------------------------------------------------

// Heads from the probe at its default ratios, run through the CLI once; "" when it cannot run.
const std::string& probe_heads(std::string* why) {
  static std::string path, reason;
  static bool done = false;
  if (!done) {
    done = true;
    const std::string p = temp_dir() + "/stories3M-heads.pt";
    auto r = run_cli({"probe", model_path("stories3M-q80.bin"), "-o", p, "--quiet", "--threads", "1"});
    if (r.rc == 0 && fs::exists(p)) path = p;
    else reason = "razor probe failed (rc " + std::to_string(r.rc) + "): " + r.err;
  }
  if (why) *why = reason;
  return path;
}

#define REQUIRE_PROBE_HEADS(var)                                  \
  std::string var;                                                \
  do {                                                            \
    std::string why;                                              \
    var = probe_heads(&why);                                      \
    if (var.empty()) GTEST_SKIP() << "no probe heads: " << why;   \
  } while (0)

nlohmann::json row(const nlohmann::json& j, const std::string& name) {
  for (const auto& r : j["results"])
    if (r["policy"] == name) return r;
  ADD_FAILURE() << "no row " << name;
  return {};
}

TEST(EvalStories3M, CompareRazorStreamingRandomAtEqualKvBytes) {
  REQUIRE_MODEL("stories3M-q80.bin");
  REQUIRE_PROBE_HEADS(heads);
  const std::string m = model_path("stories3M-q80.bin"), dir = temp_dir();
  auto model = razor::load_model(m);
  auto tok = razor::Tokenizer::load_llama2c(model_path("tok4096.bin"), model->config.vocab_size);
  std::string text;
  razor::synthetic_story(tok, 0, 500, 500, &text);
  razor::test::write_text(dir + "/story.txt", text);
  for (int W : {32, 64}) {
    const std::string out = dir + "/compare" + std::to_string(W) + ".json";
    auto r = run_cli({"eval", m, "--text", dir + "/story.txt", "--max-tokens", "500", "--prefill", "256", "--sink", "4",
                      "--window", std::to_string(W), "--heads", heads, "--compare", "--json", out, "--threads", "1"});
    ASSERT_EQ(r.rc, 0) << r.err;
    std::printf("%s", r.out.c_str());
    for (const char* name : {"full", "razor", "streaming", "random", "razor-no-comp"})
      EXPECT_NE(r.out.find(std::string("\n") + name + " "), std::string::npos) << name << " missing:\n" << r.out;
    auto j = nlohmann::json::parse(razor::test::read_text(out));
    ASSERT_EQ(j["results"].size(), 5u);
    EXPECT_EQ(j["tokens"], 500);
    EXPECT_EQ(j["scored"], 244);
    const auto full = row(j, "full"), rz = row(j, "razor"), st = row(j, "streaming"), rnd = row(j, "random"),
               nc = row(j, "razor-no-comp");
    EXPECT_EQ(full["kl_mean"].get<double>(), 0.0);
    EXPECT_EQ(rz["window"], W);
    // Equal KV bytes: streaming holds at most razor's bytes, and one more window row would not fit.
    const size_t rb = rz["kv_bytes"], sb = st["kv_bytes"];
    EXPECT_LE(sb, rb);
    const int per_row = 2 * 6 * 2 * 32 * 4;  // one more window row in every head (K and V, float32)
    EXPECT_GT(sb + per_row, rb);
    EXPECT_EQ(rnd["kv_bytes"], rz["kv_bytes"]);
    EXPECT_LT(nc["kv_bytes"].get<size_t>(), rb);  // no compensation token
    const double kr = rz["kl_mean"], ks = st["kl_mean"], kn = rnd["kl_mean"], kc = nc["kl_mean"];
    std::printf("W=%d: mean KL razor %.5f, streaming (W=%d, %zu bytes vs %zu) %.5f, random %.5f, no-comp %.5f\n", W,
                kr, st["window"].get<int>(), sb, rb, ks, kn, kc);
    // The probe's heads beat as many random heads at the same bytes.
    EXPECT_LT(kr, kn);
    if (kr < ks)
      SUCCEED() << "razor below streaming at equal KV bytes";
    else
      std::printf("W=%d: razor's mean KL is NOT below streaming's at equal KV bytes on this text\n", W);
  }
}

TEST(EvalStories3M, NameRecallFavoursRetrievalHeads) {
  REQUIRE_MODEL("stories3M-q80.bin");
  REQUIRE_PROBE_HEADS(heads);
  const std::string out = temp_dir() + "/recall.json";
  auto r = run_cli({"eval", model_path("stories3M-q80.bin"), "--task", "name-recall", "--heads", heads, "--stories",
                    "12", "--json", out, "--threads", "1"});
  ASSERT_EQ(r.rc, 0) << r.err;
  std::printf("%s", r.out.c_str());
  for (const char* name : {"full", "razor", "streaming", "random", "razor-no-comp"})
    EXPECT_NE(r.out.find(std::string("\n") + name + " "), std::string::npos) << name << " missing:\n" << r.out;
  auto j = nlohmann::json::parse(razor::test::read_text(out));
  ASSERT_EQ(j["stories"].size(), 12u);
  for (const auto& s : j["stories"]) {
    EXPECT_LT(s["tokens"].get<int>(), 512);
    // The name was last seen further back than the window reaches.
    EXPECT_GT(s["prefill"].get<int>() - s["last_mention_end"].get<int>(), 32);
  }
  const auto full = row(j, "full"), rz = row(j, "razor"), st = row(j, "streaming");
  EXPECT_GT(full["recalled"].get<int>(), 0);
  auto top1 = [](const nlohmann::json& x) {
    return x["name_tokens_top1"].get<double>() / std::max(1, x["name_tokens"].get<int>());
  };
  EXPECT_GT(top1(full), top1(rz));
  EXPECT_GT(top1(rz), top1(st) + 0.2);
  EXPECT_LT(rz["name_nll"].get<double>(), st["name_nll"].get<double>());
}

TEST(EvalStories3M, NameRecallStoriesAreDeterministic) {
  REQUIRE_MODEL("stories3M-q80.bin");
  auto tok = razor::Tokenizer::load_llama2c(model_path("tok4096.bin"), 4096);
  auto a = razor::make_name_recall_story(tok, 5, 48, 512), b = razor::make_name_recall_story(tok, 5, 48, 512);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.text, b.text);
  EXPECT_GE(static_cast<int>(a.tokens.size()) - a.name_begin, 2);  // several tokens
  EXPECT_GE(a.prefill - a.last_mention_end, 48);
  EXPECT_LE(a.prefill, a.name_begin);
  EXPECT_EQ(tok.encode(a.text, true, false), a.tokens);
  EXPECT_NE(razor::make_name_recall_story(tok, 6, 48, 512).name, a.name);
  EXPECT_THROW(razor::make_name_recall_story(tok, 5, 600, 512), razor::Error);
}

}  // namespace
