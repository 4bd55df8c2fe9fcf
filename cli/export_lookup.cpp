#include "cli/export_lookup.hpp"

#include <fstream>
#include <sstream>
#include <vector>

#include "vfilter/config_file.hpp"

namespace v2p::cli {
namespace {

namespace fs = std::filesystem;

// Inode of the listening unix socket bound to `path` (/proc/net/unix: "... Inode Path").
std::optional<std::string> listening_inode(const fs::path& path) {
  std::ifstream in("/proc/net/unix");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string num, refs, proto, flags, type, st, inode, p;
    if (!(f >> num >> refs >> proto >> flags >> type >> st >> inode >> p)) continue;
    // __SO_ACCEPTCON (0x10000) in flags: a listening socket, not a connection to it.
    if (p == path.string() && flags == "00010000") return inode;
  }
  return std::nullopt;
}

std::optional<int> owner_of(const std::string& inode) {
  const std::string target = "socket:[" + inode + "]";
  std::error_code ec;
  for (const auto& proc : fs::directory_iterator("/proc", ec)) {
    const auto name = proc.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    for (const auto& fd : fs::directory_iterator(proc.path() / "fd", ec)) {
      std::error_code lec;
      if (fs::read_symlink(fd.path(), lec).string() == target) return std::stoi(name);
    }
    ec.clear();
  }
  return std::nullopt;
}

std::vector<std::string> cmdline_of(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::vector<std::string> args;
  std::string a;
  while (std::getline(in, a, '\0')) args.push_back(a);
  return args;
}

// The value of --name (as "--name V" or "--name=V"), or "".
std::string option(const std::vector<std::string>& args, const std::string& name) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == name && i + 1 < args.size()) return args[i + 1];
    if (args[i].rfind(name + "=", 0) == 0) return args[i].substr(name.size() + 1);
  }
  return "";
}

}  // namespace

std::optional<ExportedVdisk> find_exported_vdisk(const fs::path& socket,
                                                 const std::string& export_name) {
  const auto inode = listening_inode(socket);
  if (!inode) return std::nullopt;
  const auto pid = owner_of(*inode);
  if (!pid) return std::nullopt;
  const auto args = cmdline_of(*pid);
  // `v2p serve ...`: the program's name is v2p (any path), its subcommand serve.
  if (args.size() < 2 || fs::path(args[0]).filename() != "v2p" || args[1] != "serve") {
    return std::nullopt;
  }
  // Relative paths in its arguments are relative to its working directory.
  const fs::path cwd = fs::read_symlink("/proc/" + std::to_string(*pid) + "/cwd");
  const auto abs = [&](const std::string& p) { return (cwd / p).lexically_normal(); };
  if (const auto config = option(args, "--config"); !config.empty()) {
    const auto c = vfilter::load_serve_config(abs(config));
    for (const auto& v : c.server.vdisks) {
      const auto name = v.export_name.empty() ? v.vdisk : v.export_name;
      if (name == export_name) return ExportedVdisk{*pid, v.vdisk, v.image};
    }
    return std::nullopt;
  }
  const auto image = option(args, "--image");
  if (image.empty()) return std::nullopt;
  std::string vdisk = option(args, "--vdisk");
  if (vdisk.empty()) vdisk = fs::path(image).stem().string();
  std::string name = option(args, "--export");
  if (name.empty()) name = vdisk;
  if (name != export_name) return std::nullopt;
  return ExportedVdisk{*pid, vdisk, abs(image)};
}

}  // namespace v2p::cli
