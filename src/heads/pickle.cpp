#include "heads/pickle.h"

#include <cstdio>
#include <cstring>

#include "razor/error.h"

namespace razor::pickle {

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Str: return "str";
    case Kind::List: return "list";
    case Kind::Tuple: return "tuple";
    case Kind::Dict: return "dict";
  }
  return "?";
}

namespace {

// Opcodes (pickletools names).
enum Op : uint8_t {
  MARK = '(', STOP = '.', POP = '0', POP_MARK = '1', DUP = '2', FLOAT = 'F', INT = 'I',
  BININT = 'J', BININT1 = 'K', LONG = 'L', BININT2 = 'M', NONE = 'N', PERSID = 'P',
  BINPERSID = 'Q', REDUCE = 'R', STRING = 'S', BINSTRING = 'T', SHORT_BINSTRING = 'U',
  UNICODE = 'V', BINUNICODE = 'X', APPEND = 'a', BUILD = 'b', GLOBAL = 'c', DICT = 'd',
  EMPTY_DICT = '}', APPENDS = 'e', GET = 'g', BINGET = 'h', INST = 'i', LONG_BINGET = 'j',
  LIST = 'l', EMPTY_LIST = ']', OBJ = 'o', PUT = 'p', BINPUT = 'q', LONG_BINPUT = 'r',
  SETITEM = 's', TUPLE = 't', EMPTY_TUPLE = ')', SETITEMS = 'u', BINFLOAT = 'G',
  PROTO = 0x80, NEWOBJ = 0x81, EXT1 = 0x82, EXT2 = 0x83, EXT4 = 0x84, TUPLE1 = 0x85,
  TUPLE2 = 0x86, TUPLE3 = 0x87, NEWTRUE = 0x88, NEWFALSE = 0x89, LONG1 = 0x8a, LONG4 = 0x8b,
  SHORT_BINUNICODE = 0x8c, BINUNICODE8 = 0x8d, BINBYTES8 = 0x8e, EMPTY_SET = 0x8f,
  ADDITEMS = 0x90, FROZENSET = 0x91, NEWOBJ_EX = 0x92, STACK_GLOBAL = 0x93, MEMOIZE = 0x94,
  FRAME = 0x95, BYTEARRAY8 = 0x96, NEXT_BUFFER = 0x97, READONLY_BUFFER = 0x98,
  BINBYTES = 'B', SHORT_BINBYTES = 'C',
};

const char* op_name(uint8_t op) {
  switch (op) {
    case FLOAT: return "FLOAT";
    case INT: return "INT";
    case LONG: return "LONG";
    case PERSID: return "PERSID";
    case BINPERSID: return "BINPERSID";
    case REDUCE: return "REDUCE";
    case STRING: return "STRING";
    case BINSTRING: return "BINSTRING";
    case SHORT_BINSTRING: return "SHORT_BINSTRING";
    case UNICODE: return "UNICODE";
    case BUILD: return "BUILD";
    case GLOBAL: return "GLOBAL";
    case GET: return "GET";
    case INST: return "INST";
    case OBJ: return "OBJ";
    case PUT: return "PUT";
    case BINFLOAT: return "BINFLOAT";
    case NEWOBJ: return "NEWOBJ";
    case EXT1: return "EXT1";
    case EXT2: return "EXT2";
    case EXT4: return "EXT4";
    case LONG4: return "LONG4";
    case BINBYTES8: return "BINBYTES8";
    case EMPTY_SET: return "EMPTY_SET";
    case ADDITEMS: return "ADDITEMS";
    case FROZENSET: return "FROZENSET";
    case NEWOBJ_EX: return "NEWOBJ_EX";
    case STACK_GLOBAL: return "STACK_GLOBAL";
    case BYTEARRAY8: return "BYTEARRAY8";
    case NEXT_BUFFER: return "NEXT_BUFFER";
    case READONLY_BUFFER: return "READONLY_BUFFER";
    case BINBYTES: return "BINBYTES";
    case SHORT_BINBYTES: return "SHORT_BINBYTES";
    case POP: return "POP";
    case POP_MARK: return "POP_MARK";
    case DUP: return "DUP";
    default: return nullptr;
  }
}

std::string hex_byte(uint8_t b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", b);
  return buf;
}

}  // namespace

