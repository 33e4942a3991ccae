// Heads files: .pt (torch.save zip + restricted pickle), .json, dispatch, summary, CLI.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <sys/wait.h>
#include <algorithm>
#include <initializer_list>

#include "heads/heads_internal.h"
#include "heads/pickle.h"
#include "heads/torch_zip.h"
#include "razor/error.h"
#include "razor/heads.h"
#include "test_util.h"

namespace fs = std::filesystem;
using razor::HeadMap;
using razor::HeadsFile;
using razor::ProbeRecord;
using razor::test::read_text;
using razor::test::run_cli;
using razor::test::temp_dir;
using razor::test::write_text;

namespace {

// ---- helpers ----

// Runs fn, expecting a razor::Error whose one-line message starts with "PATH: " and contains `part`.
void expect_error(const std::function<void()>& fn, const std::string& path, const std::string& part) {
  try {
    fn();
    ADD_FAILURE() << "expected an error containing '" << part << "' for " << path;
  } catch (const razor::Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(part), std::string::npos) << "message: " << msg << "\nexpected to contain: " << part;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "non-razor exception: " << e.what();
  }
}

HeadsFile sample() {
  HeadsFile h;
  h.prefix_matching = {{1, {0, 2}}, {5, {3}}, {7, {0, 1, 2, 3}}};
  h.copying = {{0, {1}}, {5, {3}}};
  return h;
}

HeadsFile big_sample() {  // BININT2 / BININT values, LONG_BINPUT memo, batches of 1000
  HeadsFile h;
  for (int l = 0; l < 1000; ++l) h.prefix_matching[l] = {l % 7, 255, 256};
  h.prefix_matching[70000] = {65535, 65536, 2147483647};
  std::vector<int> many(2500);
  for (int i = 0; i < 2500; ++i) many[i] = i * 3;
  h.copying[3] = many;
  return h;
}

ProbeRecord sample_probe() {
  ProbeRecord p;
  p.n_layers = 8;
  p.n_heads = 8;
  p.n_kv_heads = 4;
  p.head_dim = 16;
  p.induction_head_ratio = 0.14;
  p.echo_head_ratio = 0.01;
  p.length = 3;
  p.repeats = 4;
  p.seed = 18446744073709551615ull;
  p.model = "models/tiny \"quoted\"\\path";
  for (int i = 0; i < 13; ++i) p.tokens.push_back(i == 0 ? 1 : 10000 + (i % 3) * 7);
  const double odd[] = {0.1, 1.0 / 3, 1e-300, 5e-324, 0.0, 1.0, 0.12345678901234567, 2.5e-8};
  for (int l = 0; l < 8; ++l) {
    std::vector<double> q, e, kq, ke;
    for (int h = 0; h < 8; ++h) {
      q.push_back(odd[(l + h) % 8] * (l + 1));
      e.push_back(odd[(l * 3 + h) % 8] / 3);
    }
    for (int k = 0; k < 4; ++k) {
      kq.push_back(std::max(q[2 * k], q[2 * k + 1]));
      ke.push_back(std::max(e[2 * k], e[2 * k + 1]));
    }
    p.induction_scores.push_back(q);
    p.echo_scores.push_back(e);
    p.kv_induction.push_back(kq);
    p.kv_echo.push_back(ke);
  }
  p.seconds = 12.345678;
  return p;
}

HeadsFile sample_with_probe() {
  HeadsFile h = sample();
  h.probe = sample_probe();
  return h;
}

void expect_same_probe(const ProbeRecord& a, const ProbeRecord& b) {
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.n_kv_heads, b.n_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.induction_head_ratio, b.induction_head_ratio);
  EXPECT_EQ(a.echo_head_ratio, b.echo_head_ratio);
  EXPECT_EQ(a.length, b.length);
  EXPECT_EQ(a.repeats, b.repeats);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.induction_scores, b.induction_scores);  // exact: doubles must round-trip
  EXPECT_EQ(a.echo_scores, b.echo_scores);
  EXPECT_EQ(a.kv_induction, b.kv_induction);
  EXPECT_EQ(a.kv_echo, b.kv_echo);
  EXPECT_EQ(a.seconds, b.seconds);
}

std::string file_bytes(const std::string& path) { return read_text(path); }

// Pickle building blocks.
std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int x : b) s.push_back(static_cast<char>(x));
  return s;
}
std::string le(uint64_t v, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return s;
}
const std::string P2 = bytes({0x80, 2});                                    // PROTO 2
std::string op(char code, const std::string& arg) {
  std::string s(1, code);
  s += arg;
  return s;
}
std::string U(const std::string& s) { return op('X', le(s.size(), 4) + s); }  // BINUNICODE
std::string SU(const std::string& s) { return bytes({0x8c, static_cast<int>(s.size())}) + s; }  // SHORT_BINUNICODE
std::string K(int v) { return op('K', le(static_cast<uint64_t>(v), 1)); }     // BININT1
std::string J(int32_t v) { return op('J', le(static_cast<uint32_t>(v), 4)); }  // BININT
const std::string PM = U("prefix_matching"), CP = U("copying");

// A .pt holding an arbitrary pickle as data.pkl.
std::string write_pt_with_pickle(const std::string& dir, const std::string& name, const std::string& pkl) {
  std::string path = dir + "/" + name;
  write_text(path, razor::torchzip::build_pt("archive", pkl));
  return path;
}

// ---- Python / torch ----

const char* kPython = "/usr/bin/python3";

bool have_torch() {
  static const bool ok = [] {
    if (!fs::exists(kPython)) return false;
    std::string cmd = std::string(kPython) + " -c 'import torch' >/dev/null 2>&1";
    return std::system(cmd.c_str()) == 0;
  }();
  return ok;
}

