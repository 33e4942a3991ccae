// KV cache policies at long contexts: KV bytes held versus a full cache, decode tokens/s, and the
// decode step split into attention (KVCache::attend over every layer, timed separately on the
// same cache) and the rest.
//
//   bench_kv [--threads N] [--contexts 512,8192,32768] [--decode D] [--retrieval 0.15]
//            [--seed S] [--synthetic-kv] [--repeats R]
//
// Context 512 runs stories3M (its whole context; the SPEC default window W = max(4000, N/5)
// keeps everything there, so a row with S0 = 128 shows the policy at work); larger contexts run
// the random BF16 Qwen2.5-0.5B-shaped model on a prompt of random tokens. The razor policy marks
// round(retrieval * layers * kv_heads) (layer, KV head) pairs as retrieval heads, chosen with a
// seeded shuffle; sink 4, S0 = 4000, C = 5 (SPEC defaults), static mode, compensation on.
//
// Prefill is computed once per context, with the full policy: the real forward pass (minutes at
// 32K), or with --synthetic-kv random keys/values appended straight into the cache. The other
// policies' caches are that prefill's cache copied into their session and compressed layer by
// layer, which is exactly what their own prefill would hold (SPEC 4: prefill attention is full,
// each layer is compressed once the prompt has gone through it). Their decode steps (and the
// synthetic run's) then start at RoPE position 0 instead of the prompt length: the same work,
// different (irrelevant) logits.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.h"
#include "random_model.h"
#include "razor/generate.h"
#include "razor/kv_cache.h"
#include "razor/model.h"
#include "razor/session.h"
#include "test_util.h"

namespace {

struct Options {
  int threads = 2;
  std::vector<int> contexts{512, 8192, 32768};
  int decode = 16;
  double retrieval = 0.15;
  uint64_t seed = 7;
  bool synthetic = false;
  int repeats = 5;  // of the attention-only timing
};

struct Row {
  std::string model, policy;
  int context = 0, decode = 0, retrieval_heads = 0, total_heads = 0, window = -1;
  double prefill_s = 0, decode_tps = 0;
  double step_ms = 0, attn_ms = 0, attn_1t_ms = 0;
  size_t bytes_held = 0, bytes_full = 0;
};

std::vector<std::vector<bool>> random_retrieval(const razor::ModelConfig& c, double frac, uint64_t seed, int& count) {
  const int total = c.n_layers * c.n_kv_heads;
  count = static_cast<int>(std::lround(frac * total));
  std::vector<int> idx(static_cast<size_t>(total));
  std::iota(idx.begin(), idx.end(), 0);
  std::mt19937_64 rng(seed);
  for (int i = total - 1; i > 0; --i) std::swap(idx[i], idx[std::uniform_int_distribution<int>(0, i)(rng)]);
  std::vector<std::vector<bool>> t(c.n_layers, std::vector<bool>(c.n_kv_heads, false));
  for (int i = 0; i < count; ++i) t[idx[i] / c.n_kv_heads][idx[i] % c.n_kv_heads] = true;
  return t;
}

// Wall time of one decode step's attention: KVCache::attend for every layer with random queries.
double attention_ms(razor::Session& s, int repeats, int threads) {
  const razor::ModelConfig& c = s.model().config;
  std::vector<float> q(c.q_dim()), out(c.q_dim());
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  for (float& x : q) x = d(rng);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  // One thread: the calling thread's CPU time (robust on a shared machine); more: wall time.
  auto clock = [&] { return threads == 1 ? bench::thread_cpu() : bench::now(); };
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    double t0 = clock();
    for (int l = 0; l < c.n_layers; ++l) s.cache().attend(l, 1, q.data(), out.data());
    best = std::min(best, clock() - t0);
  }
  omp_set_num_threads(saved);
  return best * 1e3;
}

void synthetic_fill(razor::Session& s, int n) {
  const razor::ModelConfig& c = s.model().config;
  const int chunk = 1024;
  std::vector<float> k(static_cast<size_t>(chunk) * c.kv_dim()), v(k.size());
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  for (float& x : k) x = d(rng);
  for (float& x : v) x = d(rng);
  for (int l = 0; l < c.n_layers; ++l) {
    for (int i = 0; i < n; i += chunk) s.cache().append(l, std::min(chunk, n - i), k.data(), v.data());
    s.cache().compress_layer(l, n);
  }
}

