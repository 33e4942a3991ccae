// llama2.c tokenizer: loading (incl. hostile files), run.c-exact encode/decode, finding the file.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "razor/error.h"
#include "razor/tokenizer.h"
#include "test_util.h"

namespace {

using razor::Tokenizer;
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// An independent reference: parse the file here and port run.c's encode() literally
// (sorted-vocab lookup via std::map, O(n^2) merge loop with a full rescan after every merge).

struct RefVocab {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::map<std::string, int> sorted;  // str_lookup
};

RefVocab ref_load(const std::string& path, int vocab_size) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << path;
  RefVocab v;
  int32_t max_len = 0;
  f.read(reinterpret_cast<char*>(&max_len), 4);
  for (int i = 0; i < vocab_size; ++i) {
    float score = 0;
    int32_t len = 0;
    f.read(reinterpret_cast<char*>(&score), 4);
    f.read(reinterpret_cast<char*>(&len), 4);
    std::string s(static_cast<size_t>(len), '\0');
    f.read(s.data(), len);
    EXPECT_TRUE(f.good()) << path << " token " << i;
    v.pieces.push_back(s);
    v.scores.push_back(score);
    v.sorted.emplace(s, i);
  }
  return v;
}

int ref_lookup(const RefVocab& v, const std::string& s) {
  auto it = v.sorted.find(s);
  return it == v.sorted.end() ? -1 : it->second;
}

std::vector<int> ref_encode(const RefVocab& v, const std::string& text, bool bos, bool eos) {
  std::vector<int> tokens;
  if (bos) tokens.push_back(1);
  if (!text.empty()) tokens.push_back(ref_lookup(v, " "));
  std::string str_buffer;
  const size_t n = text.size();
  for (size_t c = 0; c < n; ++c) {
    if ((static_cast<unsigned char>(text[c]) & 0xC0) != 0x80) str_buffer.clear();
    str_buffer.push_back(text[c]);
    const unsigned char next = c + 1 < n ? static_cast<unsigned char>(text[c + 1]) : 0;
    if ((next & 0xC0) == 0x80 && str_buffer.size() < 4) continue;
    int id = ref_lookup(v, str_buffer);
    if (id != -1) {
      tokens.push_back(id);
    } else {
      for (unsigned char b : str_buffer) tokens.push_back(static_cast<int>(b) + 3);
    }
    str_buffer.clear();
  }
  while (true) {
    float best_score = -1e10f;
    int best_id = -1, best_idx = -1;
    for (size_t i = 0; i + 1 < tokens.size(); ++i) {
      int id = ref_lookup(v, v.pieces[tokens[i]] + v.pieces[tokens[i + 1]]);
      if (id != -1 && v.scores[id] > best_score) {
        best_score = v.scores[id];
        best_id = id;
        best_idx = static_cast<int>(i);
      }
    }
    if (best_idx == -1) break;
    tokens[best_idx] = best_id;
    tokens.erase(tokens.begin() + best_idx + 1);
  }
  if (eos) tokens.push_back(2);
  return tokens;
}

// ---------------------------------------------------------------------------------------------
// Helpers for synthetic files.

void put_i32(std::string& b, int32_t v) { b.append(reinterpret_cast<const char*>(&v), 4); }
void put_f32(std::string& b, float v) { b.append(reinterpret_cast<const char*>(&v), 4); }

std::string tok_bytes(int32_t max_len, const std::vector<std::pair<float, std::string>>& toks) {
  std::string b;
  put_i32(b, max_len);
  for (const auto& [score, piece] : toks) {
    put_f32(b, score);
    put_i32(b, static_cast<int32_t>(piece.size()));
    b += piece;
  }
  return b;
}

// The usual llama2.c layout: <unk>, BOS, EOS, 256 byte tokens (score 0), then `rest`.
std::vector<std::pair<float, std::string>> base_vocab() {
  std::vector<std::pair<float, std::string>> t = {{0.f, "<unk>"}, {0.f, "\n<s>\n"}, {0.f, "\n</s>\n"}};
  static const char* hex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) t.push_back({0.f, std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">"});
  return t;
}

std::string write_tok(const std::string& name, int32_t max_len, const std::vector<std::pair<float, std::string>>& toks) {
  std::string path = razor::test::temp_dir() + "/" + name;
  razor::test::write_text(path, tok_bytes(max_len, toks));
  return path;
}

std::string decode_all(const Tokenizer& t, const std::vector<int>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == t.bos_id() || ids[i] == t.eos_id()) continue;
    out += t.decode(i == 0 ? -1 : ids[i - 1], ids[i]);
  }
  return out;
}

