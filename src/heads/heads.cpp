// Heads files: dispatch by extension, the retrieval-head union, the text summary.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <set>

#include "razor/error.h"
#include "razor/heads.h"

namespace razor {

namespace {

enum class Ext { Pt, Json };

Ext extension(const std::string& path) {
  size_t slash = path.find_last_of('/');
  size_t dot = path.find_last_of('.');
  if (dot != std::string::npos && (slash == std::string::npos || dot > slash)) {
    std::string ext = path.substr(dot);
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (ext == ".pt") return Ext::Pt;
    if (ext == ".json") return Ext::Json;
  }
  fail(path, "unknown heads file type (expected a .pt or .json file name)");
}

size_t count(const HeadMap& m) {
  size_t n = 0;
  for (const auto& [layer, heads] : m) n += heads.size();
  return n;
}

std::string fmt_double(double d, const char* f = "%g") {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, d);
  return buf;
}

void format_map(std::string& out, const char* title, const HeadMap& m) {
  size_t n = count(m);
  out += std::string(title) + ": ";
  if (n == 0) {
    out += "none\n";
    return;
  }
  out += std::to_string(n) + (n == 1 ? " kv head" : " kv heads") + " in " + std::to_string(m.size()) +
         (m.size() == 1 ? " layer\n" : " layers\n");
  for (const auto& [layer, heads] : m) {
    if (heads.empty()) continue;
    out += "  layer ";
    out += std::to_string(layer);
    out += ":";
    for (int h : heads) {
      out += ' ';
      out += std::to_string(h);
    }
    out += "\n";
  }
}

}  // namespace

std::vector<std::pair<int, int>> HeadsFile::retrieval_heads() const {
  std::set<std::pair<int, int>> s;
  for (const HeadMap* m : {&prefix_matching, &copying})
    for (const auto& [layer, heads] : *m)
      for (int h : heads) s.emplace(layer, h);
  return {s.begin(), s.end()};
}

HeadsFile read_heads(const std::string& path) {
  return extension(path) == Ext::Pt ? read_heads_pt(path) : read_heads_json(path);
}

void write_heads(const std::string& path, const HeadsFile& heads) {
  if (extension(path) == Ext::Pt)
    write_heads_pt(path, heads);
  else
    write_heads_json(path, heads);
}

std::string format_heads(const HeadsFile& heads) {
  std::string out;
  if (heads.probe) {
    const ProbeRecord& p = *heads.probe;
    out += "model: " + (p.model.empty() ? std::string("(unnamed)") : p.model) + " (" + std::to_string(p.n_layers) +
           " layers, " + std::to_string(p.n_heads) + " heads, " + std::to_string(p.n_kv_heads) + " kv heads, head dim " +
           std::to_string(p.head_dim) + ")\n";
    out += "probe: induction ratio " + fmt_double(p.induction_head_ratio) + ", echo ratio " +
           fmt_double(p.echo_head_ratio) + ", length " + std::to_string(p.length) + ", repeats " +
           std::to_string(p.repeats) + ", seed " + std::to_string(p.seed) + ", " + std::to_string(p.tokens.size()) +
           " tokens, " + fmt_double(p.seconds, "%.2f") + " s\n";
  }
  format_map(out, "prefix_matching (induction)", heads.prefix_matching);
  format_map(out, "copying (echo)", heads.copying);
  size_t n = heads.retrieval_heads().size();
  out += "retrieval heads (union): " + std::to_string(n);
  if (heads.probe) {
    size_t total = size_t(heads.probe->n_layers) * size_t(heads.probe->n_kv_heads);
    if (total > 0) out += " of " + std::to_string(total) + " kv heads (" + fmt_double(100.0 * n / total, "%.1f") + "%)";
  }
  out += "\n";
  return out;
}

}  // namespace razor
