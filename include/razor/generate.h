#pragma once
// Text generation over a Session: prompt prefill, then sampled decode steps.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "razor/session.h"
#include "razor/tokenizer.h"

namespace razor {

// Greedy when temperature == 0; otherwise softmax(logits / T), nucleus-filtered when top_p < 1.
class Sampler {
 public:
  Sampler(float temperature, float top_p, uint64_t seed);
  int sample(const float* logits, int vocab);

 private:
  float temperature_, top_p_;
  uint64_t state_;
  std::vector<std::pair<float, int>> candidates_;
  float uniform();
};

int argmax(const float* x, int n);

struct GenerateOptions {
  int max_new_tokens = 256;
  float temperature = 0.0f;
  float top_p = 1.0f;
  uint64_t seed = 0;
  bool stop_at_eos = true;  // BOS or EOS ends generation (llama2.c stops on BOS)
};

struct GenerateResult {
  std::vector<int> prompt_tokens;
  std::vector<int> tokens;  // generated
  double prefill_seconds = 0, decode_seconds = 0;
};

// on_piece receives the decoded text of every prompt token after BOS, then of each generated
// token, as it is produced.
GenerateResult generate(Session& session, const std::vector<int>& prompt, const GenerateOptions& options,
                        const std::function<void(int prev, int token)>& on_token);

}  // namespace razor
