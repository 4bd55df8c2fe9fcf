// `v2p agent`: the host service that keeps every VM's map live (docs/agent.md). One thread runs
// everything in rounds: drain the probe, read the exports' ingest messages, feed the correlator,
// answer a bounded number of queries, persist. Exports are separate processes: the agent can die
// and come back while they keep serving their VMs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "agent/agent_jobs.hpp"
#include "agent/device_watch.hpp"
#include "agent/http_server.hpp"
#include "agent/io_layers.hpp"
#include "agent/map_log.hpp"
#include "agent/observation.hpp"
#include "agent/query_protocol.hpp"
#include "agent/unix_listener.hpp"
#include "common/record_file.hpp"
#include "correlator/correlator.hpp"

namespace v2p::agent {

inline constexpr const char* kDefaultHttpListen = "127.0.0.1:9391";

struct AgentOptions {
  std::filesystem::path query_socket = "/run/v2p/agent.sock";
  std::filesystem::path ingest_socket = "/run/v2p/ingest.sock";
  std::string group;  // group of both sockets ("" = leave root's)
  unsigned socket_mode = 0660;
  std::filesystem::path state_dir = "/var/lib/v2p";  // empty = nothing persisted
  unsigned snapshot_interval_ms = 10'000;
  // The change log between snapshots (map.log): written (survives a kill -9) this often, and
  // fdatasync'ed (survives a host crash) this often.
  unsigned log_write_interval_ms = 200;
  unsigned log_sync_interval_ms = 5'000;
  bool probe = true;  // false: no eBPF (tests without root; map stays empty)
  // Send every bio (debugging). Default: the probe sends only what the map does not know
  // (docs/pfilter.md), and every bio of opaque exports' backends.
  bool every_bio = false;
  // The probe's pins (the bpftool contract) when no other probe owns the directory; "" = none.
  std::filesystem::path pin_dir = "/sys/fs/bpf/v2p";
  std::size_t max_query_clients = 64;          // more are refused (counted)
  std::size_t queries_per_round = 32;          // the rest wait for the next round (counted)
  std::size_t query_output_limit = 16u << 20;  // a client that does not read is dropped
  // Passive attach by itself (docs/attach.md): VM names (QEMU's -name; "qemu-PID" without one)
  // whose qemu-system / qemu-storage-daemon processes it attaches to when it finds them; "*" all.
  // Empty: none (opt-in per VM).
  std::vector<std::string> attach_vms{};
  std::function<void(std::string_view)> log = [](std::string_view) {};
  // /metrics and the web page (agent/http_server.hpp): "HOST:PORT", "" = none. When
  // http_optional, an address that cannot be bound is logged and the agent runs without it.
  std::string http_listen;
  bool http_optional = false;
};

struct AgentStats {
  std::uint64_t rounds = 0;
  std::uint64_t exports_connected = 0;    // now
  std::uint64_t export_connections = 0;   // ever
  std::uint64_t slot_tables_granted = 0;  // probe slot tables sent to exports (SCM_RIGHTS)
  std::uint64_t ingest_errors = 0;        // malformed messages (connection closed)
  std::uint64_t records_ingested = 0;
  std::uint64_t records_lost = 0;    // reported lost by exports (queue full, agent away)
  std::uint64_t events_ignored = 0;  // of a device no vdisk uses any more
  std::uint64_t vdisks_skipped = 0;  // image missing or on an unsupported stack
  std::uint64_t vdisks_dropped = 0;  // export gone: entries removed
  std::uint64_t query_clients = 0;   // now
  std::uint64_t queries = 0;
  std::uint64_t query_errors = 0;
  std::uint64_t queries_deferred = 0;  // left for a later round (budget spent)
  std::uint64_t clients_refused = 0;   // over max_query_clients
  std::uint64_t clients_dropped = 0;   // oversized request or unread answers
  std::uint64_t snapshots_saved = 0;
  std::uint64_t restored_extents = 0;
  std::uint64_t log_records_replayed = 0;  // from map.log on start
  std::uint64_t log_bad_tails = 0;         // torn or corrupt tails cut off on start
  std::uint64_t log_write_errors = 0;
};

class Agent {
 public:
  // Restores the state dir's snapshot, then listens on both sockets. Throws v2p::Error.
  explicit Agent(AgentOptions options);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // One round; waits up to wait_ms when there is nothing to do.
  void round(int wait_ms);
  // Saves the snapshot now, then starts a new change log (also done every
  // snapshot_interval_ms and by the destructor).
  void persist();
  [[nodiscard]] AgentStats stats() const;
  [[nodiscard]] const correlator::Correlator& correlator() const noexcept { return corr_; }
  // One line for `systemctl status` (sd_notify STATUS=).
  [[nodiscard]] std::string status_line() const;
  // Every vdisk's and probed device's counters and latency per layer (agent/observation.hpp).
  [[nodiscard]] Observation observe();
  // The HTTP server's address ("" when none), and the answer to one GET (agent/agent_web.cpp).
  [[nodiscard]] std::string http_address() const;
  HttpAnswer http(const std::string& path, const HttpParams& params);

