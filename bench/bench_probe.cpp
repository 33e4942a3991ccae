// The probe at the reference size: wall time, tokens/s, achieved GFLOP/s beside the measured
// sgemm peak, and peak RSS.
//
//   bench_probe [--threads N] [--length L] [--skip-large]
//
// Runs stories3M (its whole 512-token context: L = 127, R = 4) and a random BF16 model with
// Qwen2.5-0.5B's shape at the reference probe size (L = 2500, R = 4: 10,001 tokens).
#include <cblas.h>
#include <omp.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_common.h"
#include "random_model.h"
#include "razor/probe.h"
#include "razor/tokenizer.h"
#include "test_util.h"

namespace {

double peak_rss_gib() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / (1024.0 * 1024.0);
}

double sgemm_gflops(int threads, int n) {
  omp_set_num_threads(threads);
  std::vector<float> a(size_t(n) * n, 0.5f), b(size_t(n) * n, 0.25f), c(size_t(n) * n);
  double best = 0;
  for (int r = 0; r < 3; ++r) {
    double t0 = bench::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f,
                c.data(), n);
    best = std::max(best, 2.0 * n * n * n / (bench::now() - t0) / 1e9);
  }
  return best;
}

void run(const char* name, const razor::Model& model, const razor::Tokenizer* tok, int length, int threads,
         double peak) {
  razor::RARopeCompressConfig cfg;
  cfg.length = length;
  razor::RARopeCompressor probe(model, tok, cfg, threads);
  const int T = static_cast<int>(probe.tokens().size());
  const double t0 = bench::now(), c0 = bench::process_cpu();
  const razor::ProbeRecord& rec = probe.run();
  const double wall = bench::now() - t0, cpu = bench::process_cpu() - c0;
  const razor::ModelConfig& c = model.config;
  // Projections of every token, plus causal attention (QK^T and PV) of every query head.
  double flops = T * bench::projection_flops_per_token(c);
  for (int i = 0; i < T; ++i) flops += bench::attention_flops(c, i + 1);
  const auto heads = probe.heads().retrieval_heads();
  std::printf("%-22s %6d %9.2f %9.2f %9.1f %9.1f %6.0f%% %8.2f   %zu/%d heads\n", name, T, wall, cpu / threads,
              T / wall, flops / wall / 1e9, 100.0 * flops / wall / 1e9 / peak, peak_rss_gib(), heads.size(),
              c.n_layers * c.n_kv_heads);
  (void)rec;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, length = 2500;
  bool skip_large = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--length") && i + 1 < argc) length = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--skip-large")) skip_large = true;
    else {
      std::fprintf(stderr, "usage: bench_probe [--threads N] [--length L] [--skip-large]\n");
      return 2;
    }
  }
  const double peak = sgemm_gflops(threads, 2048);
  std::printf("razor probe benchmark, %s, %d threads, %s\n", bench::cpu_name().c_str(), threads,
              bench::today().c_str());
  std::printf("sgemm 2048^3 peak: %.1f GFLOP/s\n\n", peak);
  std::printf("%-22s %6s %9s %9s %9s %9s %7s %8s\n", "model", "tokens", "wall s", "cpu s/thr", "tokens/s",
              "GFLOP/s", "%peak", "RSS GiB");
  const std::string m3 = razor::test::model_path("stories3M-q80.bin");
  if (razor::test::have_model("stories3M-q80.bin")) {
    auto model = razor::load_model(m3);
    auto tok = razor::Tokenizer::load_llama2c(razor::test::model_path("tok4096.bin"), model->config.vocab_size);
    run("stories3M (L=127)", *model, &tok, 0, threads, peak);
  }
  if (!skip_large) {
    razor::ModelConfig c = razor::testkit::qwen25_05b_config();
    auto model = razor::testkit::make_random_model(c, razor::DType::BF16, 1);
    std::string name = "qwen2.5-0.5B bf16 L=" + std::to_string(length);
    run(name.c_str(), *model, nullptr, length, threads, peak);
  }
  return 0;
}
