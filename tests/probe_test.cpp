// The probe end to end: fused scores against a materialised-softmax reference, a planted-circuit
// model, determinism, and the CLI.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>

#include "planted_model.h"
#include "probe/probe_kernel.h"
#include "razor/error.h"
#include "razor/heads.h"
#include "razor/model.h"
#include "razor/probe.h"
#include "razor/session.h"
#include "razor/tokenizer.h"
#include "test_util.h"

namespace fs = std::filesystem;
using razor::RARopeCompressConfig;

namespace {

struct RefResult {
  std::vector<double> induction, echo;  // [head]
  std::vector<double> out;              // [n][q_dim]
};

// SPEC section 2 written out directly: the full softmax of every row in double, then the sums
// over the random part's earlier occurrences, indexed as the SPEC indexes them.
RefResult reference(int n, int H, int KV, int hd, const float* q, const float* k, const float* v, int L, int R) {
  RefResult r;
  r.induction.assign(H, 0.0);
  r.echo.assign(H, 0.0);
  r.out.assign(size_t(n) * H * hd, 0.0);
  const int q_dim = H * hd, kv_dim = KV * hd, group = H / KV;
  const double scale = 1.0 / std::sqrt(double(hd));
  std::vector<double> P(size_t(n) * n);
  for (int h = 0; h < H; ++h) {
    const int g = h / group;
    for (int t = 0; t < n; ++t) {
      double mx = -1e300;
      for (int j = 0; j <= t; ++j) {
        double s = 0;
        for (int d = 0; d < hd; ++d) s += double(q[size_t(t) * q_dim + h * hd + d]) * k[size_t(j) * kv_dim + g * hd + d];
        P[size_t(t) * n + j] = s * scale;
        mx = std::max(mx, s * scale);
      }
      double sum = 0;
      for (int j = 0; j <= t; ++j) sum += (P[size_t(t) * n + j] = std::exp(P[size_t(t) * n + j] - mx));
      for (int j = 0; j <= t; ++j) P[size_t(t) * n + j] /= sum;
      for (int j = 0; j <= t; ++j)
        for (int d = 0; d < hd; ++d)
          r.out[size_t(t) * q_dim + h * hd + d] += P[size_t(t) * n + j] * v[size_t(j) * kv_dim + g * hd + d];
    }
    double e = 0, ind = 0;
    for (int i = L; i < R * L; ++i) {
      double re = 0, ri = 0;
      for (int j = i % L; j < i; j += L) {
        re += P[size_t(i + 1) * n + (j + 1)];
        ri += P[size_t(i + 1) * n + (j + 2)];
      }
      e += re;
      ind += ri;
    }
    r.echo[h] = e / ((R - 1) * L);
    r.induction[h] = ind / ((R - 1) * L);
  }
  return r;
}

// Delegates to the probe's attention and keeps what each layer saw and produced.
struct Capture : razor::PrefillAttention {
  razor::probe::ProbeAttention* inner;
  int q_dim, kv_dim;
  std::vector<std::vector<float>> q, k, v, out;
  void attend(int layer, int n, const float* q_, const float* k_, const float* v_, float* out_) override {
    q.emplace_back(q_, q_ + size_t(n) * q_dim);
    k.emplace_back(k_, k_ + size_t(n) * kv_dim);
    v.emplace_back(v_, v_ + size_t(n) * kv_dim);
    inner->attend(layer, n, q_, k_, v_, out_);
    out.emplace_back(out_, out_ + size_t(n) * q_dim);
  }
};

void check_against_reference(const std::string& model_name, int L, int R, int tile_rows = 0, int key_block = 0) {
  auto model = razor::load_model(razor::test::model_path(model_name));
  const razor::ModelConfig& c = model->config;
  RARopeCompressConfig cfg;
  cfg.length = L;
  cfg.repeats = R;
  std::vector<int> tokens = razor::probe_tokens(c, nullptr, cfg);
  const int n = static_cast<int>(tokens.size());
  razor::probe::ProbeAttention attn(c, L, R, 2, {}, tile_rows, key_block);
  attn.skip_last_output = false;
  Capture cap;
  cap.inner = &attn;
  cap.q_dim = c.q_dim();
  cap.kv_dim = c.kv_dim();
  razor::SessionOptions so;
  so.threads = 2;
  so.max_tokens = n;
  so.keep_cache = false;
  razor::Session session(*model, razor::KVPolicy{}, so);
  session.prefill(tokens, nullptr, false, &cap);
  ASSERT_EQ(static_cast<int>(cap.q.size()), c.n_layers);
  double worst_score = 0, worst_out = 0, max_echo = 0, max_ind = 0;
  for (int l = 0; l < c.n_layers; ++l) {
    RefResult ref = reference(n, c.n_heads, c.n_kv_heads, c.head_dim, cap.q[l].data(), cap.k[l].data(),
                              cap.v[l].data(), L, R);
    for (int h = 0; h < c.n_heads; ++h) {
      EXPECT_NEAR(attn.induction[l][h], ref.induction[h], 1e-5) << model_name << " layer " << l << " head " << h;
      EXPECT_NEAR(attn.echo[l][h], ref.echo[h], 1e-5) << model_name << " layer " << l << " head " << h;
      worst_score = std::max({worst_score, std::abs(attn.induction[l][h] - ref.induction[h]),
                              std::abs(attn.echo[l][h] - ref.echo[h])});
      max_echo = std::max(max_echo, ref.echo[h]);
      max_ind = std::max(max_ind, ref.induction[h]);
    }
    for (size_t i = 0; i < ref.out.size(); ++i) {
      const double d = std::abs(cap.out[l][i] - ref.out[i]);
      worst_out = std::max(worst_out, d / std::max(1.0, std::abs(ref.out[i])));
    }
  }
  EXPECT_LT(worst_out, 1e-4) << model_name;
  EXPECT_GT(std::max(max_ind, max_echo), 0.01) << "the scores should not be trivially small";
  std::printf("%s (tiles %d x %d): worst score diff %.3g, worst output diff %.3g, max induction %.3f, max echo %.3f\n",
              model_name.c_str(), tile_rows, key_block, worst_score, worst_out, max_ind, max_echo);
}

std::string strip_seconds(const std::string& json) {
  return std::regex_replace(json, std::regex("\"seconds\": [^,\n]*"), "\"seconds\": X");
}

}  // namespace