struct PyResult {
  int rc = -1;
  std::string out;
};

PyResult run_python(const std::string& script, const std::vector<std::string>& args = {}) {
  std::string dir = temp_dir();
  std::string file = dir + "/script.py";
  write_text(file, script);
  std::string cmd = std::string(kPython) + " '" + file + "'";
  for (const auto& a : args) cmd += " '" + a + "'";  // test paths hold no quotes
  cmd += " 2>&1";
  PyResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

#define REQUIRE_TORCH() \
  do {                  \
    if (!have_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch not available"; \
  } while (0)

// The dict as Python's json.dumps prints [[layer, heads], ...] in dict order.
std::string canonical(const HeadsFile& h) {
  auto map = [](const HeadMap& m) {
    std::string s = "[";
    bool first = true;
    for (const auto& [layer, heads] : m) {
      s += first ? "[" : ", [";
      first = false;
      s += std::to_string(layer) + ", [";
      for (size_t i = 0; i < heads.size(); ++i) s += (i ? ", " : "") + std::to_string(heads[i]);
      s += "]]";
    }
    return s + "]";
  };
  return "{\"prefix_matching\": " + map(h.prefix_matching) + ", \"copying\": " + map(h.copying) + "}";
}

const char* kTorchLoadScript = R"PY(
import json, sys, torch
for path in sys.argv[1:]:
    d = torch.load(path, weights_only=True)
    assert type(d) is dict, type(d)
    assert list(d.keys()) == ['prefix_matching', 'copying'], list(d.keys())
    out = {}
    for name, m in d.items():
        assert type(m) is dict
        for k, v in m.items():
            assert type(k) is int and type(v) is list, (k, v)
            assert all(type(x) is int for x in v) and v == sorted(v) and len(v) > 0, v
        out[name] = [[k, v] for k, v in m.items()]
    print(json.dumps(out))
)PY";

}  // namespace

// =============================================================================================
// .pt

TEST(HeadsPt, RoundTrip) {
  std::string dir = temp_dir();
  for (const HeadsFile& h : {HeadsFile{}, sample(), big_sample()}) {
    std::string path = dir + "/heads.pt";
    razor::write_heads_pt(path, h);
    HeadsFile back = razor::read_heads_pt(path);
    EXPECT_EQ(back.prefix_matching, h.prefix_matching);
    EXPECT_EQ(back.copying, h.copying);
    EXPECT_FALSE(back.probe.has_value());
    EXPECT_EQ(razor::read_heads(path), h);
  }
}

TEST(HeadsPt, LayoutMirrorsTorch) {
  std::string dir = temp_dir();
  std::string path = dir + "/my.heads.pt";
  razor::write_heads_pt(path, sample());
  std::string bytes = file_bytes(path);
  // Archive folder named like torch.save names it; data.pkl first, then version; stored entries
  // whose data starts on 64-byte boundaries.
  EXPECT_EQ(bytes.substr(0, 4), std::string("PK\x03\x04", 4));
  EXPECT_EQ(bytes.substr(30, 17), "my.heads/data.pkl");
  size_t extra = static_cast<unsigned char>(bytes[28]) | (static_cast<unsigned char>(bytes[29]) << 8);
  EXPECT_EQ((30 + 17 + extra) % 64, 0u);
  EXPECT_EQ(bytes.substr(30 + 17, 2), "FB");
  std::string pkl = bytes.substr(30 + 17 + extra, 3);
  EXPECT_EQ(pkl, std::string("\x80\x02}", 3));  // PROTO 2, EMPTY_DICT
  EXPECT_NE(bytes.find("my.heads/version"), std::string::npos);
  EXPECT_NE(bytes.find("3\n"), std::string::npos);
  EXPECT_EQ(razor::torchzip::archive_name("/a/b/heads.pt"), "heads");
  EXPECT_EQ(razor::torchzip::archive_name("noext"), "noext");
  EXPECT_EQ(razor::torchzip::archive_name("/x/.pt"), "archive");
}

TEST(HeadsPt, PickleMatchesCPythonOpcodes) {
  HeadsFile h;
  h.prefix_matching = {{1, {0, 2}}, {5, {3}}};
  // What torch.save (CPython pickler, protocol 2) writes for this dict.
  std::string expect(
      "\x80\x02}q\x00(X\x0f\x00\x00\x00prefix_matchingq\x01}q\x02(K\x01]q\x03(K\x00K\x02" "eK\x05]q\x04K\x03"
      "auX\x07\x00\x00\x00" "copyingq\x05}q\x06u.",
      71);
  EXPECT_EQ(razor::heads_detail::encode_pickle(h, "x.pt"), expect);
}

TEST(HeadsPt, Deterministic) {
  std::string a = temp_dir(), b = temp_dir();
  razor::write_heads_pt(a + "/h.pt", big_sample());
  razor::write_heads_pt(b + "/h.pt", big_sample());
  razor::write_heads_pt(a + "/h2.pt", big_sample());
  EXPECT_EQ(file_bytes(a + "/h.pt"), file_bytes(b + "/h.pt"));
  razor::write_heads_pt(a + "/h.pt", big_sample());  // overwrite: same bytes again
  EXPECT_EQ(file_bytes(a + "/h.pt"), file_bytes(b + "/h.pt"));
  EXPECT_EQ(razor::read_heads(a + "/h2.pt"), razor::read_heads(a + "/h.pt"));
}

TEST(HeadsPt, WriterNormalisesAndValidates) {
  std::string dir = temp_dir();
  HeadsFile h;
  h.prefix_matching = {{2, {3, 1, 3}}, {4, {}}};
  razor::write_heads_pt(dir + "/n.pt", h);
  HeadsFile back = razor::read_heads_pt(dir + "/n.pt");
  EXPECT_EQ(back.prefix_matching, (HeadMap{{2, {1, 3}}}));
  HeadsFile bad;
  bad.copying = {{1, {-1}}};
  expect_error([&] { razor::write_heads_pt(dir + "/bad.pt", bad); }, dir + "/bad.pt", "negative head");
  bad.copying = {{-2, {1}}};
  expect_error([&] { razor::write_heads_pt(dir + "/bad.pt", bad); }, dir + "/bad.pt", "negative layer");
  EXPECT_FALSE(fs::exists(dir + "/bad.pt"));
}

TEST(HeadsPt, TorchLoadsRazorFiles) {
  REQUIRE_TORCH();
  std::string dir = temp_dir();
  HeadsFile empty;
  HeadsFile only_copy;
  only_copy.copying = {{31, {7}}};
  std::vector<std::string> paths;
  std::string expect;
  for (const HeadsFile& h : {empty, sample(), only_copy, big_sample()}) {
    paths.push_back(dir + "/h" + std::to_string(paths.size()) + ".pt");
    razor::write_heads_pt(paths.back(), h);
    expect += canonical(h) + "\n";
  }
  PyResult r = run_python(kTorchLoadScript, paths);
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(r.out, expect);
}

TEST(HeadsPt, ReadsFilesTorchWrote) {
  REQUIRE_TORCH();
  std::string dir = temp_dir();
  PyResult r = run_python(R"PY(
import sys, torch
d = sys.argv[1]
torch.save({'prefix_matching': {}, 'copying': {}}, d + '/empty.pt')
torch.save({'prefix_matching': {1: [0, 2], 5: [3], 7: [0, 1, 2, 3]}, 'copying': {0: [1], 5: [3]}}, d + '/multi.pt')
torch.save({'prefix_matching': {1: [0, 2], 5: [3], 7: [0, 1, 2, 3]}, 'copying': {0: [1], 5: [3]}}, d + '/proto4.pt',
           pickle_protocol=4)
big = {'prefix_matching': {l: [l % 7, 255, 256] for l in range(1000)}, 'copying': {3: [i * 3 for i in range(2500)]}}
big['prefix_matching'][70000] = [65535, 65536, 2147483647]
torch.save(big, d + '/big.pt')
torch.save({'copying': {2: [3, 1]}, 'prefix_matching': {}}, d + '/unsorted.pt')
torch.save({'prefix_matching': {}, 'copying': {}}, d + '/legacy.pt', _use_new_zipfile_serialization=False)
torch.save({'prefix_matching': {0: [torch.tensor(1)]}, 'copying': {}}, d + '/tensor.pt')
torch.save({'prefix_matching': {0: [1.0]}, 'copying': {}}, d + '/float.pt')
torch.save({'prefix_matching': {}, 'copying': {}, 'extra': 1}, d + '/extra.pt')
torch.save([1, 2], d + '/list.pt')
print(torch.__version__)
)PY",
                          {dir});
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(razor::read_heads(dir + "/empty.pt"), HeadsFile{});
  EXPECT_EQ(razor::read_heads(dir + "/multi.pt"), sample());
  EXPECT_EQ(razor::read_heads(dir + "/proto4.pt"), sample());
  EXPECT_EQ(razor::read_heads(dir + "/big.pt"), big_sample());
  HeadsFile unsorted;
  unsorted.copying = {{2, {1, 3}}};
  EXPECT_EQ(razor::read_heads(dir + "/unsorted.pt"), unsorted);
  expect_error([&] { razor::read_heads(dir + "/legacy.pt"); }, dir + "/legacy.pt", "legacy");
  expect_error([&] { razor::read_heads(dir + "/tensor.pt"); }, dir + "/tensor.pt", "unsupported pickle opcode 0x");
  expect_error([&] { razor::read_heads(dir + "/float.pt"); }, dir + "/float.pt", "unsupported pickle opcode 0x47");
  expect_error([&] { razor::read_heads(dir + "/extra.pt"); }, dir + "/extra.pt", "unexpected key str 'extra'");
  expect_error([&] { razor::read_heads(dir + "/list.pt"); }, dir + "/list.pt", "expected a dict");

  // torch 1.13 writes exactly the bytes razor writes (same file name, same dict).
  if (r.out.rfind("1.13", 0) == 0) {
    std::string mine = temp_dir();
    razor::write_heads_pt(mine + "/multi.pt", sample());
    razor::write_heads_pt(mine + "/big.pt", big_sample());
    razor::write_heads_pt(mine + "/empty.pt", HeadsFile{});
    for (const char* f : {"/multi.pt", "/big.pt", "/empty.pt"})
      EXPECT_EQ(file_bytes(mine + f), file_bytes(dir + f)) << f;
  }
}

