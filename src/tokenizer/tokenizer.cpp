// llama2.c tokenizer: loading (untrusted input), run.c-exact encoding and decoding.
#include "razor/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <queue>
#include <system_error>

#include "razor/error.h"
#include "razor/io.h"

namespace razor {

namespace {

constexpr int kMaxTokenLengthLimit = 65536;
// run.c starts its best-score search at -1e10 and compares with '>': a merge whose score is not
// strictly above this (or is NaN) is never applied.
constexpr float kMinMergeScore = -1e10f;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "<0xHH>" exactly (two hex digits, either case) -> the byte value; -1 otherwise.
int byte_piece_value(std::string_view p) {
  if (p.size() != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>') return -1;
  int hi = hex_value(p[3]), lo = hex_value(p[4]);
  if (hi < 0 || lo < 0) return -1;
  return hi * 16 + lo;
}

template <typename T>
T read_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

Tokenizer Tokenizer::load_llama2c(const std::string& path, int vocab_size) {
  if (vocab_size <= 0) fail(path, "invalid vocabulary size " + std::to_string(vocab_size));
  MappedFile file(path);
  const uint8_t* data = file.data();
  const size_t size = file.size();
  if (size < 4) fail(path, "truncated tokenizer file: missing the max_token_length header");
  const int32_t max_len = read_le<int32_t>(data);
  if (max_len < 1 || max_len > kMaxTokenLengthLimit)
    fail(path, "implausible max_token_length " + std::to_string(max_len) + " (expected 1.." +
                   std::to_string(kMaxTokenLengthLimit) + "): not a llama2.c tokenizer file?");

  Tokenizer t;
  t.path_ = path;
  t.max_token_length_ = max_len;
  // Each token needs at least 8 bytes; never reserve more than the file could hold.
  const size_t reserve = std::min<size_t>(static_cast<size_t>(vocab_size), (size - 4) / 8);
  t.pieces_.reserve(reserve);
  t.scores_.reserve(reserve);
  t.index_.reserve(reserve);

  size_t off = 4;
  for (int i = 0; i < vocab_size; ++i) {
    const size_t remaining = size - off;
    if (remaining < 8)
      fail(path, "truncated tokenizer file: holds only " + std::to_string(i) + " complete tokens, " +
                     "the model's vocabulary needs " + std::to_string(vocab_size));
    const float score = read_le<float>(data + off);
    const int32_t len = read_le<int32_t>(data + off + 4);
    off += 8;
    if (len < 0) fail(path, "token " + std::to_string(i) + " has negative length " + std::to_string(len));
    if (static_cast<size_t>(len) > size - off)
      fail(path, "truncated tokenizer file: token " + std::to_string(i) + " claims " + std::to_string(len) +
                     " bytes but only " + std::to_string(size - off) + " remain");
    t.pieces_.emplace_back(reinterpret_cast<const char*>(data + off), static_cast<size_t>(len));
    t.scores_.push_back(score);
    t.index_.emplace(t.pieces_.back(), i);  // duplicates: the first id wins
    off += static_cast<size_t>(len);
  }
  return t;
}

Tokenizer Tokenizer::from_vocab(std::vector<std::string> pieces, std::vector<float> scores,
                                std::string source_path) {
  if (pieces.empty()) fail(source_path, "empty vocabulary");
  if (pieces.size() != scores.size())
    fail(source_path, "vocabulary has " + std::to_string(pieces.size()) + " pieces but " +
                          std::to_string(scores.size()) + " scores");
  if (pieces.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    fail(source_path, "vocabulary is too large");
  static constexpr std::string_view kSpm = "\xE2\x96\x81";  // U+2581
  Tokenizer t;
  t.path_ = std::move(source_path);
  t.pieces_ = std::move(pieces);
  t.scores_ = std::move(scores);
  t.index_.reserve(t.pieces_.size());
  size_t longest = 1;
  for (size_t i = 0; i < t.pieces_.size(); ++i) {
    std::string& p = t.pieces_[i];
    for (size_t at = p.find(kSpm); at != std::string::npos; at = p.find(kSpm, at + 1))
      p.replace(at, kSpm.size(), " ");
    longest = std::max(longest, p.size());
    t.index_.emplace(p, static_cast<int>(i));  // duplicates: the first id wins
  }
  t.max_token_length_ = static_cast<int>(std::min<size_t>(longest, std::numeric_limits<int>::max()));
  return t;
}

int Tokenizer::lookup(std::string_view piece) const {
  auto it = index_.find(std::string(piece));
  return it == index_.end() ? -1 : it->second;
}

bool Tokenizer::is_byte(int id) const {
  if (id < 0 || id >= vocab_size()) return false;
  return byte_piece_value(pieces_[id]) >= 0;
}

bool Tokenizer::is_special(int id) const {
  if (id < 0 || id >= vocab_size()) return false;
  if (id <= 2) return true;
  const std::string& p = pieces_[id];
  return p == "<unk>" || p == "<s>" || p == "</s>";
}

std::string Tokenizer::decode(int prev, int token) const {
  if (token < 0 || token >= vocab_size())
    fail(path_, "cannot decode token id " + std::to_string(token) + ": outside the vocabulary [0, " +
                    std::to_string(vocab_size()) + ")");
  std::string_view piece = pieces_[token];
  if (prev == bos_id() && !piece.empty() && piece[0] == ' ') piece.remove_prefix(1);
  const int byte = byte_piece_value(piece);
  if (byte >= 0) return std::string(1, static_cast<char>(byte));
  return std::string(piece);
}

std::vector<int> Tokenizer::encode(std::string_view text, bool bos, bool eos) const {
  const int n_vocab = vocab_size();
  std::vector<int> tokens;
  tokens.reserve(text.size() + 3);
  auto byte_token = [&](unsigned char b) {
    const int id = static_cast<int>(b) + 3;
    if (id >= n_vocab)
      fail(path_, "cannot encode byte " + std::to_string(b) + ": no byte-fallback token (vocabulary has " +
                      std::to_string(n_vocab) + " pieces)");
    return id;
  };

  if (bos) tokens.push_back(bos_id());
  if (!text.empty()) {
    // run.c adds the piece " " as a dummy prefix. (run.c would push -1 if " " were missing; we use
    // the byte fallback for ' ' instead.)
    const int space = lookup(" ");
    tokens.push_back(space >= 0 ? space : byte_token(static_cast<unsigned char>(' ')));
  }

  // UTF-8 code points: a byte plus the continuation bytes (10xxxxxx) after it, at most 4 bytes.
  std::string buf;
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    size_t j = i + 1;
    while (j < n && (static_cast<unsigned char>(text[j]) & 0xC0) == 0x80 && j - i < 4) ++j;
    buf.assign(text.data() + i, j - i);
    auto it = index_.find(buf);
    if (it != index_.end()) {
      tokens.push_back(it->second);
    } else {
      for (size_t k = i; k < j; ++k) tokens.push_back(byte_token(static_cast<unsigned char>(text[k])));
    }
    i = j;
  }

  // Greedy merges, identical to run.c's repeated full scan (best score, strictly greater, so the
  // leftmost pair wins ties), done with a doubly linked list and a max-heap with lazy deletion.
  // A node keeps its original position, so "leftmost" is the smallest left position.
  const int m = static_cast<int>(tokens.size());
  if (m >= 2) {
    std::vector<int> prev(m), next(m);
    std::vector<char> alive(m, 1);
    for (int i = 0; i < m; ++i) {
      prev[i] = i - 1;
      next[i] = i + 1 < m ? i + 1 : -1;
    }
    struct Cand {
      float score;
      int left, right;     // node positions
      int ltok, rtok;      // their tokens when the candidate was made
      int merged;          // resulting token
    };
    auto worse = [](const Cand& a, const Cand& b) {
      if (a.score != b.score) return a.score < b.score;
      return a.left > b.left;
    };
    std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
    auto consider = [&](int left, int right) {
      if (left < 0 || right < 0) return;
      buf.assign(pieces_[tokens[left]]);
      buf.append(pieces_[tokens[right]]);
      auto it = index_.find(buf);
      if (it == index_.end()) return;
      const float s = scores_[it->second];
      if (!(s > kMinMergeScore)) return;
      heap.push(Cand{s, left, right, tokens[left], tokens[right], it->second});
    };
    for (int i = 0; i + 1 < m; ++i) consider(i, i + 1);
    while (!heap.empty()) {
      const Cand c = heap.top();
      heap.pop();
      if (!alive[c.left] || next[c.left] != c.right || tokens[c.left] != c.ltok || tokens[c.right] != c.rtok)
        continue;  // stale
      tokens[c.left] = c.merged;
      alive[c.right] = 0;
      next[c.left] = next[c.right];
      if (next[c.right] >= 0) prev[next[c.right]] = c.left;
      consider(prev[c.left], c.left);
      consider(c.left, next[c.left]);
    }
    std::vector<int> merged;
    merged.reserve(m);
    for (int i = 0; i >= 0; i = next[i]) merged.push_back(tokens[i]);
    tokens.swap(merged);
  }

  if (eos) tokens.push_back(eos_id());
  return tokens;
}

std::string find_tokenizer_beside(const std::string& model_path, int vocab_size) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path model(model_path);
  while (model.has_relative_path() && !model.has_filename()) model = model.parent_path();  // "dir/"
  const std::string exact = "tok" + std::to_string(vocab_size) + ".bin";
  const std::string model_name = model.filename().string();

  auto is_file = [&](const fs::path& p) {
    std::error_code e;
    return fs::is_regular_file(p, e);
  };
  auto search = [&](const fs::path& dir) -> std::string {
    const fs::path d = dir.empty() ? fs::path(".") : dir;
    if (vocab_size > 0 && is_file(d / exact)) return (d / exact).string();
    // "<anything>tokNNN.bin" (e.g. tangpoem-tok2048.bin): prefer the longest common prefix with the
    // model's file name, then the lexicographically first name.
    if (vocab_size > 0) {
      std::string best;
      size_t best_common = 0;
      for (fs::directory_iterator it(d, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.size() <= exact.size() || name.compare(name.size() - exact.size(), exact.size(), exact) != 0)
          continue;
        if (!is_file(it->path())) continue;
        size_t common = 0;
        while (common < name.size() && common < model_name.size() && name[common] == model_name[common]) ++common;
        if (best.empty() || common > best_common || (common == best_common && name < best)) {
          best = name;
          best_common = common;
        }
      }
      ec.clear();
      if (!best.empty()) return (d / best).string();
    }
    if (is_file(d / "tokenizer.bin")) return (d / "tokenizer.bin").string();
    return "";
  };

  std::error_code e;
  if (fs::is_directory(model, e)) {  // a checkpoint directory: look inside it first
    std::string found = search(model);
    if (!found.empty()) return found;
  }
  return search(model.parent_path());
}

}  // namespace razor
