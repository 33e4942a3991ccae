#include "model/gguf.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "razor/error.h"

namespace razor::gguf {
namespace {

constexpr uint32_t kMaxDims = 4;  // GGML_MAX_DIMS
constexpr uint64_t kMaxAlignment = uint64_t(1) << 30;

size_t scalar_size(Type t) {
  switch (t) {
    case Type::U8: case Type::I8: case Type::BOOL: return 1;
    case Type::U16: case Type::I16: return 2;
    case Type::U32: case Type::I32: case Type::F32: return 4;
    case Type::U64: case Type::I64: case Type::F64: return 8;
    default: return 0;
  }
}

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(Type::F64); }

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Walks the file front to back; every read is bounds-checked against the file size.
class Reader {
 public:
  explicit Reader(const MappedFile& f) : f_(f) {}

  size_t offset() const { return off_; }
  size_t remaining() const { return f_.size() - off_; }

  [[noreturn]] void truncated(const std::string& what, uint64_t need) const {
    fail(f_.path(), "truncated: " + what + " needs " + std::to_string(need) + " bytes at offset " +
                        std::to_string(off_) + ", file has " + std::to_string(f_.size()));
  }

  const uint8_t* take(uint64_t n, const std::string& what) {
    if (n > remaining()) truncated(what, n);
    const uint8_t* p = f_.data() + off_;
    off_ += static_cast<size_t>(n);
    return p;
  }
  template <typename T>
  T get(const std::string& what) {
    return load<T>(take(sizeof(T), what));
  }
  // A GGUF string: uint64 length, then the bytes.
  std::string_view string(const std::string& what) {
    const size_t at = off_;
    const uint64_t n = get<uint64_t>(what + " length");
    if (n > remaining())
      fail(f_.path(), what + " at offset " + std::to_string(at) + " claims " + std::to_string(n) +
                          " bytes but only " + std::to_string(remaining()) +
                          " remain in the file: truncated or corrupt");
    const uint8_t* p = take(n, what);
    return std::string_view(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
  }

 private:
  const MappedFile& f_;
  size_t off_ = 0;
};

Value read_value(Reader& r, const std::string& path, uint32_t raw_type, const std::string& key) {
  const std::string what = "value of \"" + printable(key) + "\"";
  if (!valid_type(raw_type))
    fail(path, "metadata key \"" + printable(key) + "\" has unknown value type " + std::to_string(raw_type));
  Value v;
  v.type = static_cast<Type>(raw_type);
  if (v.type == Type::STRING) {
    std::string_view s = r.string(what);
    v.data = reinterpret_cast<const uint8_t*>(s.data());
    v.size = s.size();
    return v;
  }
  if (v.type != Type::ARRAY) {
    v.size = scalar_size(v.type);
    v.data = r.take(v.size, what);
    return v;
  }
  const uint32_t elem = r.get<uint32_t>(what + " (array element type)");
  if (!valid_type(elem))
    fail(path, "metadata array \"" + printable(key) + "\" has unknown element type " + std::to_string(elem));
  if (static_cast<Type>(elem) == Type::ARRAY)
    fail(path, "metadata array \"" + printable(key) + "\" holds arrays (nested arrays are not supported)");
  v.elem_type = static_cast<Type>(elem);
  v.count = r.get<uint64_t>(what + " (array length)");
  const size_t min_elem = v.elem_type == Type::STRING ? 8 : scalar_size(v.elem_type);
  if (v.count > r.remaining() / min_elem)
    fail(path, "metadata array \"" + printable(key) + "\" claims " + std::to_string(v.count) + " elements, " +
                   "more than the " + std::to_string(r.remaining()) +
                   " bytes left in the file can hold: truncated or corrupt");
  const size_t start = r.offset();
  v.data = r.take(0, what);
  if (v.elem_type == Type::STRING) {
    for (uint64_t i = 0; i < v.count; ++i) r.string(what + " element " + std::to_string(i));
  } else {
    r.take(v.count * min_elem, what);
  }
  v.size = r.offset() - start;
  return v;
}

// Overflow-safe: a * b, or nullopt when it exceeds `limit`.
std::optional<uint64_t> mul_limited(uint64_t a, uint64_t b, uint64_t limit) {
  if (a != 0 && b > limit / a) return std::nullopt;
  const uint64_t p = a * b;
  if (p > limit) return std::nullopt;
  return p;
}

}  // namespace

const char* type_name(Type t) {
  switch (t) {
    case Type::U8: return "uint8";
    case Type::I8: return "int8";
    case Type::U16: return "uint16";
    case Type::I16: return "int16";
    case Type::U32: return "uint32";
    case Type::I32: return "int32";
    case Type::F32: return "float32";
    case Type::BOOL: return "bool";
    case Type::STRING: return "string";
    case Type::ARRAY: return "array";
    case Type::U64: return "uint64";
    case Type::I64: return "int64";
    case Type::F64: return "float64";
  }
  return "unknown";
}

const char* tensor_type_name(uint32_t t) {
  static const char* const names[] = {
      "F32",     "F16",  "Q4_0",    "Q4_1",   "Q4_2",  "Q4_3",  "Q5_0",  "Q5_1",   "Q8_0",    "Q8_1",
      "Q2_K",    "Q3_K", "Q4_K",    "Q5_K",   "Q6_K",  "Q8_K",  "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
      "IQ4_NL",  "IQ3_S", "IQ2_S",  "IQ4_XS", "I8",    "I16",   "I32",   "I64",    "F64",     "IQ1_M",
      "BF16"};
  if (t < sizeof(names) / sizeof(names[0])) return names[t];
  return "unknown";
}

std::string printable(std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  const size_t n = std::min<size_t>(s.size(), 80);
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > n) out += "...";
  return out;
}

