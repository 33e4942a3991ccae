// .json heads files ("format": "razor-heads/1"): the selection plus the probe record.
#include <climits>
#include <cmath>
#include <nlohmann/json.hpp>

#include "heads/heads_internal.h"
#include "razor/error.h"
#include "razor/io.h"

namespace razor {

namespace heads_detail {

namespace {

using nlohmann::json;

constexpr const char* kFormat = "razor-heads/1";
const char* const kProbeKeys[] = {"model", "shape", "probe", "seconds", "tokens", "induction_scores",
                                  "echo_scores", "kv_induction", "kv_echo"};

std::string quote(const std::string& s) {
  return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string number(double d, const std::string& what, const std::string& path) {
  if (!std::isfinite(d)) fail(path, "cannot write " + what + ": value is not finite");
  return json(d).dump();  // shortest representation that reads back to the same double
}

// ---- validation shared by the writer and the reader ----

void check_matrix(const std::vector<std::vector<double>>& m, size_t rows, size_t cols, const std::string& name,
                  const std::string& path) {
  if (m.size() != rows)
    fail(path, "\"" + name + "\" has " + std::to_string(m.size()) + " rows, expected " + std::to_string(rows) + " (layers)");
  for (size_t r = 0; r < m.size(); ++r) {
    if (m[r].size() != cols)
      fail(path, "\"" + name + "\"[" + std::to_string(r) + "] has " + std::to_string(m[r].size()) + " entries, expected " +
                     std::to_string(cols));
    for (size_t c = 0; c < cols; ++c)
      if (!std::isfinite(m[r][c]))
        fail(path, "\"" + name + "\"[" + std::to_string(r) + "][" + std::to_string(c) + "] is not a finite number");
  }
}

void check_map_bounds(const HeadMap& m, const char* name, const ProbeRecord& p, const std::string& path) {
  for (const auto& [layer, heads] : m) {
    if (layer >= p.n_layers)
      fail(path, std::string("\"") + name + "\" has layer " + std::to_string(layer) + " but the model has " +
                     std::to_string(p.n_layers) + " layers");
    for (int h : heads)
      if (h >= p.n_kv_heads)
        fail(path, std::string("\"") + name + "\" layer " + std::to_string(layer) + " has kv head " + std::to_string(h) +
                       " but the model has " + std::to_string(p.n_kv_heads) + " kv heads");
  }
}

void check_probe(const ProbeRecord& p, const HeadMap& pm, const HeadMap& cp, const std::string& path) {
  if (p.n_layers < 1 || p.n_heads < 1 || p.n_kv_heads < 1 || p.head_dim < 1)
    fail(path, "\"shape\" values must be positive");
  if (p.n_heads % p.n_kv_heads != 0)
    fail(path, "\"shape\": heads (" + std::to_string(p.n_heads) + ") is not a multiple of kv_heads (" +
                   std::to_string(p.n_kv_heads) + ")");
  if (!(p.induction_head_ratio >= 0 && p.induction_head_ratio <= 1))
    fail(path, "\"probe\": induction_head_ratio must lie in [0, 1]");
  if (!(p.echo_head_ratio >= 0 && p.echo_head_ratio <= 1)) fail(path, "\"probe\": echo_head_ratio must lie in [0, 1]");
  if (p.length < 1 || p.repeats < 1) fail(path, "\"probe\": length and repeats must be positive");
  int64_t expect = 1 + int64_t{p.length} * p.repeats;
  if (static_cast<int64_t>(p.tokens.size()) != expect)
    fail(path, "\"tokens\" has " + std::to_string(p.tokens.size()) + " ids, expected 1 + length * repeats = " +
                   std::to_string(expect));
  for (size_t i = 0; i < p.tokens.size(); ++i)
    if (p.tokens[i] < 0) fail(path, "\"tokens\"[" + std::to_string(i) + "] is negative");
  if (!std::isfinite(p.seconds) || p.seconds < 0) fail(path, "\"seconds\" must be a non-negative number");
  check_matrix(p.induction_scores, p.n_layers, p.n_heads, "induction_scores", path);
  check_matrix(p.echo_scores, p.n_layers, p.n_heads, "echo_scores", path);
  check_matrix(p.kv_induction, p.n_layers, p.n_kv_heads, "kv_induction", path);
  check_matrix(p.kv_echo, p.n_layers, p.n_kv_heads, "kv_echo", path);
  check_map_bounds(pm, "prefix_matching", p, path);
  check_map_bounds(cp, "copying", p, path);
}

// ---- writer ----

void write_map(std::string& out, const char* name, const HeadMap& m) {
  out += std::string("  \"") + name + "\": {";
  bool first = true;
  for (const auto& [layer, heads] : m) {
    out += first ? "\n" : ",\n";
    first = false;
    out += "    \"" + std::to_string(layer) + "\": [";
    for (size_t i = 0; i < heads.size(); ++i) out += (i ? ", " : "") + std::to_string(heads[i]);
    out += "]";
  }
  out += first ? "}" : "\n  }";
}

void write_matrix(std::string& out, const char* name, const std::vector<std::vector<double>>& m,
                  const std::string& path) {
  out += std::string("  \"") + name + "\": [";
  for (size_t r = 0; r < m.size(); ++r) {
    out += r ? ",\n    [" : "\n    [";
    for (size_t c = 0; c < m[r].size(); ++c) out += (c ? ", " : "") + number(m[r][c], name, path);
    out += "]";
  }
  out += m.empty() ? "]" : "\n  ]";
}

// ---- reader ----

struct Reader {
  const std::string& path;

  [[noreturn]] void bad(const std::string& what, const std::string& msg) const { fail(path, what + " " + msg); }

  const json& member(const json& obj, const char* key, const std::string& where) const {
    auto it = obj.find(key);
    if (it == obj.end()) fail(path, "missing " + where + "\"" + key + "\"");
    return *it;
  }

  int64_t integer(const json& v, const std::string& what, int64_t lo, int64_t hi) const {
    if (!v.is_number_integer()) bad(what, "must be an integer, got " + std::string(v.type_name()));
    int64_t x;
    if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(hi)) bad(what, "is out of range (" + std::to_string(u) + ")");
      x = static_cast<int64_t>(u);
    } else {
      x = v.get<int64_t>();
    }
    if (x < lo || x > hi) bad(what, "is out of range (" + std::to_string(x) + ")");
    return x;
  }