// Expects load_llama2c(path) to throw razor::Error naming the path (and `what` when given).
void expect_load_error(const std::string& path, int vocab, const std::string& what = "") {
  try {
    Tokenizer::load_llama2c(path, vocab);
    ADD_FAILURE() << "no error for " << path;
  } catch (const razor::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "multi-line error: " << msg;
    if (!what.empty()) {
      EXPECT_NE(msg.find(what), std::string::npos) << msg;
    }
  }
}

const std::vector<std::string>& english_texts() {
  static const std::vector<std::string> texts = {
      "Once upon a time",
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
      "a",
      " ",
      "  leading and trailing spaces  ",
      "Tom said, \"Hello!\" and ran away.\nThe end.\n\n",
      "tabs\tand\r\ncontrol\x01\x7f bytes",
      "emoji \xF0\x9F\x98\x80 and \xF0\x9F\x8D\x95 pizza, snowman \xE2\x98\x83, caf\xC3\xA9",
      "\xE4\xBD\xA0\xE5\xA5\xBD\xE4\xB8\x96\xE7\x95\x8C",  // 你好世界
      "invalid utf8 \xFF\xFE\xC3 then \x80\x80\x80\x80\x80\x80 stray continuations",
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      "the the the the the the the the",
      "<0x41> looks like a byte piece",
      "1234567890 !@#$%^&*()_+-=[]{};':,./<>?",
  };
  return texts;
}

// ---------------------------------------------------------------------------------------------
// The shared tokenizer files.

TEST(Tokenizer, LoadsSharedTokenizers) {
  REQUIRE_MODEL("tok512.bin");
  REQUIRE_MODEL("tok4096.bin");
  REQUIRE_MODEL("tangpoem-tok2048.bin");
  Tokenizer t512 = Tokenizer::load_llama2c(razor::test::model_path("tok512.bin"), 512);
  Tokenizer t4096 = Tokenizer::load_llama2c(razor::test::model_path("tok4096.bin"), 4096);
  Tokenizer tang = Tokenizer::load_llama2c(razor::test::model_path("tangpoem-tok2048.bin"), 2048);
  EXPECT_EQ(t512.vocab_size(), 512);
  EXPECT_EQ(t4096.vocab_size(), 4096);
  EXPECT_EQ(tang.vocab_size(), 2048);
  EXPECT_EQ(t512.max_token_length(), 7);
  EXPECT_EQ(t4096.max_token_length(), 14);
  EXPECT_EQ(tang.max_token_length(), 5);
  for (const Tokenizer* t : {&t512, &t4096}) {
    EXPECT_EQ(t->piece(0), "<unk>");
    EXPECT_EQ(t->piece(1), "\n<s>\n");
    EXPECT_EQ(t->piece(2), "\n</s>\n");
    EXPECT_EQ(t->piece(259), " t");
    EXPECT_EQ(t->score(260), -1.0f);
    EXPECT_EQ(t->lookup(" t"), 259);
    EXPECT_EQ(t->lookup("he"), 260);
    EXPECT_EQ(t->lookup("no such piece \x01"), -1);
    EXPECT_EQ(t->bos_id(), 1);
    EXPECT_EQ(t->eos_id(), 2);
  }
  EXPECT_EQ(tang.piece(1), "<s>");
  EXPECT_EQ(tang.piece(3), "\n");
  // Loading the first N tokens of a bigger file is allowed (run.c reads vocab_size tokens).
  EXPECT_EQ(Tokenizer::load_llama2c(razor::test::model_path("tok4096.bin"), 300).vocab_size(), 300);
}

