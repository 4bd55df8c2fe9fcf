// `v2p tier status FAST_FILE…`: per tiered vdisk (one fast tier file each), where its data lives
// and how its hot set and migrations are doing, from the persisted state: the journal (what is
// committed on which tier) and the status file the running stage rewrites every half second.
#ifdef V2P_HAVE_TIER
#include <fmt/core.h>
#include <signal.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/subcommand.hpp"
#include "common/error.hpp"
#include "policy/tier/tier_journal.hpp"
#include "policy/tier/tier_stage.hpp"

namespace v2p::cli {
namespace {

struct TierStatusOptions {
  std::vector<std::string> fast_files;
  bool json = false;
};

std::filesystem::path with_suffix(const std::string& p, const char* suffix) {
  std::filesystem::path out(p);
  out += suffix;
  return out;
}

bool pid_alive(long pid) {
  return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
}

int run_status(const TierStatusOptions& o) {
  nlohmann::json all = nlohmann::json::array();
  for (const auto& fast : o.fast_files) {
    const auto journal = tier::read_journal(with_suffix(fast, ".journal"));
    const auto& g = journal.geometry;
    nlohmann::json j = {
        {"fast_file", fast},
        {"extent_bytes", g.extent_bytes},
        {"extents", g.extents},
        {"fast_capacity", g.fast_slots},
        {"fast_extents", journal.table.fast_count()},
        {"bytes_fast", journal.table.fast_count() * g.extent_bytes},
        {"bytes_slow", (g.extents - journal.table.fast_count()) * g.extent_bytes},
        {"journal_records", journal.report.records},
        {"journal_torn_bytes", journal.report.dropped_bytes},
    };
    const auto status_path = with_suffix(fast, ".status");
    if (std::filesystem::exists(status_path)) {
      const auto s = tier::read_status_file(status_path);
      std::ifstream in(status_path);
      const auto raw = nlohmann::json::parse(in);
      j["vm"] = s.vm_name;
      j["vdisk"] = s.vdisk_name;
      j["running"] = pid_alive(raw.value("pid", 0L));
      j["updated_unix_ms"] = raw.value("updated_unix_ms", 0LL);
      j["hot_extents"] = s.hot_extents;
      j["hot_on_fast"] = s.hot_on_fast;
      j["hot_fraction_on_fast"] = s.hot_fraction_on_fast();
      j["queued"] = s.queued;
      j["migrating"] = s.migrating;
      j["current_done"] = s.current_done;
      j["promoted"] = s.promoted;
      j["demoted"] = s.demoted;
      j["aborted"] = s.aborted;
      j["failed"] = s.failed;
      j["bytes_migrated"] = s.bytes_migrated;
    }
    all.push_back(j);
  }
  if (o.json) {
    fmt::print("{}\n", all.dump(2));
    return 0;
  }
  fmt::print("{:<12} {:<10} {:>8} {:>10} {:>10} {:>8} {:>7} {:>10} {:>10}  {}\n", "VM", "VDISK",
             "HOT-FAST", "FAST", "SLOW", "QUEUED", "MOVING", "PROMOTED", "DEMOTED", "STATE");
  for (const auto& j : all) {
    const bool has = j.contains("vm");
    const auto mib = [](std::uint64_t b) { return fmt::format("{}M", b >> 20); };
    const std::string moving =
        has && j["migrating"].get<std::uint64_t>() != 0
            ? fmt::format("{}%", 100 * j["current_done"].get<std::uint64_t>() /
                                     std::max<std::uint64_t>(1, j["extent_bytes"]))
            : "-";
    fmt::print("{:<12} {:<10} {:>8} {:>10} {:>10} {:>8} {:>7} {:>10} {:>10}  {}\n",
               has ? j["vm"].get<std::string>() : "?", has ? j["vdisk"].get<std::string>() : "?",
               has ? fmt::format("{:.1f}%", 100 * j["hot_fraction_on_fast"].get<double>()) : "?",
               mib(j["bytes_fast"]), mib(j["bytes_slow"]),
               has ? std::to_string(j["queued"].get<std::uint64_t>()) : "?", moving,
               has ? std::to_string(j["promoted"].get<std::uint64_t>()) : "?",
               has ? std::to_string(j["demoted"].get<std::uint64_t>()) : "?",
               !has                       ? "no status file"
               : j["running"].get<bool>() ? "running"
                                          : "stopped");
  }
  return 0;
}

const Register kTier{
    {"tier", "Tiering state of vdisks served with --tier-fast",
     [](CLI::App& app) -> std::function<int()> {
       auto o = std::make_shared<TierStatusOptions>();
       app.require_subcommand(1);
       auto* status = app.add_subcommand(
           "status", "Per VM: fraction of the hot set on the fast tier, migration progress");
       status->add_option("fast_files", o->fast_files, "Fast tier files given to --tier-fast")
           ->required();
       status->add_flag("--json", o->json, "JSON output");
       return [o] { return run_status(*o); };
     }}};

}  // namespace
}  // namespace v2p::cli
#endif  // V2P_HAVE_TIER
