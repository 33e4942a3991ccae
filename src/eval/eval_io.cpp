// Inputs and outputs of razor eval: token-id JSON files and float32 .npy logits.
#include <cstring>
#include <nlohmann/json.hpp>

#include "razor/error.h"
#include "razor/eval.h"
#include "razor/io.h"

namespace razor {

std::vector<int> read_tokens_json(const std::string& path, int vocab) {
  const std::string text = read_file(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    std::string what = e.what();
    // nlohmann's message is one line; keep only its tail after the "[json.exception...]" tag.
    const size_t at = what.find("] ");
    fail(path, "not valid JSON: " + (at == std::string::npos ? what : what.substr(at + 2)));
  }
  if (!j.is_array()) fail(path, "expected a JSON array of token ids");
  if (j.empty()) fail(path, "the token array is empty");
  std::vector<int> out;
  out.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    const auto& v = j[i];
    if (!v.is_number_integer())
      fail(path, "element " + std::to_string(i) + " is not an integer token id (" + std::string(v.type_name()) + ")");
    const auto id = v.get<int64_t>();
    if (id < 0 || id >= vocab)
      fail(path, "token id " + std::to_string(id) + " at index " + std::to_string(i) + " is outside the vocabulary [0, " +
                     std::to_string(vocab) + ")");
    out.push_back(static_cast<int>(id));
  }
  return out;
}

std::string npy_f32(const float* data, size_t rows, size_t cols) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " +
                       std::to_string(cols) + "), }";
  // magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64,
  // ending in '\n'.
  const size_t prefix = 10;
  size_t total = prefix + header.size() + 1;
  const size_t pad = (64 - total % 64) % 64;
  header.append(pad, ' ');
  header.push_back('\n');
  if (header.size() > 65535) throw Error("npy header too long");
  std::string out;
  const size_t payload = rows * cols * sizeof(float);
  out.reserve(prefix + header.size() + payload);
  out.append("\x93NUMPY", 6);
  out.push_back('\x01');
  out.push_back('\x00');
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>((header.size() >> 8) & 0xff));
  out += header;
  const size_t at = out.size();
  out.resize(at + payload);
  static_assert(sizeof(float) == 4);
  // Little-endian hosts only (x86-64, aarch64): the payload is the floats' bytes as they are.
  if (payload) std::memcpy(out.data() + at, data, payload);
  return out;
}

void write_npy_f32(const std::string& path, const float* data, size_t rows, size_t cols) {
  write_file_atomic(path, npy_f32(data, rows, cols));
}

}  // namespace razor
