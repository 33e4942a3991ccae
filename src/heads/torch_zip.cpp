#include "heads/torch_zip.h"

#include <zip.h>

#include <algorithm>
#include <array>
#include <iterator>
#include <memory>

#include "razor/error.h"

namespace razor::torchzip {

namespace {

constexpr size_t kAlignment = 64;          // PyTorch's kFieldAlignment
constexpr size_t kMaxDataPkl = size_t{16} << 20;

void put_le(std::string& out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

}  // namespace

uint32_t crc32(std::string_view bytes) {
  const auto& t = crc_table();
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : bytes) c = t[(c ^ b) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

std::string archive_name(const std::string& path) {
  // Mirrors basename() in caffe2/serialize/inline_container.cc.
  size_t start = 0;
  for (size_t i = 0; i < path.size(); ++i)
    if (path[i] == '/' || path[i] == '\\') start = i + 1;
  std::string name;
  if (start < path.size()) {
    size_t end = path.size();
    for (size_t i = end; i > start; --i) {
      if (path[i - 1] == '.') {
        end = i - 1;
        break;
      }
    }
    name = path.substr(start, end - start);
  }
  return name.empty() ? "archive" : name;
}

std::string build(const std::vector<std::pair<std::string, std::string>>& records) {
  struct Entry {
    std::string name;
    uint32_t crc;
    uint64_t size, offset;
  };
  std::vector<Entry> entries;
  std::string out;
  for (const auto& [name, data] : records) {
    if (data.size() >= 0xFFFFFFFFu || out.size() >= 0xFFFFFFFFu || name.size() > 0xFFFF)
      throw Error("torch zip writer: record too large");
    Entry e{name, crc32(data), data.size(), out.size()};
    // Local header; sizes and CRC follow in a data descriptor (flag bit 3), names are UTF-8 (bit 11).
    size_t start = out.size() + 30 + name.size() + 4;
    size_t pad = (kAlignment - start % kAlignment) % kAlignment;
    put_le(out, 0x04034b50, 4);
    put_le(out, 0, 2);       // version needed
    put_le(out, 0x0808, 2);  // flags
    put_le(out, 0, 2);       // method: stored
    put_le(out, 0, 2);       // time
    put_le(out, 0, 2);       // date
    put_le(out, 0, 4);       // crc (in descriptor)
    put_le(out, 0, 4);       // compressed size
    put_le(out, 0, 4);       // uncompressed size
    put_le(out, name.size(), 2);
    put_le(out, pad + 4, 2);  // extra length
    out += name;
    out += "FB";
    put_le(out, pad, 2);
    out.append(pad, 'Z');
    out += data;
    put_le(out, 0x08074b50, 4);  // data descriptor
    put_le(out, e.crc, 4);
    put_le(out, e.size, 4);
    put_le(out, e.size, 4);
    entries.push_back(std::move(e));
  }
  uint64_t cd_offset = out.size();
  for (const auto& e : entries) {
    put_le(out, 0x02014b50, 4);
    put_le(out, 0, 2);  // version made by
    put_le(out, 0, 2);  // version needed
    put_le(out, 0x0808, 2);
    put_le(out, 0, 2);  // method
    put_le(out, 0, 2);  // time
    put_le(out, 0, 2);  // date
    put_le(out, e.crc, 4);
    put_le(out, e.size, 4);
    put_le(out, e.size, 4);
    put_le(out, e.name.size(), 2);
    put_le(out, 0, 2);  // extra
    put_le(out, 0, 2);  // comment
    put_le(out, 0, 2);  // disk
    put_le(out, 0, 2);  // internal attributes
    put_le(out, 0, 4);  // external attributes
    put_le(out, e.offset, 4);
    out += e.name;
  }
  uint64_t cd_size = out.size() - cd_offset;
  uint64_t zip64_eocd = out.size();
  put_le(out, 0x06064b50, 4);  // zip64 end of central directory
  put_le(out, 44, 8);
  put_le(out, 0x031e, 2);  // version made by
  put_le(out, 0x002d, 2);  // version needed
  put_le(out, 0, 4);
  put_le(out, 0, 4);
  put_le(out, entries.size(), 8);
  put_le(out, entries.size(), 8);
  put_le(out, cd_size, 8);
  put_le(out, cd_offset, 8);
  put_le(out, 0x07064b50, 4);  // zip64 end of central directory locator
  put_le(out, 0, 4);
  put_le(out, zip64_eocd, 8);
  put_le(out, 1, 4);
  put_le(out, 0x06054b50, 4);  // end of central directory
  put_le(out, 0, 2);
  put_le(out, 0, 2);
  put_le(out, entries.size(), 2);
  put_le(out, entries.size(), 2);
  put_le(out, cd_size, 4);
  put_le(out, cd_offset, 4);
  put_le(out, 0, 2);
  return out;
}

std::string build_pt(const std::string& archive, std::string_view data_pkl) {
  return build({{archive + "/data.pkl", std::string(data_pkl)}, {archive + "/version", "3\n"}});
}

std::string read_data_pkl(std::string_view bytes, const std::string& path) {
  static const unsigned char kLegacyMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20};
  if (bytes.size() >= sizeof kLegacyMagic &&
      std::equal(std::begin(kLegacyMagic), std::end(kLegacyMagic), reinterpret_cast<const unsigned char*>(bytes.data())))
    fail(path, "legacy (pre-1.6, non-zip) torch serialization is not supported; re-save it with torch.save defaults");
  if (bytes.size() < 4 || bytes.substr(0, 2) != "PK")
    fail(path, "not a PyTorch .pt file (not a zip archive)");

  zip_error_t ze;
  zip_error_init(&ze);
  zip_source_t* src = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &ze);
  if (!src) {
    std::string msg = zip_error_strerror(&ze);
    zip_error_fini(&ze);
    fail(path, "cannot open zip archive: " + msg);
  }
  zip_t* za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze);
  if (!za) {
    zip_source_free(src);
    std::string msg = zip_error_strerror(&ze);
    zip_error_fini(&ze);
    fail(path, "not a valid zip archive (" + msg + ")");
  }
  zip_error_fini(&ze);
  std::unique_ptr<zip_t, void (*)(zip_t*)> guard(za, [](zip_t* z) { zip_discard(z); });

