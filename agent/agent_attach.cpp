// The agent's passive attach (AgentOptions::attach_vms, docs/attach.md): once a second it looks
// for opted-in QEMU processes, has the probe watch their images' devices and attaches uprobes to
// them; their bios then go through the exact join, the rest straight to the correlator. A process
// that exits is detached and its devices released.
#include <fmt/core.h>

#include "agent/agent.hpp"
#include "agent/attached_qemu.hpp"
#include "agent/qemu_processes.hpp"
#include "common/error.hpp"

namespace v2p::agent {

namespace {
constexpr std::uint64_t kScanIntervalNs = 1'000'000'000;
}

void Agent::feed_events() {
  if (attached_.empty()) {
    for (const auto& e : events_) corr_.on_event(e);
    return;
  }
  for (auto& [pid, a] : attached_) a->session->poll_uprobes();
  for (const auto& e : events_) {
    const auto it = attached_.find(static_cast<pid_t>(e.tgid));
    if (it != attached_.end())
      it->second->session->on_probe_event(e);
    else
      corr_.on_event(e);
  }
}

void Agent::attach_round(std::uint64_t now) {
  for (auto it = attached_.begin(); it != attached_.end();) {
    auto& a = *it->second;
    a.session->advance(now);
    if (!a.session->all_exited()) {
      ++it;
      continue;
    }
    a.session->drain();
    for (const auto& n : a.session->take_notes()) log_event("attach " + n);
    devices_.release(a.devices);
    devices_.remove_backend(static_cast<std::uint32_t>(it->first));
    log_event(fmt::format("attach: process {} (vm {}) exited; detached", it->first, a.vm));
    it = attached_.erase(it);
  }
  if (o_.attach_vms.empty() || !o_.probe || now < next_attach_scan_ns_) return;
  next_attach_scan_ns_ = now + kScanIntervalNs;
  for (const auto& q : find_qemu_processes(o_.attach_vms)) {
    if (attached_.contains(q.pid) || attach_refused_.contains(q.pid)) continue;
    auto a = std::make_unique<Attached>();
    a->vm = q.vm;
    try {
      a->devices = image_devices(q.pid);
      cli::AttachOptions ao;
      ao.pids = {q.pid};
      ao.vm_name = q.vm;
      ao.into = &corr_;
      ao.register_vdisk = [this](const VdiskDeclaration& d) {
        const VdiskKey key = register_vdisk(d);
        for (const auto& p : pending_declarations_) declare(p);
        pending_declarations_.clear();
        return key;
      };
      a->session = std::make_unique<cli::AttachSession>(ao);
      devices_.acquire(a->devices);  // after the uprobes: a refused process costs no probe
      // Its bios are untagged: the uprobe join needs every one of them, not only news.
      if (const auto line = devices_.add_backend(static_cast<std::uint32_t>(q.pid));
          !line.empty()) {
        log_event(line);
      }
    } catch (const Error& e) {
      attach_refused_.insert(q.pid);
      log_event(fmt::format("attach: process {} (vm {}) not attached: {}", q.pid, q.vm, e.what()));
      continue;
    }
    log_event(fmt::format("attach: process {} (vm {}) attached, {} devices", q.pid, q.vm,
                          a->devices.size()));
    attached_.emplace(q.pid, std::move(a));
  }
}

}  // namespace v2p::agent
