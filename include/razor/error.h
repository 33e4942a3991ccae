#pragma once
// Every bad input (files, options, JSON) is reported as a razor::Error whose what() is one line
// naming the file and the problem; the CLI prints it and exits non-zero.
#include <stdexcept>
#include <string>

namespace razor {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "PATH: MESSAGE"
[[noreturn]] void fail(const std::string& path, const std::string& message);

}  // namespace razor