  zip_int64_t n = zip_get_num_entries(za, 0);
  zip_int64_t found = -1;
  std::string found_name;
  for (zip_int64_t i = 0; i < n; ++i) {
    const char* cname = zip_get_name(za, static_cast<zip_uint64_t>(i), ZIP_FL_ENC_RAW);
    if (!cname) continue;
    std::string name = cname;
    const std::string suffix = "/data.pkl";
    if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    if (name.find('/') != name.size() - suffix.size()) continue;  // only <folder>/data.pkl
    if (found >= 0) fail(path, "zip archive has more than one data.pkl (" + found_name + ", " + name + ")");
    found = i;
    found_name = name;
  }
  if (found < 0) fail(path, "zip archive has no <folder>/data.pkl entry (not a torch.save file)");

  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index(za, static_cast<zip_uint64_t>(found), 0, &st) != 0)
    fail(path, found_name + ": " + zip_strerror(za));
  if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE)
    fail(path, found_name + " is encrypted");
  if (!(st.valid & ZIP_STAT_SIZE)) fail(path, found_name + ": unknown size");
  if (st.size > kMaxDataPkl)
    fail(path, found_name + " is too large (" + std::to_string(st.size) + " bytes, limit " + std::to_string(kMaxDataPkl) + ")");

  zip_file_t* zf = zip_fopen_index(za, static_cast<zip_uint64_t>(found), 0);
  if (!zf) fail(path, "cannot read " + found_name + ": " + zip_strerror(za));
  std::unique_ptr<zip_file_t, int (*)(zip_file_t*)> fguard(zf, zip_fclose);
  std::string out;
  out.reserve(static_cast<size_t>(st.size));
  char buf[65536];
  for (;;) {
    zip_int64_t r = zip_fread(zf, buf, sizeof buf);
    if (r < 0) fail(path, "cannot read " + found_name + ": " + zip_file_strerror(zf));
    if (r == 0) break;
    out.append(buf, static_cast<size_t>(r));
    if (out.size() > st.size) fail(path, found_name + " is longer than its recorded size");
  }
  if (out.size() != st.size) fail(path, found_name + " is truncated");
  return out;
}

}  // namespace razor::torchzip
