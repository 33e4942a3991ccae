#include "razor/model.h"

namespace razor {

std::unique_ptr<Model> load_gguf(const std::string& path, const LoadOptions&) {
  fail(path, "GGUF checkpoints are not supported yet; use a llama2.c file or a Hugging Face directory");
}

}  // namespace razor
