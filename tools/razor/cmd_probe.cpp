// razor probe: find retrieval heads (SPEC section 2) and write the heads file(s).
#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>

#include "commands.h"
#include "model_options.h"
#include "razor/error.h"
#include "razor/probe.h"

namespace razor::cli {

namespace {

struct ProbeArgs {
  ModelOptions model;
  RARopeCompressConfig cfg;
  std::string output, json;
  bool quiet = false;
};

std::string fmt_ratio(double x) {
  std::ostringstream os;
  os << x;
  return os.str();
}

std::string fmt_seconds(double s) {
  char buf[32];
  if (s < 10) std::snprintf(buf, sizeof buf, "%.1fs", s);
  else if (s < 60) std::snprintf(buf, sizeof buf, "%.0fs", s);
  else std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  return buf;
}

void check_ratio(double r, const char* flag) {
  if (!(r >= 0.0 && r <= 1.0)) throw Error(std::string(flag) + " must lie in [0, 1], got " + fmt_ratio(r));
}

// Fails early (before a long probe) when an output's directory is missing.
void check_output_dir(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path parent = fs::path(path).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  if (!fs::is_directory(parent, ec)) fail(path, "directory " + parent.string() + " does not exist");
}

std::string format_map(const HeadMap& m) {
  if (m.empty()) return "{}";
  std::string s = "{";
  bool first = true;
  for (const auto& [layer, heads] : m) {
    s += (first ? "" : ", ") + std::to_string(layer) + ": [";
    first = false;
    for (size_t i = 0; i < heads.size(); ++i) s += (i ? ", " : "") + std::to_string(heads[i]);
    s += "]";
  }
  return s + "}";
}

size_t count(const HeadMap& m) {
  size_t n = 0;
  for (const auto& [l, hs] : m) n += hs.size();
  return n;
}

int run_probe(ProbeArgs& a) {
  // Cheap checks first: nothing heavy is loaded for a bad option.
  check_ratio(a.cfg.induction_head_ratio, "--induction-head-ratio");
  check_ratio(a.cfg.echo_head_ratio, "--echo-head-ratio");
  if (a.cfg.repeats < 2) throw Error("--repeats must be at least 2, got " + std::to_string(a.cfg.repeats));
  if (a.cfg.length < 0) throw Error("--length must be positive, got " + std::to_string(a.cfg.length));
  a.cfg.validate();
  if (a.output.empty() && a.json.empty()) a.output = "heads.pt";
  if (!a.output.empty()) check_output_dir(a.output);
  if (!a.json.empty()) check_output_dir(a.json);

  auto model = a.model.load();
  auto tok = a.model.load_tokenizer(*model);
  const ModelConfig& c = model->config;
  std::unique_ptr<RARopeCompressor> probe;
  try {
    probe = std::make_unique<RARopeCompressor>(*model, tok.get(), a.cfg, a.model.threads);
  } catch (const Error& e) {  // name the model the problem is about
    std::string msg = e.what();
    if (msg.rfind(model->path, 0) == 0) throw;
    throw Error(model->path + ": " + msg);
  }
  const int T = static_cast<int>(probe->tokens().size());

  const bool bar = !a.quiet && isatty(2);
  const auto t0 = std::chrono::steady_clock::now();
  ProbeProgress progress;
  if (bar)
    progress = [&](int done, int total) {
      const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const int width = 30, fill = total ? done * width / total : width;
      std::string eta = done > 0 && done < total ? " ETA " + fmt_seconds(el / done * (total - done)) : "";
      std::fprintf(stderr, "\rprobe: layer %d/%d [%s%s] %s elapsed%s   ", done, total, std::string(fill, '#').c_str(),
                   std::string(width - fill, '.').c_str(), fmt_seconds(el).c_str(), eta.c_str());
      std::fflush(stderr);
    };
  HeadsFile heads = probe->heads(progress);
  if (bar) std::fprintf(stderr, "\r%*s\r", 90, "");
  const ProbeRecord& r = *heads.probe;
  if (!a.output.empty()) write_heads_pt(a.output, heads);
  if (!a.json.empty()) write_heads_json(a.json, heads);

  const int n_kv = c.n_layers * c.n_kv_heads;
  const size_t n_ret = heads.retrieval_heads().size();
  std::printf("model: %s (%d layers, %d heads, %d kv heads, head dim %d)\n", model->path.c_str(), c.n_layers,
              c.n_heads, c.n_kv_heads, c.head_dim);
  std::printf("probe: 1 + %d x %d = %d tokens, prefix %d, seed %llu%s\n", r.length, r.repeats, T, r.tokens[0],
              static_cast<unsigned long long>(r.seed), tok ? "" : " (no tokenizer: config BOS)");
  std::printf("induction heads (prefix_matching, ratio %s): %zu of %d kv heads %s\n",
              fmt_ratio(a.cfg.induction_head_ratio).c_str(), count(heads.prefix_matching), n_kv,
              format_map(heads.prefix_matching).c_str());
  std::printf("echo heads (copying, ratio %s): %zu of %d kv heads %s\n", fmt_ratio(a.cfg.echo_head_ratio).c_str(),
              count(heads.copying), n_kv, format_map(heads.copying).c_str());
  std::printf("retrieval heads (union): %zu of %d kv heads = %.1f%% of the KV cache kept in full\n", n_ret, n_kv,
              100.0 * n_ret / std::max(n_kv, 1));
  const int threads = a.model.threads > 0 ? a.model.threads : omp_get_num_procs();
  std::printf("time: %.2f s with %d thread%s, %.0f tokens/s\n", r.seconds, threads, threads == 1 ? "" : "s",
              T / std::max(r.seconds, 1e-9));
  if (!a.output.empty()) std::printf("wrote %s\n", a.output.c_str());
  if (!a.json.empty()) std::printf("wrote %s\n", a.json.c_str());
  return 0;
}

}  // namespace

void add_probe(CLI::App& app, Runner& run) {
  auto a = std::make_shared<ProbeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "probe", "Find retrieval heads (induction + echo) with repeated random tokens, as msModelSlim's RARopeCompressor");
  a->model.add(cmd);
  cmd->add_option("--induction-head-ratio", a->cfg.induction_head_ratio,
                  "share of KV heads selected as induction (prefix matching) heads, in [0, 1]")
      ->capture_default_str();
  cmd->add_option("--echo-head-ratio", a->cfg.echo_head_ratio,
                  "share of KV heads selected as echo (copying) heads, in [0, 1]")
      ->capture_default_str();
  cmd->add_option("--length", a->cfg.length,
                  "random block length L (default: min(2500, (max_seq - 1) / repeats))");
  cmd->add_option("--repeats", a->cfg.repeats, "times the block is repeated (>= 2)")->capture_default_str();
  cmd->add_option("--seed", a->cfg.seed, "seed of the random token ids")->capture_default_str();
  cmd->add_option("-o,--output", a->output, "heads file in PyTorch .pt format (default heads.pt unless --json)");
  cmd->add_option("--json", a->json, "also (or only) write the .json with scores and tokens");
  cmd->add_flag("-q,--quiet", a->quiet, "no progress bar");
  cmd->callback([a, &run] { run = [a] { return run_probe(*a); }; });
}

}  // namespace razor::cli
