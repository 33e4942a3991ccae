#include "model/safetensors.h"

#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "razor/error.h"

namespace razor::safetensors {

namespace {
constexpr uint64_t kMaxHeader = 100ull << 20;  // the reference implementation's limit (100 MB)
}

size_t dtype_size(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

const TensorInfo* File::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

File::File(const std::string& path) : map_(std::make_shared<MappedFile>(path)) {
  using nlohmann::json;
  const size_t size = map_->size();
  if (size < 8)
    fail(path, "truncated safetensors file: " + std::to_string(size) +
                   " bytes, less than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | map_->data()[i];
  if (n > size - 8)
    fail(path, "safetensors header length " + std::to_string(n) + " exceeds the file size (" +
                   std::to_string(size) + " bytes): truncated or not a safetensors file");
  if (n > kMaxHeader) fail(path, "safetensors header length " + std::to_string(n) + " is too large");
  data_start_ = 8 + static_cast<size_t>(n);
  const uint64_t data_size = size - data_start_;

  const char* hb = reinterpret_cast<const char*>(map_->data() + 8);
  json header = json::parse(hb, hb + n, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) fail(path, "safetensors header is not valid JSON");
  if (!header.is_object()) fail(path, "safetensors header is not a JSON object");

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") continue;
    const json& e = it.value();
    auto bad = [&](const std::string& what) { fail(path, "tensor \"" + name + "\": " + what); };
    if (!e.is_object()) bad("header entry is not an object");
    auto d = e.find("dtype");
    auto s = e.find("shape");
    auto o = e.find("data_offsets");
    if (d == e.end() || !d->is_string()) bad("missing or invalid \"dtype\"");
    if (s == e.end() || !s->is_array()) bad("missing or invalid \"shape\"");
    if (o == e.end() || !o->is_array() || o->size() != 2) bad("missing or invalid \"data_offsets\"");

    TensorInfo t;
    t.name = name;
    t.dtype = d->get<std::string>();
    t.elem_size = dtype_size(t.dtype);
    if (t.elem_size == 0) bad("unknown dtype \"" + t.dtype + "\"");

    // numel with overflow checks: keep numel * elem_size below 2^62.
    const uint64_t limit = (uint64_t(1) << 62) / t.elem_size;
    uint64_t numel = 1;
    for (const json& dim : *s) {
      if (!dim.is_number_unsigned()) bad("shape entries must be non-negative integers");
      uint64_t v = dim.get<uint64_t>();
      if (v != 0 && numel > limit / v) bad("shape " + s->dump() + " is too large");
      numel *= v;
      t.shape.push_back(static_cast<int64_t>(v));
    }
    if (numel > limit) bad("shape " + s->dump() + " is too large");
    t.numel = static_cast<int64_t>(numel);

    const json& b = (*o)[0];
    const json& en = (*o)[1];
    if (!b.is_number_unsigned() || !en.is_number_unsigned())
      bad("data_offsets must be non-negative integers");
    uint64_t begin = b.get<uint64_t>(), end = en.get<uint64_t>();
    if (begin > end)
      bad("data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] are reversed");
    if (end > data_size)
      bad("data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
          "] run past the end of the file (data section is " + std::to_string(data_size) +
          " bytes): truncated?");
    uint64_t nbytes = numel * t.elem_size;
    if (end - begin != nbytes)
      bad("data_offsets span " + std::to_string(end - begin) + " bytes but dtype " + t.dtype +
          " and shape " + shape_str(t.shape) + " need " + std::to_string(nbytes));
    t.data = map_->data() + data_start_ + begin;
    t.nbytes = static_cast<size_t>(nbytes);
    tensors_.emplace(name, std::move(t));
  }
}

}  // namespace razor::safetensors