// Copies the first n tokens of every head of `src` into `dst` (same model), compressing each layer.
void copy_prompt_cache(const razor::KVCache& src, razor::KVCache& dst, const razor::ModelConfig& c, int n) {
  const int hd = c.head_dim, kv_dim = c.kv_dim();
  std::vector<float> k(static_cast<size_t>(n) * kv_dim), v(k.size());
  for (int l = 0; l < c.n_layers; ++l) {
    for (int g = 0; g < c.n_kv_heads; ++g) {
      const razor::HeadCache& h = src.head(l, g);
      for (int t = 0; t < n; ++t) {
        std::copy_n(h.k.data() + static_cast<size_t>(t) * hd, hd, k.data() + static_cast<size_t>(t) * kv_dim + g * hd);
        std::copy_n(h.v.data() + static_cast<size_t>(t) * hd, hd, v.data() + static_cast<size_t>(t) * kv_dim + g * hd);
      }
    }
    dst.append(l, n, k.data(), v.data());
    dst.compress_layer(l, n);
  }
}

// Decode steps and attention timing on a prepared session.
void measure(razor::Session& s, int tok, Row& r, const Options& o) {
  const razor::ModelConfig& c = s.model().config;
  r.window = s.cache().window();
  r.attn_ms = attention_ms(s, o.repeats, o.threads);
  r.attn_1t_ms = attention_ms(s, o.repeats, 1);
  omp_set_num_threads(o.threads);
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  std::vector<double> steps;
  for (int i = 0; i < o.decode; ++i) {
    double a = bench::now();
    s.decode(tok, logits.data());
    steps.push_back(bench::now() - a);
    tok = razor::argmax(logits.data(), c.vocab_size);
  }
  std::sort(steps.begin(), steps.end());
  r.decode_tps = 1.0 / steps[steps.size() / 2];  // median step: robust to a busy machine
  r.step_ms = steps[0] * 1e3;
  r.bytes_held = s.cache().bytes_held();
  r.bytes_full = s.cache().bytes_full(s.cache().n_tokens(0));
}

struct PolicyCase {
  std::string name;
  razor::KVPolicy policy;
  int retrieval_heads = 0;
};