TEST(ProbeKernel, FastExpIsAccurate) {
  double worst = 0;
  for (float x = -87.0f; x <= 0.0f; x += 0.0137f) {
    const double ref = std::exp(double(x));
    worst = std::max(worst, std::abs(razor::probe::fast_exp(x) - ref) / ref);
  }
  EXPECT_LT(worst, 3e-7);
  EXPECT_LT(razor::probe::fast_exp(-200.0f), 1e-37f);
  EXPECT_GE(razor::probe::fast_exp(-200.0f), 0.0f);
  EXPECT_TRUE(std::isnan(razor::probe::fast_exp(NAN)));
  // The vectorised row kernel agrees with the scalar one, tails included.
  for (int n : {1, 5, 16, 17, 31, 32, 33, 100}) {
    std::vector<float> s(n);
    for (int i = 0; i < n; ++i) s[i] = -0.37f * i + 2.0f * std::sin(float(i));
    const float mx = razor::probe::row_max(s.data(), n);
    float ref_mx = s[0];
    for (float x : s) ref_mx = std::max(ref_mx, x);
    EXPECT_EQ(mx, ref_mx);
    std::vector<float> e = s;
    const float sum = razor::probe::exp_shift_sum(e.data(), n, mx);
    double ref_sum = 0;
    for (int i = 0; i < n; ++i) {
      const double want = std::exp(double(s[i] - mx));  // the float difference the kernel sees
      EXPECT_NEAR(e[i], want, 3e-7 * want + 1e-30);
      ref_sum += want;
    }
    EXPECT_NEAR(sum, ref_sum, 1e-6 * ref_sum);
  }
}