  double real(const json& v, const std::string& what) const {
    if (!v.is_number()) bad(what, "must be a number, got " + std::string(v.type_name()));
    return v.get<double>();
  }

  HeadMap head_map(const json& v, const std::string& name) const {
    std::string what = "\"" + name + "\"";
    if (!v.is_object()) bad(what, "must be an object {\"layer\": [kv_head, ...]}, got " + std::string(v.type_name()));
    HeadMap m;
    for (auto it = v.begin(); it != v.end(); ++it) {
      const std::string& key = it.key();
      bool digits = !key.empty() && key.size() <= 10 && (key == "0" || key[0] != '0');
      for (char c : key) digits = digits && c >= '0' && c <= '9';
      if (!digits || std::stoll(key) > INT_MAX)
        bad(what, "layer key " + quote(key) + " is not a non-negative integer");
      int layer = static_cast<int>(std::stoll(key));
      std::string where = what + "[" + quote(key) + "]";
      if (!it.value().is_array()) bad(where, "must be an array of kv heads, got " + std::string(it.value().type_name()));
      std::vector<int> heads;
      for (size_t i = 0; i < it.value().size(); ++i)
        heads.push_back(static_cast<int>(integer(it.value()[i], where + "[" + std::to_string(i) + "]", 0, INT_MAX)));
      for (size_t i = 1; i < heads.size(); ++i)
        if (heads[i] <= heads[i - 1]) bad(where, "must list kv heads in ascending order without repeats");
      if (!heads.empty()) m[layer] = std::move(heads);
    }
    return m;
  }

