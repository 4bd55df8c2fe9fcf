#include <unistd.h>

#include <fmt/core.h>

#include <cstdio>
#include <memory>

#include "cli/subcommand.hpp"
#include "common/error.hpp"

namespace v2p::cli {

std::vector<Subcommand>& registry() {
  static std::vector<Subcommand> commands;
  return commands;
}

}  // namespace v2p::cli

int main(int argc, char** argv) {
  // Progress lines must reach a pipe (tests, `| tee`) as they happen.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  CLI::App app{
      "v2p: live virtual-to-physical block maps for KVM/QEMU, and the policies they drive"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "v2p " V2P_VERSION);
  std::function<int()> selected;
  for (auto& cmd : v2p::cli::registry()) {
    CLI::App* sub = app.add_subcommand(cmd.name, cmd.summary);
    auto run = std::make_shared<std::function<int()>>(cmd.configure(*sub));
    sub->callback([run, &selected] { selected = *run; });
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return selected ? selected() : 1;
  } catch (const v2p::Error& e) {
    fmt::print(stderr, "v2p: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "v2p: unexpected error: {}\n", e.what());
    return 1;
  }
}
