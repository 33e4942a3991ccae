// Forward-pass throughput: prefill and decode tokens/s, achieved GFLOP/s next to the machine's
// measured single-precision GEMM peak (cblas_sgemm at the same thread count), and decode's
// effective weight bandwidth next to a measured streaming-read bandwidth.
//
//   bench_forward [--threads N] [--repeats R] [--only stories3m|qwen05b]
//                 [--prompt P] [--decode D]   (override both models' sizes)
//                 [--bf16-act off|on|both]    (0.5B model: exact F32 activations, the opt-in
//                                              BF16-activation GEMM, or both; decode is exact
//                                              either way)
//                 [--no-huge-pages]           (0.5B weights on 4 KiB pages, as a loader that
//                                              does not advise huge pages leaves them)
#include <cblas.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "bench_common.h"
#include "ops/ops.h"
#include "random_model.h"
#include "razor/generate.h"
#include "razor/model.h"
#include "razor/session.h"
#include "test_util.h"

namespace {

struct Options {
  int threads = 2;
  int repeats = 2;
  std::string only;
  int prompt = 0, decode = 0;
  std::string bf16_act = "both";  // off | on | both: the 0.5B model's prefill precision mode
  bool huge_pages = true;         // the 0.5B model's weights on transparent huge pages
};

// Best-of-repeats sgemm rate, by wall time and by process CPU time / threads.
void sgemm_peak_gflops(int threads, int size, int repeats, double& wall, double& cpu) {
  openblas_set_num_threads(threads);
  omp_set_num_threads(threads);
  const size_t n = static_cast<size_t>(size);
  std::vector<float> a(n * n), b(n * n), c(n * n);
  for (size_t i = 0; i < n * n; ++i) {
    a[i] = static_cast<float>((i * 7) % 13) * 0.01f;
    b[i] = static_cast<float>((i * 5) % 11) * 0.01f;
  }
  double best = 1e30, best_cpu = 1e30;
  for (int r = 0; r < repeats + 1; ++r) {  // the first run warms up
    double c0 = bench::process_cpu(), t0 = bench::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, size, size, size, 1.0f, a.data(), size, b.data(),
                size, 0.0f, c.data(), size);
    double t = bench::now() - t0, tc = (bench::process_cpu() - c0) / threads;
    if (r > 0) best = std::min(best, t), best_cpu = std::min(best_cpu, tc);
  }
  wall = 2.0 * n * n * n / best / 1e9;
  cpu = 2.0 * n * n * n / best_cpu / 1e9;
}

// Streaming read bandwidth over a buffer much larger than the caches (AVX-512 sums, several
// independent accumulators so that the adds are not the limit).
double read_bandwidth_gbs(int threads, size_t bytes, int repeats) {
  const size_t n = bytes / sizeof(float) / 64 * 64;
  std::vector<float> buf(n);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (size_t i = 0; i < n; ++i) buf[i] = static_cast<float>(i & 1023);
  double best = 1e30;
  volatile float sink = 0;
  for (int r = 0; r < repeats + 1; ++r) {
    double t0 = bench::now();
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const size_t b = n / 64 * t / nt * 64, e = n / 64 * (t + 1) / nt * 64;
      __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (size_t i = b; i < e; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(buf.data() + i));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(buf.data() + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(buf.data() + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(buf.data() + i + 48));
      }
      total += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    }
    double t = bench::now() - t0;
    sink = sink + total;
    if (r > 0) best = std::min(best, t);
  }
  return static_cast<double>(n * sizeof(float)) / best / 1e9;
}

size_t weight_bytes(const razor::Model& m, bool with_head) {
  const razor::ModelConfig& c = m.config;
  const size_t es = m.weight_dtype() == razor::DType::BF16 ? 2 : 4;
  size_t per_layer = (size_t(c.q_dim()) * c.dim * 2 + 2ull * c.kv_dim() * c.dim + 3ull * c.hidden_dim * c.dim) * es;
  size_t b = per_layer * c.n_layers;
  if (with_head) b += size_t(c.vocab_size) * c.dim * es;
  return b;
}

struct Result {
  std::string name;
  int prompt = 0, decode = 0;
  double prefill_s = 0, decode_s = 0;
  double prefill_cpu = 0, decode_cpu = 0;      // process CPU seconds of the best runs
  double prefill_gflop = 0, decode_gflop = 0;  // per run
  double decode_bytes = 0;                     // weights read per run
};

