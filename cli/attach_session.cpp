#include "cli/attach_session.hpp"

#include <fstream>
#include <iterator>

#include "common/clock.hpp"
#include "common/error.hpp"

namespace v2p::cli {

std::string qemu_vm_name(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  for (std::size_t i = 0; i < all.size();) {
    const auto end = all.find('\0', i);
    args.push_back(all.substr(i, end == std::string::npos ? std::string::npos : end - i));
    if (end == std::string::npos) break;
    i = end + 1;
  }
  for (std::size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] != "-name" && args[i] != "--name") continue;
    std::string v = args[i + 1];
    if (const auto g = v.find("guest="); g != std::string::npos) v = v.substr(g + 6);
    return v.substr(0, v.find(','));
  }
  return {};
}

AttachSession::AttachSession(const AttachOptions& options) {
  if (options.pids.empty()) throw Error("passive attach: no process given");
  // Attach the uprobes first: they refuse a process with one clear line before the probe loads.
  for (const pid_t pid : options.pids) {
    Traced t;
    t.pid = pid;
    t.attach = pfilter::QemuAttach::attach(pid);
    t.nodes = std::make_unique<correlator::QemuNodeReader>(pid);
    t.vm_name = !options.vm_name.empty() ? options.vm_name : qemu_vm_name(pid);
    if (t.vm_name.empty()) t.vm_name = "qemu-" + std::to_string(pid);
    notes_.push_back(std::to_string(pid) + ": attached to " + t.attach->executable().string());
    traced_.push_back(std::move(t));
  }
  register_ = options.register_vdisk;
  if (options.into != nullptr) {
    corr_ = options.into;
  } else {
    pfilter::ProbeOptions po;
    for (const auto& t : traced_) po.tgids.push_back(static_cast<std::uint32_t>(t.pid));
    po.pin = false;  // another probe (the agent's) may own the pin directory
    probe_ = pfilter::Probe::attach(po);
  }
  if (!options.record.empty()) writer_ = std::make_unique<StreamWriter>(options.record);

  correlator::UprobeJoin::Hooks h;
  h.node = [this](std::uint32_t tgid, std::uint64_t bs) -> std::optional<correlator::NodeInfo> {
    Traced* t = find(tgid);
    return t ? t->nodes->node(bs) : std::nullopt;
  };
  h.fd_path = [this](std::uint32_t tgid, std::uint64_t fd) -> std::optional<std::string> {
    Traced* t = find(tgid);
    return t ? t->nodes->fd_path(fd) : std::nullopt;
  };
  h.vdisk = [this](std::uint32_t tgid, const correlator::NodeInfo& top) {
    return declare(tgid, top);
  };
  h.on_record = [this](const ContextRecord& r) {
    if (writer_) writer_->write(r);
    corr_->on_record(r);
  };
  h.on_event = [this](const PhysEvent& e) {
    if (writer_) writer_->write(e);
    corr_->on_event(e);
  };
  join_ = std::make_unique<correlator::UprobeJoin>(std::move(h));
  for (const auto& t : traced_) join_->add_process(static_cast<std::uint32_t>(t.pid));
}

AttachSession::~AttachSession() {
  detach();
}

AttachSession::Traced* AttachSession::find(std::uint32_t tgid) {
  for (auto& t : traced_)
    if (static_cast<std::uint32_t>(t.pid) == tgid) return &t;
  return nullptr;
}