void run_context(const std::string& model_name, const razor::Model& m, int context,
                 const std::vector<PolicyCase>& policies, const Options& o, std::vector<Row>& rows) {
  const razor::ModelConfig& c = m.config;
  const int prompt = std::min(context, c.max_seq_len - o.decode);
  auto row_for = [&](const PolicyCase& pc) {
    Row r;
    r.model = model_name;
    r.policy = pc.name;
    r.decode = o.decode;
    r.context = prompt;
    r.total_heads = c.n_layers * c.n_kv_heads;
    r.retrieval_heads = pc.policy.retrieval.empty() ? r.total_heads : pc.retrieval_heads;
    return r;
  };
  // Full-policy prefill.
  razor::Session full(m, razor::KVPolicy{}, {.threads = o.threads, .max_tokens = prompt + o.decode});
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  double t0 = bench::now();
  int tok = 5;
  if (o.synthetic) {
    synthetic_fill(full, prompt);
  } else {
    auto tokens = bench::random_tokens(prompt, 3, std::min(c.vocab_size, 32000), 11);
    full.prefill(tokens, logits.data());
    tok = razor::argmax(logits.data(), c.vocab_size);
  }
  const double prefill_s = bench::now() - t0;
  std::fprintf(stderr, "  %s ctx %d: %s %.1f s\n", model_name.c_str(), prompt,
               o.synthetic ? "synthetic fill" : "prefill", prefill_s);
  // The other policies' sessions, from the prompt's cache (before any decode step).
  std::vector<std::unique_ptr<razor::Session>> others;
  for (const PolicyCase& pc : policies) {
    if (pc.policy.retrieval.empty()) {
      others.push_back(nullptr);
      continue;
    }
    auto s = std::make_unique<razor::Session>(m, pc.policy,
                                              razor::SessionOptions{.threads = o.threads, .max_tokens = prompt + o.decode});
    copy_prompt_cache(full.cache(), s->cache(), c, prompt);
    others.push_back(std::move(s));
  }
  for (size_t i = 0; i < policies.size(); ++i) {
    Row r = row_for(policies[i]);
    r.prefill_s = prefill_s;
    measure(others[i] ? *others[i] : full, tok, r, o);
    std::fprintf(stderr, "  %s ctx %d %s: %.2f decode tokens/s\n", model_name.c_str(), prompt, r.policy.c_str(),
                 r.decode_tps);
    rows.push_back(r);
    others[i].reset();
  }
}

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    int x = std::atoi(item.c_str());
    if (item.size() && (item.back() == 'k' || item.back() == 'K')) x *= 1024;
    if (x > 0) v.push_back(x);
  }
  return v;
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
    if (a == "--threads") o.threads = std::max(1, std::atoi(next().c_str()));
    else if (a == "--contexts") o.contexts = parse_list(next());
    else if (a == "--decode") o.decode = std::max(1, std::atoi(next().c_str()));
    else if (a == "--retrieval") o.retrieval = std::atof(next().c_str());
    else if (a == "--seed") o.seed = std::strtoull(next().c_str(), nullptr, 10);
    else if (a == "--synthetic-kv") o.synthetic = true;
    else if (a == "--repeats") o.repeats = std::max(1, std::atoi(next().c_str()));
    else {
      std::fprintf(stderr,
                   "usage: bench_kv [--threads N] [--contexts 512,8192,32768] [--decode D] [--retrieval 0.15]\n"
                   "                [--seed S] [--synthetic-kv] [--repeats R]\n");
      return 2;
    }
  }
  omp_set_num_threads(o.threads);
  std::printf("razor bench_kv  %s  cpu: %s  threads: %d  decode steps: %d  %s\n", bench::today().c_str(),
              bench::cpu_name().c_str(), o.threads, o.decode,
              o.synthetic ? "(synthetic KV fill)" : "(real prefill, full policy)");

  std::vector<Row> rows;
  std::unique_ptr<razor::Model> small, big;
  for (int ctx : o.contexts) {
    const razor::Model* m;
    std::string name;
    if (ctx <= 512) {
      if (!small) {
        if (!razor::test::have_model("stories3M-q80.bin")) {
          std::printf("stories3M-q80.bin not found: context %d skipped\n", ctx);
          continue;
        }
        small = razor::load_model(razor::test::model_path("stories3M-q80.bin"));
      }
      m = small.get();
      name = "stories3M";
    } else {
      if (!big) big = make_random_model(qwen25_05b_config(), razor::DType::BF16, 1);
      m = big.get();
      name = "qwen2.5-0.5B shape";
    }
    int count = 0;
    std::vector<PolicyCase> cases;
    cases.push_back({"full", razor::KVPolicy{}, 0});
    razor::KVPolicy rp;
    rp.retrieval = random_retrieval(m->config, o.retrieval, o.seed, count);
    cases.push_back({"razor", rp, count});
    if (ctx <= 512) {
      rp.compress_threshold = 128;
      cases.push_back({"razor S0=128", rp, count});
    }
    run_context(name, *m, ctx, cases, o, rows);
  }

  std::printf("\n%-19s %-13s %6s %7s %6s | %9s %8s %6s | %9s %9s %8s %8s | %9s\n", "model", "policy", "ctx", "retr",
              "W", "KV MiB", "full MiB", "ratio", "decode/s", "step ms", "attn ms", "attn 1t", "prefill s");
  const Row* full_row = nullptr;
  for (const Row& r : rows) {
    if (r.policy == "full") full_row = &r;
    char retr[32];
    std::snprintf(retr, sizeof retr, "%d/%d", r.retrieval_heads, r.total_heads);
    std::printf("%-19s %-13s %6d %7s %6d | %9.1f %8.1f %6.3f | %9.2f %9.2f %8.2f %8.2f | %9.1f\n", r.model.c_str(),
                r.policy.c_str(), r.context, retr, r.window, r.bytes_held / 1048576.0, r.bytes_full / 1048576.0,
                double(r.bytes_held) / double(r.bytes_full), r.decode_tps, r.step_ms, r.attn_ms, r.attn_1t_ms,
                r.prefill_s);
    if (full_row && &r != full_row && full_row->context == r.context && full_row->model == r.model)
      std::printf("%-19s %-13s %6s %7s %6s | %9s %8s %6s | %9s %9s %7.2fx %7.2fx |\n", "", "  vs full", "", "", "", "",
                  "", "", "", "", r.attn_ms / full_row->attn_ms, r.attn_1t_ms / full_row->attn_1t_ms);
  }
  std::printf("\nKV MiB: bytes the cache holds (allocated) after prefill + decode; full MiB: a full float32\n"
              "cache of the same tokens. decode/s: 1 / median decode step; step ms: fastest decode step.\n"
              "attn ms: one step's attention over all layers (KVCache::attend) with the session's threads\n"
              "(wall, best of %d); attn 1t: the same on\n"
              "one thread, thread CPU time (the work, independent of how heads are spread over threads\n"
              "and of other processes). prefill s: the one full-attention prefill of the context (tokens/s =\n"
              "ctx / prefill s), shared by the policies.\n", o.repeats);
  return 0;
}