Result run_model(const std::string& name, const razor::Model& m, int prompt, int decode, const Options& o) {
  const razor::ModelConfig& c = m.config;
  Result r;
  r.name = name;
  r.prompt = prompt;
  r.decode = decode;
  auto tokens = bench::random_tokens(prompt, 3, std::min(c.vocab_size, 32000), 42);
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  r.prefill_s = r.decode_s = 1e30;
  for (int rep = 0; rep < o.repeats; ++rep) {
    razor::Session s(m, razor::KVPolicy{}, {.threads = o.threads, .max_tokens = prompt + decode});
    double c0 = bench::process_cpu(), t0 = bench::now();
    s.prefill(tokens, logits.data());
    double c1 = bench::process_cpu(), t1 = bench::now();
    int tok = razor::argmax(logits.data(), c.vocab_size);
    for (int i = 0; i < decode; ++i) {
      s.decode(tok, logits.data());
      tok = razor::argmax(logits.data(), c.vocab_size);
    }
    double c2 = bench::process_cpu(), t2 = bench::now();
    if (t1 - t0 < r.prefill_s) r.prefill_s = t1 - t0, r.prefill_cpu = c1 - c0;
    if (t2 - t1 < r.decode_s) r.decode_s = t2 - t1, r.decode_cpu = c2 - c1;
    std::fprintf(stderr, "  %s run %d: prefill %.3f s (cpu %.3f s), decode %.3f s (cpu %.3f s)\n", name.c_str(),
                 rep + 1, t1 - t0, c1 - c0, t2 - t1, c2 - c1);
  }
  const double proj = bench::projection_flops_per_token(c), head = bench::lm_head_flops(c);
  r.prefill_gflop = proj * prompt + head;
  for (int p = 0; p < prompt; ++p) r.prefill_gflop += bench::attention_flops(c, p + 1);
  r.decode_gflop = (proj + head) * decode;
  for (int p = prompt; p < prompt + decode; ++p) r.decode_gflop += bench::attention_flops(c, p + 1);
  r.prefill_gflop /= 1e9;
  r.decode_gflop /= 1e9;
  r.decode_bytes = static_cast<double>(weight_bytes(m, true)) * decode;
  return r;
}

// A copy of `m` with every matrix rounded to BF16 (norms and biases shared with `m`).
std::unique_ptr<razor::Model> to_bf16(const razor::Model& m) {
  auto out = std::make_unique<razor::Model>(m);
  auto conv = [&](razor::Matrix& w) {
    if (w.dtype == razor::DType::BF16) return;
    const size_t n = static_cast<size_t>(w.rows * w.cols);
    auto buf = std::shared_ptr<uint16_t[]>(new uint16_t[n]);
    for (size_t i = 0; i < n; ++i) {
      uint32_t u;
      std::memcpy(&u, w.f32() + i, 4);
      u += 0x7FFFu + ((u >> 16) & 1u);
      buf[i] = static_cast<uint16_t>(u >> 16);
    }
    w.dtype = razor::DType::BF16;
    w.data = buf.get();
    out->storage.push_back(std::shared_ptr<const void>(buf, buf.get()));
  };
  const bool tied = m.output.data == m.tok_embeddings.data;
  conv(out->tok_embeddings);
  if (tied) out->output = out->tok_embeddings; else conv(out->output);
  for (auto& l : out->layers)
    for (razor::Matrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3}) conv(*w);
  return out;
}

