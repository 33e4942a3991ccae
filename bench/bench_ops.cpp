// Kernel microbenchmarks at the Qwen2.5-0.5B shape: best-of-R time per call, GFLOP/s and GB/s.
// With --threads 1 (default) the time is the thread's CPU time, which on a shared machine measures
// the kernel rather than the wait for a core; with more threads it is wall-clock time.
//
//   bench_ops [--threads N] [--repeats R] [--filter SUBSTRING]
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench_common.h"
#include "ops/ops.h"
#include "random_model.h"

namespace {

int g_repeats = 5;
bool g_cpu = true;
std::string g_filter;

void run(const std::string& name, double flops, double bytes, const std::function<void()>& f) {
  if (!g_filter.empty() && name.find(g_filter) == std::string::npos) return;
  f();  // warm up
  double best = 1e30;
  for (int r = 0; r < g_repeats; ++r) {
    double t0 = g_cpu ? bench::thread_cpu() : bench::now();
    f();
    best = std::min(best, (g_cpu ? bench::thread_cpu() : bench::now()) - t0);
  }
  std::printf("%-44s %10.3f ms %9.1f GFLOP/s %8.1f GB/s\n", name.c_str(), best * 1e3, flops / best / 1e9,
              bytes / best / 1e9);
  std::fflush(stdout);
}

std::vector<float> randv(size_t n, uint64_t seed, float scale = 1.0f) {
  std::vector<float> v(n);
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 7;
  for (float& x : v) {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    x = scale * (static_cast<float>((s * 0x2545F4914F6CDD1Dull) >> 40) / 8388608.0f - 1.0f);
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--repeats" && i + 1 < argc) g_repeats = std::atoi(argv[++i]);
    else if (a == "--filter" && i + 1 < argc) g_filter = argv[++i];
    else {
      std::fprintf(stderr, "usage: bench_ops [--threads N] [--repeats R] [--filter S]\n");
      return 2;
    }
  }
  g_cpu = threads == 1;
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);
  std::printf("bench_ops  threads %d  (best of %d, %s time)\n", threads, g_repeats, g_cpu ? "thread CPU" : "wall");
  using razor::ops::matmul;

  razor::ModelConfig c = qwen25_05b_config();
  c.n_layers = 1;
  c.vocab_size = 16;
  auto m = make_random_model(c, razor::DType::BF16, 3);
  auto mf = make_random_model(c, razor::DType::F32, 3);
  const razor::LayerWeights& L = m->layers[0];
  const razor::LayerWeights& LF = mf->layers[0];
  const int64_t T = 2048;
  auto X = randv(T * 4864, 1);
  std::vector<float> Y(T * 4864);

  // lm head sized matrix (bf16), decode
  razor::ModelConfig ch = c;
  ch.vocab_size = 151936;
  ch.n_layers = 1;
  ch.hidden_dim = 16;
  auto mh = make_random_model(ch, razor::DType::BF16, 5);
  run("gemv bf16 lm_head 151936x896 n=1", 2.0 * 151936 * 896, 151936.0 * 896 * 2,
      [&] { matmul(mh->output, X.data(), 1, Y.data()); });
  for (auto [nm, W] : {std::pair{"w1", &L.w1}, {"w2", &L.w2}, {"wq", &L.wq}, {"wk", &L.wk}}) {
    run(std::string("gemv bf16 ") + nm + " n=1", 2.0 * W->rows * W->cols, W->rows * W->cols * 2.0,
        [&] { matmul(*W, X.data(), 1, Y.data()); });
  }
  for (auto [nm, W] : {std::pair{"w1", &LF.w1}, {"wq", &LF.wq}}) {
    run(std::string("gemv f32 ") + nm + " n=1", 2.0 * W->rows * W->cols, W->rows * W->cols * 4.0,
        [&] { matmul(*W, X.data(), 1, Y.data()); });
  }
  for (bool act : {false, true}) {
    razor::ops::set_bf16_activations(act);
    for (auto [nm, W] : {std::pair{"w1", &L.w1}, {"w2", &L.w2}, {"wq", &L.wq}, {"wk", &L.wk}}) {
      run(std::string("gemm bf16 ") + (act ? "bf16act " : "exact ") + nm + " n=2048", 2.0 * T * W->rows * W->cols,
          0, [&] { matmul(*W, X.data(), T, Y.data()); });
    }
  }
  razor::ops::set_bf16_activations(false);
  run("gemm f32 w1 n=2048 (sgemm)", 2.0 * T * LF.w1.rows * LF.w1.cols, 0,
      [&] { matmul(LF.w1, X.data(), T, Y.data()); });

  // Elementwise.
  auto H1 = randv(T * 4864, 2, 4.0f), H3 = randv(T * 4864, 3);
  run("swiglu 2048x4864", 0, T * 4864 * 12.0, [&] { razor::ops::swiglu(H1.data(), H3.data(), T * 4864); });
  auto nw = randv(896, 4);
  run("rmsnorm 2048x896", 0, T * 896 * 8.0,
      [&] { razor::ops::rmsnorm(Y.data(), X.data(), nw.data(), T, 896, 1e-6f); });
  razor::ops::Rope rope;
  rope.init(c);
  run("rope q 2048 x 14 heads", 0, T * 896 * 8.0, [&] { rope.apply(X.data(), T, 14, 0); });

  // Attention: prefill one layer (14 heads over 2 KV heads) and decode at several contexts.
  {
    const int hd = 64, G = 7, nkv = 2;
    auto Q = randv(T * 896, 5), Kc = randv(T * 128, 6), Vc = randv(T * 128, 7);
    std::vector<float> Kh(T * hd * nkv), Vh(T * hd * nkv), out(T * 896);
    for (int g = 0; g < nkv; ++g)
      for (int64_t t = 0; t < T; ++t)
        for (int d = 0; d < hd; ++d) {
          Kh[(g * T + t) * hd + d] = Kc[t * 128 + g * hd + d];
          Vh[(g * T + t) * hd + d] = Vc[t * 128 + g * hd + d];
        }
    const double fl = 4.0 * hd * 14 * (double(T) * (T + 1) / 2);
    run("attend_causal 2048 tokens 14 heads", fl, 0, [&] {
#pragma omp parallel
      {
        std::vector<float> s(razor::ops::kAttnTile * T);
#pragma omp for schedule(dynamic, 1)
        for (int h = 0; h < 14; ++h)
          razor::ops::attend_causal(Q.data() + h * hd, 896, T, Kh.data() + (h / G) * T * hd,
                                    Vh.data() + (h / G) * T * hd, T, hd, out.data() + h * hd, 896, s.data());
      }
    });
    for (int64_t ctx : {2048, 8192, 32768}) {
      auto K = randv(ctx * hd * nkv, 8), V = randv(ctx * hd * nkv, 9);
      auto q = randv(896, 10);
      const double flops = 4.0 * hd * 14 * ctx, bytes = 2.0 * ctx * hd * nkv * 4;
      run("attend_decode 1 layer ctx " + std::to_string(ctx), flops, bytes, [&] {
#pragma omp parallel
        {
          std::vector<float> s(G * (ctx + 1));
#pragma omp for schedule(dynamic, 1)
          for (int g = 0; g < nkv; ++g)
            razor::ops::attend_decode(q.data() + g * G * hd, G, K.data() + g * ctx * hd, V.data() + g * ctx * hd, ctx,
                                      hd, nullptr, nullptr, 0.0f, out.data() + g * G * hd, s.data());
        }
      });
    }
  }
  return 0;
}
