#include "cli/privileges.hpp"

#include <unistd.h>

#include <filesystem>
#include <string>

#include "common/error.hpp"

namespace v2p::cli {

void require_root_and_btf(const char* what) {
  if (::geteuid() != 0) {
    throw Error(std::string(what) +
                " needs root (to load eBPF programs and set up loop devices); run it with sudo");
  }
  if (!std::filesystem::exists("/sys/kernel/btf/vmlinux")) {
    throw Error(std::string(what) +
                " needs a kernel with BTF (/sys/kernel/btf/vmlinux is missing; "
                "CONFIG_DEBUG_INFO_BTF=y)");
  }
}

}  // namespace v2p::cli
