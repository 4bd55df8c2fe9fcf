// Which v2p export listens on a unix socket, and which vdisk it serves under an NBD export
// name: what `v2p vm add --socket` (the libvirt hook) needs, since a domain's XML names only the
// socket and the export.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace v2p::cli {

struct ExportedVdisk {
  int pid = 0;  // the `v2p serve` process listening on the socket
  std::string vdisk;
  std::filesystem::path image;
};

// nullopt when no `v2p serve` process listens on `socket`, or it serves no export named
// `export_name`. Reads /proc (root sees every process). Throws v2p::Error when the export's
// config file cannot be read.
std::optional<ExportedVdisk> find_exported_vdisk(const std::filesystem::path& socket,
                                                 const std::string& export_name);

}  // namespace v2p::cli