  std::vector<std::vector<double>> matrix(const json& v, const std::string& name) const {
    std::string what = "\"" + name + "\"";
    if (!v.is_array()) bad(what, "must be an array of arrays of numbers");
    std::vector<std::vector<double>> m(v.size());
    for (size_t r = 0; r < v.size(); ++r) {
      std::string row = what + "[" + std::to_string(r) + "]";
      if (!v[r].is_array()) bad(row, "must be an array of numbers, got " + std::string(v[r].type_name()));
      for (size_t c = 0; c < v[r].size(); ++c) m[r].push_back(real(v[r][c], row + "[" + std::to_string(c) + "]"));
    }
    return m;
  }

  const json& object(const json& obj, const char* key, const char* const* allowed, size_t n_allowed) const {
    const json& v = member(obj, key, "probe record field ");
    std::string what = std::string("\"") + key + "\"";
    if (!v.is_object()) bad(what, "must be an object, got " + std::string(v.type_name()));
    for (auto it = v.begin(); it != v.end(); ++it) {
      bool ok = false;
      for (size_t i = 0; i < n_allowed; ++i) ok = ok || it.key() == allowed[i];
      if (!ok) bad(what, "has unknown key " + quote(it.key()));
    }
    return v;
  }
};

}  // namespace

std::string encode_json(const HeadsFile& heads, const std::string& path) {
  HeadMap pm = normalized(heads.prefix_matching, "prefix_matching", path);
  HeadMap cp = normalized(heads.copying, "copying", path);
  std::string out = "{\n  \"format\": \"" + std::string(kFormat) + "\",\n";
  write_map(out, "prefix_matching", pm);
  out += ",\n";
  write_map(out, "copying", cp);
  if (heads.probe) {
    const ProbeRecord& p = *heads.probe;
    check_probe(p, pm, cp, path);
    out += ",\n  \"model\": " + quote(p.model) + ",\n";
    out += "  \"shape\": {\"layers\": " + std::to_string(p.n_layers) + ", \"heads\": " + std::to_string(p.n_heads) +
           ", \"kv_heads\": " + std::to_string(p.n_kv_heads) + ", \"head_dim\": " + std::to_string(p.head_dim) + "},\n";
    out += "  \"probe\": {\"induction_head_ratio\": " + number(p.induction_head_ratio, "induction_head_ratio", path) +
           ", \"echo_head_ratio\": " + number(p.echo_head_ratio, "echo_head_ratio", path) +
           ", \"length\": " + std::to_string(p.length) + ", \"repeats\": " + std::to_string(p.repeats) +
           ", \"seed\": " + std::to_string(p.seed) + "},\n";
    out += "  \"seconds\": " + number(p.seconds, "seconds", path) + ",\n";
    out += "  \"tokens\": [";
    for (size_t i = 0; i < p.tokens.size(); ++i) out += (i ? ", " : "") + std::to_string(p.tokens[i]);
    out += "],\n";
    write_matrix(out, "induction_scores", p.induction_scores, path);
    out += ",\n";
    write_matrix(out, "echo_scores", p.echo_scores, path);
    out += ",\n";
    write_matrix(out, "kv_induction", p.kv_induction, path);
    out += ",\n";
    write_matrix(out, "kv_echo", p.kv_echo, path);
  }
  out += "\n}\n";
  return out;
}

HeadsFile decode_json(std::string_view text, const std::string& path) {
  json root;
  try {
    root = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    std::string msg = e.what();
    if (!msg.empty() && msg[0] == '[') {  // drop "[json.exception.parse_error.101] "
      size_t p = msg.find("] ");
      if (p != std::string::npos) msg = msg.substr(p + 2);
    }
    for (char& c : msg)
      if (c == '\n' || c == '\r') c = ' ';
    fail(path, "invalid JSON: " + msg);
  }
  Reader r{path};
  if (!root.is_object()) fail(path, "expected a JSON object with \"format\": \"" + std::string(kFormat) + "\"");
  auto fmt = root.find("format");
  if (fmt == root.end()) fail(path, "missing \"format\" (expected \"" + std::string(kFormat) + "\")");
  if (!fmt->is_string() || fmt->get<std::string>() != kFormat)
    fail(path, "unsupported format " + fmt->dump(-1, ' ', false, json::error_handler_t::replace) + " (expected \"" +
                   kFormat + "\")");
  for (auto it = root.begin(); it != root.end(); ++it) {
    bool ok = it.key() == "format" || it.key() == "prefix_matching" || it.key() == "copying";
    for (const char* k : kProbeKeys) ok = ok || it.key() == k;
    if (!ok) fail(path, "unknown key " + quote(it.key()));
  }
  HeadsFile out;
  out.prefix_matching = r.head_map(r.member(root, "prefix_matching", ""), "prefix_matching");
  out.copying = r.head_map(r.member(root, "copying", ""), "copying");

  bool any_probe = false;
  for (const char* k : kProbeKeys) any_probe = any_probe || root.contains(k);
  if (!any_probe) return out;

  ProbeRecord p;
  const json& model = r.member(root, "model", "probe record field ");
  if (!model.is_string()) r.bad("\"model\"", "must be a string");
  p.model = model.get<std::string>();

  static const char* const shape_keys[] = {"layers", "heads", "kv_heads", "head_dim"};
  const json& shape = r.object(root, "shape", shape_keys, 4);
  p.n_layers = static_cast<int>(r.integer(r.member(shape, "layers", "\"shape\" "), "\"shape\".layers", 1, INT_MAX));
  p.n_heads = static_cast<int>(r.integer(r.member(shape, "heads", "\"shape\" "), "\"shape\".heads", 1, INT_MAX));
  p.n_kv_heads = static_cast<int>(r.integer(r.member(shape, "kv_heads", "\"shape\" "), "\"shape\".kv_heads", 1, INT_MAX));
  p.head_dim = static_cast<int>(r.integer(r.member(shape, "head_dim", "\"shape\" "), "\"shape\".head_dim", 1, INT_MAX));

  static const char* const probe_keys[] = {"induction_head_ratio", "echo_head_ratio", "length", "repeats", "seed"};
  const json& probe = r.object(root, "probe", probe_keys, 5);
  p.induction_head_ratio = r.real(r.member(probe, "induction_head_ratio", "\"probe\" "), "\"probe\".induction_head_ratio");
  p.echo_head_ratio = r.real(r.member(probe, "echo_head_ratio", "\"probe\" "), "\"probe\".echo_head_ratio");
  p.length = static_cast<int>(r.integer(r.member(probe, "length", "\"probe\" "), "\"probe\".length", 1, INT_MAX));
  p.repeats = static_cast<int>(r.integer(r.member(probe, "repeats", "\"probe\" "), "\"probe\".repeats", 1, INT_MAX));
  const json& seed = r.member(probe, "seed", "\"probe\" ");
  if (!seed.is_number_unsigned()) r.bad("\"probe\".seed", "must be a non-negative integer");
  p.seed = seed.get<uint64_t>();

  p.seconds = r.real(r.member(root, "seconds", "probe record field "), "\"seconds\"");
  const json& tokens = r.member(root, "tokens", "probe record field ");
  if (!tokens.is_array()) r.bad("\"tokens\"", "must be an array of token ids");
  p.tokens.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i)
    p.tokens.push_back(static_cast<int>(r.integer(tokens[i], "\"tokens\"[" + std::to_string(i) + "]", 0, INT_MAX)));
  p.induction_scores = r.matrix(r.member(root, "induction_scores", "probe record field "), "induction_scores");
  p.echo_scores = r.matrix(r.member(root, "echo_scores", "probe record field "), "echo_scores");
  p.kv_induction = r.matrix(r.member(root, "kv_induction", "probe record field "), "kv_induction");
  p.kv_echo = r.matrix(r.member(root, "kv_echo", "probe record field "), "kv_echo");
  check_probe(p, out.prefix_matching, out.copying, path);
  out.probe = std::move(p);
  return out;
}

}  // namespace heads_detail

HeadsFile read_heads_json(const std::string& path) { return heads_detail::decode_json(read_file(path), path); }

void write_heads_json(const std::string& path, const HeadsFile& heads) {
  write_file_atomic(path, heads_detail::encode_json(heads, path));
}

}  // namespace razor
