#pragma once
// Heads files (SPEC section 3). The selection is the msModelSlim dict
//   {'prefix_matching': {layer: [kv_head, ...]}, 'copying': {layer: [kv_head, ...]}}
// written as a PyTorch .pt (zip + restricted pickle) or as razor's richer .json.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace razor {

using HeadMap = std::map<int, std::vector<int>>;  // layer -> ascending kv heads; no empty lists

struct ProbeRecord {  // what the .json carries beyond the selection
  int n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  double induction_head_ratio = 0.14, echo_head_ratio = 0.01;
  int length = 0, repeats = 0;
  uint64_t seed = 0;
  std::string model;                                // path or name of the probed model
  std::vector<int> tokens;                          // exact probe sequence
  std::vector<std::vector<double>> induction_scores;  // [layer][query head]
  std::vector<std::vector<double>> echo_scores;       // [layer][query head]
  std::vector<std::vector<double>> kv_induction;      // [layer][kv head]
  std::vector<std::vector<double>> kv_echo;           // [layer][kv head]
  double seconds = 0;                               // timing field (not part of the identity)
};

struct HeadsFile {
  HeadMap prefix_matching;  // induction heads
  HeadMap copying;          // echo heads
  std::optional<ProbeRecord> probe;  // present in .json written by the probe

  // Union of both maps as (layer, kv head) pairs, sorted.
  std::vector<std::pair<int, int>> retrieval_heads() const;
  bool operator==(const HeadsFile& o) const {
    return prefix_matching == o.prefix_matching && copying == o.copying;
  }
};

// By extension: .pt or .json. Errors name the file.
// Writers normalise the maps (ascending, de-duplicated, empty lists dropped), reject negative
// indices, and write atomically. write_heads_json also checks a probe record for consistency
// (positive shape, heads % kv_heads == 0, ratios in [0, 1], tokens.size() == 1 + length * repeats,
// score matrices [n_layers][n_heads] / [n_layers][n_kv_heads] of finite values, selected
// layers / kv heads inside the shape): the reader enforces the same, so what is written reads back.
// .pt files are byte for byte what torch 1.13's torch.save writes for the same dict and file name.
HeadsFile read_heads(const std::string& path);
void write_heads(const std::string& path, const HeadsFile& heads);

HeadsFile read_heads_pt(const std::string& path);
void write_heads_pt(const std::string& path, const HeadsFile& heads);
HeadsFile read_heads_json(const std::string& path);
void write_heads_json(const std::string& path, const HeadsFile& heads);

// Text summary for `razor heads show`.
std::string format_heads(const HeadsFile& heads);

}  // namespace razor
