// Built-in TinyStories-style texts, deterministic in a seed: a long story whose made-up names
// recur far apart (razor eval --task long-story) and the name-recall stories.
#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "razor/error.h"
#include "razor/eval.h"

namespace razor {

namespace {

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed ^ 0x53544F52494553ULL) {}  // "STORIES"
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  int below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }
  template <class T>
  const T& pick(const std::vector<T>& v) { return v[below(static_cast<int>(v.size()))]; }
};

const std::vector<std::string> kOnsets = {"b", "d", "f", "g", "k", "l", "m", "n", "p", "r",
                                          "s", "t", "v", "z", "br", "dr", "gr", "kr", "tr", "sn"};
const std::vector<std::string> kVowels = {"a", "e", "i", "o", "u"};
const std::vector<std::string> kCodas = {"", "", "", "l", "m", "n", "r", "x", "k"};

// A made-up two-syllable name that the tokenizer splits into at least two pieces.
std::string made_up_name(Rng& rng, const Tokenizer& tok, const std::string& avoid) {
  for (int attempt = 0;; ++attempt) {
    std::string n;
    for (int i = 0; i < 2; ++i) n += rng.pick(kOnsets) + rng.pick(kVowels) + rng.pick(kCodas);
    n[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(n[0])));
    if (n == avoid) continue;
    if (attempt < 100 && tok.encode(n, false, false).size() < 2) continue;
    return n;
  }
}

struct Cast {
  std::string A, B;       // protagonist, friend
  bool girl = true;
  std::string kid() const { return girl ? "girl" : "boy"; }
};

const std::vector<std::string> kPlaces = {"park", "garden", "forest", "beach", "lake", "farm", "river", "hill", "market"};
const std::vector<std::string> kToys = {"ball", "kite", "doll", "toy car", "boat", "drum", "teddy bear", "blocks"};
const std::vector<std::string> kAnimals = {"dog", "cat", "bird", "bunny", "frog", "duck", "puppy", "fox", "owl"};
const std::vector<std::string> kColors = {"red", "blue", "green", "yellow", "pink", "purple", "orange"};
const std::vector<std::string> kFoods = {"apples", "cookies", "bread", "soup", "cake", "carrots", "berries"};
const std::vector<std::string> kAdjs = {"small", "big", "happy", "shy", "fluffy", "little", "funny", "kind"};

// Sentences about the protagonist without a name ({S} she/he, {P} her/his, {O} her/him).
const std::vector<std::string> kFiller = {
    "{S} liked to play in the {place} with {p} {toy}.",
    "Every morning, {s} ran outside to look at the flowers.",
    "{S} liked the {color} ones best.",
    "One day, {s} found a {adj} {animal} under a tree.",
    "The {animal} was sad because it could not find its mom.",
    "{S} gave the {animal} some water and a little bread.",
    "The sun was warm and the sky was blue.",
    "{S} saw a big {color} box near the {place}.",
    "{S} wanted to share it with everyone.",
    "Then it started to rain, so {s} ran back home.",
    "{P} mom made {food} for dinner.",
    "After dinner, {s} helped {p} mom wash the dishes.",
    "{S} played with {p} {toy} on the floor.",
    "{P} dad read {o} a book about a brave {animal}.",
    "{S} smiled and felt very happy.",
    "The {animal} jumped and ran around the {place}.",
    "{S} learned that it is good to be kind.",
    "{S} was a little scared, but {s} was brave.",
    "The wind blew the leaves off the trees.",
    "{S} picked a {color} flower and gave it to {p} mom.",
    "At night, {s} looked at the stars in the sky.",
    "A {adj} {animal} came to say hello.",
    "{S} went to the {place} with {p} dad.",
    "They ate {food} and drank some milk.",
    "{S} wanted to climb the tall tree, but it was too high.",
    "{S} built a tower with {p} blocks.",
    "The tower fell down, and {s} laughed.",
    "{S} put on {p} {color} hat and went outside.",
};

// Sentences that name the protagonist (A) or the friend (B).
const std::vector<std::string> kNamed = {
    "{A} said, \"Let's go to the {place}!\"",
    "{B} was happy to see {A}.",
    "\"Thank you, {B},\" said {A}.",
    "{A} and {B} played with the {toy} together.",
    "{B} asked, \"{A}, do you want to play?\"",
    "{A} hugged {B} and smiled.",
    "{B} had a {color} {toy}.",
    "\"Look, {A}!\" said {B}.",
    "{A} gave {B} some {food}.",
    "{B} and {A} ran to the {place}.",
};

