#include "agent/agent.hpp"

#include <fmt/chrono.h>
#include <fmt/core.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <limits>
#include <set>

#include "agent/attached_qemu.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "common/fd_passing.hpp"
#include "common/ingest_wire.hpp"
#include "correlator/snapshot.hpp"

namespace v2p::agent {

// One connected export process.
struct Agent::Export {
  Fd fd;
  std::uint32_t pid = 0;
  std::uint64_t serial = 0;  // this connection, for its cumulative latency figures
  bool hello = false;
  std::map<std::uint64_t, VdiskKey> ids;  // (its vm_id << 32 | vdisk_id) -> agent's key
  std::set<VdiskKey> vdisks;
  std::uint64_t lost_total = 0;
  std::uint64_t last_local = std::numeric_limits<std::uint64_t>::max();
  VdiskKey last_key{};
  std::vector<std::vector<DeviceId>> watched;  // devices of the images it announced
  std::uint64_t granted_attach = 0;  // DeviceWatch::attaches() when its slot table was sent
};

// One query client.
struct Agent::Client {
  Fd fd;
  std::string in, out;
  bool closing = false;
};

namespace {

constexpr int kMessagesPerExportRound = 64;  // fairness between exports and the rest
// A burst of changes is written before the interval is up: the buffer stays small.
constexpr std::size_t kLogBatchBytes = 1u << 20;

std::uint64_t local_key(std::uint32_t vm, std::uint32_t vdisk) {
  return (std::uint64_t{vm} << 32) | vdisk;
}

std::filesystem::path snapshot_path(const AgentOptions& o) {
  return o.state_dir / "map.snap";
}

std::filesystem::path log_path(const AgentOptions& o) {
  return o.state_dir / "map.log";
}

// Feeds one export's frames into the agent's per-round buffers.
class ExportVisitor final : public ingest::MessageVisitor {
 public:
  using Declare = std::function<VdiskKey(const VdiskDeclaration&)>;
  using Announce = std::function<void(const std::string&)>;
  ExportVisitor(Agent::Export& e, Declare declare, Announce announce,
                std::vector<BackendProcess>& backends, std::vector<ContextRecord>& records,
                std::uint64_t& lost, IoLayers& layers)
      : e_(e),
        layers_(layers),
        declare_(std::move(declare)),
        announce_(std::move(announce)),
        backends_(backends),
        records_(records),
        lost_(lost) {}

  void on_hello(const ingest::Hello& h) override {
    if (h.version != ingest::kProtocolVersion) {
      throw Error(fmt::format("ingest protocol version {} (this agent speaks {})", h.version,
                              ingest::kProtocolVersion));
    }
    e_.hello = true;
  }
  void on_declaration(const VdiskDeclaration& d) override {
    need_hello();
    e_.ids[local_key(d.vm_id, d.vdisk_id)] = declare_(d);
    e_.last_local = std::numeric_limits<std::uint64_t>::max();
  }
  void on_backend(const BackendProcess& b) override {
    need_hello();
    BackendProcess g = b;
    const VdiskKey k = key(b.vm_id, b.vdisk_id);
    g.vm_id = k.vm.value();
    g.vdisk_id = k.vdisk.value();
    backends_.push_back(g);
  }
  void on_record(const ContextRecord& r) override {
    ContextRecord& g = records_.emplace_back(r);
    const VdiskKey k = key(r.vm_id, r.vdisk_id);
    g.vm_id = k.vm.value();
    g.vdisk_id = k.vdisk.value();
  }
  void on_image(const std::string& path) override {
    need_hello();
    announce_(path);
  }
  void on_export_latency(const ingest::ExportLatency& l) override {
    need_hello();
    // Figures of a vdisk not declared yet wait for the next message (they are cumulative).
    const auto it = e_.ids.find(local_key(l.vm_id, l.vdisk_id));
    if (it != e_.ids.end()) layers_.export_figures(e_.serial, it->second, l);
  }
  void on_lost(const ingest::LostRecords& l) override {
    need_hello();
    if (l.lost_total > e_.lost_total) {
      lost_ += l.lost_total - e_.lost_total;
      e_.lost_total = l.lost_total;
    }
  }

 private:
  void need_hello() const {
    if (!e_.hello) throw Error("the first ingest frame must be the hello");
  }
  VdiskKey key(std::uint32_t vm, std::uint32_t vdisk) {
    const std::uint64_t local = local_key(vm, vdisk);
    if (local == e_.last_local) return e_.last_key;
    const auto it = e_.ids.find(local);
    if (it == e_.ids.end()) {
      records_.pop_back();
      throw Error(fmt::format("record of vdisk {}/{} that the export never declared", vm, vdisk));
    }
    e_.last_local = local;
    e_.last_key = it->second;
    return it->second;
  }

