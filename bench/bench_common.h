#pragma once
// Small helpers shared by the bench programs (header only: every bench/*.cpp is its own program).
#include <omp.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "razor/model.h"

namespace bench {

inline double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU time of the calling thread / of the whole process (seconds). On a shared machine the
// thread's CPU time of a single-threaded run measures the work without the time spent waiting
// for a core.
inline double thread_cpu() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}
inline double process_cpu() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

// Deterministic token ids in [lo, hi).
inline std::vector<int> random_tokens(int n, int lo, int hi, uint64_t seed) {
  std::vector<int> t(static_cast<size_t>(n));
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int& x : t) {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    x = lo + static_cast<int>(((s * 0x2545F4914F6CDD1Dull) >> 33) % static_cast<uint64_t>(hi - lo));
  }
  return t;
}

// Multiply-add flops of the per-token projections (q, k, v, o, gate, up, down) of all layers.
inline double projection_flops_per_token(const razor::ModelConfig& c) {
  const double per_layer = double(c.q_dim()) * c.dim * 2 + 2.0 * c.kv_dim() * c.dim + 3.0 * c.hidden_dim * c.dim;
  return 2.0 * per_layer * c.n_layers;
}
inline double lm_head_flops(const razor::ModelConfig& c) { return 2.0 * c.vocab_size * c.dim; }
// Attention flops (QK^T and PV) of one query at a position that sees `visible` keys.
inline double attention_flops(const razor::ModelConfig& c, double visible) {
  return 4.0 * c.head_dim * visible * c.n_heads * c.n_layers;
}

inline std::string today() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", std::localtime(&t));
  return buf;
}

inline std::string cpu_name() {
  FILE* f = std::fopen("/proc/cpuinfo", "r");
  if (!f) return "?";
  char line[512];
  std::string name = "?";
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, "model name", 10) == 0) {
      const char* p = std::strchr(line, ':');
      if (p) name = p + 2;
      if (!name.empty() && name.back() == '\n') name.pop_back();
      break;
    }
  std::fclose(f);
  return name;
}

}  // namespace bench