std::optional<VdiskKey> AttachSession::declare(std::uint32_t tgid,
                                               const correlator::NodeInfo& top) {
  Traced* t = find(tgid);
  if (!t) return std::nullopt;
  // A vdisk the chain already serves from this image (an export in front of qsd).
  for (const auto& d : corr_->vdisk_declarations())
    if (d.image_path == top.path && !d.image_path.empty()) {
      notes_.push_back(std::to_string(tgid) + ": exact join for " + d.vm_name + "/" + d.vdisk_name +
                       " (" + top.format + " " + top.path + ")");
      return VdiskKey{VmId{d.vm_id}, VdiskId{d.vdisk_id}};
    }
  for (const auto& d : declared_)
    if (d.image_path == top.path && d.vm_name == t->vm_name)
      return VdiskKey{VmId{d.vm_id}, VdiskId{d.vdisk_id}};
  VdiskDeclaration d;
  if (register_) {
    d.vm_name = t->vm_name;
    d.vdisk_name = std::filesystem::path(top.path).filename().string();
    d.image_path = top.path;
    const VdiskKey key = register_(d);
    d.vm_id = key.vm.value();
    d.vdisk_id = key.vdisk.value();
    declared_.push_back(d);
    notes_.push_back(std::to_string(tgid) + ": vdisk " + d.vm_name + "/" + d.vdisk_name + " (" +
                     top.format + " " + top.path + ")");
    return key;
  }
  std::uint32_t vm = 0, vdisk = 0;
  for (const auto& x : declared_) {
    if (x.vm_name == t->vm_name) vm = x.vm_id;
    vdisk = std::max(vdisk, x.vm_name == t->vm_name ? x.vdisk_id + 1 : vdisk);
  }
  d.vm_id = vm != 0 ? vm : next_vm_++;
  d.vdisk_id = vdisk;
  d.vm_name = t->vm_name;
  d.vdisk_name = std::filesystem::path(top.path).filename().string();
  d.image_path = top.path;
  declared_.push_back(d);
  if (writer_) writer_->write(d);
  corr_->declare(d);
  notes_.push_back(std::to_string(tgid) + ": vdisk " + d.vm_name + "/" + d.vdisk_name + " (" +
                   top.format + " " + top.path + ")");
  return VdiskKey{VmId{d.vm_id}, VdiskId{d.vdisk_id}};
}

void AttachSession::on_qemu(const v2p_qemu_event& e) {
  if (e.kind == V2P_QEMU_LAYER) {
    correlator::LayerRequest r;
    r.ts_ns = e.ts_ns;
    r.tgid = e.tgid;
    r.tid = e.tid;
    r.node = e.node;
    r.offset = e.offset;
    r.bytes = static_cast<std::uint64_t>(e.bytes);
    r.qiov = e.qiov;
    r.qiov_offset = e.qiov_offset;
    r.write = e.op == V2P_QEMU_WRITE;
    join_->on_layer(r);
  } else if (e.kind == V2P_QEMU_FILEIO) {
    correlator::FileIo f;
    f.start_ns = e.start_ns;
    f.end_ns = e.ts_ns;
    f.tgid = e.tgid;
    f.tid = e.tid;
    f.fd = e.node;
    f.pos = e.offset;
    f.result = e.bytes;
    f.write = e.op == V2P_QEMU_WRITE;
    f.data = e.op == V2P_QEMU_READ || e.op == V2P_QEMU_WRITE;
    f.submit = e.op == V2P_QEMU_SUBMIT;
    join_->on_file_io(f);
  }
}

void AttachSession::poll_uprobes() {
  const std::function<void(const v2p_qemu_event&)> on_qemu = [this](const v2p_qemu_event& e) {
    this->on_qemu(e);
  };
  for (auto& t : traced_) {
    if (!t.attach) continue;
    // Exited: deliver what it left, then detach, so its uprobes do not outlive it.
    const bool exited = t.attach->exited();
    t.attach->poll(0, on_qemu);
    if (exited) {
      t.attach->detach();
      t.attach.reset();
      notes_.push_back(std::to_string(t.pid) + ": process exited; detached");
    }
  }
}

void AttachSession::pump(int wait_ms) {
  // The uprobe events first: a syscall's window should be known before its bios arrive.
  poll_uprobes();
  probe_->poll(wait_ms, [this](const PhysEvent& e) { join_->on_event(e); });
  poll_uprobes();
  const std::uint64_t now = monotonic_ns();
  join_->advance(now);
  corr_->advance(now);
}

void AttachSession::settle() {
  if (!probe_) return;  // the chain settles
  const std::uint64_t until = monotonic_ns() + 400'000'000;
  while (monotonic_ns() < until) pump(50);
  probe_->poll(0, [this](const PhysEvent& e) { join_->on_event(e); });
  join_->drain();
  corr_->on_lost(probe_->lost_events());
  corr_->drain();
  if (writer_) writer_->flush(true);
}

void AttachSession::detach() {
  for (auto& t : traced_) {
    if (!t.attach) continue;
    t.attach->detach();
    t.attach.reset();
    notes_.push_back(std::to_string(t.pid) + ": detached");
  }
}

bool AttachSession::all_exited() const {
  for (const auto& t : traced_)
    if (t.attach) return false;
  return true;
}

std::uint64_t AttachSession::lost_events() const {
  std::uint64_t n = probe_ ? probe_->lost_events() : 0;
  for (const auto& t : traced_)
    if (t.attach) n += t.attach->lost_events();
  return n;
}

std::vector<std::string> AttachSession::take_notes() {
  return std::exchange(notes_, {});
}

}  // namespace v2p::cli
