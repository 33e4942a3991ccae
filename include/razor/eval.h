#pragma once
// What a compressed KV cache costs (SPEC section 4): teacher-forced evaluation of a policy against
// an independent full-cache run on the same tokens, the comparison table (full, razor, streaming
// at equal KV bytes, random heads, razor without compensation) and the built-in name-recall task.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "razor/heads.h"
#include "razor/kv_cache.h"
#include "razor/model.h"
#include "razor/policy.h"
#include "razor/tokenizer.h"

namespace razor {

// ---- one teacher-forced run ----------------------------------------------------------------

struct TeacherForcedRun {
  size_t kv_bytes = 0;       // cache.bytes_held() after the last step
  size_t kv_bytes_full = 0;  // cache.bytes_full(T)
  int window = -1;           // W in effect (-1: never compressed)
  int decode_steps = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

// Prefills tokens[0, prefill) (the session compresses each layer at its end), then decodes
// tokens[prefill, T - 1) one by one. on_logits(i, logits) receives the logits predicting
// tokens[prefill + i], for i in [0, T - prefill).
TeacherForcedRun teacher_force(const Model& model, const std::vector<int>& tokens, int prefill,
                               const KVPolicy& policy, int threads,
                               const std::function<void(int i, const float* logits)>& on_logits);

// ---- evaluation against the full cache -----------------------------------------------------

struct EvalRow {
  std::string name;          // full, razor, streaming, random, razor-no-comp (or the --policy)
  std::string description;   // describe_policy()
  int n_retrieval = 0;       // retrieval kv heads (all when full)
  int n_kv_heads = 0;        // layers * kv heads
  int window = -1;           // W (-1: full)
  int sink = 0;
  bool compensation = false;
  size_t kv_bytes = 0, kv_bytes_full = 0;
  int n_scored = 0;          // continuation tokens
  double nll = 0, ppl = 0;   // mean negative log-likelihood of the continuation, exp(nll)
  double kl_mean = 0, kl_max = 0;  // KL(full || policy) per token, nats
  double top1_agreement = 1;       // argmax equal to the full cache's
  double prefill_seconds = 0, decode_seconds = 0, decode_tokens_per_s = 0;
};

struct EvalRequest {
  std::vector<int> tokens;
  int prefill = 0;           // P: 1 <= P < T
  PolicyOptions policy;      // the evaluated policy (and the base settings of --compare)
  bool compare = false;      // all five rows (needs a heads file)
  int threads = 0;
  std::string model_name;    // for the report
  std::string source;        // where the tokens came from, for the report
};

struct EvalReport {
  std::string model, source;
  int n_tokens = 0, prefill = 0, vocab = 0;
  std::vector<EvalRow> rows;           // full first
  std::vector<float> logits;           // [T - P][vocab] of `logits_row`, when requested
  int logits_row = -1;
};

// The policies --compare runs, in table order: full, razor, streaming (largest window whose KV
// bytes do not exceed razor's), random (as many heads, seeded), razor-no-comp.
struct NamedPolicy {
  std::string name;
  KVPolicy policy;
};
std::vector<NamedPolicy> comparison_policies(const ModelConfig& config, const PolicyOptions& base,
                                             const HeadsFile& heads, int n_prompt, int max_tokens);

// Validates the request (P range, tokens in vocabulary and within the context) and runs it.
// keep_logits: fill report.logits with the evaluated policy's logits (razor's with compare).
EvalReport run_eval(const Model& model, const EvalRequest& request, bool keep_logits);

std::string format_eval_table(const EvalReport& report);
std::string eval_report_json(const EvalReport& report);

// ---- inputs and outputs --------------------------------------------------------------------

// A JSON array of token ids, each an integer in [0, vocab). Errors name the file.
std::vector<int> read_tokens_json(const std::string& path, int vocab);

// NumPy .npy v1.0, '<f4', C order, shape (rows, cols).
std::string npy_f32(const float* data, size_t rows, size_t cols);
void write_npy_f32(const std::string& path, const float* data, size_t rows, size_t cols);  // atomic

// ---- built-in texts and tasks --------------------------------------------------------------

// A TinyStories-style story (made-up multi-token names that recur far apart), deterministic in
// `seed`, at least min_tokens long under `tokenizer` (with BOS) and no longer than max_tokens.
std::vector<int> synthetic_story(const Tokenizer& tokenizer, uint64_t seed, int min_tokens, int max_tokens,
                                 std::string* text = nullptr);

struct NameRecallOptions {
  int stories = 20;
  uint64_t seed = 0;
  PolicyOptions policy;      // heads, N0, W (defaults to 32 here), mode
  int threads = 0;
  int max_tokens = 0;        // 0: the model's context
};

// One story: [BOS] intro naming a made-up name -> filler (no name, longer than W) -> cue.
// Prefill ends before the cue; the cue and the name are teacher-forced.
struct NameRecallStory {
  std::string text, name;
  std::vector<int> tokens;   // story + name
  int prefill = 0;           // tokens before the cue
  int name_begin = 0;        // first name token
  int last_mention_end = 0;  // position after the last earlier mention of the name
};
NameRecallStory make_name_recall_story(const Tokenizer& tokenizer, uint64_t seed, int min_filler_tokens,
                                       int max_tokens);

struct NameRecallRow {
  std::string name;
  int n_retrieval = 0, n_kv_heads = 0;
  int window_min = 0, window_max = 0;
  double kv_fraction = 0;    // mean bytes held / full
  int recalled = 0, stories = 0;      // greedy decoding reproduces the whole name
  int name_tokens_top1 = 0, name_tokens = 0;
  double name_nll = 0;       // mean over name tokens, nats
};

struct NameRecallReport {
  std::string model;
  int window = 0, sink = 0;
  std::string mode;
  std::vector<NameRecallStory> stories;
  std::vector<NameRecallRow> rows;
};

NameRecallReport run_name_recall(const Model& model, const Tokenizer& tokenizer, const HeadsFile& heads,
                                 const NameRecallOptions& options);
std::string format_name_recall_table(const NameRecallReport& report);
std::string name_recall_json(const NameRecallReport& report);

}  // namespace razor
