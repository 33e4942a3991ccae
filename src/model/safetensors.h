#pragma once
// Reader for the safetensors container (https://github.com/huggingface/safetensors):
// 8-byte little-endian header length N, N bytes of JSON
//   {name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}
// then the data; offsets are relative to byte 8 + N. The whole file is memory-mapped and every
// header entry is validated (offsets in range, sizes consistent, no overflow) at open.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "razor/io.h"

namespace razor::safetensors {

struct TensorInfo {
  std::string name;
  std::string dtype;           // as written: "F32", "F16", "BF16", "I64", ...
  size_t elem_size = 0;        // bytes per element of dtype
  std::vector<int64_t> shape;
  int64_t numel = 0;
  const uint8_t* data = nullptr;  // inside the mapped file
  size_t nbytes = 0;
};

class File {
 public:
  // Maps and validates `path`; any problem is a razor::Error naming the file.
  explicit File(const std::string& path);

  const std::string& path() const { return map_->path(); }
  const std::shared_ptr<MappedFile>& map() const { return map_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;
  size_t data_start() const { return data_start_; }  // 8 + N

 private:
  std::shared_ptr<MappedFile> map_;
  std::map<std::string, TensorInfo> tensors_;
  size_t data_start_ = 0;
};

// Bytes per element of a safetensors dtype name; 0 when unknown.
size_t dtype_size(const std::string& dtype);

// "[2, 3]"
std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace razor::safetensors
