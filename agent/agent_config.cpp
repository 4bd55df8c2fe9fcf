#include "agent/agent_config.hpp"

#include <fmt/core.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.hpp"

namespace v2p::agent {

void load_agent_config(const std::filesystem::path& file, AgentOptions& o) {
  std::ifstream in(file);
  if (!in) throw Error(fmt::format("{}: cannot be read", file.string()));
  std::stringstream text;
  text << in.rdbuf();
  const auto j = nlohmann::json::parse(text.str(), nullptr, false);
  if (j.is_discarded()) throw Error(fmt::format("{}: not valid JSON", file.string()));
  if (!j.is_object()) throw Error(fmt::format("{}: must be a JSON object", file.string()));
  const auto bad = [&](const std::string& key, const char* what) {
    return Error(fmt::format("{}: field '{}' {}", file.string(), key, what));
  };
  for (const auto& item : j.items()) {
    // Named copies, not structured bindings: lambdas below capture them (clang 14 cannot).
    const std::string key = item.key();
    const nlohmann::json& value = item.value();
    const auto str = [&] {
      if (!value.is_string() || value.get<std::string>().empty())
        throw bad(key, "must be a non-empty string");
      return value.get<std::string>();
    };
    const auto uint = [&](std::uint64_t lo, std::uint64_t hi) {
      if (!value.is_number_unsigned() || value.get<std::uint64_t>() < lo ||
          value.get<std::uint64_t>() > hi) {
        throw bad(key, fmt::format("must be an integer in {}..{}", lo, hi).c_str());
      }
      return value.get<std::uint64_t>();
    };
    if (key == "socket") {
      o.query_socket = str();
    } else if (key == "ingest_socket") {
      o.ingest_socket = str();
    } else if (key == "group") {
      o.group = str();
    } else if (key == "socket_mode") {
      const auto s = str();
      std::size_t used = 0;
      unsigned mode = 0;
      try {
        mode = static_cast<unsigned>(std::stoul(s, &used, 8));
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != s.size() || mode > 0777 || (mode & 0600) != 0600) {
        throw bad(key, "must be an octal mode such as \"0660\" that lets the owner read and write");
      }
      o.socket_mode = mode;
    } else if (key == "state_dir") {
      o.state_dir = str();
    } else if (key == "snapshot_interval_ms") {
      o.snapshot_interval_ms = static_cast<unsigned>(uint(100, 86'400'000));
    } else if (key == "probe") {
      if (!value.is_boolean()) throw bad(key, "must be true or false");
      o.probe = value.get<bool>();
    } else if (key == "every_bio") {
      if (!value.is_boolean()) throw bad(key, "must be true or false");
      o.every_bio = value.get<bool>();
    } else if (key == "http") {
      o.http_listen = str();
      o.http_optional = false;
      if (o.http_listen == "off") o.http_listen.clear();
    } else if (key == "max_query_clients") {
      o.max_query_clients = uint(1, 65536);
    } else if (key == "queries_per_round") {
      o.queries_per_round = uint(1, 65536);
    } else if (key == "attach") {
      if (!value.is_array()) throw bad(key, "must be a list of VM names (\"*\": every QEMU)");
      o.attach_vms.clear();
      for (const auto& v : value) {
        if (!v.is_string() || v.get<std::string>().empty())
          throw bad(key, "must be a list of VM names (\"*\": every QEMU)");
        o.attach_vms.push_back(v.get<std::string>());
      }
    } else {
      throw bad(key,
                "is unknown (socket, ingest_socket, group, socket_mode, state_dir, "
                "snapshot_interval_ms, probe, every_bio, http, max_query_clients, "
                "queries_per_round, attach)");
    }
  }
}

}  // namespace v2p::agent