TEST(Tokenizer, ByteTokensAndSpecials) {
  REQUIRE_MODEL("tok512.bin");
  REQUIRE_MODEL("tok4096.bin");
  REQUIRE_MODEL("tangpoem-tok2048.bin");
  static const char* hex = "0123456789ABCDEF";
  for (const char* name : {"tok512.bin", "tok4096.bin"}) {
    Tokenizer t = Tokenizer::load_llama2c(razor::test::model_path(name), name[3] == '5' ? 512 : 4096);
    for (int b = 0; b < 256; ++b) {
      std::string expect = std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
      EXPECT_EQ(t.piece(b + 3), expect) << name;
      EXPECT_TRUE(t.is_byte(b + 3)) << name << " " << b;
      EXPECT_FALSE(t.is_special(b + 3)) << name << " " << b;
      EXPECT_EQ(t.lookup(expect), b + 3);
      EXPECT_EQ(t.decode(5, b + 3), std::string(1, static_cast<char>(b))) << name << " " << b;
    }
    for (int id : {0, 1, 2}) {
      EXPECT_TRUE(t.is_special(id));
      EXPECT_FALSE(t.is_byte(id));
    }
    for (int id = 259; id < t.vocab_size(); ++id) {
      EXPECT_FALSE(t.is_byte(id)) << name << " " << id << " " << t.piece(id);
      EXPECT_FALSE(t.is_special(id)) << name << " " << id;
    }
    EXPECT_FALSE(t.is_byte(-1));
    EXPECT_FALSE(t.is_byte(t.vocab_size()));
    EXPECT_FALSE(t.is_special(t.vocab_size()));
  }
  // The Tang-poem vocabulary has no byte tokens; its specials are "<unk>", "<s>", "</s>".
  Tokenizer tang = Tokenizer::load_llama2c(razor::test::model_path("tangpoem-tok2048.bin"), 2048);
  int bytes = 0, specials = 0;
  for (int id = 0; id < tang.vocab_size(); ++id) {
    bytes += tang.is_byte(id);
    specials += tang.is_special(id);
  }
  EXPECT_EQ(bytes, 0);
  EXPECT_EQ(specials, 3);
}

TEST(Tokenizer, ControlPiecesRecognisedAnywhere) {
  auto toks = base_vocab();
  toks.push_back({-1.f, " "});
  toks.push_back({-2.f, "<unk>"});  // a duplicate control piece at another id
  toks.push_back({-3.f, "</s>"});
  toks.push_back({-4.f, "<0xff>"});  // lower-case hex is still a byte piece
  toks.push_back({-5.f, "<0x4>"});   // not a byte piece
  toks.push_back({-6.f, "<0x41>x"});
  std::string path = write_tok("ctl.bin", 7, toks);
  Tokenizer t = Tokenizer::load_llama2c(path, static_cast<int>(toks.size()));
  EXPECT_TRUE(t.is_special(260));
  EXPECT_TRUE(t.is_special(261));
  EXPECT_FALSE(t.is_special(259));
  EXPECT_TRUE(t.is_byte(262));
  EXPECT_EQ(t.decode(7, 262), "\xFF");
  EXPECT_FALSE(t.is_byte(263));
  EXPECT_EQ(t.decode(7, 263), "<0x4>");
  EXPECT_FALSE(t.is_byte(264));
  EXPECT_EQ(t.decode(7, 264), "<0x41>x");
  EXPECT_EQ(t.lookup("<unk>"), 0);  // the first of duplicate pieces wins
}

TEST(TokenizerEncode, EmptyText) {
  REQUIRE_MODEL("tok512.bin");
  Tokenizer t = Tokenizer::load_llama2c(razor::test::model_path("tok512.bin"), 512);
  EXPECT_EQ(t.encode("", true, false), std::vector<int>({1}));
  EXPECT_EQ(t.encode("", false, false), std::vector<int>());
  EXPECT_EQ(t.encode("", true, true), std::vector<int>({1, 2}));
  EXPECT_EQ(t.encode("", false, true), std::vector<int>({2}));
  // Non-empty text gets the dummy prefix " " (here merged with the letter after it).
  std::vector<int> a = t.encode("a", false, false);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(t.piece(a[0]), " a");
}

TEST(TokenizerEncode, OnceUponATime) {
  REQUIRE_MODEL("tok4096.bin");
  const std::string path = razor::test::model_path("tok4096.bin");
  Tokenizer t = Tokenizer::load_llama2c(path, 4096);
  const std::string text = "Once upon a time";
  std::vector<int> ids = t.encode(text, true, false);
  EXPECT_EQ(ids, ref_encode(ref_load(path, 4096), text, true, false));
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids[0], 1);
  // Merged pieces, each a word with its leading space: " Once", " upon", " a", " time".
  std::vector<std::string> pieces;
  for (size_t i = 1; i < ids.size(); ++i) pieces.push_back(t.piece(ids[i]));
  EXPECT_EQ(pieces, std::vector<std::string>({" Once", " upon", " a", " time"}));
  for (size_t i = 1; i < ids.size(); ++i) {
    EXPECT_FALSE(t.is_byte(ids[i]));
    EXPECT_FALSE(t.is_special(ids[i]));
  }
  EXPECT_EQ(decode_all(t, ids), text);
  std::vector<int> with_eos = t.encode(text, true, true);
  EXPECT_EQ(with_eos.back(), 2);
  EXPECT_EQ(std::vector<int>(with_eos.begin(), with_eos.end() - 1), ids);
  std::vector<int> no_bos = t.encode(text, false, false);
  EXPECT_EQ(no_bos, std::vector<int>(ids.begin() + 1, ids.end()));
}