TEST(HeadsPt, TruncatedZip) {
  std::string good = razor::heads_detail::encode_pt(sample(), "t.pt");
  for (size_t n = 0; n < good.size(); ++n) {
    try {
      razor::heads_detail::decode_pt(std::string_view(good).substr(0, n), "t.pt");
      ADD_FAILURE() << "zip cut to " << n << " bytes accepted";
    } catch (const razor::Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind("t.pt: ", 0), 0u);
    }
  }
  std::string dir = temp_dir();
  std::string path = dir + "/t.pt";
  write_text(path, good.substr(0, good.size() / 2));
  expect_error([&] { razor::read_heads(path); }, path, "not a valid zip archive");
  write_text(path, good.substr(0, good.size() - 1));
  expect_error([&] { razor::read_heads(path); }, path, "not a valid zip archive");
}

TEST(HeadsPt, NotAZip) {
  std::string dir = temp_dir();
  std::string path = dir + "/junk.pt";
  write_text(path, "this is not a zip archive at all, just some text");
  expect_error([&] { razor::read_heads(path); }, path, "not a zip archive");
  write_text(path, "");
  expect_error([&] { razor::read_heads(path); }, path, "not a zip archive");
  expect_error([&] { razor::read_heads(dir + "/missing.pt"); }, dir + "/missing.pt", "No such file");
  expect_error([&] { razor::read_heads(dir); }, dir, "unknown heads file type");
}

