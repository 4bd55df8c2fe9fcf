#include "cli/live_chain.hpp"

#include "common/clock.hpp"

namespace v2p::cli {

LiveChain::LiveChain(const LiveChainOptions& options) : socket_(options.socket) {
  pfilter::ProbeOptions probe_options;
  probe_options.devices = options.devices;
  // Unpinned: the pins in /sys/fs/bpf/v2p belong to an operator's long-running `v2p probe`,
  // which may well be running while a demo or a test starts its own chain.
  probe_options.pin = false;
  probe_ = pfilter::Probe::attach(probe_options);
  vfilter::ServerConfig server_config;
  server_config.vdisks = options.vdisks;
  server_config.unix_socket = options.socket;
  vfilter::RecordSink* sink = &sink_;
  if (options.policies != nullptr) {
    tee_ = std::make_unique<policy::RecordTee>(*options.policies, &sink_);
    sink = tee_.get();
    corr_.set_change_observer(
        [host = options.policies](const MapChange& c) { host->map_changed(c); });
  }
  server_ = vfilter::Server::start(server_config, sink);
}

void LiveChain::pump(int wait_ms) {
  probe_->poll(wait_ms, [this](const PhysEvent& e) { corr_.on_event(e); });
  for (const auto& d : sink_.drain_declarations()) corr_.declare(d);
  for (const auto& r : sink_.drain()) corr_.on_record(r);
  corr_.on_lost(probe_->lost_events());
  corr_.advance(monotonic_ns());
}

void LiveChain::settle() {
  // The probe wakes user space at least every 100 ms; five rounds see everything completed.
  for (int i = 0; i < 5; ++i) pump(100);
  corr_.advance(monotonic_ns() + correlator::kDefaultHorizonNs);
}

}  // namespace v2p::cli
