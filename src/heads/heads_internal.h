#pragma once
// In-memory encoders / decoders behind read_heads_* / write_heads_* (also used by the tests).
#include <string>
#include <string_view>

#include "razor/heads.h"

namespace razor::heads_detail {

// Sorted, de-duplicated lists, empty lists dropped; negative layers or heads are an error naming
// `path`.
HeadMap normalized(const HeadMap& m, const char* what, const std::string& path);

// The msModelSlim dict as CPython's pickler (protocol 2) writes it.
std::string encode_pickle(const HeadsFile& heads, const std::string& path);
// Restricted unpickling plus shape validation.
HeadsFile decode_pickle(std::string_view pkl, const std::string& path);

// Whole .pt file: torch 1.13's zip layout, archive folder named after `path` as torch.save does.
std::string encode_pt(const HeadsFile& heads, const std::string& path);
HeadsFile decode_pt(std::string_view bytes, const std::string& path);

std::string encode_json(const HeadsFile& heads, const std::string& path);
HeadsFile decode_json(std::string_view text, const std::string& path);

}  // namespace razor::heads_detail