TEST(HeadsPt, ZipWithoutDataPkl) {
  std::string dir = temp_dir();
  std::string path = dir + "/nopkl.pt";
  write_text(path, razor::torchzip::build({{"archive/other.pkl", P2 + "}."}, {"archive/version", "3\n"}}));
  expect_error([&] { razor::read_heads(path); }, path, "no <folder>/data.pkl");
  write_text(path, razor::torchzip::build({{"data.pkl", P2 + "}."}, {"a/b/data.pkl", P2 + "}."}}));
  expect_error([&] { razor::read_heads(path); }, path, "no <folder>/data.pkl");
  write_text(path, razor::torchzip::build({{"a/data.pkl", P2 + "}."}, {"b/data.pkl", P2 + "}."}}));
  expect_error([&] { razor::read_heads(path); }, path, "more than one data.pkl");
}

TEST(HeadsPt, CorruptedData) {
  std::string dir = temp_dir();
  std::string good = razor::heads_detail::encode_pt(sample(), "c.pt");
  std::string bad = good;
  bad[64 + 10] ^= 0x01;  // inside data.pkl: the CRC no longer matches
  std::string path = dir + "/c.pt";
  write_text(path, bad);
  expect_error([&] { razor::read_heads(path); }, path, "CRC");
}

TEST(HeadsPt, RejectsCodeOpcodes) {
  std::string dir = temp_dir();
  struct Case {
    const char* name;
    std::string bytes;
    const char* part;
  } cases[] = {
      // GLOBAL os.system + REDUCE: the classic pickle exploit.
      {"global", P2 + "cos\nsystem\n" + U("true") + bytes({0x85}) + "R.", "unsupported pickle opcode 0x63 at offset 2"},
      {"reduce", P2 + "}" + bytes({'q', 0}) + ")R.", "unsupported pickle opcode 0x52 at offset 6"},
      {"build", P2 + "}}b.", "unsupported pickle opcode 0x62 at offset 4"},
      {"stack_global", bytes({0x80, 4}) + SU("os") + SU("system") + bytes({0x93}) + ".",
       "unsupported pickle opcode 0x93 at offset 14"},
      {"binpersid", P2 + K(1) + "Q.", "unsupported pickle opcode 0x51 at offset 4"},
      {"inst", P2 + "(ios\nsystem\n.", "unsupported pickle opcode 0x69 at offset 3"},
      {"newobj", P2 + "))" + bytes({0x81}) + ".", "unsupported pickle opcode 0x81 at offset 4"},
      {"pop", P2 + "}" + K(1) + "0.", "unsupported pickle opcode 0x30 at offset 5"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::string path = write_pt_with_pickle(dir, std::string(c.name) + ".pt", c.bytes);
    expect_error([&] { razor::read_heads(path); }, path, c.part);
  }
}

TEST(HeadsPt, RejectsWrongShapes) {
  std::string dir = temp_dir();
  auto top = [](const std::string& inner) { return P2 + "}(" + PM + inner + CP + "}u."; };
  struct Case {
    const char* name;
    std::string bytes;
    const char* part;
  } cases[] = {
      {"toplist", P2 + "].", "expected a dict"},
      {"topint", P2 + K(5) + ".", "expected a dict"},
      {"missing", P2 + "}" + PM + "}s.", "missing key 'copying'"},
      {"missing2", P2 + "}" + CP + "}s.", "missing key 'prefix_matching'"},
      {"listmap", top("]"), "'prefix_matching' must be a dict"},
      {"negative", top("}" + K(1) + "]" + J(-1) + "as"), "must be non-negative, got -1"},
      {"strhead", top("}" + K(1) + "]" + U("3") + "as"), "'prefix_matching'[1] head must be an int, got str '3'"},
      {"strlayer", top("}" + U("1") + "]" + K(3) + "as"), "layer key must be an int, got str '1'"},
      {"dictheads", top("}" + K(1) + "}s"), "'prefix_matching'[1] must be a list of kv heads, got dict"},
      {"tupleheads", top("}" + K(1) + K(2) + bytes({0x85}) + "s"), "must be a list of kv heads, got tuple"},
      {"boolhead", top("}" + K(1) + "]" + bytes({0x88}) + "as"), "got bool True"},
      {"nonehead", top("}" + K(1) + "]Nas"), "got None"},
      {"intkey", P2 + "}(" + K(1) + "}" + CP + "}u.", "unexpected key int 1"},
      {"bigint", top("}" + K(1) + "]" + bytes({0x8a, 5, 0, 0, 0, 0, 1}) + "as"), "too large (4294967296)"},
      {"hugeint", top("}" + K(1) + "]" + bytes({0x8a, 9, 1, 1, 1, 1, 1, 1, 1, 1, 1}) + "as"), "integer too large"},
      {"neglong", top("}" + K(1) + "]" + bytes({0x8a, 1, 0xff}) + "as"), "must be non-negative, got -1"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::string path = write_pt_with_pickle(dir, std::string(c.name) + ".pt", c.bytes);
    expect_error([&] { razor::read_heads(path); }, path, c.part);
  }
}

TEST(HeadsPt, RejectsMalformedPickles) {
  std::string dir = temp_dir();
  struct Case {
    const char* name;
    std::string bytes;
    const char* part;
  } cases[] = {
      {"empty", "", "no STOP"},
      {"nostop", P2 + "}", "no STOP"},
      {"stop_empty", P2 + ".", "stack underflow"},
      {"append_empty", P2 + "]a.", "stack underflow"},
      {"setitems_nomark", P2 + "}" + K(1) + K(2) + "u.", "MARK not found"},
      {"setitem_list", P2 + "]" + K(1) + K(2) + "s.", "SETITEM target is a list"},
      {"append_dict", P2 + "}" + K(1) + "a.", "APPEND target is a dict"},
      {"appends_int", P2 + K(1) + "(" + K(2) + "e.", "APPEND target is a int"},
      {"odd", P2 + "}(" + K(1) + "u.", "odd number"},
      {"memo_missing", P2 + "h" + le(5, 1) + ".", "memo entry 5 not found"},
      {"long_memo_missing", P2 + "j" + le(0xffffffff, 4) + ".", "memo entry 4294967295 not found"},
      {"put_empty", P2 + "q" + le(0, 1) + ".", "stack underflow"},
      {"huge_string", P2 + "X" + le(0x7fffffff, 4) + "abc.", "truncated pickle"},
      {"huge_string8", P2 + bytes({0x8d}) + le(~uint64_t{0}, 8) + ".", "truncated pickle"},
      {"cut_int", P2 + "J" + le(1, 2), "truncated pickle"},
      {"huge_frame", bytes({0x80, 4, 0x95}) + le(uint64_t{1} << 62, 8) + "}.", "frame"},
      {"bad_proto", bytes({0x80, 9}) + "}.", "unsupported pickle protocol 9"},
      {"list_key", P2 + "}]" + K(1) + "s.", "unsupported dict key type list"},
      {"mark_fence", P2 + "](a.", "stack underflow"},
      {"mark_stop", P2 + K(1) + "(.", "stack underflow"},
      {"tuple3_short", P2 + K(1) + bytes({0x87}) + ".", "stack underflow"},
      {"tuple_nomark", P2 + K(1) + "t.", "MARK not found"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::string path = write_pt_with_pickle(dir, std::string(c.name) + ".pt", c.bytes);
    expect_error([&] { razor::read_heads(path); }, path, c.part);
  }
}

TEST(HeadsPt, AcceptsOtherDataOpcodes) {
  // Protocol 4 framing, SHORT_BINUNICODE, MEMOIZE + BINGET sharing, mark-based DICT / LIST,
  // LONG1, tuples and scalars left below the result (ignored, as by Python), and a duplicate
  // key (the later value wins, as in Python).
  std::string body = K(1) + K(2) + K(3) + bytes({0x87}) + K(4) + bytes({0x85, 0x86}) + ")(" + K(5) + "t" + "N" +
                     bytes({0x88, 0x89}) +
                     "(" + SU("prefix_matching") + bytes({0x94}) +                         // memo 0
                     "(" + K(1) + "(" + K(0) + bytes({0x8a, 1, 2}) + "l" + bytes({0x94}) +  // [0, 2] = memo 1
                     K(9) + "h" + le(1, 1) + "d" +                                         // {1: [0, 2], 9: same}
                     SU("copying") + "(" + K(3) + "(" + K(5) + K(4) + "l" + K(3) + "(" + K(6) + "ld" + "d.";
  std::string pkl = bytes({0x80, 4, 0x95}) + le(body.size(), 8) + body;
  std::string dir = temp_dir();
  std::string path = write_pt_with_pickle(dir, "ops.pt", pkl);
  HeadsFile got = razor::read_heads(path);
  EXPECT_EQ(got.prefix_matching, (HeadMap{{1, {0, 2}}, {9, {0, 2}}}));
  EXPECT_EQ(got.copying, (HeadMap{{3, {6}}}));

  // Unsorted and repeated heads, empty lists: normalised.
  std::string loose = P2 + "}(" + PM + "}(" + K(4) + "](" + K(3) + K(1) + K(3) + "e" + K(2) + "]u" + CP + "}u.";
  path = write_pt_with_pickle(dir, "loose.pt", loose);
  got = razor::read_heads(path);
  EXPECT_EQ(got.prefix_matching, (HeadMap{{4, {1, 3}}}));
  EXPECT_EQ(got.copying, HeadMap{});
}

TEST(HeadsPt, TruncatedPickle) {
  std::string pkl = razor::heads_detail::encode_pickle(big_sample(), "p.pt");
  for (size_t n = 0; n < pkl.size(); n += (n < 200 ? 1 : 97)) {
    try {
      razor::heads_detail::decode_pickle(std::string_view(pkl).substr(0, n), "p.pt");
      ADD_FAILURE() << "prefix of " << n << " bytes accepted";
    } catch (const razor::Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind("p.pt: ", 0), 0u);
    }
  }
  std::string dir = temp_dir();
  std::string path = write_pt_with_pickle(dir, "trunc.pt", pkl.substr(0, pkl.size() / 2));
  expect_error([&] { razor::read_heads(path); }, path, "truncated pickle");
}

TEST(HeadsPt, FuzzedInputsNeverCrash) {
  std::mt19937 rng(1234);
  std::string pkl = razor::heads_detail::encode_pickle(sample(), "f.pt");
  std::string zip = razor::heads_detail::encode_pt(sample(), "f.pt");
  int accepted = 0;
  for (int it = 0; it < 4000; ++it) {
    bool on_zip = it % 4 == 0;
    std::string s = on_zip ? zip : pkl;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      size_t pos = rng() % s.size();
      switch (rng() % 3) {
        case 0: s[pos] = static_cast<char>(rng()); break;
        case 1: s.erase(pos, 1 + rng() % 4); break;
        default: s.insert(pos, 1, static_cast<char>(rng())); break;
      }
      if (s.empty()) break;
    }
    try {
      if (on_zip)
        razor::heads_detail::decode_pt(s, "f.pt");
      else
        razor::heads_detail::decode_pickle(s, "f.pt");
      ++accepted;
    } catch (const razor::Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind("f.pt: ", 0), 0u) << e.what();
    }
  }
  SUCCEED() << accepted << " mutations accepted";
}

