#include "pfilter/dm_table.hpp"

#include <libdevmapper.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "common/error.hpp"

namespace v2p::pfilter {
namespace {

DmStripe make_stripe(const std::string& device, std::uint64_t offset) {
  DmStripe s{device, {}, offset};
  unsigned ma = 0;
  unsigned mi = 0;
  char extra = 0;
  if (std::sscanf(device.c_str(), "%u:%u%c", &ma, &mi, &extra) == 2) {
    s.id = DeviceId::from_major_minor(ma, mi);
  } else {
    try {
      s.id = device_of_node(device);
    } catch (const Error&) {
      // A table recorded on another machine: keep the name, the id stays unknown.
    }
  }
  return s;
}

std::uint64_t number(std::istringstream& in, const std::string& what, std::size_t line) {
  std::string tok;
  if (!(in >> tok)) throw Error("dm table line " + std::to_string(line) + ": missing " + what);
  std::size_t used = 0;
  std::uint64_t v = 0;
  try {
    v = std::stoull(tok, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != tok.size()) {
    throw Error("dm table line " + std::to_string(line) + ": " + what + " '" + tok +
                "' is not a number");
  }
  return v;
}

DmTarget parse_line(std::string line, std::size_t n) {
  // "vg-lv: 0 2048 linear 8:1 0" as plain `dmsetup table` prints it for several devices.
  if (const auto colon = line.find(": "); colon != std::string::npos && line.find(' ') > colon) {
    line = line.substr(colon + 2);
  }
  std::istringstream in(line);
  DmTarget t;
  t.start = number(in, "start", n);
  t.length = number(in, "length", n);
  if (!(in >> t.type)) throw Error("dm table line " + std::to_string(n) + ": missing target type");
  std::getline(in >> std::ws, t.params);
  std::istringstream args(t.params);
  // dm-v2p (kmod/) is a pass-through with linear's table: `<device> <offset>`.
  if (t.type == "linear" || t.type == "v2p") {
    std::string dev;
    if (!(args >> dev))
      throw Error("dm table line " + std::to_string(n) + ": " + t.type + " needs a device");
    t.stripes.push_back(make_stripe(dev, number(args, "offset", n)));
  } else if (t.type == "striped") {
    const auto count = number(args, "stripe count", n);
    t.chunk_sectors = number(args, "chunk size", n);
    if (count == 0 || t.chunk_sectors == 0) {
      throw Error("dm table line " + std::to_string(n) +
                  ": striped needs stripes and a chunk size");
    }
    for (std::uint64_t i = 0; i < count; ++i) {
      std::string dev;
      if (!(args >> dev))
        throw Error("dm table line " + std::to_string(n) + ": missing stripe device");
      t.stripes.push_back(make_stripe(dev, number(args, "stripe offset", n)));
    }
  }
  return t;
}

}  // namespace

std::optional<DeviceRange> DmTable::map(std::uint64_t sector) const {
  for (const auto& t : targets) {
    if (sector < t.start || sector >= t.start + t.length) continue;
    const std::uint64_t off = sector - t.start;
    if (t.type == "linear" || t.type == "v2p") {
      return DeviceRange{t.stripes[0].id, t.stripes[0].offset + off, t.length - off};
    }
    if (t.type == "striped") {
      // dm-stripe: chunk c goes to stripe c % n, at chunk c / n of that stripe.
      const std::uint64_t chunk = off / t.chunk_sectors;
      const std::uint64_t within = off % t.chunk_sectors;
      const auto& s = t.stripes[chunk % t.stripes.size()];
      return DeviceRange{s.id, s.offset + (chunk / t.stripes.size()) * t.chunk_sectors + within,
                         std::min(t.chunk_sectors - within, t.length - off)};
    }
    return std::nullopt;
  }
  return std::nullopt;
}

std::string DmTable::to_text() const {
  std::string out;
  for (const auto& t : targets) {
    out += std::to_string(t.start) + " " + std::to_string(t.length) + " " + t.type;
    if (!t.params.empty()) out += " " + t.params;
    out += "\n";
  }
  return out;
}

DmTable parse_dm_table(std::string_view text) {
  DmTable table;
  std::istringstream in{std::string(text)};
  std::string line;
  std::size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    table.targets.push_back(parse_line(line, n));
  }
  std::sort(table.targets.begin(), table.targets.end(),
            [](const DmTarget& a, const DmTarget& b) { return a.start < b.start; });
  return table;
}

std::optional<DmTable> read_dm_table(DeviceId dev) {
  // Without the control node libdevmapper would only log errors; the answer is the same.
  if (!std::filesystem::exists("/dev/mapper/control")) return std::nullopt;
  dm_task* task = dm_task_create(DM_DEVICE_TABLE);
  if (task == nullptr) return std::nullopt;
  std::string text;
  bool ok = dm_task_set_major(task, static_cast<int>(dev.major())) &&
            dm_task_set_minor(task, static_cast<int>(dev.minor())) && dm_task_run(task);
  if (ok) {
    void* next = nullptr;
    do {
      std::uint64_t start = 0;
      std::uint64_t length = 0;
      char* type = nullptr;
      char* params = nullptr;
      next = dm_get_next_target(task, next, &start, &length, &type, &params);
      if (type != nullptr) {
        text += std::to_string(start) + " " + std::to_string(length) + " " + type + " " +
                (params ? params : "") + "\n";
      }
    } while (next != nullptr);
  }
  dm_task_destroy(task);
  if (!ok) return std::nullopt;
  return parse_dm_table(text);
}

}  // namespace v2p::pfilter