TEST(TokenizerEncode, MatchesRunCReferenceOnSharedTokenizers) {
  for (auto [name, vocab] : {std::pair<const char*, int>{"tok512.bin", 512}, {"tok4096.bin", 4096}}) {
    if (!razor::test::have_model(name)) GTEST_SKIP() << "missing model " << name;
    const std::string path = razor::test::model_path(name);
    Tokenizer t = Tokenizer::load_llama2c(path, vocab);
    RefVocab ref = ref_load(path, vocab);
    for (const std::string& text : english_texts()) {
      for (bool bos : {false, true}) {
        for (bool eos : {false, true}) {
          EXPECT_EQ(t.encode(text, bos, eos), ref_encode(ref, text, bos, eos))
              << name << " bos=" << bos << " eos=" << eos << " text=" << text;
        }
      }
      // These vocabularies have all 256 byte tokens: decoding gives the text back.
      EXPECT_EQ(decode_all(t, t.encode(text, true, false)), text) << name << " " << text;
    }
  }
}

TEST(TokenizerEncode, ByteFallbackForUnknownCodePoints) {
  REQUIRE_MODEL("tok512.bin");
  Tokenizer t = Tokenizer::load_llama2c(razor::test::model_path("tok512.bin"), 512);
  // U+1F600 is not a piece: its four bytes become <0xF0><0x9F><0x98><0x80>.
  std::vector<int> ids = t.encode("\xF0\x9F\x98\x80", false, false);
  ASSERT_EQ(ids.size(), 5u);
  EXPECT_EQ(t.piece(ids[0]), " ");
  EXPECT_EQ(ids[1], 0xF0 + 3);
  EXPECT_EQ(ids[2], 0x9F + 3);
  EXPECT_EQ(ids[3], 0x98 + 3);
  EXPECT_EQ(ids[4], 0x80 + 3);
  for (size_t i = 1; i < ids.size(); ++i) EXPECT_TRUE(t.is_byte(ids[i]));
  // A lone invalid byte, and NUL (run.c would stop at NUL; here it is an ordinary byte).
  EXPECT_EQ(t.encode(std::string("\xFF", 1), false, false).back(), 0xFF + 3);
  std::vector<int> nul = t.encode(std::string("\0", 1), false, false);
  EXPECT_EQ(nul.back(), 3);
  EXPECT_EQ(decode_all(t, nul), std::string(" \0", 2));
}

TEST(TokenizerEncode, ChineseOnTangPoemVocabulary) {
  REQUIRE_MODEL("tangpoem-tok2048.bin");
  const std::string path = razor::test::model_path("tangpoem-tok2048.bin");
  Tokenizer t = Tokenizer::load_llama2c(path, 2048);
  RefVocab ref = ref_load(path, 2048);
  const std::vector<std::string> texts = {
      "\xE5\xBA\x8A\xE5\x89\x8D\xE6\x98\x8E\xE6\x9C\x88\xE5\x85\x89\xEF\xBC\x8C"
      "\xE7\x96\x91\xE6\x98\xAF\xE5\x9C\xB0\xE4\xB8\x8A\xE9\x9C\x9C\xE3\x80\x82",  // 床前明月光，疑是地上霜。
      "\xE4\xB8\xBE\xE5\xA4\xB4\xE6\x9C\x9B\xE6\x98\x8E\xE6\x9C\x88\xEF\xBC\x8C\n"
      "\xE4\xBD\x8E\xE5\xA4\xB4\xE6\x80\x9D\xE6\x95\x85\xE4\xB9\xA1\xE3\x80\x82\n",  // 举头望明月，\n低头思故乡。\n
      "\xE6\x98\xA5\xE7\x9C\xA0\xE4\xB8\x8D\xE8\xA7\x89\xE6\x99\x93 \xF0\x9F\x98\x80 ok",  // 春眠不觉晓 😀 ok
      "\xF0\xA0\x80\x80\xE9\xBE\x98",  // rare CJK (4-byte) + 龘
  };
  for (const std::string& text : texts) {
    for (bool bos : {false, true}) {
      std::vector<int> ids = t.encode(text, bos, false);
      EXPECT_EQ(ids, ref_encode(ref, text, bos, false)) << text;
      for (int id : ids) {
        EXPECT_GE(id, 0);
        EXPECT_LT(id, 2048);
      }
    }
  }
  // Character-level vocabulary: each Han character of the first line is its own piece.
  std::vector<int> ids = t.encode(texts[0], false, false);
  int chars = 0;
  for (unsigned char c : texts[0]) chars += (c & 0xC0) != 0x80;
  EXPECT_EQ(static_cast<int>(ids.size()), chars + 1);  // + the dummy prefix
  EXPECT_EQ(t.piece(ids[1]), "\xE5\xBA\x8A");            // 床
  EXPECT_EQ(decode_all(t, ids), " " + texts[0]);         // no BOS before: the prefix space stays
}

