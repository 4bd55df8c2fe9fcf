// What `v2p demo` prints while it runs and at the end.
#pragma once

#include <cstddef>
#include <string>

#include "correlator/correlator.hpp"
#include "correlator/verify.hpp"

namespace v2p::cli {

void print_progress_line(double elapsed_s, const correlator::Correlator& corr);
void print_vdisk_maps(const correlator::Correlator& corr, std::size_t max_rows);
// Throws v2p::Error when the correlator has never seen the vdisk.
VdiskKey find_vdisk(const correlator::Correlator& corr, const std::string& vm,
                    const std::string& vdisk);
void print_verify_report(const correlator::VerifyReport& report);
void print_summary(const correlator::Correlator& corr, const correlator::VerifyReport& report,
                   bool workload_ok, double elapsed_s);

}  // namespace v2p::cli