TEST(HeadsPt, SelfReferenceIsRejected) {
  // A dict containing itself must not hang or recurse: its key is a str, not an int.
  std::string pkl = P2 + "}" + bytes({'q', 0}) + "(" + PM + "h" + le(0, 1) + CP + "}u.";
  std::string dir = temp_dir();
  std::string path = write_pt_with_pickle(dir, "self.pt", pkl);
  expect_error([&] { razor::read_heads(path); }, path, "layer key must be an int, got str 'prefix_matching'");
  // A list appended to itself.
  std::string pkl2 = P2 + "}(" + PM + "}" + K(0) + "]" + bytes({'q', 1}) + "h" + le(1, 1) + "as" + CP + "}u.";
  path = write_pt_with_pickle(dir, "self2.pt", pkl2);
  expect_error([&] { razor::read_heads(path); }, path, "head must be an int, got list");
}

// =============================================================================================
// .json

TEST(HeadsJson, RoundTripSelectionOnly) {
  std::string dir = temp_dir();
  for (const HeadsFile& h : {HeadsFile{}, sample(), big_sample()}) {
    std::string path = dir + "/h.json";
    razor::write_heads_json(path, h);
    HeadsFile back = razor::read_heads(path);
    EXPECT_EQ(back, h);
    EXPECT_FALSE(back.probe.has_value());
  }
  razor::write_heads_json(dir + "/e.json", HeadsFile{});
  EXPECT_EQ(read_text(dir + "/e.json"),
            "{\n  \"format\": \"razor-heads/1\",\n  \"prefix_matching\": {},\n  \"copying\": {}\n}\n");
}

