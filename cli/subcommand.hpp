// Each `v2p` subcommand lives in its own cmd_*.cpp and registers itself here, so adding one
// touches no shared file.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <vector>

namespace v2p::cli {

// Adds the subcommand's options to `app` and returns what runs it; the returned function's
// result is the process exit code.
using Configure = std::function<std::function<int()>(CLI::App& app)>;

struct Subcommand {
  const char* name;
  const char* summary;
  Configure configure;
};

std::vector<Subcommand>& registry();

struct Register {
  explicit Register(Subcommand s) { registry().push_back(std::move(s)); }
};

}  // namespace v2p::cli
