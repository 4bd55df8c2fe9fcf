// The host side of the dm-v2p guest test: reads what the guest collected (the target's ring
// records of the ext4 phase, the tagged writers' ContextRecords and the files' FIEMAP extents)
// and checks them with the project's correlator. One "PASS name" or "FAIL name: why" line per
// check; exit 1 if any failed.
//   dm_guest_check DIR      DIR holds ring-ext4.bin, ctx-N.bin, fiemap-N.txt (N = 1, 2)
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "correlator/correlator.hpp"
#include "v2p/records.hpp"

namespace {

int failures = 0;

void report(bool ok, const std::string& name, const std::string& detail) {
  std::cout << (ok ? "PASS " : "FAIL ") << name << (ok ? " (" : ": ") << detail << (ok ? ")" : "")
            << "\n";
  failures += ok ? 0 : 1;
}

template <class T>
std::vector<T> load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<T> v;
  T x{};
  while (in.read(reinterpret_cast<char*>(&x), sizeof(x))) v.push_back(x);
  return v;
}

struct Extent {
  std::uint64_t logical = 0, physical = 0, length = 0;
};

std::vector<Extent> load_extents(const std::string& path) {
  std::ifstream in(path);
  std::vector<Extent> v;
  Extent e;
  while (in >> e.logical >> e.physical >> e.length) v.push_back(e);
  return v;
}

std::uint16_t slot(const v2p::PhysEvent& e) {
  return (e.ioprio >> 3) & 0x3ff;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: dm_guest_check DIR\n";
    return 2;
  }
  const std::string dir = argv[1];
  auto events = load<v2p::PhysEvent>(dir + "/ring-ext4.bin");
  std::sort(events.begin(), events.end(),
            [](const auto& a, const auto& b) { return a.ts_ns < b.ts_ns; });
  report(!events.empty(), "ring-records", std::to_string(events.size()) + " records");

  v2p::correlator::Correlator corr;
  std::uint32_t dev = 0;
  std::map<std::uint32_t, std::vector<v2p::ContextRecord>> ctx;
  std::map<std::uint32_t, std::uint32_t> tgid_of;
  for (std::uint32_t vd : {1u, 2u}) {
    ctx[vd] = load<v2p::ContextRecord>(dir + "/ctx-" + std::to_string(vd) + ".bin");
    corr.declare({1, vd, "guest", "file" + std::to_string(vd), "/mnt/file" + std::to_string(vd)});
    if (!ctx[vd].empty()) tgid_of[vd] = ctx[vd].front().tgid;
  }

  // 100 % of the tagged bytes: every tagged write of a writer is in the ring, exactly once.
  for (auto& [vd, recs] : ctx) {
    std::uint64_t written = 0, recorded = 0, ios = 0;
    for (const auto& r : recs) written += r.length;
    for (const auto& e : events) {
      if (e.tgid == tgid_of[vd] && slot(e) != 0 && e.op == 1) {
        recorded += e.bytes;
        ++ios;
        dev = e.dev;
      }
    }
    report(written > 0 && written == recorded, "tagged-bytes-vdisk" + std::to_string(vd),
           std::to_string(recorded) + " of " + std::to_string(written) + " bytes in " +
               std::to_string(ios) + " records, " + std::to_string(recs.size()) + " I/Os");
  }
  // The file system's own writes (the journal) arrive untagged, named as such.
  std::uint64_t untagged = 0, journal = 0;
  for (const auto& e : events) {
    if (slot(e) != 0 || e.op != 1) continue;
    ++untagged;
    if (std::string(e.comm, strnlen(e.comm, sizeof(e.comm))).rfind("jbd2", 0) == 0) ++journal;
  }
  report(journal > 0, "untagged-journal",
         std::to_string(untagged) + " untagged writes, " + std::to_string(journal) + " by jbd2");

  // The map the correlator builds from the ring, against the file system's FIEMAP.
  for (auto& [vd, recs] : ctx)
    for (const auto& r : recs) corr.on_record(r);
  for (const auto& e : events) corr.on_event(e);
  corr.drain();
  const auto st = corr.stats();
  std::ostringstream s;
  s << st.joined_exact << " bios joined by tag, " << st.unattributed << " unattributed, "
    << st.incomplete_requests << " incomplete";
  std::size_t tagged_writes = 0;
  for (auto& [vd, recs] : ctx) tagged_writes += recs.size();
  report(st.joined_exact >= tagged_writes && st.incomplete_requests == 0, "correlator-join",
         s.str());
  for (std::uint32_t vd : {1u, 2u}) {
    const auto extents = load_extents(dir + "/fiemap-" + std::to_string(vd) + ".txt");
    const v2p::VdiskKey key{v2p::VmId{1}, v2p::VdiskId{vd}};
    std::uint64_t checked = 0, bad = 0;
    std::string first_bad;
    for (const auto& x : extents) {
      std::uint64_t covered = 0;
      for (const auto& p : corr.map().lookup(key, v2p::VirtualOffset{x.logical}, x.length)) {
        const std::uint64_t want = (x.physical + (p.voffset.value() - x.logical)) / 512;
        if (p.device != v2p::DeviceId::from_kernel(dev) || p.sector.value() != want) {
          ++bad;
          if (first_bad.empty())
            first_bad = "voffset " + std::to_string(p.voffset.value()) + " at sector " +
                        std::to_string(p.sector.value()) + ", FIEMAP says " + std::to_string(want);
        }
        covered += p.length;
      }
      if (covered != x.length) {
        ++bad;
        if (first_bad.empty())
          first_bad = "extent at " + std::to_string(x.logical) + " covered " +
                      std::to_string(covered) + " of " + std::to_string(x.length);
      }
      checked += x.length;
    }
    report(!extents.empty() && bad == 0, "map-vs-fiemap-vdisk" + std::to_string(vd),
           std::to_string(extents.size()) + " extents, " + std::to_string(checked) + " bytes" +
               (first_bad.empty() ? "" : ", first mismatch: " + first_bad));
  }
  return failures ? 1 : 0;
}