TEST(HeadsJson, RoundTripWithProbe) {
  std::string dir = temp_dir();
  HeadsFile h = sample_with_probe();
  razor::write_heads(dir + "/p.json", h);
  HeadsFile back = razor::read_heads(dir + "/p.json");
  EXPECT_EQ(back, h);
  ASSERT_TRUE(back.probe.has_value());
  expect_same_probe(*back.probe, *h.probe);
  // Writing what was read gives the same bytes.
  razor::write_heads(dir + "/p2.json", back);
  EXPECT_EQ(read_text(dir + "/p.json"), read_text(dir + "/p2.json"));
}

TEST(HeadsJson, Deterministic) {
  std::string a = temp_dir(), b = temp_dir();
  razor::write_heads_json(a + "/h.json", sample_with_probe());
  razor::write_heads_json(b + "/other-name.json", sample_with_probe());
  EXPECT_EQ(read_text(a + "/h.json"), read_text(b + "/other-name.json"));
  std::string text = read_text(a + "/h.json");
  EXPECT_NE(text.find("\"induction_head_ratio\": 0.14"), std::string::npos) << text;
  EXPECT_NE(text.find("\"seed\": 18446744073709551615"), std::string::npos);
  EXPECT_NE(text.find("5e-324"), std::string::npos);
}

TEST(HeadsJson, PythonReadsIt) {
  if (!fs::exists(kPython)) GTEST_SKIP() << "no /usr/bin/python3";
  std::string dir = temp_dir();
  razor::write_heads_json(dir + "/h.json", sample_with_probe());
  PyResult r = run_python(R"PY(
import json, sys
d = json.load(open(sys.argv[1]))
assert d['format'] == 'razor-heads/1'
assert d['prefix_matching'] == {'1': [0, 2], '5': [3], '7': [0, 1, 2, 3]}
assert d['copying'] == {'0': [1], '5': [3]}
assert d['shape'] == {'layers': 8, 'heads': 8, 'kv_heads': 4, 'head_dim': 16}
assert d['probe']['seed'] == 2**64 - 1 and d['probe']['length'] == 3
assert d['induction_scores'][0][1] == 1.0 / 3 and d['induction_scores'][0][3] == 5e-324
assert len(d['tokens']) == 13 and len(d['kv_echo'][7]) == 4
print('ok')
)PY",
                          {dir + "/h.json"});
  EXPECT_EQ(r.out, "ok\n");
}

TEST(HeadsJson, WriterRejectsInconsistentProbe) {
  std::string dir = temp_dir();
  std::string path = dir + "/w.json";
  write_text(path, "previous contents");
  HeadsFile h = sample_with_probe();
  h.probe->induction_scores[2][3] = std::numeric_limits<double>::quiet_NaN();
  expect_error([&] { razor::write_heads(path, h); }, path, "not a finite number");
  h = sample_with_probe();
  h.probe->kv_echo.pop_back();
  expect_error([&] { razor::write_heads(path, h); }, path, "\"kv_echo\" has 7 rows, expected 8");
  h = sample_with_probe();
  h.copying[9] = {0};
  expect_error([&] { razor::write_heads(path, h); }, path, "layer 9 but the model has 8 layers");
  h = sample_with_probe();
  h.probe->tokens.pop_back();
  expect_error([&] { razor::write_heads(path, h); }, path, "expected 1 + length * repeats = 13");
  EXPECT_EQ(read_text(path), "previous contents");  // failed writes leave the file alone
}