  Agent::Export& e_;
  IoLayers& layers_;
  Declare declare_;
  Announce announce_;
  std::vector<BackendProcess>& backends_;
  std::vector<ContextRecord>& records_;
  std::uint64_t& lost_;
};

}  // namespace

Agent::Agent(AgentOptions options)
    : o_(std::move(options)),
      devices_(o_.probe, o_.every_bio, o_.pin_dir),
      rx_(ingest::kMaxMessageBytes + 1) {
  restore();
  // The decoded snapshot file is gone: give its pages back (a 1 M-extent restore otherwise
  // leaves the agent about 30 bytes per extent fatter for good).
  ::malloc_trim(0);
  ingest_ = listen_unix(o_.ingest_socket, SOCK_SEQPACKET, o_.socket_mode, o_.group);
  query_ = listen_unix(o_.query_socket, SOCK_STREAM, o_.socket_mode, o_.group);
  const auto now = monotonic_ns();
  next_snapshot_ns_ = now + std::uint64_t{o_.snapshot_interval_ms} * 1'000'000;
  next_log_write_ns_ = now + std::uint64_t{o_.log_write_interval_ms} * 1'000'000;
  next_log_sync_ns_ = now + std::uint64_t{o_.log_sync_interval_ms} * 1'000'000;
  if (!o_.http_listen.empty()) {
    try {
      http_ = std::make_unique<HttpServer>(
          o_.http_listen, jobs_,
          [this](const std::string& path, const HttpParams& params) { return http(path, params); });
      o_.log(fmt::format("metrics on http://{}/metrics, web view on http://{}/", http_->address(),
                         http_->address()));
    } catch (const Error& e) {
      if (!o_.http_optional) throw;
      o_.log(fmt::format("no metrics or web view: {}", e.what()));
    }
  }
}

std::string Agent::http_address() const {
  return http_ ? http_->address() : std::string();
}

// A backend named by the saved state: the correlator keeps it; the probe sends its every bio
// only if it still runs (a dead one would hold an entry of the kernel's small set).
void Agent::restore_backend(std::uint32_t tgid) {
  corr_.add_backend_process(tgid);
  if (::kill(static_cast<pid_t>(tgid), 0) == 0 || errno == EPERM) devices_.add_backend(tgid);
}

// The snapshot, then the change log written after it (map_log.hpp has why the epochs make a
// crash between saving one and rotating the other safe).
void Agent::restore() {
  if (o_.state_dir.empty()) return;
  std::filesystem::create_directories(o_.state_dir);
  std::filesystem::permissions(o_.state_dir, std::filesystem::perms::owner_all);
  const auto snap = snapshot_path(o_);
  std::uint32_t epoch = 0;
  bool usable = true;  // false: the snapshot the log continues is lost, so is the log
  if (std::filesystem::exists(snap)) {
    try {
      auto s = correlator::load_snapshot(snap);
      // restore_snapshot without its deep copy: the map moves in (half the peak memory).
      corr_.mutable_map() = std::move(s.map);
      for (const auto& d : s.declarations) declare(d);
      for (const auto t : s.backends) restore_backend(t);
      corr_.set_watermark_ns(s.as_of_ns);
      epoch = s.log_epoch;
      stats_.restored_extents = corr_.map().extent_count();
      o_.log(fmt::format("restored {} extents of {} vdisks from {}", stats_.restored_extents,
                         s.declarations.size(), snap.string()));
    } catch (const Error& e) {
      auto aside = snap;
      aside += ".unreadable";
      std::filesystem::rename(snap, aside);
      o_.log(fmt::format("snapshot {} unreadable ({}): kept as {}, starting empty", snap.string(),
                         e.what(), aside.string()));
      corr_.mutable_map().clear();
      usable = false;
    }
  }
  bool append = false;
  if (usable) {
    const auto before = corr_.map().extent_count();
    const auto r =
        replay_map_log(log_path(o_), epoch,
                       {corr_.mutable_map(), [this](const VdiskDeclaration& d) { declare(d); },
                        [this](std::uint32_t tgid) { restore_backend(tgid); }});
    append = r.matched;
    stats_.log_records_replayed = r.records;
    if (r.records > 0) {
      o_.log(fmt::format("replayed {} map changes from {} ({} extents before, {} after)", r.records,
                         log_path(o_).string(), before, corr_.map().extent_count()));
    }
    if (r.matched && !r.why.empty()) {
      ++stats_.log_bad_tails;
      o_.log(fmt::format("map log {}: {}; replay stopped there, {} bytes after it cut off",
                         log_path(o_).string(), r.why, r.bad_tail));
    }
    stats_.restored_extents = corr_.map().extent_count();
  }
  map_log_ = std::make_unique<MapLogWriter>(log_path(o_), epoch, append);
  // Only now: restoring is not a change to log again.
  corr_.set_change_observer([this](const MapChange& c) { on_map_change(c); });
}

void Agent::declare(const VdiskDeclaration& d) {
  corr_.declare(d);
  vm_ids_[d.vm_name] = d.vm_id;
  vdisk_ids_[{d.vm_name, d.vdisk_name}] = {VmId{d.vm_id}, VdiskId{d.vdisk_id}};
  if (map_log_) map_log_->declare(d);
}

void Agent::on_map_change(const MapChange& c) {
  // The feed omits what the extent's last sighting and confidence are; the map has them now.
  std::uint64_t seen = 0;
  float confidence = 1;
  if (c.kind != MapChangeKind::kUnmapped) {
    if (const auto e = corr_.map().find(c.vdisk, c.voffset)) {
      seen = e->last_seen_ns;
      confidence = e->confidence;
    }
  }
  map_log_->change(c, seen, confidence);
}

void Agent::write_log(std::uint64_t now) {
  if (!map_log_) return;
  const bool write = now >= next_log_write_ns_ || map_log_->buffered() >= kLogBatchBytes;
  const bool sync = now >= next_log_sync_ns_;
  if (!write && !sync) return;
  try {
    map_log_->flush(sync);
  } catch (const Error& e) {
    ++stats_.log_write_errors;  // kept buffered: the next write retries, the snapshot covers it
    o_.log(fmt::format("map log not written: {}", e.what()));
  }
  next_log_write_ns_ = now + std::uint64_t{o_.log_write_interval_ms} * 1'000'000;
  if (sync) next_log_sync_ns_ = now + std::uint64_t{o_.log_sync_interval_ms} * 1'000'000;
}

Agent::~Agent() {
  jobs_.close();  // requests waiting for this thread get 503 at once
  http_.reset();
  try {
    persist();
  } catch (const Error& e) {
    o_.log(fmt::format("could not save the map on the way out: {}", e.what()));
  }
  std::error_code ec;
  std::filesystem::remove(o_.query_socket, ec);
  std::filesystem::remove(o_.ingest_socket, ec);
}

void Agent::persist() {
  if (o_.state_dir.empty()) return;
  // Snapshot first, log second: until the rename the old snapshot and the full log stand; after
  // it, the old log's epoch is behind the snapshot's and replay skips it.
  const std::uint32_t epoch = map_log_->epoch() + 1;
  correlator::save_snapshot(corr_, snapshot_path(o_), epoch);
  ++stats_.snapshots_saved;
  map_log_->rotate(epoch);
}

void Agent::log_event(const std::string& line) {
  o_.log(line);
  if (o_.state_dir.empty()) return;
  // The event log: what came and went, for an operator reading history.
  if (std::FILE* f = std::fopen((o_.state_dir / "events.log").c_str(), "a")) {
    const auto now = std::chrono::system_clock::now();
    fmt::print(f, "{:%Y-%m-%dT%H:%M:%S}Z {}\n",
               fmt::gmtime(std::chrono::system_clock::to_time_t(now)), line);
    std::fclose(f);
  }
}

VdiskKey Agent::register_vdisk(const VdiskDeclaration& d) {
  auto [it, added] = vdisk_ids_.try_emplace({d.vm_name, d.vdisk_name});
  if (added) {
    std::uint32_t vm_id = 0;
    if (const auto v = vm_ids_.find(d.vm_name); v != vm_ids_.end()) {
      vm_id = v->second;
    } else {
      for (const auto& [name, id] : vm_ids_) vm_id = std::max(vm_id, id);
      vm_ids_[d.vm_name] = ++vm_id;
    }
    std::uint32_t vdisk_id = 0;
    for (const auto& [names, key] : vdisk_ids_) vdisk_id = std::max(vdisk_id, key.vdisk.value());
    it->second = {VmId{vm_id}, VdiskId{vdisk_id + 1}};
  }
  const VdiskKey key = it->second;
  VdiskDeclaration g = d;
  g.vm_id = key.vm.value();
  g.vdisk_id = key.vdisk.value();
  pending_declarations_.push_back(g);
  return key;
}

void Agent::drop_vdisk(VdiskKey key, std::string_view why) {
  const auto d = corr_.vdisk(key);
  const std::string label = d ? d->vm_name + "/" + d->vdisk_name : "?";
  const auto extents = corr_.map().extents(key).size();
  corr_.mutable_map().unmap(key, VirtualOffset{0}, std::numeric_limits<std::uint64_t>::max());
  if (map_log_) map_log_->drop(key);  // written past the change feed: log it by hand
  if (const auto it = vdisk_devices_.find(key); it != vdisk_devices_.end()) {
    devices_.release(it->second);
    vdisk_devices_.erase(it);
  }
  vdisk_exports_.erase(key);
  added_.erase(key);
  layers_.drop(key);
  ++stats_.vdisks_dropped;
  log_event(fmt::format("vdisk {} dropped ({} extents): {}", label, extents, why));
}

void Agent::remove_vm(const std::string& vm) {
  for (const auto& [names, key] : vdisk_ids_) {
    if (names.first == vm) drop_vdisk(key, "removed by request");
  }
}

void Agent::add_vdisk(const std::string& vm, const std::string& vdisk, const std::string& image) {
  const auto devs = devices_for_image(image);  // a missing image is the caller's error
  const VdiskKey key = register_vdisk({0, 0, vm, vdisk, image});
  for (const auto& d : pending_declarations_) declare(d);  // visible to the next query
  pending_declarations_.clear();
  if (added_.contains(key)) return;
  const auto it = vdisk_exports_.find(key);
  if (it == vdisk_exports_.end() || it->second == 0) {
    devices_.acquire(devs);  // throws when the probe cannot attach: nothing changed yet
    vdisk_devices_[key] = devs;
  }
  ++vdisk_exports_[key];
  added_.insert(key);
  log_event(fmt::format("vdisk {}/{} added by request: image {}", vm, vdisk, image));
}

void Agent::close_export(std::size_t i, std::string_view why) {
  auto& e = *exports_[i];
  o_.log(fmt::format("export pid {} disconnected: {}", e.pid, why));
  for (const auto key : e.vdisks) {
    const auto it = vdisk_exports_.find(key);
    if (it != vdisk_exports_.end() && --it->second == 0) {
      drop_vdisk(key, fmt::format("its export (pid {}) is gone", e.pid));
    }
  }
  if (e.granted_attach != 0 && devices_.probe() != nullptr) devices_.probe()->remove_export(e.pid);
  for (const auto& devs : e.watched) devices_.release(devs);
  layers_.export_gone(e.serial);
  exports_.erase(exports_.begin() + static_cast<std::ptrdiff_t>(i));
}

void Agent::accept_exports() {
  for (;;) {
    Fd fd(::accept4(ingest_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (fd.get() < 0) return;
    auto e = std::make_unique<Export>();
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      e->pid = static_cast<std::uint32_t>(cred.pid);
    }
    e->fd = std::move(fd);
    ++stats_.export_connections;
    e->serial = stats_.export_connections;
    o_.log(fmt::format("export pid {} connected", e->pid));
    exports_.push_back(std::move(e));
  }
}

void Agent::read_exports() {
  std::uint64_t lost = 0;
  for (std::size_t i = 0; i < exports_.size();) {
    auto& e = *exports_[i];
    const auto declare = [this, &e](const VdiskDeclaration& d) {
      const VdiskKey key = register_vdisk(d);
      if (e.vdisks.insert(key).second && vdisk_exports_[key]++ == 0) {
        try {
          const auto devs = devices_for_image(d.image_path);
          devices_.acquire(devs);
          vdisk_devices_[key] = devs;
          log_event(fmt::format("vdisk {}/{} added: image {}, export pid {}", d.vm_name,
                                d.vdisk_name, d.image_path, e.pid));
        } catch (const Error& err) {
          ++stats_.vdisks_skipped;
          log_event(fmt::format("vdisk {}/{} not mapped ({}): skipped, other vdisks are served",
                                d.vm_name, d.vdisk_name, err.what()));
        }
      }
      return key;
    };
    const auto announce = [this, &e](const std::string& image) {
      try {
        auto devs = devices_for_image(image);
        devices_.acquire(devs);
        e.watched.push_back(std::move(devs));
      } catch (const Error& err) {
        ++stats_.vdisks_skipped;
        log_event(
            fmt::format("image {} of export pid {} not watched ({}): skipped, other vdisks "
                        "are served",
                        image, e.pid, err.what()));
      }
    };
    ExportVisitor visitor(e, declare, announce, pending_backends_, records_, lost, layers_);
    std::string failure;
    for (int m = 0; m < kMessagesPerExportRound; ++m) {
      const ssize_t n = ::recv(e.fd.get(), rx_.data(), rx_.size(), MSG_DONTWAIT | MSG_TRUNC);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) failure = "receive failed";
        break;
      }
      if (n == 0) {
        failure = "closed";
        break;
      }
      if (static_cast<std::size_t>(n) > ingest::kMaxMessageBytes) {
        ++stats_.ingest_errors;
        failure = fmt::format("message of {} bytes (the limit is {})", n, ingest::kMaxMessageBytes);
        break;
      }
      try {
        ingest::parse_message({rx_.data(), static_cast<std::size_t>(n)}, visitor);
      } catch (const Error& err) {
        ++stats_.ingest_errors;
        failure = fmt::format("protocol error: {}", err.what());
        break;
      }
    }
    if (failure.empty()) failure = grant_slot_table(e);
    if (!failure.empty()) {
      close_export(i, failure);
      continue;
    }
    ++i;
  }
  stats_.records_lost += lost;
}

