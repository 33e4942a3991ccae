#pragma once
// Reader for the GGUF container (llama.cpp, versions 2 and 3), treating the file as untrusted:
//   "GGUF", uint32 version, uint64 tensor_count, uint64 kv_count,
//   kv_count x {string key, uint32 value type, value},
//   tensor_count x {string name, uint32 n_dims, uint64 ne[n_dims], uint32 ggml type, uint64 offset},
//   padding to general.alignment (default 32), then the data section (offsets are relative to it).
// Strings are uint64 length + bytes; arrays are uint32 element type + uint64 count + elements.
// Everything little-endian. The whole file is memory-mapped and validated at open: every length and
// count is bounded by the bytes left in the file before anything is allocated, arithmetic is
// overflow-checked, tensor data lies inside the data section at aligned offsets. Only F32, F16 and
// BF16 tensors are accepted. Any problem is a razor::Error "PATH: problem".
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "razor/io.h"

namespace razor::gguf {

// Metadata value types.
enum class Type : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* type_name(Type t);

// ggml tensor types razor reads.
enum class TensorType : uint32_t { F32 = 0, F16 = 1, BF16 = 30 };
const char* tensor_type_name(uint32_t ggml_type);  // "F32", "Q4_0", ..., "type N" when unknown

struct Value {
  Type type = Type::U8;
  const uint8_t* data = nullptr;  // scalar bytes; string bytes; first array element
  size_t size = 0;                // string: length in bytes; array: bytes of all elements
  Type elem_type = Type::U8;      // arrays
  uint64_t count = 0;             // arrays: number of elements
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ne[0] is the fastest-varying dimension (columns of a matrix)
  TensorType type = TensorType::F32;
  size_t elem_size = 0;
  int64_t numel = 0;
  uint64_t offset = 0;            // relative to the data section
  const uint8_t* data = nullptr;  // inside the mapped file
  size_t nbytes = 0;
};

class File {
 public:
  explicit File(const std::string& path);

  const std::string& path() const { return map_->path(); }
  const std::shared_ptr<MappedFile>& map() const { return map_; }
  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  size_t data_start() const { return data_start_; }

  [[noreturn]] void bad(const std::string& message) const;

  // Metadata. find() returns nullptr when the key is absent. The typed getters return nullopt
  // when absent and fail when the value has the wrong type or is out of [lo, hi].
  const std::map<std::string, Value>& metadata() const { return kv_; }
  const Value* find(const std::string& key) const;
  std::optional<int64_t> get_int(const std::string& key, int64_t lo, int64_t hi) const;  // any integer type
  std::optional<double> get_float(const std::string& key) const;  // F32/F64 (or an integer), finite
  std::optional<std::string> get_string(const std::string& key) const;
  // Arrays: the value must be an array of strings / of F32 (or F64); nullopt when absent.
  std::optional<std::vector<std::string>> get_strings(const std::string& key) const;
  std::optional<std::vector<float>> get_floats(const std::string& key) const;

  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* tensor(const std::string& name) const;

 private:
  std::shared_ptr<MappedFile> map_;
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  size_t data_start_ = 0;
  std::map<std::string, Value> kv_;
  std::map<std::string, TensorInfo> tensors_;
};

// Up to 80 characters of `s` with control and non-ASCII bytes escaped, for error messages
// (names come from untrusted files and must not break the one-line error rule).
std::string printable(std::string_view s);

// "[64, 512]" (ne order, as GGUF stores it)
std::string shape_str(const std::vector<int64_t>& ne);

}  // namespace razor::gguf
