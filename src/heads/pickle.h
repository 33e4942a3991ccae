#pragma once
// A restricted pickle reader (data only: dicts, lists, tuples, ints, strings, None, bools) and a
// writer that reproduces what CPython's pickler emits (protocol 2) for the same kinds of data.
// Reading never imports or calls anything: every opcode outside the supported set is an error.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace razor::pickle {

enum class Kind : uint8_t { None, Bool, Int, Str, List, Tuple, Dict };

const char* kind_name(Kind k);

// Scalars live in the value itself; strings and containers are arena objects (shared, as the
// memo shares them in Python).
struct Value {
  Kind kind = Kind::None;
  int64_t num = 0;  // Int / Bool value, or arena index for Str / List / Tuple / Dict
};

struct Object {
  Kind kind = Kind::None;
  std::string str;            // Str
  std::vector<Value> items;   // List / Tuple; Dict: key0, value0, key1, value1, ...
  std::unique_ptr<std::unordered_map<std::string, size_t>> keys;  // Dict: key -> pair index
};

struct Limits {
  size_t max_bytes = size_t{16} << 20;  // size of the pickle itself
  size_t max_objects = size_t{1} << 20;  // strings + containers
};

class Graph {
 public:
  Value root;
  const Object& obj(const Value& v) const { return objects_[static_cast<size_t>(v.num)]; }
  // Dict accessors (v must be a Dict).
  size_t dict_size(const Value& v) const { return obj(v).items.size() / 2; }
  const Value& dict_key(const Value& v, size_t i) const { return obj(v).items[2 * i]; }
  const Value& dict_value(const Value& v, size_t i) const { return obj(v).items[2 * i + 1]; }

 private:
  friend class Loader;
  std::vector<Object> objects_;
};

// Runs the restricted VM over `data` up to STOP. Errors are razor::Error "PATH: ..." with the
// offending opcode and its offset within the pickle.
Graph load(std::string_view data, const std::string& path, const Limits& limits = {});

// Emits protocol-2 pickle opcodes the way CPython's C pickler does (memoising every string and
// container with BINPUT / LONG_BINPUT, batching APPENDS / SETITEMS by 1000, single-item
// containers with APPEND / SETITEM).
class Writer {
 public:
  Writer();  // PROTO 2
  void integer(int64_t v);  // BININT1 / BININT2 / BININT (|v| < 2^31)
  void string(std::string_view s);  // BINUNICODE + memo
  void empty_dict();  // EMPTY_DICT + memo
  void empty_list();  // EMPTY_LIST + memo
  void mark();
  void setitem();
  void setitems();
  void append();
  void appends();
  std::string finish();  // STOP

 private:
  void memoize();
  std::string out_;
  uint32_t memo_ = 0;
};

}  // namespace razor::pickle