class Loader {
 public:
  Loader(std::string_view data, const std::string& path, const Limits& limits)
      : d_(data), path_(path), limits_(limits) {}

  Graph run() {
    if (d_.size() > limits_.max_bytes)
      fail(path_, "pickle is too large (" + std::to_string(d_.size()) + " bytes, limit " +
                      std::to_string(limits_.max_bytes) + ")");
    for (;;) {
      if (pos_ >= d_.size()) err_at(pos_, "truncated pickle: no STOP opcode");
      op_pos_ = pos_;
      uint8_t op = static_cast<uint8_t>(d_[pos_++]);
      switch (op) {
        case PROTO: {
          uint8_t p = u8();
          if (p > 5) err("unsupported pickle protocol " + std::to_string(p));
          break;
        }
        case FRAME: {
          uint64_t n = uint_le(8);
          if (n > d_.size() - pos_) err("truncated pickle: frame of " + std::to_string(n) + " bytes");
          break;  // frames only group opcodes; the data is read continuously
        }
        case STOP: {
          Value v = pop();
          g_.root = v;
          return std::move(g_);
        }
        case MARK:
          marks_.push_back(stack_.size());
          break;
        case NONE: push(Value{Kind::None, 0}); break;
        case NEWTRUE: push(Value{Kind::Bool, 1}); break;
        case NEWFALSE: push(Value{Kind::Bool, 0}); break;
        case BININT1: push(Value{Kind::Int, static_cast<int64_t>(uint_le(1))}); break;
        case BININT2: push(Value{Kind::Int, static_cast<int64_t>(uint_le(2))}); break;
        case BININT: {
          uint32_t u = static_cast<uint32_t>(uint_le(4));
          push(Value{Kind::Int, static_cast<int64_t>(static_cast<int32_t>(u))});
          break;
        }
        case LONG1: {
          size_t n = u8();
          if (n > 8) err("integer too large (" + std::to_string(n) + " bytes)");
          need(n);
          uint64_t u = 0;
          for (size_t i = 0; i < n; ++i) u |= uint64_t{static_cast<uint8_t>(d_[pos_ + i])} << (8 * i);
          if (n > 0 && n < 8 && (static_cast<uint8_t>(d_[pos_ + n - 1]) & 0x80))
            u |= ~uint64_t{0} << (8 * n);  // sign-extend
          pos_ += n;
          push(Value{Kind::Int, static_cast<int64_t>(u)});
          break;
        }
        case SHORT_BINUNICODE: string_op(uint_le(1)); break;
        case BINUNICODE: string_op(uint_le(4)); break;
        case BINUNICODE8: string_op(uint_le(8)); break;
        case EMPTY_DICT: push(new_object(Kind::Dict)); break;
        case EMPTY_LIST: push(new_object(Kind::List)); break;
        case EMPTY_TUPLE: push(new_object(Kind::Tuple)); break;
        case TUPLE1:
        case TUPLE2:
        case TUPLE3: {
          size_t n = op - TUPLE1 + 1;
          if (stack_.size() - fence() < n) underflow();
          Value t = new_object(Kind::Tuple);
          auto& items = g_.objects_[t.num].items;
          items.assign(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
          stack_.resize(stack_.size() - n);
          push(t);
          break;
        }
        case TUPLE:
        case LIST: {
          size_t m = pop_mark();
          Value t = new_object(op == TUPLE ? Kind::Tuple : Kind::List);
          g_.objects_[t.num].items.assign(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
          stack_.resize(m);
          push(t);
          break;
        }
        case DICT: {
          size_t m = pop_mark();
          Value dict = new_object(Kind::Dict);
          set_items(dict, m);
          push(dict);
          break;
        }
        case APPEND: {
          if (stack_.size() - fence() < 2) underflow();
          append_items(stack_.size() - 1);
          break;
        }
        case APPENDS: {
          size_t m = pop_mark();
          if (m == 0 || m <= fence()) underflow();
          append_items(m);
          break;
        }
        case SETITEM: {
          if (stack_.size() - fence() < 3) underflow();
          size_t x = stack_.size() - 2;
          Value dict = stack_[x - 1];
          if (dict.kind != Kind::Dict) err(std::string("SETITEM target is a ") + kind_name(dict.kind) + ", not a dict");
          set_items(dict, x);
          break;
        }
        case SETITEMS: {
          size_t m = pop_mark();
          if (m == 0 || m <= fence()) underflow();
          Value dict = stack_[m - 1];
          if (dict.kind != Kind::Dict) err(std::string("SETITEMS target is a ") + kind_name(dict.kind) + ", not a dict");
          set_items(dict, m);
          break;
        }
        case BINPUT: put(uint_le(1)); break;
        case LONG_BINPUT: put(uint_le(4)); break;
        case MEMOIZE: put(memo_.size()); break;
        case BINGET: get(uint_le(1)); break;
        case LONG_BINGET: get(uint_le(4)); break;
        default: {
          const char* name = op_name(op);
          std::string msg = "unsupported pickle opcode " + hex_byte(op) + " at offset " + std::to_string(op_pos_);
          if (name) msg += std::string(" (") + name + "; only plain data is read, never code)";
          fail(path_, msg);
        }
      }
    }
  }

 private:
  [[noreturn]] void err_at(size_t off, const std::string& msg) {
    fail(path_, msg + " at offset " + std::to_string(off));
  }
  [[noreturn]] void err(const std::string& msg) {
    uint8_t op = static_cast<uint8_t>(d_[op_pos_]);
    fail(path_, msg + " (pickle opcode " + hex_byte(op) + " at offset " + std::to_string(op_pos_) + ")");
  }
  [[noreturn]] void underflow() { err("pickle stack underflow"); }

  void need(uint64_t n) {
    if (n > d_.size() - pos_) err("truncated pickle");
  }
  uint8_t u8() { return static_cast<uint8_t>(uint_le(1)); }
  uint64_t uint_le(size_t n) {
    need(n);
    uint64_t u = 0;
    for (size_t i = 0; i < n; ++i) u |= uint64_t{static_cast<uint8_t>(d_[pos_ + i])} << (8 * i);
    pos_ += n;
    return u;
  }

  size_t fence() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(Value v) { stack_.push_back(v); }
  Value pop() {
    if (stack_.size() <= fence()) underflow();
    Value v = stack_.back();
    stack_.pop_back();
    return v;
  }
  size_t pop_mark() {
    if (marks_.empty()) err("pickle MARK not found");
    size_t m = marks_.back();
    marks_.pop_back();
    return m;
  }

  Value new_object(Kind k) {
    if (g_.objects_.size() >= limits_.max_objects)
      err("pickle has too many objects (limit " + std::to_string(limits_.max_objects) + ")");
    g_.objects_.emplace_back();
    g_.objects_.back().kind = k;
    return Value{k, static_cast<int64_t>(g_.objects_.size() - 1)};
  }

  void string_op(uint64_t n) {
    need(n);
    Value v = new_object(Kind::Str);
    g_.objects_[v.num].str.assign(d_.data() + pos_, n);
    pos_ += n;
    push(v);
  }

  void append_items(size_t x) {
    // stack_[x-1] is the list, stack_[x:] the items.
    Value list = stack_[x - 1];
    if (list.kind != Kind::List) err(std::string("APPEND target is a ") + kind_name(list.kind) + ", not a list");
    auto& items = g_.objects_[list.num].items;
    items.insert(items.end(), stack_.begin() + static_cast<std::ptrdiff_t>(x), stack_.end());
    stack_.resize(x);
  }

  std::string key_of(const Value& k) {
    switch (k.kind) {
      case Kind::None: return "n";
      case Kind::Bool:  // True == 1 and False == 0 as dict keys, as in Python
      case Kind::Int: {
        std::string s = "i";
        s.append(reinterpret_cast<const char*>(&k.num), sizeof k.num);
        return s;
      }
      case Kind::Str: return "s" + g_.objects_[k.num].str;
      default: err(std::string("unsupported dict key type ") + kind_name(k.kind));
    }
  }

  void set_items(Value dict, size_t x) {
    size_t n = stack_.size() - x;
    if (n % 2) err("odd number of items for SETITEMS");
    Object& d = g_.objects_[dict.num];
    if (!d.keys) d.keys = std::make_unique<std::unordered_map<std::string, size_t>>();
    for (size_t i = x; i < stack_.size(); i += 2) {
      auto [it, inserted] = d.keys->emplace(key_of(stack_[i]), d.items.size() / 2);
      if (inserted) {
        d.items.push_back(stack_[i]);
        d.items.push_back(stack_[i + 1]);
      } else {
        d.items[2 * it->second + 1] = stack_[i + 1];  // Python: later value wins, first key kept
      }
    }
    stack_.resize(x);
  }

  void put(uint64_t idx) {
    if (stack_.size() <= fence()) underflow();
    memo_[idx] = stack_.back();
  }
  void get(uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) err("pickle memo entry " + std::to_string(idx) + " not found");
    push(it->second);
  }

  std::string_view d_;
  const std::string& path_;
  Limits limits_;
  size_t pos_ = 0, op_pos_ = 0;
  std::vector<Value> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Value> memo_;
  Graph g_;
};

Graph load(std::string_view data, const std::string& path, const Limits& limits) {
  return Loader(data, path, limits).run();
}

// ---------------------------------------------------------------------------------------------

namespace {
void put_le(std::string& out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
}  // namespace

Writer::Writer() {
  out_.push_back(static_cast<char>(PROTO));
  out_.push_back(2);
}

void Writer::memoize() {
  if (memo_ < 256) {
    out_.push_back(static_cast<char>(BINPUT));
    put_le(out_, memo_, 1);
  } else {
    out_.push_back(static_cast<char>(LONG_BINPUT));
    put_le(out_, memo_, 4);
  }
  ++memo_;
}

void Writer::integer(int64_t v) {
  if (v >= 0 && v <= 0xff) {
    out_.push_back(static_cast<char>(BININT1));
    put_le(out_, static_cast<uint64_t>(v), 1);
  } else if (v >= 0 && v <= 0xffff) {
    out_.push_back(static_cast<char>(BININT2));
    put_le(out_, static_cast<uint64_t>(v), 2);
  } else if (v >= INT32_MIN && v <= INT32_MAX) {
    out_.push_back(static_cast<char>(BININT));
    put_le(out_, static_cast<uint32_t>(static_cast<int32_t>(v)), 4);
  } else {
    // CPython uses LONG1 with the minimal two's-complement length.
    std::string bytes;
    uint64_t u = static_cast<uint64_t>(v);
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
    while (bytes.size() > 1) {
      uint8_t last = static_cast<uint8_t>(bytes.back()), prev = static_cast<uint8_t>(bytes[bytes.size() - 2]);
      if ((last == 0x00 && !(prev & 0x80)) || (last == 0xff && (prev & 0x80))) bytes.pop_back();
      else break;
    }
    out_.push_back(static_cast<char>(LONG1));
    out_.push_back(static_cast<char>(bytes.size()));
    out_ += bytes;
  }
}

void Writer::string(std::string_view s) {
  out_.push_back(static_cast<char>(BINUNICODE));
  put_le(out_, s.size(), 4);
  out_.append(s);
  memoize();
}

void Writer::empty_dict() {
  out_.push_back(static_cast<char>(EMPTY_DICT));
  memoize();
}
void Writer::empty_list() {
  out_.push_back(static_cast<char>(EMPTY_LIST));
  memoize();
}
void Writer::mark() { out_.push_back(static_cast<char>(MARK)); }
void Writer::setitem() { out_.push_back(static_cast<char>(SETITEM)); }
void Writer::setitems() { out_.push_back(static_cast<char>(SETITEMS)); }
void Writer::append() { out_.push_back(static_cast<char>(APPEND)); }
void Writer::appends() { out_.push_back(static_cast<char>(APPENDS)); }

std::string Writer::finish() {
  out_.push_back(static_cast<char>(STOP));
  return std::move(out_);
}

}  // namespace razor::pickle