std::string shape_str(const std::vector<int64_t>& ne) {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(ne[i]);
  }
  return s + "]";
}

File::File(const std::string& path) : map_(std::make_shared<MappedFile>(path)) {
  const MappedFile& f = *map_;
  Reader r(f);
  if (f.size() < 4 || std::memcmp(f.data(), "GGUF", 4) != 0)
    bad(f.size() < 4 ? "truncated: too small for a GGUF header" : "not a GGUF file (bad magic)");
  r.take(4, "magic");
  version_ = r.get<uint32_t>("GGUF version");
  if (version_ != 2 && version_ != 3) {
    const bool swapped = (version_ & 0xffff) == 0 && version_ != 0;
    bad("unsupported GGUF version " + std::to_string(version_) + " (supported: 2, 3" +
        (swapped ? "; a big-endian file?" : "") + ")");
  }
  const uint64_t n_tensors = r.get<uint64_t>("tensor count");
  const uint64_t n_kv = r.get<uint64_t>("metadata count");
  // Smallest possible entries: a kv is a key length (8) + type (4) + a 1-byte value; a tensor info
  // is a name length (8) + n_dims (4) + one dimension (8) + type (4) + offset (8).
  if (n_kv > r.remaining() / 13)
    bad("metadata count " + std::to_string(n_kv) + " is impossible for a file of " +
        std::to_string(f.size()) + " bytes: truncated or corrupt");
  if (n_tensors > r.remaining() / 32)
    bad("tensor count " + std::to_string(n_tensors) + " is impossible for a file of " +
        std::to_string(f.size()) + " bytes: truncated or corrupt");

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key(r.string("metadata key " + std::to_string(i)));
    const uint32_t type = r.get<uint32_t>("type of metadata \"" + printable(key) + "\"");
    Value v = read_value(r, path, type, key);
    if (!kv_.emplace(key, v).second) bad("duplicate metadata key \"" + printable(key) + "\"");
  }

  if (find("general.alignment")) {
    const int64_t a = *get_int("general.alignment", 1, static_cast<int64_t>(kMaxAlignment));
    if ((a & (a - 1)) != 0) bad("general.alignment " + std::to_string(a) + " is not a power of two");
    alignment_ = static_cast<size_t>(a);
  }

  struct RawInfo {
    std::string name;
    std::vector<int64_t> ne;
    uint32_t type;
    uint64_t offset;
  };
  std::vector<RawInfo> infos;  // grows as entries are read: no allocation from the count alone
  for (uint64_t i = 0; i < n_tensors; ++i) {
    RawInfo t;
    t.name = std::string(r.string("tensor name " + std::to_string(i)));
    const std::string what = "tensor \"" + printable(t.name) + "\"";
    const uint32_t n_dims = r.get<uint32_t>(what + " dimension count");
    if (n_dims == 0 || n_dims > kMaxDims)
      bad(what + " has " + std::to_string(n_dims) + " dimensions (1 to " + std::to_string(kMaxDims) + " allowed)");
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t n = r.get<uint64_t>(what + " shape");
      if (n == 0 || n > f.size())
        bad(what + " has dimension " + std::to_string(d) + " of size " + std::to_string(n) +
            " (must be 1 to the file size)");
      t.ne.push_back(static_cast<int64_t>(n));
    }
    t.type = r.get<uint32_t>(what + " type");
    t.offset = r.get<uint64_t>(what + " offset");
    infos.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment (offset <= size, alignment
  // <= 2^30: no overflow).
  const size_t end = r.offset();
  data_start_ = (end + alignment_ - 1) / alignment_ * alignment_;
  if (!infos.empty() && data_start_ > f.size())
    bad("truncated: the data section would start at offset " + std::to_string(data_start_) +
        " but the file has " + std::to_string(f.size()) + " bytes");
  const uint64_t avail = data_start_ <= f.size() ? f.size() - data_start_ : 0;

  for (RawInfo& raw : infos) {
    const std::string what = "tensor \"" + printable(raw.name) + "\"";
    TensorInfo t;
    if (raw.type != static_cast<uint32_t>(TensorType::F32) && raw.type != static_cast<uint32_t>(TensorType::F16) &&
        raw.type != static_cast<uint32_t>(TensorType::BF16))
      bad(what + " has unsupported tensor type " + std::to_string(raw.type) + " (" + tensor_type_name(raw.type) +
          "; supported: F32, F16, BF16)");
    t.type = static_cast<TensorType>(raw.type);
    t.elem_size = t.type == TensorType::F32 ? 4 : 2;
    uint64_t numel = 1;
    for (int64_t n : raw.ne) {
      auto p = mul_limited(numel, static_cast<uint64_t>(n), f.size());
      if (!p) bad(what + " of shape " + shape_str(raw.ne) + " is larger than the file");
      numel = *p;
    }
    auto nbytes = mul_limited(numel, t.elem_size, f.size());
    if (!nbytes) bad(what + " of shape " + shape_str(raw.ne) + " is larger than the file");
    if (raw.offset % alignment_ != 0)
      bad(what + " data offset " + std::to_string(raw.offset) + " is not a multiple of the alignment " +
          std::to_string(alignment_));
    if (raw.offset > avail || *nbytes > avail - raw.offset)
      bad(what + " data (offset " + std::to_string(raw.offset) + ", " + std::to_string(*nbytes) +
          " bytes) lies outside the data section (" + std::to_string(avail) + " bytes): truncated or corrupt");
    t.name = raw.name;
    t.ne = std::move(raw.ne);
    t.numel = static_cast<int64_t>(numel);
    t.offset = raw.offset;
    t.nbytes = static_cast<size_t>(*nbytes);
    t.data = f.data() + data_start_ + raw.offset;
    if (!tensors_.emplace(t.name, t).second) bad("duplicate " + what);
  }
}

