#include "cli/demo_report.hpp"

#include <fmt/core.h>

#include "common/error.hpp"

namespace v2p::cli {
namespace {

double mib(std::uint64_t bytes) {
  return static_cast<double>(bytes) / (1 << 20);
}

std::string vdisk_label(const correlator::Correlator& corr, VdiskKey key) {
  if (const auto d = corr.vdisk(key)) return d->vm_name + "/" + d->vdisk_name;
  return fmt::format("vm{}/vdisk{}", key.vm.value(), key.vdisk.value());
}

}  // namespace

void print_progress_line(double elapsed_s, const correlator::Correlator& corr) {
  const auto s = corr.stats();
  std::string maps;
  for (const auto key : corr.map().vdisks()) {
    maps += fmt::format("  {}: {} extents, {:.1f} MiB mapped", vdisk_label(corr, key),
                        corr.map().extents(key).size(), mib(corr.map().mapped_bytes(key)));
  }
  fmt::print(
      "      [{:5.1f}s] vfilter records {:6}  bios {:6}  joined {:6}  unattributed {:4}  lost "
      "{}{}\n",
      elapsed_s, s.records, s.events, s.joined_exact + s.joined_window, s.unattributed,
      s.lost_events, maps);
}

void print_vdisk_maps(const correlator::Correlator& corr, std::size_t max_rows) {
  for (const auto key : corr.map().vdisks()) {
    const auto extents = corr.map().extents(key);
    fmt::print("      {} ({} extents, {:.1f} MiB mapped)\n", vdisk_label(corr, key), extents.size(),
               mib(corr.map().mapped_bytes(key)));
    fmt::print("        {:>14}  {:>10}  {:>8}  {:>14}  {:>4}\n", "voffset", "length", "device",
               "sector", "gen");
    std::size_t shown = 0;
    for (const auto& e : extents) {
      if (shown++ == max_rows) {
        fmt::print("        … {} more extents (v2p map shows all)\n", extents.size() - max_rows);
        break;
      }
      fmt::print("        {:>#14x}  {:>10}  {:>8}  {:>14}  {:>4}\n", e.voffset.value(), e.length,
                 fmt::format("{}:{}", e.device.major(), e.device.minor()), e.sector.value(),
                 e.generation);
    }
  }
}

VdiskKey find_vdisk(const correlator::Correlator& corr, const std::string& vm,
                    const std::string& vdisk) {
  for (const auto& d : corr.vdisk_declarations()) {
    if (d.vm_name == vm && d.vdisk_name == vdisk) return {VmId{d.vm_id}, VdiskId{d.vdisk_id}};
  }
  throw Error("the correlator never saw vdisk " + vm + "/" + vdisk +
              " (did the workload reach the export?)");
}

void print_verify_report(const correlator::VerifyReport& r) {
  fmt::print("      observed {:.1f} MiB, right {:.1f} MiB, wrong {:.1f} MiB: accuracy {:.2f}%\n",
             mib(r.bytes_observed), mib(r.bytes_right), mib(r.bytes_wrong), 100.0 * r.accuracy());
  fmt::print("      image has {:.1f} MiB allocated: coverage {:.2f}%\n", mib(r.bytes_allocated),
             100.0 * r.coverage());
  for (const auto& m : r.mismatches) fmt::print("      mismatch: {}\n", m);
}

void print_summary(const correlator::Correlator& corr, const correlator::VerifyReport& r,
                   bool workload_ok, double elapsed_s) {
  const auto s = corr.stats();
  fmt::print(
      "\nsummary: {} vfilter records, {} block-layer events, {} joined exactly, {} unattributed "
      "({} of them tagged metadata), {} lost\n",
      s.records, s.events, s.joined_exact, s.unattributed, s.metadata, s.lost_events);
  if (s.incomplete_requests + s.ambiguous_reads > 0) {
    fmt::print("         not mapped: {} requests whose bios did not add up, {} reads over holes\n",
               s.incomplete_requests, s.ambiguous_reads);
  }
  fmt::print(
      "         map accuracy {:.2f}% over {:.1f} MiB, coverage {:.2f}%; workload {}; {:.1f} s\n",
      100.0 * r.accuracy(), mib(r.bytes_observed), 100.0 * r.coverage(),
      workload_ok ? "verified its data" : "FAILED", elapsed_s);
}

}  // namespace v2p::cli