// Random vocabularies with many equal scores: the heap-based merge must pick exactly the pair the
// full rescan picks (best score, leftmost on ties), including unmergeable scores (<= -1e10, NaN).
TEST(TokenizerEncode, MatchesReferenceOnRandomVocabulariesWithTies) {
  std::mt19937 rng(1234);
  const std::string alphabet = "abc \xC3\xA9";  // includes é (2 bytes)
  const std::string emoji = "\xF0\x9F\x98\x80";
  for (int trial = 0; trial < 40; ++trial) {
    auto toks = base_vocab();
    std::map<std::string, bool> seen;
    for (auto& [s, p] : toks) seen[p] = true;
    std::vector<std::string> pieces = {"a", "b", "c", " ", "\xC3\xA9", emoji};
    for (const auto& p : pieces) {
      toks.push_back({static_cast<float>(-static_cast<int>(rng() % 3)), p});
      seen[p] = true;
    }
    const int merges = 20 + static_cast<int>(rng() % 40);
    for (int k = 0; k < merges * 4 && static_cast<int>(pieces.size()) < 6 + merges; ++k) {
      std::string p = pieces[rng() % pieces.size()] + pieces[rng() % pieces.size()];
      if (p.size() > 8 || seen.count(p)) continue;
      seen[p] = true;
      pieces.push_back(p);
      float score = static_cast<float>(-static_cast<int>(rng() % 4));  // heavy ties
      int r = static_cast<int>(rng() % 20);
      if (r == 0) score = -1e10f;  // never merged (run.c: strictly greater than -1e10)
      if (r == 1) score = std::numeric_limits<float>::quiet_NaN();
      if (r == 2) score = -0.0f;
      if (r == 3) score = -9e9f;
      toks.push_back({score, p});
    }
    const std::string path = write_tok("rand" + std::to_string(trial) + ".bin", 8, toks);
    const int vocab = static_cast<int>(toks.size());
    Tokenizer t = Tokenizer::load_llama2c(path, vocab);
    RefVocab ref = ref_load(path, vocab);
    for (int s = 0; s < 25; ++s) {
      std::string text;
      const int len = static_cast<int>(rng() % 60);
      for (int i = 0; i < len; ++i) {
        int r = static_cast<int>(rng() % 12);
        if (r < 4) text += alphabet[r];
        else if (r < 7) text += "a";
        else if (r < 9) text += "\xC3\xA9";
        else if (r < 10) text += rng() % 2 ? "d" : emoji;  // "d" is not in vocabulary: byte fallback
        else text += "ab";
      }
      ASSERT_EQ(t.encode(text, s % 2 == 0, false), ref_encode(ref, text, s % 2 == 0, false))
          << "trial " << trial << " text '" << text << "'";
      EXPECT_EQ(decode_all(t, t.encode(text, true, false)), text);
    }
  }
}

TEST(TokenizerEncode, CodePointGrouping) {
  // Pieces for a 4-byte code point and for runs of stray continuation bytes: run.c groups a byte
  // with up to 3 following continuation bytes (10xxxxxx), so 6 stray ones are looked up as 4 + 2.
  auto toks = base_vocab();
  toks.push_back({-1.f, " "});                  // 259
  toks.push_back({-1.f, "\xF0\x9F\x98\x80"});  // 260 (U+1F600)
  toks.push_back({-1.f, "\x80\x80\x80\x80"});  // 261
  toks.push_back({-1.f, "\x80\x80"});          // 262
  toks.push_back({-1.f, "\xC3\xA9"});          // 263 (e-acute)
  std::string path = write_tok("utf8.bin", 4, toks);
  Tokenizer t = Tokenizer::load_llama2c(path, static_cast<int>(toks.size()));
  RefVocab ref = ref_load(path, static_cast<int>(toks.size()));
  EXPECT_EQ(t.encode("\xF0\x9F\x98\x80", false, false), std::vector<int>({259, 260}));
  EXPECT_EQ(t.encode("\x80\x80\x80\x80\x80\x80", false, false), std::vector<int>({259, 261, 262}));
  // A lead byte with 4 continuations: the group stops after 4 bytes, the 5th starts a new one.
  EXPECT_EQ(t.encode("\xF0\x9F\x98\x80\x80", false, false), std::vector<int>({259, 260, 0x80 + 3}));
  // Truncated sequence: the 2 bytes present fall back to bytes.
  EXPECT_EQ(t.encode("\xF0\x9F\xC3\xA9", false, false), std::vector<int>({259, 0xF0 + 3, 0x9F + 3, 263}));
  for (const std::string text : {"\xF0\x9F\x98\x80\x80\x80\x80\x80\x80\xC3\xA9", "\x80\xC3\x80\x80\x80\x80",
                                 "\xC3\xA9\xF0\x9F\x98\x80\xF0\x9F\x98"}) {
    EXPECT_EQ(t.encode(text, true, false), ref_encode(ref, text, true, false));
  }
}