TEST(ProbeKernel, MatchesReferenceOnRandomInputs) {
  // Several tiles (T = 161 with 64-row tiles, and odd tile sizes), GQA 3:1, head_dim 16.
  const int H = 6, KV = 2, hd = 16, L = 40, R = 4, n = 1 + L * R;
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 1.5f);
  std::vector<float> q(size_t(n) * H * hd), k(size_t(n) * KV * hd), v(k.size());
  for (auto& x : q) x = dist(rng);
  for (auto& x : k) x = dist(rng);
  for (auto& x : v) x = dist(rng);
  // Make heads 0 and 4 echo-like: keys of the repeated block repeat, and those heads' queries
  // look for their own key.
  for (int t = L + 1; t < n; ++t)
    for (int d = 0; d < KV * hd; ++d) k[size_t(t) * KV * hd + d] = k[size_t(t - L) * KV * hd + d];
  for (int t = 0; t < n; ++t)
    for (int h : {0, 4})
      for (int d = 0; d < hd; ++d) q[size_t(t) * H * hd + h * hd + d] = 1.5f * k[size_t(t) * KV * hd + (h / 3) * hd + d];
  RefResult ref = reference(n, H, KV, hd, q.data(), k.data(), v.data(), L, R);
  // Automatic tiling, then odd tile sizes and key blocks (online softmax across many blocks).
  for (auto [tile, block] : std::vector<std::pair<int, int>>{{0, 0}, {7, 16}, {200, 33}, {5, 3}, {64, 4096}}) {
    for (int threads : {1, 2}) {
      razor::probe::FusedProbeKernel ker({H, KV, hd, L, R}, threads, tile, block);
      std::vector<float> out(q.size());
      std::vector<double> ind(H), echo(H);
      ker.run(q.data(), k.data(), v.data(), out.data(), ind.data(), echo.data());
      for (int h = 0; h < H; ++h) {
        EXPECT_NEAR(ind[h], ref.induction[h], 1e-6) << "tile " << tile << " block " << block << " head " << h;
        EXPECT_NEAR(echo[h], ref.echo[h], 1e-6) << "tile " << tile << " block " << block << " head " << h;
      }
      for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref.out[i], 1e-4) << i << " tile " << tile << " block " << block;
      // Without the output: the same scores.
      std::vector<double> ind2(H), echo2(H);
      ker.run(q.data(), k.data(), v.data(), nullptr, ind2.data(), echo2.data());
      EXPECT_EQ(ind, ind2);
      EXPECT_EQ(echo, echo2);
    }
  }
  double top = 0;
  for (double e : ref.echo) top = std::max(top, e);
  EXPECT_GT(top, 0.3);  // the planted repetition shows
}

TEST(ProbeFused, MatchesReferenceOnStories3M) {
  REQUIRE_MODEL("stories3M-q80.bin");
  check_against_reference("stories3M-q80.bin", 40, 4);
  check_against_reference("stories3M-q80.bin", 40, 4, 16, 32);  // many tiles, online softmax
}

TEST(ProbeFused, MatchesReferenceOnStories260K) {
  REQUIRE_MODEL("stories260K.bin");
  check_against_reference("stories260K.bin", 40, 4);
  check_against_reference("stories260K.bin", 40, 4, 24, 48);
}