TEST(HeadsJson, RejectsBadInput) {
  std::string dir = temp_dir();
  std::string good;
  {
    razor::write_heads_json(dir + "/good.json", sample_with_probe());
    good = read_text(dir + "/good.json");
  }
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) s.replace(at, from.size(), to);
    return s;
  };
  const std::string F = "{\"format\": \"razor-heads/1\", ";
  struct Case {
    const char* name;
    std::string text;
    const char* part;
  } cases[] = {
      {"invalid", "{\"format\": \"razor-heads/1\",", "invalid JSON"},
      {"garbage", "\x01\x02 not json", "invalid JSON"},
      {"empty", "", "invalid JSON"},
      {"array", "[1, 2]", "expected a JSON object"},
      {"noformat", "{\"prefix_matching\": {}, \"copying\": {}}", "missing \"format\""},
      {"format2", "{\"format\": \"razor-heads/2\", \"prefix_matching\": {}, \"copying\": {}}",
       "unsupported format \"razor-heads/2\""},
      {"formatnum", "{\"format\": 1, \"prefix_matching\": {}, \"copying\": {}}", "unsupported format 1"},
      {"nocopying", F + "\"prefix_matching\": {}}", "missing \"copying\""},
      {"mapislist", F + "\"prefix_matching\": [], \"copying\": {}}", "\"prefix_matching\" must be an object"},
      {"keyword", F + "\"prefix_matching\": {\"abc\": [1]}, \"copying\": {}}", "layer key \"abc\""},
      {"negkey", F + "\"prefix_matching\": {\"-1\": [1]}, \"copying\": {}}", "layer key \"-1\""},
      {"zerokey", F + "\"prefix_matching\": {\"01\": [1]}, \"copying\": {}}", "layer key \"01\""},
      {"fracKey", F + "\"prefix_matching\": {\"1.5\": [1]}, \"copying\": {}}", "layer key \"1.5\""},
      {"spacekey", F + "\"prefix_matching\": {\" 1\": [1]}, \"copying\": {}}", "layer key \" 1\""},
      {"bigkey", F + "\"prefix_matching\": {\"99999999999\": [1]}, \"copying\": {}}", "layer key"},
      {"headsobj", F + "\"prefix_matching\": {\"1\": {}}, \"copying\": {}}", "must be an array of kv heads"},
      {"strhead", F + "\"prefix_matching\": {\"1\": [\"2\"]}, \"copying\": {}}", "must be an integer, got string"},
      {"floathead", F + "\"prefix_matching\": {\"1\": [2.0]}, \"copying\": {}}", "must be an integer, got number"},
      {"neghead", F + "\"prefix_matching\": {\"1\": [-2]}, \"copying\": {}}", "out of range (-2)"},
      {"order", F + "\"prefix_matching\": {\"1\": [2, 1]}, \"copying\": {}}", "ascending"},
      {"dup", F + "\"prefix_matching\": {\"1\": [2, 2]}, \"copying\": {}}", "ascending"},
      {"unknown", F + "\"prefix_matching\": {}, \"copying\": {}, \"extra\": 1}", "unknown key \"extra\""},
      {"partialprobe", F + "\"prefix_matching\": {}, \"copying\": {}, \"model\": \"m\"}", "missing probe record field \"shape\""},
      {"rows", replaced("    [0.1, 0.3333333333333333,", "    [0.1, 0.3333333333333333, 1,"), "entries, expected 8"},
      {"strscore", replaced("[0.1, 0.3333", "[\"x\", 0.3333"), "must be a number, got string"},
      {"shape", replaced("\"kv_heads\": 4", "\"kv_heads\": 3"), "not a multiple of kv_heads"},
      {"shapezero", replaced("\"layers\": 8", "\"layers\": 0"), "out of range (0)"},
      {"headrange", replaced("\"7\": [0, 1, 2, 3]", "\"7\": [0, 1, 2, 4]"), "has kv head 4 but the model has 4"},
      {"tokens", replaced("\"tokens\": [1, ", "\"tokens\": ["), "expected 1 + length * repeats = 13"},
      {"negseed", replaced("18446744073709551615", "-1"), ".seed must be a non-negative integer"},
      {"ratio", replaced("\"echo_head_ratio\": 0.01", "\"echo_head_ratio\": 1.5"), "echo_head_ratio must lie in [0, 1]"},
      {"shapekey", replaced("\"head_dim\": 16", "\"head_dim\": 16, \"x\": 1"), "\"shape\" has unknown key \"x\""},
      {"noseconds", replaced("  \"seconds\": 12.345678,\n", ""), "missing probe record field \"seconds\""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::string path = dir + "/" + c.name + ".json";
    write_text(path, c.text);
    expect_error([&] { razor::read_heads(path); }, path, c.part);
  }
}

// =============================================================================================
// dispatch, summary

TEST(HeadsIo, DispatchByExtension) {
  std::string dir = temp_dir();
  razor::write_heads(dir + "/a.pt", sample());
  razor::write_heads(dir + "/a.json", sample());
  EXPECT_EQ(file_bytes(dir + "/a.pt").substr(0, 2), "PK");
  EXPECT_EQ(file_bytes(dir + "/a.json").substr(0, 1), "{");
  EXPECT_EQ(razor::read_heads(dir + "/a.pt"), razor::read_heads(dir + "/a.json"));
  // A .pt written from a record with a probe keeps only the selection.
  razor::write_heads(dir + "/b.pt", sample_with_probe());
  HeadsFile b = razor::read_heads(dir + "/b.pt");
  EXPECT_EQ(b, sample());
  EXPECT_FALSE(b.probe.has_value());
  expect_error([&] { razor::write_heads(dir + "/a.txt", sample()); }, dir + "/a.txt", "expected a .pt or .json");
  expect_error([&] { razor::read_heads(dir + "/a.pth"); }, dir + "/a.pth", "expected a .pt or .json");
  expect_error([&] { razor::read_heads(dir + "/pt"); }, dir + "/pt", "unknown heads file type");
  expect_error([&] { razor::write_heads(dir + "/no/such/dir/a.pt", sample()); }, dir + "/no/such/dir/a.pt",
               "cannot write");
}

