#include "razor/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace razor {

int argmax(const float* x, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

Sampler::Sampler(float temperature, float top_p, uint64_t seed)
    : temperature_(temperature), top_p_(top_p), state_(seed ? seed : 0x9E3779B97F4A7C15ULL) {}

float Sampler::uniform() {  // xorshift64*, as llama2.c
  state_ ^= state_ >> 12;
  state_ ^= state_ << 25;
  state_ ^= state_ >> 27;
  return static_cast<float>((state_ * 0x2545F4914F6CDD1DULL) >> 32 >> 8) / 16777216.0f;
}

int Sampler::sample(const float* logits, int vocab) {
  if (temperature_ <= 0.0f) return argmax(logits, vocab);
  const float mx = *std::max_element(logits, logits + vocab);
  candidates_.resize(vocab);
  float sum = 0.0f;
  for (int i = 0; i < vocab; ++i) {
    float p = std::exp((logits[i] - mx) / temperature_);
    candidates_[i] = {p, i};
    sum += p;
  }
  int n = vocab;
  float mass = sum;
  if (top_p_ > 0.0f && top_p_ < 1.0f) {
    std::sort(candidates_.begin(), candidates_.end(), [](auto& a, auto& b) { return a.first > b.first; });
    float acc = 0.0f;
    for (n = 0; n < vocab;) {
      acc += candidates_[n++].first;
      if (acc >= top_p_ * sum) break;
    }
    mass = acc;
  }
  const float r = uniform() * mass;
  float acc = 0.0f;
  for (int i = 0; i < n; ++i) {
    acc += candidates_[i].first;
    if (r < acc) return candidates_[i].second;
  }
  return candidates_[n - 1].second;
}

GenerateResult generate(Session& session, const std::vector<int>& prompt, const GenerateOptions& options,
                        const std::function<void(int prev, int token)>& on_token) {
  using clock = std::chrono::steady_clock;
  GenerateResult result;
  result.prompt_tokens = prompt;
  if (prompt.empty()) throw Error("generate: empty prompt");
  const ModelConfig& c = session.model().config;
  std::vector<float> logits(c.vocab_size);
  Sampler sampler(options.temperature, options.top_p, options.seed);
  for (size_t i = 1; i < prompt.size(); ++i)
    if (on_token) on_token(prompt[i - 1], prompt[i]);

  auto t0 = clock::now();
  session.prefill(prompt, logits.data());
  auto t1 = clock::now();
  result.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();
  int prev = prompt.back();
  for (int step = 0; step < options.max_new_tokens; ++step) {
    const int next = sampler.sample(logits.data(), c.vocab_size);
    if (options.stop_at_eos && (next == c.bos_id || next == c.eos_id)) break;
    result.tokens.push_back(next);
    if (on_token) on_token(prev, next);
    prev = next;
    if (step + 1 == options.max_new_tokens) break;
    session.decode(next, logits.data());
  }
  result.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return result;
}

}  // namespace razor