// The opt-in BF16-activation prefill against the exact one on stories3M rounded to BF16 (a
// trained model, so the argmax comparison means something).
void precision_check(const razor::Model& f32_model, int threads) {
  auto m = to_bf16(f32_model);
  const razor::ModelConfig& c = m->config;
  const int T = 256, V = c.vocab_size;
  auto tokens = bench::random_tokens(T, 3, V, 5);
  tokens[0] = 1;
  std::vector<float> a(static_cast<size_t>(T) * V), b(a.size());
  for (bool act : {false, true}) {
    razor::ops::set_bf16_activations(act);
    razor::Session s(*m, razor::KVPolicy{}, {.threads = threads, .max_tokens = T});
    s.prefill(tokens, (act ? b : a).data(), true);
  }
  razor::ops::set_bf16_activations(false);
  double max_diff = 0, max_abs = 0, sq = 0;
  int agree = 0;
  for (int t = 0; t < T; ++t) {
    const float* x = a.data() + size_t(t) * V;
    const float* y = b.data() + size_t(t) * V;
    for (int j = 0; j < V; ++j) {
      max_diff = std::max(max_diff, double(std::fabs(x[j] - y[j])));
      max_abs = std::max(max_abs, double(std::fabs(x[j])));
      sq += double(x[j] - y[j]) * (x[j] - y[j]);
    }
    agree += razor::argmax(x, V) == razor::argmax(y, V);
  }
  std::printf("precision of the opt-in BF16 activations (stories3M rounded to BF16, %d-token prefill, all logits):\n"
              "  max |diff| %.4f (logits up to %.2f), rms diff %.5f, argmax agrees at %d/%d positions\n\n",
              T, max_diff, max_abs, std::sqrt(sq / (double(T) * V)), agree, T);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value for %s\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads") o.threads = std::atoi(next().c_str());
    else if (a == "--repeats") o.repeats = std::max(1, std::atoi(next().c_str()));
    else if (a == "--only") o.only = next();
    else if (a == "--prompt") o.prompt = std::atoi(next().c_str());
    else if (a == "--decode") o.decode = std::atoi(next().c_str());
    else if (a == "--bf16-act") o.bf16_act = next();
    else if (a == "--no-huge-pages") o.huge_pages = false;
    else {
      std::fprintf(stderr,
                   "usage: bench_forward [--threads N] [--repeats R] [--only stories3m|qwen05b] "
                   "[--prompt P] [--decode D] [--bf16-act off|on|both] [--no-huge-pages]\n");
      return 2;
    }
  }
  if (o.threads < 1) o.threads = 1;
  omp_set_num_threads(o.threads);

  std::printf("razor bench_forward  %s  cpu: %s  threads: %d\n", bench::today().c_str(), bench::cpu_name().c_str(),
              o.threads);
  double peak = 0, peak_cpu = 0;
  sgemm_peak_gflops(o.threads, 2048, 3, peak, peak_cpu);
  const double bw = read_bandwidth_gbs(o.threads, size_t(1) << 30, 3);
  std::printf("sgemm 2048^3 peak: %.1f GFLOP/s wall, %.1f GFLOP/s by CPU time / threads   streaming read: %.1f GB/s\n\n",
              peak, peak_cpu, bw);

  std::vector<Result> results;
  if (o.only.empty() || o.only == "stories3m") {
    const std::string path = razor::test::model_path("stories3M-q80.bin");
    if (!razor::test::have_model("stories3M-q80.bin")) {
      std::printf("stories3M-q80.bin not found under %s: skipped\n", razor::test::models_dir().c_str());
    } else {
      auto m = razor::load_model(path);
      if (razor::ops::bf16_gemm_available() && o.bf16_act != "off") precision_check(*m, o.threads);
      results.push_back(run_model("stories3M (F32)", *m, o.prompt ? o.prompt : 256, o.decode ? o.decode : 128, o));
    }
  }
  if (o.only.empty() || o.only == "qwen05b") {
    double t0 = bench::now();
    auto m = make_random_model(qwen25_05b_config(), razor::DType::BF16, 1, o.huge_pages);
    std::fprintf(stderr, "random Qwen2.5-0.5B-shaped BF16 model built in %.2f s (%.0fM params)\n",
                 bench::now() - t0, m->n_params() / 1e6);
    for (bool act : {false, true}) {
      if ((act && o.bf16_act == "off") || (!act && o.bf16_act == "on")) continue;
      if (act && !razor::ops::bf16_gemm_available()) continue;
      razor::ops::set_bf16_activations(act);
      results.push_back(run_model(act ? "qwen2.5-0.5B BF16, bf16 act" : "qwen2.5-0.5B BF16, exact", *m,
                                  o.prompt ? o.prompt : 2048, o.decode ? o.decode : 32, o));
    }
    razor::ops::set_bf16_activations(false);
  }

  auto table = [&](const char* title, bool est) {
    std::printf("%s\n", title);
    std::printf("%-28s %6s %6s | %11s %8s %6s | %10s %8s %7s\n", "model", "prompt", "decode", "prefill t/s",
                "GFLOP/s", "%peak", "decode t/s", "GFLOP/s", "GB/s");
    const double pk = est ? peak_cpu : peak;
    for (const Result& r : results) {
      // Estimated: both phases as if every thread had its core: CPU seconds / threads.
      const double ps = est ? r.prefill_cpu / o.threads : r.prefill_s;
      const double ds = est ? r.decode_cpu / o.threads : r.decode_s;
      const double pf = r.prefill_gflop / ps, df = r.decode_gflop / ds;
      std::printf("%-28s %6d %6d | %11.1f %8.1f %5.1f%% | %10.1f %8.2f %7.1f\n", r.name.c_str(), r.prompt, r.decode,
                  r.prompt / ps, pf, 100 * pf / pk, r.decode / ds, df, r.decode_bytes / ds / 1e9);
    }
  };
  table("Wall clock (best run):", false);
  std::printf("\nCPU use of the best runs (process CPU seconds / wall seconds; %d means every thread had its\n"
              "core the whole time, less means the threads waited for cores taken by other processes):\n",
              o.threads);
  for (const Result& r : results)
    std::printf("  %-28s prefill %.2f   decode %.2f\n", r.name.c_str(), r.prefill_cpu / r.prefill_s,
                r.decode_cpu / r.decode_s);
  std::printf("\n");
  table("Idle-machine estimate (time = process CPU seconds / threads; counts OpenMP spin-waits as work,\n"
        "so it errs low; %peak against the sgemm peak measured the same way):", true);
  std::printf("\n(best of %d runs; GFLOP/s counts 2 flops per weight per token for the projections, the\n"
              " lm_head only where logits are computed (last prompt row, every decode step), and causal\n"
              " attention QK^T + PV; GB/s = weight bytes read per decode step / step time)\n",
              o.repeats);
  return 0;
}
