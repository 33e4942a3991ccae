// .pt heads files: what msModelSlim's get_compress_heads writes with torch.save.
#include <algorithm>
#include <climits>
#include <cstdio>

#include "heads/heads_internal.h"
#include "heads/pickle.h"
#include "heads/torch_zip.h"
#include "razor/error.h"
#include "razor/io.h"

namespace razor {

namespace heads_detail {

namespace {

constexpr const char* kPrefix = "prefix_matching";
constexpr const char* kCopying = "copying";
constexpr size_t kBatch = 1000;  // CPython pickler's BATCHSIZE

void encode_list(pickle::Writer& w, const std::vector<int>& heads) {
  w.empty_list();
  if (heads.empty()) return;
  if (heads.size() == 1) {
    w.integer(heads[0]);
    w.append();
    return;
  }
  size_t total = 0;
  do {
    w.mark();
    for (size_t n = 0; total < heads.size() && n < kBatch; ++n) w.integer(heads[total++]);
    w.appends();
  } while (total < heads.size());
}

void encode_map(pickle::Writer& w, const HeadMap& m) {
  w.empty_dict();
  if (m.empty()) return;
  if (m.size() == 1) {
    w.integer(m.begin()->first);
    encode_list(w, m.begin()->second);
    w.setitem();
    return;
  }
  auto it = m.begin();
  size_t n;
  do {  // as batch_dict_exact: a full last batch is followed by an empty MARK ... SETITEMS
    n = 0;
    w.mark();
    for (; it != m.end() && n < kBatch; ++it, ++n) {
      w.integer(it->first);
      encode_list(w, it->second);
    }
    w.setitems();
  } while (n == kBatch);
}

std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (out.size() >= 60) {
      out += "...";
      break;
    }
    if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

std::string describe(const pickle::Graph& g, const pickle::Value& v) {
  switch (v.kind) {
    case pickle::Kind::Int: return "int " + std::to_string(v.num);
    case pickle::Kind::Bool: return v.num ? "bool True" : "bool False";
    case pickle::Kind::Str: return "str '" + printable(g.obj(v).str) + "'";
    default: return pickle::kind_name(v.kind);
  }
}

int non_negative_int(const pickle::Graph& g, const pickle::Value& v, const std::string& what, const std::string& path) {
  if (v.kind != pickle::Kind::Int) fail(path, what + " must be an int, got " + describe(g, v));
  if (v.num < 0) fail(path, what + " must be non-negative, got " + std::to_string(v.num));
  if (v.num > INT_MAX) fail(path, what + " is too large (" + std::to_string(v.num) + ")");
  return static_cast<int>(v.num);
}

HeadMap decode_map(const pickle::Graph& g, const pickle::Value& v, const std::string& name, const std::string& path) {
  if (v.kind != pickle::Kind::Dict)
    fail(path, "'" + name + "' must be a dict {layer: [kv_head, ...]}, got " + describe(g, v));
  HeadMap m;
  for (size_t i = 0; i < g.dict_size(v); ++i) {
    int layer = non_negative_int(g, g.dict_key(v, i), "'" + name + "' layer key", path);
    const pickle::Value& lv = g.dict_value(v, i);
    std::string where = "'" + name + "'[" + std::to_string(layer) + "]";
    if (lv.kind != pickle::Kind::List) fail(path, where + " must be a list of kv heads, got " + describe(g, lv));
    std::vector<int> heads;
    for (const auto& hv : g.obj(lv).items) heads.push_back(non_negative_int(g, hv, where + " head", path));
    std::sort(heads.begin(), heads.end());
    heads.erase(std::unique(heads.begin(), heads.end()), heads.end());
    if (!heads.empty()) m[layer] = std::move(heads);
  }
  return m;
}

}  // namespace

HeadMap normalized(const HeadMap& m, const char* what, const std::string& path) {
  HeadMap out;
  for (const auto& [layer, heads] : m) {
    if (layer < 0) fail(path, std::string(what) + ": negative layer " + std::to_string(layer));
    std::vector<int> h = heads;
    for (int x : h)
      if (x < 0) fail(path, std::string(what) + ": layer " + std::to_string(layer) + " has negative head " + std::to_string(x));
    std::sort(h.begin(), h.end());
    h.erase(std::unique(h.begin(), h.end()), h.end());
    if (!h.empty()) out[layer] = std::move(h);
  }
  return out;
}

std::string encode_pickle(const HeadsFile& heads, const std::string& path) {
  HeadMap pm = normalized(heads.prefix_matching, kPrefix, path);
  HeadMap cp = normalized(heads.copying, kCopying, path);
  pickle::Writer w;
  w.empty_dict();
  w.mark();
  w.string(kPrefix);
  encode_map(w, pm);
  w.string(kCopying);
  encode_map(w, cp);
  w.setitems();
  return w.finish();
}

HeadsFile decode_pickle(std::string_view pkl, const std::string& path) {
  pickle::Graph g = pickle::load(pkl, path);
  const pickle::Value& root = g.root;
  if (root.kind != pickle::Kind::Dict)
    fail(path, "expected a dict {'prefix_matching': ..., 'copying': ...}, got " + describe(g, root));
  HeadsFile out;
  bool have_prefix = false, have_copying = false;
  for (size_t i = 0; i < g.dict_size(root); ++i) {
    const pickle::Value& k = g.dict_key(root, i);
    std::string key = k.kind == pickle::Kind::Str ? g.obj(k).str : std::string();
    if (k.kind == pickle::Kind::Str && key == kPrefix) {
      out.prefix_matching = decode_map(g, g.dict_value(root, i), key, path);
      have_prefix = true;
    } else if (k.kind == pickle::Kind::Str && key == kCopying) {
      out.copying = decode_map(g, g.dict_value(root, i), key, path);
      have_copying = true;
    } else {
      fail(path, "unexpected key " + describe(g, k) + " (expected only 'prefix_matching' and 'copying')");
    }
  }
  if (!have_prefix) fail(path, "missing key 'prefix_matching'");
  if (!have_copying) fail(path, "missing key 'copying'");
  return out;
}

std::string encode_pt(const HeadsFile& heads, const std::string& path) {
  return torchzip::build_pt(torchzip::archive_name(path), encode_pickle(heads, path));
}

HeadsFile decode_pt(std::string_view bytes, const std::string& path) {
  return decode_pickle(torchzip::read_data_pkl(bytes, path), path);
}

}  // namespace heads_detail

HeadsFile read_heads_pt(const std::string& path) {
  MappedFile f(path);
  return heads_detail::decode_pt(
      std::string_view(reinterpret_cast<const char*>(f.data()), f.size()), path);
}

void write_heads_pt(const std::string& path, const HeadsFile& heads) {
  write_file_atomic(path, heads_detail::encode_pt(heads, path));
}

}  // namespace razor