// An export with images gets the probe's slot table once the probe watches them (again after a
// re-attach: a new probe has a new table), so its tagged repeats are counted, not sent. Without
// it nothing is wrong: its tagged bios are all sent. Returns a failure to close the export for.
std::string Agent::grant_slot_table(Export& e) {
  pfilter::Probe* probe = devices_.probe();
  if (probe == nullptr || !probe->suppressing() || !e.hello || e.pid == 0) return {};
  if (e.watched.empty() && e.vdisks.empty()) return {};
  if (e.granted_attach == devices_.attaches()) return {};
  std::uint32_t row = 0;
  try {
    row = probe->add_export(e.pid);
  } catch (const Error& err) {
    e.granted_attach = devices_.attaches();  // not again for this probe
    log_event(fmt::format("export pid {}: its repeats are sent ({})", e.pid, err.what()));
    return {};
  }
  ingest::MessageBuilder m;
  m.append(ingest::SlotTableGrant{row, 0});
  if (!send_with_fd(e.fd.get(), m.bytes(), probe->slot_table_fd())) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return {};  // its buffer is full: next round
    return "sending the slot table failed";
  }
  e.granted_attach = devices_.attaches();
  ++stats_.slot_tables_granted;
  return {};
}

void Agent::accept_clients() {
  for (;;) {
    Fd fd(::accept4(query_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (fd.get() < 0) return;
    if (clients_.size() >= o_.max_query_clients) {
      ++stats_.clients_refused;
      static constexpr char kBusy[] =
          "{\"v\":1,\"ok\":false,\"error\":\"too many query clients\"}\n";
      [[maybe_unused]] auto n = ::send(fd.get(), kBusy, sizeof kBusy - 1, MSG_NOSIGNAL);
      continue;
    }
    auto c = std::make_unique<Client>();
    c->fd = std::move(fd);
    clients_.push_back(std::move(c));
  }
}

void Agent::read_clients() {
  char buf[4096];
  for (auto& c : clients_) {
    // A client with an unanswered line waits: its bytes stay in the kernel (bounded memory).
    if (c->closing || c->in.find('\n') != std::string::npos) continue;
    const ssize_t n = ::recv(c->fd.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      c->closing = true;
      c->out.clear();
      continue;
    }
    if (n < 0) continue;
    c->in.append(buf, static_cast<std::size_t>(n));
    if (c->in.find('\n') == std::string::npos && c->in.size() > kMaxRequestBytes) {
      ++stats_.clients_dropped;
      ++stats_.query_errors;
      c->out += fmt::format("{{\"v\":1,\"ok\":false,\"error\":\"request longer than {} bytes\"}}\n",
                            kMaxRequestBytes);
      c->in.clear();
      c->closing = true;
    }
  }
}

void Agent::answer_queries() {
  std::size_t budget = o_.queries_per_round;
  bool more = true;
  while (more && budget > 0) {
    more = false;
    for (auto& c : clients_) {
      if (budget == 0) break;
      const auto nl = c->in.find('\n');
      if (c->closing || nl == std::string::npos) continue;
      std::string_view line(c->in.data(), nl);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      c->out += answer(line);
      c->in.erase(0, nl + 1);
      --budget;
      ++stats_.queries;
      if (c->in.find('\n') != std::string::npos) more = true;
    }
  }
  for (const auto& c : clients_) {
    if (!c->closing && c->in.find('\n') != std::string::npos) ++stats_.queries_deferred;
  }
}

void Agent::write_clients() {
  for (std::size_t i = 0; i < clients_.size();) {
    auto& c = *clients_[i];
    while (!c.out.empty()) {
      const ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        c.out.clear();
        c.closing = true;
        break;
      }
      c.out.erase(0, static_cast<std::size_t>(n));
    }
    if (c.out.size() > o_.query_output_limit) {
      ++stats_.clients_dropped;  // asks without reading: its answers would grow without bound
      c.out.clear();
      c.closing = true;
    }
    if (c.closing && c.out.empty()) {
      clients_.erase(clients_.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    ++i;
  }
}

void Agent::round(int wait_ms) {
  ++stats_.rounds;
  events_.clear();
  records_.clear();
  pfilter::Probe* probe = devices_.probe();
  // Events first: a bio polled now was issued after its vdisk's declaration was sent, so the
  // socket reads below see the declaration (the join tolerates records arriving after bios).
  if (probe != nullptr) {
    probe->poll(1, [this](const PhysEvent& e) {
      if (devices_.watching(e.device())) {
        events_.push_back(e);
      } else {
        ++stats_.events_ignored;
      }
    });
  }
  bool queued = false;
  for (const auto& c : clients_) queued |= !c->closing && c->in.find('\n') != std::string::npos;
  std::vector<pollfd> fds;
  fds.push_back({ingest_.get(), POLLIN, 0});
  fds.push_back({query_.get(), POLLIN, 0});
  fds.push_back({jobs_.fd(), POLLIN, 0});
  for (const auto& e : exports_) fds.push_back({e->fd.get(), POLLIN, 0});
  for (const auto& c : clients_) {
    fds.push_back({c->fd.get(), static_cast<short>(c->out.empty() ? POLLIN : POLLIN | POLLOUT), 0});
  }
  const int timeout = (probe != nullptr || queued || !events_.empty()) ? 0 : wait_ms;
  ::poll(fds.data(), fds.size(), timeout);
  accept_exports();
  accept_clients();
  read_exports();
  read_clients();
  if (devices_.attaches() != noted_attaches_) {
    noted_attaches_ = devices_.attaches();
    const auto pins = devices_.pinned_at();
    o_.log(pins.empty() ? fmt::format("probe attached, unpinned ({} is another probe's or off)",
                                      o_.pin_dir.string())
                        : fmt::format("probe attached, maps pinned at {}", pins.string()));
  }
  for (const auto& d : pending_declarations_) declare(d);
  pending_declarations_.clear();
  for (const auto& b : pending_backends_) {
    corr_.add_backend_process(b.tgid);
    if (const auto line = devices_.add_backend(b.tgid); !line.empty()) log_event(line);
    if (map_log_) map_log_->backend(b.tgid);
  }
  pending_backends_.clear();
  feed_events();
  for (const auto& r : records_) {
    corr_.on_record(r);
    layers_.host_io(r);
  }
  stats_.records_ingested += records_.size();
  // Re-read: a departed export may have detached the probe above.
  if (devices_.probe() != nullptr) corr_.on_lost(devices_.probe()->lost_events());
  const std::uint64_t now = monotonic_ns();
  attach_round(now);
  corr_.advance(now);
  answer_queries();
  jobs_.run_pending(o_.queries_per_round);
  write_clients();
  write_log(now);
  if (!o_.state_dir.empty() && now >= next_snapshot_ns_) {
    try {
      persist();
    } catch (const Error& e) {
      o_.log(fmt::format("snapshot not saved: {}", e.what()));
    }
    next_snapshot_ns_ = now + std::uint64_t{o_.snapshot_interval_ms} * 1'000'000;
  }
}

AgentStats Agent::stats() const {
  AgentStats s = stats_;
  s.exports_connected = exports_.size();
  s.query_clients = clients_.size();
  return s;
}

std::string Agent::status_line() const {
  std::size_t connected = 0;
  for (const auto& [key, n] : vdisk_exports_) connected += n > 0;
  return fmt::format("{} vdisks live, {} extents, {} devices probed, {} records ({} lost)",
                     connected, corr_.map().extent_count(), devices_.device_count(),
                     stats_.records_ingested, stats_.records_lost);
}

}  // namespace v2p::agent
