#pragma once
// Options every model-reading command shares: MODEL, --tokenizer, --threads.
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "razor/model.h"
#include "razor/tokenizer.h"

namespace razor::cli {

struct ModelOptions {
  std::string model;
  std::string tokenizer;
  int threads = 0;

  void add(CLI::App* cmd);
  std::unique_ptr<Model> load() const;
  // --tokenizer, else a GGUF model's embedded vocabulary, else a llama2.c tokenizer found beside
  // the model; nullptr if none.
  std::unique_ptr<Tokenizer> load_tokenizer(const Model& model) const;
};

}  // namespace razor::cli