TEST(HeadsIo, FailedWriteLeavesExistingFile) {
  std::string dir = temp_dir();
  razor::write_heads(dir + "/keep.pt", sample());
  std::string before = file_bytes(dir + "/keep.pt");
  HeadsFile bad;
  bad.prefix_matching = {{0, {-5}}};
  expect_error([&] { razor::write_heads(dir + "/keep.pt", bad); }, dir + "/keep.pt", "negative head");
  EXPECT_EQ(file_bytes(dir + "/keep.pt"), before);
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(dir)) left.push_back(e.path().filename().string());
  EXPECT_EQ(left, std::vector<std::string>{"keep.pt"});  // no temporary left behind
}

TEST(HeadsIo, RetrievalHeadsIsSortedUnion) {
  HeadsFile h = sample();
  std::vector<std::pair<int, int>> want = {{0, 1}, {1, 0}, {1, 2}, {5, 3}, {7, 0}, {7, 1}, {7, 2}, {7, 3}};
  EXPECT_EQ(h.retrieval_heads(), want);
  EXPECT_TRUE(HeadsFile{}.retrieval_heads().empty());
}

TEST(HeadsIo, FormatHeads) {
  std::string s = razor::format_heads(sample());
  EXPECT_NE(s.find("prefix_matching (induction): 7 kv heads in 3 layers"), std::string::npos) << s;
  EXPECT_NE(s.find("  layer 1: 0 2\n"), std::string::npos) << s;
  EXPECT_NE(s.find("  layer 7: 0 1 2 3\n"), std::string::npos) << s;
  EXPECT_NE(s.find("copying (echo): 2 kv heads in 2 layers"), std::string::npos) << s;
  EXPECT_NE(s.find("  layer 0: 1\n"), std::string::npos) << s;
  EXPECT_NE(s.find("retrieval heads (union): 8\n"), std::string::npos) << s;
  std::string p = razor::format_heads(sample_with_probe());
  EXPECT_NE(p.find("8 layers, 8 heads, 4 kv heads, head dim 16"), std::string::npos) << p;
  EXPECT_NE(p.find("retrieval heads (union): 8 of 32 kv heads (25.0%)"), std::string::npos) << p;
  std::string e = razor::format_heads(HeadsFile{});
  EXPECT_NE(e.find("prefix_matching (induction): none"), std::string::npos) << e;
  EXPECT_NE(e.find("retrieval heads (union): 0"), std::string::npos) << e;
}

// =============================================================================================
// CLI

TEST(HeadsCli, Show) {
  std::string dir = temp_dir();
  razor::write_heads(dir + "/h.pt", sample());
  auto r = run_cli({"heads", "show", dir + "/h.pt"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, razor::format_heads(sample()));
  razor::write_heads(dir + "/h.json", sample_with_probe());
  r = run_cli({"heads", "show", dir + "/h.json"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("model: models/tiny"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  layer 7: 0 1 2 3"), std::string::npos) << r.out;
  r = run_cli({"heads", "show", dir + "/missing.pt"});
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find(dir + "/missing.pt"), std::string::npos) << r.err;
  r = run_cli({"heads"});
  EXPECT_NE(r.rc, 0);
  r = run_cli({"heads", "show"});
  EXPECT_NE(r.rc, 0);
}

TEST(HeadsCli, Convert) {
  std::string dir = temp_dir();
  razor::write_heads(dir + "/in.json", sample_with_probe());
  auto r = run_cli({"heads", "convert", dir + "/in.json", dir + "/out.pt"});
  ASSERT_EQ(r.rc, 0) << r.err;
  HeadsFile pt = razor::read_heads(dir + "/out.pt");
  EXPECT_EQ(pt, sample());
  EXPECT_FALSE(pt.probe.has_value());
  r = run_cli({"heads", "convert", dir + "/out.pt", dir + "/back.json"});
  ASSERT_EQ(r.rc, 0) << r.err;
  HeadsFile js = razor::read_heads(dir + "/back.json");
  EXPECT_EQ(js, sample());
  EXPECT_FALSE(js.probe.has_value());
  r = run_cli({"heads", "convert", dir + "/in.json", dir + "/copy.json"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(read_text(dir + "/copy.json"), read_text(dir + "/in.json"));
  r = run_cli({"heads", "convert", dir + "/out.pt", dir + "/out.txt"});
  EXPECT_NE(r.rc, 0);
  EXPECT_FALSE(fs::exists(dir + "/out.txt"));
}

TEST(HeadsCli, ConvertCorruptInputLeavesOutputAlone) {
  std::string dir = temp_dir();
  razor::write_heads(dir + "/out.pt", sample());
  razor::write_heads(dir + "/out.json", sample());
  std::string before_pt = file_bytes(dir + "/out.pt"), before_json = file_bytes(dir + "/out.json");
  std::string good = razor::heads_detail::encode_pt(big_sample(), "bad.pt");
  write_text(dir + "/bad.pt", good.substr(0, good.size() - 30));
  write_text(dir + "/bad.json", "{\"format\": \"razor-heads/1\", \"prefix_matching\": {\"1\": [0]");
  for (const auto& [in, out] : {std::pair{dir + "/bad.pt", dir + "/out.json"}, std::pair{dir + "/bad.json", dir + "/out.pt"}}) {
    auto r = run_cli({"heads", "convert", in, out});
    EXPECT_NE(r.rc, 0);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(in + ": "), std::string::npos) << r.err;
  }
  EXPECT_EQ(file_bytes(dir + "/out.pt"), before_pt);
  EXPECT_EQ(file_bytes(dir + "/out.json"), before_json);
}
