#include "pfilter/blkparse.hpp"

#include <charconv>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <utility>

namespace v2p::pfilter {
namespace {

bool parse_u64(const std::string& s, std::uint64_t& v) {
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc{} && r.ptr == s.data() + s.size();
}

bool parse_dev(std::string s, std::uint32_t& dev) {
  if (s.size() > 2 && s.front() == '(' && s.back() == ')') s = s.substr(1, s.size() - 2);
  const auto comma = s.find(',');
  std::uint64_t ma = 0;
  std::uint64_t mi = 0;
  if (comma == std::string::npos || !parse_u64(s.substr(0, comma), ma) ||
      !parse_u64(s.substr(comma + 1), mi)) {
    return false;
  }
  dev = DeviceId::from_major_minor(static_cast<std::uint32_t>(ma), static_cast<std::uint32_t>(mi))
            .kernel();
  return true;
}

// "12.000345678" → nanoseconds, exactly (no floating point).
bool parse_time(const std::string& s, std::uint64_t& ns) {
  const auto dot = s.find('.');
  std::uint64_t secs = 0;
  std::uint64_t frac = 0;
  if (!parse_u64(s.substr(0, dot), secs)) return false;
  if (dot != std::string::npos) {
    std::string f = s.substr(dot + 1);
    if (f.size() > 9 || !parse_u64(f, frac)) return false;
    for (std::size_t i = f.size(); i < 9; ++i) frac *= 10;
  }
  ns = secs * 1'000'000'000ULL + frac;
  return true;
}

std::string bracketed(const std::string& rest) {
  const auto open = rest.find('[');
  const auto close = rest.rfind(']');
  if (open == std::string::npos || close == std::string::npos || close < open) return {};
  return rest.substr(open + 1, close - open - 1);
}

}  // namespace

BlkparseImport import_blkparse(std::istream& in, const ReqFlagBits& bits) {
  BlkparseImport out;
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::uint64_t> queued;  // (dev, sector) → ts
  std::string line;
  while (std::getline(in, line)) {
    ++out.lines;
    std::istringstream f(line);
    std::string dev, cpu, seq, time, pid, action, flags;
    PhysEvent e;
    std::uint64_t pid_v = 0;
    if (!(f >> dev >> cpu >> seq >> time >> pid >> action >> flags) || !parse_dev(dev, e.dev) ||
        !parse_time(time, e.ts_ns) || !parse_u64(pid, pid_v) ||
        (action != "Q" && action != "A" && action != "C")) {
      ++out.ignored;
      continue;
    }
    e.tgid = e.tid = static_cast<std::uint32_t>(pid_v);
    e.cmd_flags = cmd_flags_from_rwbs(flags, bits);
    std::string rest;
    std::getline(f >> std::ws, rest);
    std::istringstream r(rest);
    std::string sector, plus, count;
    std::uint64_t sectors = 0;
    // Requests without data (flushes) print no "sector + count".
    if (!rest.starts_with("[")) {
      if (!(r >> sector >> plus >> count) || plus != "+" || !parse_u64(sector, e.sector) ||
          !parse_u64(count, sectors)) {
        ++out.ignored;
        continue;
      }
    }
    e.bytes = static_cast<std::uint32_t>(sectors * kSectorSize);
    e.op = static_cast<std::uint8_t>(io_op_from_cmd_flags(e.cmd_flags, e.bytes, bits));
    if (action == "Q") {
      e.kind = static_cast<std::uint8_t>(PhysEventKind::kQueue);
      const std::string comm = bracketed(rest);
      std::strncpy(e.comm, comm.c_str(), sizeof e.comm - 1);
      queued[{e.dev, e.sector}] = e.ts_ns;
    } else if (action == "A") {
      std::string arrow, old_dev, old_sector;
      if (!(r >> arrow >> old_dev >> old_sector) || arrow != "<-" ||
          !parse_dev(old_dev, e.old_dev) || !parse_u64(old_sector, e.old_sector)) {
        ++out.ignored;
        continue;
      }
      e.kind = static_cast<std::uint8_t>(PhysEventKind::kRemap);
    } else {
      e.kind = static_cast<std::uint8_t>(PhysEventKind::kComplete);
      std::uint64_t err = 0;
      const std::string code = bracketed(rest);
      if (!code.empty() && code != "0") {
        const bool neg = code.front() == '-';
        if (parse_u64(neg ? code.substr(1) : code, err)) e.error = -static_cast<std::int32_t>(err);
      }
      // blkparse's pid on a completion is whoever ran the interrupt: not the submitter.
      e.tgid = e.tid = 0;
      if (const auto q = queued.find({e.dev, e.sector}); q != queued.end()) {
        e.latency_ns = e.ts_ns - q->second;
        queued.erase(q);
      }
    }
    out.events.push_back(e);
  }
  return out;
}

}  // namespace v2p::pfilter