TEST(ProbePlanted, FindsThePlantedInductionAndEchoHeads) {
  const std::string path = razor::test::temp_dir() + "/planted.bin";
  razor::testkit::PlantedSpec spec;  // 32 layers x 2 KV heads (4 query heads): N = 64
  razor::testkit::write_planted_model(path, spec);
  auto model = razor::load_model(path);
  ASSERT_EQ(model->config.n_layers * model->config.n_kv_heads, 64);
  razor::RARopeCompressor probe(*model, nullptr, RARopeCompressConfig{}, 2);  // default ratios
  EXPECT_EQ(probe.length(), 16);  // (65 - 1) / 4
  razor::HeadsFile heads = probe.heads();
  const razor::ProbeRecord& r = *heads.probe;
  const int group = spec.n_heads / spec.n_kv_heads;
  const int ind_kv = spec.induction_head / group, echo_kv = spec.echo_head / group;

  auto ranked = [](const std::vector<std::vector<double>>& s) {
    std::vector<std::tuple<double, int, int>> v;
    for (size_t l = 0; l < s.size(); ++l)
      for (size_t h = 0; h < s[l].size(); ++h) v.emplace_back(s[l][h], int(l), int(h));
    std::sort(v.rbegin(), v.rend());
    return v;
  };
  auto ind = ranked(r.kv_induction), echo = ranked(r.kv_echo);
  EXPECT_EQ(std::get<1>(ind[0]), spec.induction_layer);
  EXPECT_EQ(std::get<2>(ind[0]), ind_kv);
  EXPECT_GT(std::get<0>(ind[0]), 0.5);
  EXPECT_GT(std::get<0>(ind[0]), 3 * std::get<0>(ind[1])) << "clear margin";
  EXPECT_EQ(std::get<1>(echo[0]), spec.echo_layer);
  EXPECT_EQ(std::get<2>(echo[0]), echo_kv);
  EXPECT_GT(std::get<0>(echo[0]), 0.4);
  EXPECT_GT(std::get<0>(echo[0]), 3 * std::get<0>(echo[1])) << "clear margin";
  // Query-head scores: the planted query heads themselves.
  auto qind = ranked(r.induction_scores), qecho = ranked(r.echo_scores);
  EXPECT_EQ(std::get<1>(qind[0]), spec.induction_layer);
  EXPECT_EQ(std::get<2>(qind[0]), spec.induction_head);
  EXPECT_EQ(std::get<1>(qecho[0]), spec.echo_layer);
  EXPECT_EQ(std::get<2>(qecho[0]), spec.echo_head);

  // Default ratios: round(64 * 0.14) = 9 induction heads, round(64 * 0.01) = 1 echo head.
  size_t n_ind = 0;
  for (const auto& [l, hs] : heads.prefix_matching) n_ind += hs.size();
  EXPECT_EQ(n_ind, 9u);
  ASSERT_TRUE(heads.prefix_matching.count(spec.induction_layer));
  EXPECT_NE(std::find(heads.prefix_matching.at(spec.induction_layer).begin(),
                      heads.prefix_matching.at(spec.induction_layer).end(), ind_kv),
            heads.prefix_matching.at(spec.induction_layer).end());
  EXPECT_EQ(heads.copying, (razor::HeadMap{{spec.echo_layer, {echo_kv}}}));
  auto ret = heads.retrieval_heads();
  EXPECT_NE(std::find(ret.begin(), ret.end(), std::make_pair(spec.echo_layer, echo_kv)), ret.end());
  std::printf("planted: induction %.3f (next %.3f), echo %.3f (next %.3f)\n", std::get<0>(ind[0]),
              std::get<0>(ind[1]), std::get<0>(echo[0]), std::get<0>(echo[1]));
}

TEST(ProbeDeterminism, SameSeedSameTokensAndFiles) {
  REQUIRE_MODEL("stories260K.bin");
  auto model = razor::load_model(razor::test::model_path("stories260K.bin"));
  RARopeCompressConfig cfg;
  cfg.length = 40;
  cfg.seed = 1234;
  const std::string dir = razor::test::temp_dir();
  razor::RARopeCompressor a(*model, nullptr, cfg, 2), b(*model, nullptr, cfg, 1);
  EXPECT_EQ(a.tokens(), b.tokens());
  // Same file names in two directories: a .pt archive names its folder after the file.
  fs::create_directories(dir + "/a");
  fs::create_directories(dir + "/b");
  razor::HeadsFile ha = a.get_compress_heads(dir + "/a/heads.pt", dir + "/a/heads.json");
  razor::HeadsFile hb = b.get_compress_heads(dir + "/b/heads.pt", dir + "/b/heads.json");
  EXPECT_EQ(ha, hb);
  const std::string ja = razor::test::read_text(dir + "/a/heads.json"), jb = razor::test::read_text(dir + "/b/heads.json");
  EXPECT_EQ(strip_seconds(ja), strip_seconds(jb));
  EXPECT_NE(ja.find("\"seconds\""), std::string::npos);
  EXPECT_EQ(razor::test::read_text(dir + "/a/heads.pt"), razor::test::read_text(dir + "/b/heads.pt"));
  // The files carry the selection and the exact tokens.
  razor::HeadsFile back = razor::read_heads(dir + "/a/heads.json");
  ASSERT_TRUE(back.probe.has_value());
  EXPECT_EQ(back.probe->tokens, a.tokens());
  EXPECT_EQ(back.probe->seed, 1234u);
  EXPECT_EQ(back.probe->length, 40);
  EXPECT_EQ(back, ha);
  EXPECT_EQ(razor::read_heads(dir + "/a/heads.pt"), ha);

  cfg.seed = 1235;
  razor::RARopeCompressor c(*model, nullptr, cfg, 2);
  EXPECT_NE(c.tokens(), a.tokens());
  EXPECT_EQ(c.tokens()[0], a.tokens()[0]);
}