  struct Export;
  struct Client;

 private:
  void accept_exports();
  void accept_clients();
  void read_exports();
  void read_clients();
  void answer_queries();
  void write_clients();
  void close_export(std::size_t i, std::string_view why);
  std::string grant_slot_table(Export& e);
  VdiskKey register_vdisk(const VdiskDeclaration& d);
  void drop_vdisk(VdiskKey key, std::string_view why);
  void remove_vm(const std::string& vm);
  void add_vdisk(const std::string& vm, const std::string& vdisk, const std::string& image);
  void log_event(const std::string& line);
  void restore();
  void restore_backend(std::uint32_t tgid);
  void declare(const VdiskDeclaration& d);
  void on_map_change(const MapChange& c);
  void write_log(std::uint64_t now);
  std::string answer(std::string_view line);
  // agent_attach.cpp: finds opted-in QEMU processes, attaches, detaches the ones that exited.
  void attach_round(std::uint64_t now);
  void feed_events();  // the probe's events, through the attached processes' join
  struct Attached;
  std::map<pid_t, std::unique_ptr<Attached>> attached_;
  std::set<pid_t> attach_refused_;  // tried once, with the reason logged
  std::uint64_t next_attach_scan_ns_ = 0;

  AgentOptions o_;
  correlator::Correlator corr_;
  DeviceWatch devices_;
  Fd ingest_, query_;
  std::vector<std::unique_ptr<Export>> exports_;
  std::vector<std::unique_ptr<Client>> clients_;
  // Agent-wide ids by name: each export numbers its vdisks from 1, the agent renumbers.
  std::map<std::string, std::uint32_t> vm_ids_;
  std::map<std::pair<std::string, std::string>, VdiskKey> vdisk_ids_;
  std::map<VdiskKey, std::vector<DeviceId>> vdisk_devices_;  // the probed ones
  std::map<VdiskKey, unsigned> vdisk_exports_;  // connected exports declaring it (+1 if added)
  std::set<VdiskKey> added_;                    // by `v2p vm add`: kept until `vm remove`
  std::vector<VdiskDeclaration> pending_declarations_;
  std::vector<BackendProcess> pending_backends_;
  std::vector<PhysEvent> events_;
  std::vector<ContextRecord> records_;
  std::vector<std::byte> rx_;
  AgentStats stats_;
  IoLayers layers_;
  std::uint64_t noted_attaches_ = 0;
  std::map<std::uint32_t, std::string> device_names_;  // kernel number -> sysfs name
  std::uint64_t lost_from_closed_ = 0;
  std::uint64_t next_snapshot_ns_ = 0;
  std::unique_ptr<MapLogWriter> map_log_;  // null without a state dir
  std::uint64_t next_log_write_ns_ = 0;
  std::uint64_t next_log_sync_ns_ = 0;
  AgentJobs jobs_;
  std::unique_ptr<HttpServer> http_;  // last: stopped first, before what its requests read
};

}  // namespace v2p::agent
