// razor heads show FILE | razor heads convert IN OUT
#include <cstdio>
#include <memory>
#include <string>

#include "commands.h"
#include "razor/heads.h"

namespace razor::cli {

void add_heads(CLI::App& app, Runner& run) {
  CLI::App* heads = app.add_subcommand("heads", "Show or convert a heads file (.pt or .json)");
  heads->require_subcommand(1);

  auto show_file = std::make_shared<std::string>();
  CLI::App* show = heads->add_subcommand("show", "Print the retrieval-head selection of a heads file");
  show->add_option("FILE", *show_file, "heads file (.pt or .json)")->required();
  show->callback([&run, show_file] {
    run = [show_file] {
      HeadsFile h = read_heads(*show_file);
      std::string text = format_heads(h);
      std::fwrite(text.data(), 1, text.size(), stdout);
      return 0;
    };
  });

  auto in = std::make_shared<std::string>(), out = std::make_shared<std::string>();
  CLI::App* convert = heads->add_subcommand(
      "convert", "Convert between .pt and .json by extension (.pt keeps only the selection)");
  convert->add_option("IN", *in, "input heads file (.pt or .json)")->required();
  convert->add_option("OUT", *out, "output heads file (.pt or .json)")->required();
  convert->callback([&run, in, out] {
    run = [in, out] {
      HeadsFile h = read_heads(*in);
      write_heads(*out, h);
      std::printf("%s: %zu retrieval heads (prefix_matching + copying)\n", out->c_str(), h.retrieval_heads().size());
      return 0;
    };
  });
}

}  // namespace razor::cli
