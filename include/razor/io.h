#pragma once
// File helpers shared by every reader and writer.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace razor {

// A read-only memory map of a whole file. Errors name the file.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

std::string read_file(const std::string& path);

// Writes `bytes` to a temporary file beside `path`, then renames it over `path`: readers never
// see a partial file, and a failed write leaves an existing file untouched.
void write_file_atomic(const std::string& path, std::string_view bytes);

}  // namespace razor