TEST(TokenizerEncode, UnmergeableScoresAreNeverMerged) {
  auto toks = base_vocab();
  toks.push_back({-1.f, " "});
  toks.push_back({-1.f, "a"});
  toks.push_back({-1.f, "b"});
  toks.push_back({-1e10f, "ab"});  // 262: exactly run.c's starting best score -> not merged
  toks.push_back({-1e11f, " a"});  // 263: below it -> not merged
  toks.push_back({-9.9e9f, "ba"});  // 264: above it -> merged
  std::string path = write_tok("unmergeable.bin", 2, toks);
  Tokenizer t = Tokenizer::load_llama2c(path, static_cast<int>(toks.size()));
  EXPECT_EQ(t.encode("ab", false, false), std::vector<int>({259, 260, 261}));
  EXPECT_EQ(t.encode("ba", false, false), std::vector<int>({259, 264}));
}

TEST(TokenizerEncode, MissingSpacePieceUsesByteFallback) {
  auto toks = base_vocab();
  toks.push_back({-1.f, "a"});
  std::string path = write_tok("nospace.bin", 6, toks);
  Tokenizer t = Tokenizer::load_llama2c(path, static_cast<int>(toks.size()));
  EXPECT_EQ(t.encode("a", true, false), std::vector<int>({1, ' ' + 3, 259}));
}

