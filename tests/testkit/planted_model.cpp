#include "planted_model.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <vector>

namespace razor::testkit {

namespace {

constexpr int kIdDims = 24;     // identity subspace
constexpr int kPrevBase = 24;   // previous-token identity
constexpr int kConstDim = 48;   // constant 1
constexpr int kPosPairs = 8;    // RoPE pairs of the previous-token head
constexpr float kPosGain = 14.0f;
constexpr float kIdGain = 25.0f;
constexpr float kDummyStd = 0.5f;

struct Rng {  // splitmix64: portable values
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  float symmetric(float std) { return static_cast<float>((2.0 * uniform() - 1.0) * std * std::sqrt(3.0)); }
  double gauss() {  // Box-Muller
    double u = uniform(), v = uniform();
    return std::sqrt(-2.0 * std::log(1.0 - u)) * std::cos(2.0 * M_PI * v);
  }
};

}  // namespace

void write_planted_model(const std::string& path, const PlantedSpec& s) {
  const int hd = s.head_dim, H = s.n_heads, KV = s.n_kv_heads, Ls = s.n_layers, V = s.vocab_size;
  const int dim = H * hd, kv_dim = KV * hd, hid = s.hidden_dim;
  if (hd < 2 * kPosPairs + kIdDims || hd % 2 || dim < kConstDim + 1 || H % KV || V < 4 || Ls < 1)
    throw std::runtime_error("planted model: shape cannot hold the circuits");
  const int group = H / KV;
  auto kv_of = [&](int h) { return h / group; };
  if (s.induction_layer <= s.prev_layer) throw std::runtime_error("planted model: induction must follow prev");
  struct Slot { int layer, head; };
  const Slot slots[3] = {{s.prev_layer, s.prev_head}, {s.echo_layer, s.echo_head}, {s.induction_layer, s.induction_head}};
  for (int a = 0; a < 3; ++a) {
    if (slots[a].layer < 0 || slots[a].layer >= Ls || slots[a].head < 0 || slots[a].head >= H)
      throw std::runtime_error("planted model: circuit outside the model");
    for (int b = a + 1; b < 3; ++b)
      if (slots[a].layer == slots[b].layer && kv_of(slots[a].head) == kv_of(slots[b].head))
        throw std::runtime_error("planted model: two circuits share a KV head");
  }

  Rng rng{s.seed};
  // Identity vectors: unit, pairwise dot <= 0.5 (greedy rejection).
  std::vector<std::vector<float>> ids;
  while (static_cast<int>(ids.size()) < V) {
    std::vector<double> g(kIdDims);
    double n2 = 0;
    for (double& x : g) n2 += (x = rng.gauss()) * x;
    std::vector<float> u(kIdDims);
    for (int i = 0; i < kIdDims; ++i) u[i] = static_cast<float>(g[i] / std::sqrt(n2));
    bool ok = true;
    for (const auto& w : ids) {
      double d = 0;
      for (int i = 0; i < kIdDims; ++i) d += double(u[i]) * w[i];
      if (d > 0.5) ok = false;
    }
    if (ok) ids.push_back(u);
  }

  std::vector<float> emb(size_t(V) * dim, 0.0f);
  for (int t = 0; t < V; ++t) {
    for (int i = 0; i < kIdDims; ++i) emb[size_t(t) * dim + i] = ids[t][i];
    emb[size_t(t) * dim + kConstDim] = 1.0f;
  }
  std::vector<float> rms_att(size_t(Ls) * dim, 1.0f / std::sqrt(static_cast<float>(dim)));
  std::vector<float> wq(size_t(Ls) * dim * dim), wk(size_t(Ls) * kv_dim * dim), wv(size_t(Ls) * kv_dim * dim);
  std::vector<float> wo(size_t(Ls) * dim * dim, 0.0f);
  for (auto& x : wq) x = rng.symmetric(kDummyStd);
  for (auto& x : wk) x = rng.symmetric(kDummyStd);
  for (auto& x : wv) x = rng.symmetric(kDummyStd);

  auto q_row = [&](int l, int h, int d) { return &wq[(size_t(l) * dim + size_t(h) * hd + d) * dim]; };
  auto k_row = [&](int l, int g, int d) { return &wk[(size_t(l) * kv_dim + size_t(g) * hd + d) * dim]; };
  auto v_row = [&](int l, int g, int d) { return &wv[(size_t(l) * kv_dim + size_t(g) * hd + d) * dim]; };
  auto clear_q = [&](int l, int h) { std::fill(q_row(l, h, 0), q_row(l, h, hd), 0.0f); };
  auto clear_kv = [&](int l, int g) {
    std::fill(k_row(l, g, 0), k_row(l, g, hd), 0.0f);
    std::fill(v_row(l, g, 0), v_row(l, g, hd), 0.0f);
  };
  const int id_slot = hd - kIdDims;  // lowest-frequency RoPE pairs of a head

  {  // Previous-token head. Layer 0 reads x / |x| with |x| = sqrt(2): the constant dim is 1/sqrt(2).
    const int l = s.prev_layer, h = s.prev_head, g = kv_of(h);
    clear_q(l, h);
    clear_kv(l, g);
    for (int i = 0; i < kPosPairs; ++i) {
      const double w = std::pow(10000.0, -2.0 * i / hd);  // the pair's RoPE frequency
      q_row(l, h, 2 * i)[kConstDim] = kPosGain;
      k_row(l, g, 2 * i)[kConstDim] = static_cast<float>(kPosGain * std::cos(w));
      k_row(l, g, 2 * i + 1)[kConstDim] = static_cast<float>(kPosGain * std::sin(w));
    }
    const float vg = s.prev_layer == 0 ? std::sqrt(2.0f) : std::sqrt(3.0f);
    for (int j = 0; j < kIdDims; ++j) {
      v_row(l, g, j)[j] = vg;
      wo[(size_t(l) * dim + kPrevBase + j) * dim + size_t(h) * hd + j] = 1.0f;
    }
  }
  {  // Echo head: q and k read the identity through the low-frequency pairs.
    const int l = s.echo_layer, h = s.echo_head, g = kv_of(h);
    clear_q(l, h);
    clear_kv(l, g);
    for (int j = 0; j < kIdDims; ++j) {
      q_row(l, h, id_slot + j)[j] = kIdGain;
      k_row(l, g, id_slot + j)[j] = kIdGain;
    }
  }
  {  // Induction head: q reads the identity, k the previous token's identity.
    const int l = s.induction_layer, h = s.induction_head, g = kv_of(h);
    clear_q(l, h);
    clear_kv(l, g);
    for (int j = 0; j < kIdDims; ++j) {
      q_row(l, h, id_slot + j)[j] = kIdGain;
      k_row(l, g, id_slot + j)[kPrevBase + j] = kIdGain;
    }
  }

  std::vector<float> rms_ffn(size_t(Ls) * dim, 1.0f);
  std::vector<float> w1(size_t(Ls) * hid * dim, 0.0f), w2(size_t(Ls) * dim * hid, 0.0f), w3(w1.size(), 0.0f);
  std::vector<float> rms_final(dim, 1.0f);
  std::vector<float> freq(size_t(s.seq_len) * hd, 0.0f);  // freq_cis_real + imag: unused by readers

  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw std::runtime_error("cannot write " + path);
  const int32_t header[7] = {dim, hid, Ls, H, KV, V, s.seq_len};
  f.write(reinterpret_cast<const char*>(header), sizeof header);
  auto put = [&](const std::vector<float>& x) {
    f.write(reinterpret_cast<const char*>(x.data()), static_cast<std::streamsize>(x.size() * sizeof(float)));
  };
  for (const auto* x : {&emb, &rms_att, &wq, &wk, &wv, &wo, &rms_ffn, &w1, &w2, &w3, &rms_final, &freq}) put(*x);
  if (!f) throw std::runtime_error("cannot write " + path);
}

}  // namespace razor::testkit