void File::bad(const std::string& message) const { fail(path(), message); }

const Value* File::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const TensorInfo* File::tensor(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::optional<int64_t> File::get_int(const std::string& key, int64_t lo, int64_t hi) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  int64_t x = 0;
  bool too_big = false;
  switch (v->type) {
    case Type::U8: x = load<uint8_t>(v->data); break;
    case Type::I8: x = load<int8_t>(v->data); break;
    case Type::U16: x = load<uint16_t>(v->data); break;
    case Type::I16: x = load<int16_t>(v->data); break;
    case Type::U32: x = load<uint32_t>(v->data); break;
    case Type::I32: x = load<int32_t>(v->data); break;
    case Type::I64: x = load<int64_t>(v->data); break;
    case Type::U64: {
      const uint64_t u = load<uint64_t>(v->data);
      too_big = u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
      x = too_big ? 0 : static_cast<int64_t>(u);
      break;
    }
    default:
      bad("metadata \"" + printable(key) + "\" must be an integer, got " + type_name(v->type));
  }
  if (too_big || x < lo || x > hi)
    bad("metadata \"" + printable(key) + "\" = " +
        (too_big ? std::to_string(load<uint64_t>(v->data)) : std::to_string(x)) + " is out of range [" +
        std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

std::optional<double> File::get_float(const std::string& key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  double x;
  if (v->type == Type::F32) {
    x = load<float>(v->data);
  } else if (v->type == Type::F64) {
    x = load<double>(v->data);
  } else if (v->type != Type::BOOL && v->type != Type::STRING && v->type != Type::ARRAY) {
    x = static_cast<double>(*get_int(key, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()));
  } else {
    bad("metadata \"" + printable(key) + "\" must be a number, got " + type_name(v->type));
  }
  if (!std::isfinite(x)) bad("metadata \"" + printable(key) + "\" is not a finite number");
  return x;
}

std::optional<std::string> File::get_string(const std::string& key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != Type::STRING)
    bad("metadata \"" + printable(key) + "\" must be a string, got " + type_name(v->type));
  return std::string(reinterpret_cast<const char*>(v->data), v->size);
}

std::optional<std::vector<std::string>> File::get_strings(const std::string& key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != Type::ARRAY || v->elem_type != Type::STRING)
    bad("metadata \"" + printable(key) + "\" must be an array of strings, got " +
        (v->type == Type::ARRAY ? std::string("an array of ") + type_name(v->elem_type) : type_name(v->type)));
  // Validated at open: count <= size / 8 and every string lies within [data, data + size).
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(v->count));
  size_t off = 0;
  for (uint64_t i = 0; i < v->count; ++i) {
    if (v->size - off < 8) bad("metadata \"" + printable(key) + "\" is corrupt");
    const uint64_t n = load<uint64_t>(v->data + off);
    off += 8;
    if (n > v->size - off) bad("metadata \"" + printable(key) + "\" is corrupt");
    out.emplace_back(reinterpret_cast<const char*>(v->data + off), static_cast<size_t>(n));
    off += static_cast<size_t>(n);
  }
  return out;
}

std::optional<std::vector<float>> File::get_floats(const std::string& key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != Type::ARRAY || (v->elem_type != Type::F32 && v->elem_type != Type::F64))
    bad("metadata \"" + printable(key) + "\" must be an array of float32, got " +
        (v->type == Type::ARRAY ? std::string("an array of ") + type_name(v->elem_type) : type_name(v->type)));
  std::vector<float> out(static_cast<size_t>(v->count));
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = v->elem_type == Type::F32 ? load<float>(v->data + 4 * i)
                                       : static_cast<float>(load<double>(v->data + 8 * i));
  return out;
}

}  // namespace razor::gguf
