#pragma once
// llama2.c tokenizer files: int32 max_token_len, then per token {float32 score, int32 len, bytes}.
// Encoding follows run.c: optional BOS, a dummy-prefix " " for non-empty text, UTF-8 code points
// looked up as pieces (byte fallback <0xXX> = id byte + 3 otherwise), then greedy merges of the
// adjacent pair whose merged piece has the best score.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace razor {

class Tokenizer {
 public:
  // vocab_size: the model's vocabulary; the file must hold at least that many tokens.
  static Tokenizer load_llama2c(const std::string& path, int vocab_size);
  // A SentencePiece-style vocabulary given as pieces and scores (e.g. GGUF tokenizer.ggml.tokens /
  // .scores). "\u2581" (the SentencePiece space) in pieces becomes ' ', as in llama2.c tokenizer
  // files, so encode/decode follow the same run.c rules. source_path names it in errors.
  static Tokenizer from_vocab(std::vector<std::string> pieces, std::vector<float> scores,
                              std::string source_path);

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

// The vocabulary embedded in a GGUF file (tokenizer.ggml.tokens and .scores; the first
// vocab_size pieces are used, the file must hold at least that many). nullptr when the file has
// no embedded vocabulary or one razor cannot use (tokenizer.ggml.model other than "llama", the
// SentencePiece kind); a malformed vocabulary is an Error.
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::string& gguf_path, int vocab_size);

}  // namespace razor
