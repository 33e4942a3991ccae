#pragma once
// The zip container of torch.save (PyTorch's "zipfile serialization").
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace razor::torchzip {

// The archive folder torch.save uses for a file path: its base name up to the last '.'
// ("heads.pt" -> "heads"); "archive" where that is empty.
std::string archive_name(const std::string& path);

// Builds the archive byte for byte as PyTorch 1.13's PyTorchStreamWriter (miniz) does: stored
// entries, each local header padded with an "FB" extra field so data starts on a 64-byte
// boundary, data descriptors, zip64 end records. `records` are (full entry name, bytes).
std::string build(const std::vector<std::pair<std::string, std::string>>& records);

// torch.save of a pickle without tensors: <archive>/data.pkl then <archive>/version ("3\n").
std::string build_pt(const std::string& archive, std::string_view data_pkl);

// Opens a torch zip (bytes of the file at `path`) and returns the contents of its single
// "<folder>/data.pkl" entry. Errors name `path`.
std::string read_data_pkl(std::string_view zip_bytes, const std::string& path);

uint32_t crc32(std::string_view bytes);

}  // namespace razor::torchzip
