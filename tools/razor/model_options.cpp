#include "model_options.h"

namespace razor::cli {

void ModelOptions::add(CLI::App* cmd) {
  cmd->add_option("MODEL", model, "checkpoint: llama2.c .bin, Hugging Face directory, or .gguf")->required();
  cmd->add_option("--tokenizer", tokenizer, "llama2.c tokenizer file (default: found beside the model)");
  cmd->add_option("--threads", threads, "worker threads (default: all cores)")->check(CLI::NonNegativeNumber);
}

std::unique_ptr<Model> ModelOptions::load() const { return load_model(model); }

std::unique_ptr<Tokenizer> ModelOptions::load_tokenizer(const Model& m) const {
  std::string path = tokenizer;
  if (path.empty() && m.format == "gguf") return load_gguf_tokenizer(model, m.config.vocab_size);
  if (path.empty() && m.format.rfind("llama2c", 0) == 0)
    path = find_tokenizer_beside(model, m.config.vocab_size);
  if (path.empty()) return nullptr;
  return std::make_unique<Tokenizer>(Tokenizer::load_llama2c(path, m.config.vocab_size));
}

}  // namespace razor::cli