std::string expand(const std::string& t, const Cast& c, Rng& rng) {
  std::string out;
  for (size_t i = 0; i < t.size();) {
    if (t[i] != '{') {
      out += t[i++];
      continue;
    }
    const size_t j = t.find('}', i);
    const std::string key = t.substr(i + 1, j - i - 1);
    i = j + 1;
    if (key == "A") out += c.A;
    else if (key == "B") out += c.B;
    else if (key == "S") out += c.girl ? "She" : "He";
    else if (key == "s") out += c.girl ? "she" : "he";
    else if (key == "P") out += c.girl ? "Her" : "His";
    else if (key == "p") out += c.girl ? "her" : "his";
    else if (key == "o") out += c.girl ? "her" : "him";
    else if (key == "kid") out += c.kid();
    else if (key == "place") out += rng.pick(kPlaces);
    else if (key == "toy") out += rng.pick(kToys);
    else if (key == "animal") out += rng.pick(kAnimals);
    else if (key == "color") out += rng.pick(kColors);
    else if (key == "food") out += rng.pick(kFoods);
    else if (key == "adj") out += rng.pick(kAdjs);
    else {
      out += '{';
      out += key;
      out += '}';
    }
  }
  return out;
}

// Appends filler sentences (no names, no immediate repeats) until `text` encodes to >= target
// tokens.
void add_filler(std::string& text, const Cast& c, Rng& rng, const Tokenizer& tok, int target) {
  int last = -1;
  while (static_cast<int>(tok.encode(text, true, false).size()) < target) {
    int k;
    do k = rng.below(static_cast<int>(kFiller.size()));
    while (k == last);
    last = k;
    text += ' ';
    text += expand(kFiller[k], c, rng);
  }
}

}  // namespace

std::vector<int> synthetic_story(const Tokenizer& tok, uint64_t seed, int min_tokens, int max_tokens,
                                 std::string* text_out) {
  if (min_tokens < 1 || max_tokens < min_tokens) throw Error("synthetic_story: bad length range");
  Rng rng(seed);
  Cast c;
  c.girl = rng.below(2) == 0;
  c.A = made_up_name(rng, tok, "");
  c.B = made_up_name(rng, tok, c.A);
  std::string text = "Once upon a time, there was a little " + c.kid() + " named " + c.A + ". " + c.A +
                     " lived in a small house near the " + rng.pick(kPlaces) + ". " + c.A + " had a friend named " +
                     c.B + ". " + c.B + " was a " + rng.pick(kAdjs) + " " + rng.pick(kAnimals) + ".";
  // Names come back every few sentences, so some mentions are far beyond a short window.
  int last_named = -1, sentences = 0;
  std::vector<int> ids = tok.encode(text, true, false);
  while (static_cast<int>(ids.size()) < min_tokens) {
    const bool named = rng.below(4) == 0;
    std::string s;
    if (named) {
      int k;
      do k = rng.below(static_cast<int>(kNamed.size()));
      while (k == last_named);
      last_named = k;
      s = expand(kNamed[k], c, rng);
    } else {
      s = expand(rng.pick(kFiller), c, rng);
    }
    if (++sentences % 7 == 0) text += "\n";
    else text += " ";
    text += s;
    ids = tok.encode(text, true, false);
  }
  if (static_cast<int>(ids.size()) > max_tokens) ids.resize(max_tokens);
  if (text_out) *text_out = text;
  return ids;
}

NameRecallStory make_name_recall_story(const Tokenizer& tok, uint64_t seed, int min_filler_tokens, int max_tokens) {
  Rng rng(seed);
  Cast c;
  c.girl = rng.below(2) == 0;
  c.A = made_up_name(rng, tok, "");
  static const std::vector<std::string> kAges = {"three", "four", "five", "six"};
  std::string text = "Once upon a time, there was a little " + c.kid() + " named " + c.A + ". " + c.A + " was " +
                     rng.pick(kAges) + " years old. " + c.A + " had a big smile.";
  NameRecallStory st;
  st.name = c.A;
  st.last_mention_end = static_cast<int>(tok.encode(text.substr(0, text.rfind(c.A) + c.A.size()), true, false).size());
  // Filler: between min_filler and twice that many tokens past the last mention.
  const int filler = min_filler_tokens + rng.below(std::max(1, min_filler_tokens));
  add_filler(text, c, rng, tok, st.last_mention_end + filler);
  const std::vector<int> before_cue = tok.encode(text, true, false);
  static const std::vector<std::string> kCues = {
      "{P} mom came into the room and said, \"Wake up,",
      "At night, {p} mom kissed {o} and said, \"Good night,",
  };
  text += ' ';
  text += expand(rng.pick(kCues), c, rng);
  st.tokens = tok.encode(text, true, false);
  // Prefill: the tokens before the cue, as they appear in the whole story's encoding.
  st.prefill = 0;
  while (st.prefill < static_cast<int>(std::min(before_cue.size(), st.tokens.size())) &&
         before_cue[st.prefill] == st.tokens[st.prefill])
    ++st.prefill;
  st.name_begin = static_cast<int>(st.tokens.size());
  // The name as the model would write it after the cue: " Name" (the tokenizer's dummy prefix).
  std::vector<int> name_ids = tok.encode(c.A, false, false);
  st.tokens.insert(st.tokens.end(), name_ids.begin(), name_ids.end());
  st.text = text;
  st.text += ' ';
  st.text += c.A;
  if (static_cast<int>(st.tokens.size()) > max_tokens)
    throw Error("name-recall: a story needs " + std::to_string(st.tokens.size()) + " tokens (window " +
                "plus filler), more than the " + std::to_string(max_tokens) + " available; use a smaller --window");
  return st;
}

}  // namespace razor