TEST(ProbeDeterminism, RunIsComputedOnce) {
  REQUIRE_MODEL("stories260K.bin");
  auto model = razor::load_model(razor::test::model_path("stories260K.bin"));
  RARopeCompressConfig cfg;
  cfg.length = 20;
  razor::RARopeCompressor p(*model, nullptr, cfg, 2);
  EXPECT_FALSE(p.done());
  std::vector<int> seen;
  const razor::ProbeRecord& r = p.run([&](int done, int total) {
    EXPECT_EQ(total, 5);
    seen.push_back(done);
  });
  EXPECT_TRUE(p.done());
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(r.kv_induction.size(), 5u);
  EXPECT_EQ(r.kv_induction[0].size(), 4u);
  EXPECT_EQ(r.induction_scores[0].size(), 8u);
  const double s = r.induction_scores[2][3];
  EXPECT_EQ(p.run().induction_scores[2][3], s);
}

TEST(ProbeCli, WritesPtAndJson) {
  REQUIRE_MODEL("stories260K.bin");
  const std::string dir = razor::test::temp_dir();
  auto r = razor::test::run_cli({"probe", razor::test::model_path("stories260K.bin"), "--length", "40", "-o",
                                 dir + "/x.pt", "--json", dir + "/x.json", "--threads", "2"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("retrieval"), std::string::npos) << r.out;
  razor::HeadsFile j = razor::read_heads(dir + "/x.json"), p = razor::read_heads(dir + "/x.pt");
  EXPECT_EQ(j, p);
  ASSERT_TRUE(j.probe.has_value());
  EXPECT_EQ(j.probe->length, 40);
  EXPECT_EQ(j.probe->repeats, 4);
  EXPECT_EQ(j.probe->tokens.size(), 161u);
  EXPECT_EQ(j.probe->tokens[0], 1);  // BOS from tok512.bin found beside the model
  EXPECT_EQ(j.probe->n_layers, 5);
  // Only --json: no .pt written.
  auto r2 = razor::test::run_cli({"probe", razor::test::model_path("stories260K.bin"), "--length", "10",
                                  "--json", dir + "/only.json", "--quiet"});
  ASSERT_EQ(r2.rc, 0) << r2.err;
  EXPECT_TRUE(fs::exists(dir + "/only.json"));
}

TEST(ProbeCli, BadRatioFailsWithoutTouchingOutput) {
  REQUIRE_MODEL("stories260K.bin");
  const std::string dir = razor::test::temp_dir();
  const std::string out = dir + "/keep.pt";
  razor::test::write_text(out, "sentinel");
  for (auto [flag, value] : std::vector<std::pair<std::string, std::string>>{
           {"--induction-head-ratio", "1.5"}, {"--echo-head-ratio=-0.2", ""}, {"--echo-head-ratio", "nan"}}) {
    std::vector<std::string> args = {"probe", razor::test::model_path("stories260K.bin"), flag};
    if (!value.empty()) args.push_back(value);
    args.insert(args.end(), {"-o", out});
    auto r = razor::test::run_cli(args);
    EXPECT_NE(r.rc, 0) << flag << " " << value;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(flag.substr(0, flag.find('='))), std::string::npos) << r.err;
    EXPECT_EQ(razor::test::read_text(out), "sentinel");
  }
  auto r = razor::test::run_cli({"probe", dir + "/missing.bin", "--induction-head-ratio", "2", "-o", out});
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("--induction-head-ratio"), std::string::npos) << "ratios are checked before loading";
}

TEST(ProbeCli, TooLongLengthHintsTheMaximum) {
  REQUIRE_MODEL("stories260K.bin");
  const std::string dir = razor::test::temp_dir();
  auto r = razor::test::run_cli({"probe", razor::test::model_path("stories260K.bin"), "--length", "1000", "-o",
                                 dir + "/x.pt"});
  EXPECT_NE(r.rc, 0);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("--length 127"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/x.pt"));
  auto r2 = razor::test::run_cli({"probe", razor::test::model_path("stories260K.bin"), "--repeats", "1"});
  EXPECT_NE(r2.rc, 0);
}