TEST(TokenizerEncode, ByteFallbackOutsideSmallVocabularyIsAnError) {
  std::vector<std::pair<float, std::string>> toks = {{0.f, "<unk>"}, {0.f, "<s>"}, {0.f, "</s>"},
                                                     {-1.f, " "},    {-2.f, "a"}};
  std::string path = write_tok("tiny.bin", 5, toks);
  Tokenizer t = Tokenizer::load_llama2c(path, 5);
  EXPECT_EQ(t.encode("a", false, false), std::vector<int>({3, 4}));
  try {
    t.encode("z", false, false);
    ADD_FAILURE() << "no error";
  } catch (const razor::Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// decode

TEST(TokenizerDecode, RunCRules) {
  REQUIRE_MODEL("tok512.bin");
  const std::string path = razor::test::model_path("tok512.bin");
  Tokenizer t = Tokenizer::load_llama2c(path, 512);
  const int space_t = t.lookup(" t");
  ASSERT_EQ(space_t, 259);
  EXPECT_EQ(t.decode(1, space_t), "t");   // after BOS the leading space goes
  EXPECT_EQ(t.decode(0, space_t), " t");  // not after anything else
  EXPECT_EQ(t.decode(2, space_t), " t");
  EXPECT_EQ(t.decode(300, space_t), " t");
  EXPECT_EQ(t.decode(1, t.lookup("he")), "he");  // nothing to strip
  EXPECT_EQ(t.decode(1, t.lookup(" ")), "");
  EXPECT_EQ(t.decode(5, 0x0A + 3), "\n");         // <0x0A>
  EXPECT_EQ(t.decode(1, 0x0A + 3), "\n");
  EXPECT_EQ(t.decode(5, 0x00 + 3), std::string(1, '\0'));
  EXPECT_EQ(t.decode(5, 1), "\n<s>\n");
  for (int bad : {-1, 512, 1 << 30}) {
    try {
      t.decode(1, bad);
      ADD_FAILURE() << "no error for id " << bad;
    } catch (const razor::Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Hostile and broken files

TEST(TokenizerLoad, RejectsBrokenFiles) {
  const std::string dir = razor::test::temp_dir();
  const std::string good = tok_bytes(3, {{0.f, "<unk>"}, {0.f, "<s>"}, {0.f, "</s>"}, {-1.f, "abc"}});
  auto file = [&](const std::string& name, const std::string& bytes) {
    std::string p = dir + "/" + name;
    razor::test::write_text(p, bytes);
    return p;
  };
  // The intact file loads.
  EXPECT_EQ(Tokenizer::load_llama2c(file("good.bin", good), 4).piece(3), "abc");

  expect_load_error(dir + "/does-not-exist.bin", 4);
  expect_load_error(dir, 4);  // a directory
  expect_load_error(file("empty.bin", ""), 4, "truncated");
  expect_load_error(file("short-header.bin", std::string("\x03\x00", 2)), 4, "truncated");
  // Cut inside the last piece's bytes, inside its length field, and right after the header.
  expect_load_error(file("cut-piece.bin", good.substr(0, good.size() - 1)), 4, "truncated");
  expect_load_error(file("cut-len.bin", good.substr(0, good.size() - 5)), 4, "truncated");
  expect_load_error(file("header-only.bin", good.substr(0, 4)), 4, "truncated");
  // Fewer tokens than the vocabulary.
  expect_load_error(file("few.bin", good), 5, "5");
  // Negative and huge lengths.
  {
    std::string b;
    put_i32(b, 3);
    put_f32(b, 0.f);
    put_i32(b, -1);
    b += "xyz";
    expect_load_error(file("neg.bin", b), 1, "negative");
    std::string h;
    put_i32(h, 3);
    put_f32(h, 0.f);
    put_i32(h, std::numeric_limits<int32_t>::max());
    h += "xyz";
    expect_load_error(file("huge.bin", h), 1, "truncated");
  }
  // max_token_length outside 1..65536.
  for (int32_t m : {0, -5, 65537, std::numeric_limits<int32_t>::max()}) {
    std::string b = good;
    std::memcpy(b.data(), &m, 4);
    expect_load_error(file("maxlen" + std::to_string(m) + ".bin", b), 4, "max_token_length");
  }
  // A non-positive vocabulary size.
  expect_load_error(file("good2.bin", good), 0);
  expect_load_error(file("good3.bin", good), -3);
  // A huge vocabulary against a small file: an error, not a giant allocation.
  expect_load_error(file("good4.bin", good), std::numeric_limits<int>::max(), "truncated");
}

TEST(TokenizerLoad, RandomGarbageNeverCrashes) {
  std::mt19937 rng(99);
  const std::string dir = razor::test::temp_dir();
  int loaded = 0;
  for (int i = 0; i < 200; ++i) {
    std::string b = tok_bytes(4, {{0.f, "<unk>"}, {0.f, "<s>"}, {0.f, "</s>"}, {-1.f, "ab"}, {-2.f, " "}});
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) b[rng() % b.size()] = static_cast<char>(rng());
    if (rng() % 3 == 0) b.resize(rng() % b.size());
    const std::string p = dir + "/g" + std::to_string(i) + ".bin";
    razor::test::write_text(p, b);
    try {
      Tokenizer t = Tokenizer::load_llama2c(p, 5);
      ++loaded;
      (void)t.encode("ab ab", true, true);
    } catch (const razor::Error& e) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  }
  SUCCEED() << loaded << " of 200 mutated files loaded";
}

// ---------------------------------------------------------------------------------------------
// Finding the tokenizer next to a model

TEST(TokenizerFind, SharedModels) {
  REQUIRE_MODEL("tok512.bin");
  REQUIRE_MODEL("tok4096.bin");
  REQUIRE_MODEL("tangpoem-tok2048.bin");
  const std::string d = razor::test::models_dir();
  auto found = [](const std::string& model, int vocab) {
    std::string p = razor::find_tokenizer_beside(model, vocab);
    return p.empty() ? std::string() : fs::path(p).filename().string();
  };
  EXPECT_EQ(found(d + "/stories260K.bin", 512), "tok512.bin");
  EXPECT_EQ(found(d + "/llama2xs-260K.bin", 512), "tok512.bin");
  EXPECT_EQ(found(d + "/stories3M-q80.bin", 4096), "tok4096.bin");
  EXPECT_EQ(found(d + "/tangpoem-750K.bin", 2048), "tangpoem-tok2048.bin");
  EXPECT_EQ(found(d + "/stories260K-hf", 512), "tok512.bin");   // a checkpoint directory
  EXPECT_EQ(found(d + "/stories260K-hf/", 512), "tok512.bin");
  EXPECT_EQ(found(d + "/stories260K.bin", 777), "");            // no tok777.bin, no tokenizer.bin
  // The returned path is the file itself, beside the model.
  EXPECT_EQ(razor::find_tokenizer_beside(d + "/stories260K.bin", 512), (fs::path(d) / "tok512.bin").string());
}

TEST(TokenizerFind, PreferenceOrder) {
  const std::string dir = razor::test::temp_dir();
  const std::string model = dir + "/poem-1M.bin";
  razor::test::write_text(model, "x");
  EXPECT_EQ(razor::find_tokenizer_beside(model, 2048), "");
  razor::test::write_text(dir + "/tokenizer.bin", "x");
  EXPECT_EQ(razor::find_tokenizer_beside(model, 2048), dir + "/tokenizer.bin");
  razor::test::write_text(dir + "/other-tok2048.bin", "x");
  EXPECT_EQ(razor::find_tokenizer_beside(model, 2048), dir + "/other-tok2048.bin");
  razor::test::write_text(dir + "/poem-tok2048.bin", "x");  // shares the model's name prefix
  EXPECT_EQ(razor::find_tokenizer_beside(model, 2048), dir + "/poem-tok2048.bin");
  razor::test::write_text(dir + "/tok2048.bin", "x");
  EXPECT_EQ(razor::find_tokenizer_beside(model, 2048), dir + "/tok2048.bin");
  // Other vocabulary sizes do not match (tok20480 is not tok2048, nor is tok048).
  razor::test::write_text(dir + "/tok20480.bin", "x");
  EXPECT_EQ(razor::find_tokenizer_beside(model, 48), dir + "/tokenizer.bin");
  EXPECT_EQ(razor::find_tokenizer_beside(model, 20480), dir + "/tok20480.bin");
  // A directory named like a tokenizer is not one.
  fs::create_directories(dir + "/sub/tok512.bin");
  razor::test::write_text(dir + "/sub/m.bin", "x");
  EXPECT_EQ(razor::find_tokenizer_beside(dir + "/sub/m.bin", 512), "");
  // Model in the current directory (no directory part): must not crash.
  (void)razor::find_tokenizer_beside("no-such-model.bin", 512);
}

// ---------------------------------------------------------------------------------------------
// Speed: long texts

std::string generated_text(size_t bytes, unsigned seed) {
  static const std::vector<std::string> words = {
      "Once", "upon", "a", "time", "there", "was", "little", "girl", "named", "Lily", "she", "loved",
      "to", "play", "with", "her", "dog", "Max", "in", "the", "big", "green", "park", "happy", "sun",
      "caf\xC3\xA9", "na\xC3\xAFve", "\xE2\x98\x83", "\xF0\x9F\x98\x80", "42", "x"};
  static const std::vector<std::string> punct = {" ", " ", " ", " ", ", ", ". ", "! ", "\n", "? ", "  ", "\t"};
  std::mt19937 rng(seed);
  std::string s;
  while (s.size() < bytes) {
    s += words[rng() % words.size()];
    s += punct[rng() % punct.size()];
  }
  return s;
}

TEST(TokenizerEncode, LongTextRoundTripIsFast) {
  REQUIRE_MODEL("tok4096.bin");
  Tokenizer t = Tokenizer::load_llama2c(razor::test::model_path("tok4096.bin"), 4096);
  const std::string text = generated_text(20000, 7);
  auto t0 = std::chrono::steady_clock::now();
  std::vector<int> ids = t.encode(text, true, false);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 2.0) << "encoding 20 KB took " << secs << " s";
  EXPECT_LT(ids.size(), text.size() / 2) << "merges did not happen";
  EXPECT_EQ(decode_all(t, ids), text);
  // 50 KB stays fast too.
  const std::string big = generated_text(50000, 8);
  t0 = std::chrono::steady_clock::now();
  std::vector<int> big_ids = t.encode(big, false, true);
  const double big_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(big_secs, 5.0) << "encoding 50 KB took " << big_secs << " s";
  EXPECT_EQ(big_ids.back(), 2);
}

TEST(TokenizerEncode, GeneratedTextMatchesReference) {
  REQUIRE_MODEL("tok4096.bin");
  REQUIRE_MODEL("tok512.bin");
  for (auto [name, vocab] : {std::pair<const char*, int>{"tok512.bin", 512}, {"tok4096.bin", 4096}}) {
    const std::string path = razor::test::model_path(name);
    Tokenizer t = Tokenizer::load_llama2c(path, vocab);
    RefVocab ref = ref_load(path, vocab);
    const std::string text = generated_text(1200, 11);
    EXPECT_EQ(t.encode(text, true, true), ref_encode(ref, text, true, true)) << name;
  }
}

}  // namespace
