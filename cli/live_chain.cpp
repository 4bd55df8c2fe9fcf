#include "cli/live_chain.hpp"

#include <unistd.h>

#include <algorithm>

#include "common/clock.hpp"
#include "correlator/snapshot.hpp"

namespace v2p::cli {

LiveChain::LiveChain(const LiveChainOptions& options)
    : socket_(options.socket),
      snapshot_path_(options.snapshot),
      snapshot_interval_ns_(std::uint64_t{options.snapshot_interval_ms} * 1'000'000) {
  pfilter::ProbeOptions probe_options;
  probe_options.devices = options.devices;
  // Unpinned: the pins in /sys/fs/bpf/v2p belong to an operator's long-running `v2p probe`,
  // which may well be running while a demo or a test starts its own chain.
  probe_options.pin = false;
  // Only image vdisks publish their slot contexts; the window join of opaque upstream paths needs
  // every untagged bio of the backend, and backend stacks do their own host I/O: those chains
  // keep the full stream (docs/pfilter.md, "What the probe sends").
  const bool images_only = std::all_of(
      options.vdisks.begin(), options.vdisks.end(),
      [](const vfilter::VdiskConfig& v) { return v.upstream.empty() && v.backend == nullptr; });
  probe_options.every_bio = !images_only;
  probe_ = pfilter::Probe::attach(probe_options);
  vfilter::ServerConfig server_config;
  if (images_only) {
    server_config.slot_table_fd = probe_->slot_table_fd();
    server_config.slot_table_row = probe_->add_export(static_cast<std::uint32_t>(::getpid()));
  }
  server_config.vdisks = options.vdisks;
  server_config.unix_socket = options.socket;
  vfilter::RecordSink* sink = &sink_;
  if (options.policies != nullptr) {
    tee_ = std::make_unique<policy::RecordTee>(*options.policies, &sink_);
    sink = tee_.get();
    corr_.set_change_observer(
        [host = options.policies](const MapChange& c) { host->map_changed(c); });
  }
  if (!options.agent_ingest.empty()) {
    vfilter::AgentSinkOptions ao;
    ao.socket = options.agent_ingest;
    ao.next = sink;
    agent_sink_ = std::make_unique<vfilter::AgentSink>(std::move(ao));
    for (const auto& v : options.vdisks) {
      if (!v.image.empty()) agent_sink_->announce_image(std::filesystem::absolute(v.image));
    }
    sink = agent_sink_.get();
  }
  server_ = vfilter::Server::start(server_config, sink);
  if (!options.attach_pids.empty())
    attach_ = std::make_unique<AttachSession>(AttachOptions{options.attach_pids, "", {}, &corr_});
}

void LiveChain::pump(int wait_ms) {
  // Events are held until the declarations are drained: the vfilter declares a vdisk's opaque
  // backend process before any I/O of it, so every bio polled here was issued after its
  // declaration reached the sink, and the correlator knows the process before it sees the bio.
  events_.clear();
  probe_->poll(wait_ms, [this](const PhysEvent& e) { events_.push_back(e); });
  for (const auto& d : sink_.drain_declarations()) corr_.declare(d);
  for (const auto& b : sink_.drain_backends()) corr_.add_backend_process(b.tgid);
  if (attach_) {
    attach_->poll_uprobes();
    for (const auto& e : events_) attach_->on_probe_event(e);
  } else {
    for (const auto& e : events_) corr_.on_event(e);
  }
  for (const auto& r : sink_.drain()) corr_.on_record(r);
  corr_.on_lost(probe_->lost_events());
  const std::uint64_t now = monotonic_ns();
  if (attach_) attach_->advance(now);
  corr_.advance(now);
  if (!snapshot_path_.empty() && now >= next_snapshot_ns_) {
    write_snapshot();
    next_snapshot_ns_ = now + snapshot_interval_ns_;
  }
}

void LiveChain::write_snapshot() {
  correlator::save_snapshot(corr_, snapshot_path_);
  ++snapshots_;
}

void LiveChain::settle() {
  // Rounds that wait for the vfilter's last records, then poll(0): the probe's final drain, which
  // flushes every CPU's batches, so every bio queued so far is in.
  for (int i = 0; i < 4; ++i) pump(100);
  pump(0);
  if (attach_) attach_->drain();
  corr_.advance(monotonic_ns() + correlator::kDefaultHorizonNs);
  if (!snapshot_path_.empty()) write_snapshot();
}

}  // namespace v2p::cli
