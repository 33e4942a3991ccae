#pragma once
// llama2.c tokenizer files: int32 max_token_len, then per token {float32 score, int32 len, bytes}.
// Encoding follows run.c: optional BOS, a dummy-prefix " " for non-empty text, UTF-8 code points
// looked up as pieces (byte fallback <0xXX> = id byte + 3 otherwise), then greedy merges of the
// adjacent pair whose merged piece has the best score.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace razor {

class Tokenizer {
 public:
  // vocab_size: the model's vocabulary; the file must hold at least that many tokens.
  static Tokenizer load_llama2c(const std::string& path, int vocab_size);

  std::vector<int> encode(std::string_view text, bool bos, bool eos) const;
  // The text of `token` following `prev` (run.c rules: no leading space right after BOS,
  // <0xXX> pieces become the raw byte).
  std::string decode(int prev, int token) const;

  int vocab_size() const { return static_cast<int>(pieces_.size()); }
  const std::string& piece(int id) const { return pieces_.at(id); }
  float score(int id) const { return scores_.at(id); }
  int bos_id() const { return 1; }
  int eos_id() const { return 2; }
  // Byte-fallback tokens "<0xXX>" and control pieces (<unk>, BOS, EOS).
  bool is_byte(int id) const;
  bool is_special(int id) const;
  // -1 when the piece is not in the vocabulary.
  int lookup(std::string_view piece) const;
  // The file's declared longest piece (bytes), and the file it was loaded from.
  int max_token_length() const { return max_token_length_; }
  const std::string& path() const { return path_; }

 private:
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int> index_;
  int max_token_length_ = 0;
  std::string path_;  // for error messages
};

// Looks for a tokenizer next to a llama2.c model: tokNNN.bin matching the vocabulary size,
// then tokenizer.bin. Returns "" when none is found.
std::string find_tokenizer_beside(const std::string& model_path, int vocab_size);

}  // namespace razor
