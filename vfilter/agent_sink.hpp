// A RecordSink that streams the export's declarations and records to the host's `v2p agent`
// over its ingest socket (common/ingest_wire.hpp), without ever holding up the data path:
// publish() only appends to a bounded in-memory queue; one sender thread connects, sends in
// batches, and reconnects with backoff when the agent goes away. Every record that does not
// reach the agent (queue full, agent away) is counted and reported to the agent as lost on the
// next connection, never sent late: the agent cannot have seen its bios, so it could only be
// misattributed. On every (re)connection the sender declares all vdisks and backends again.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "vfilter/export_timings.hpp"
#include "vfilter/record_sink.hpp"

namespace v2p::vfilter {

struct AgentSinkOptions {
  std::filesystem::path socket = "/run/v2p/ingest.sock";
  std::size_t queue_records = 1 << 16;  // bounded: beyond it, publish() drops and counts
  std::chrono::milliseconds min_backoff{50};
  std::chrono::milliseconds max_backoff{2000};
  // Also hand everything to this sink (a record file), when set. Not owned.
  RecordSink* next = nullptr;
  // Time every request (request in -> reply out) and send the export layer's latency to the
  // agent every timings_interval; false: no clock read per request (the observation-cost bench).
  bool timings = true;
  std::chrono::milliseconds timings_interval{1000};
};

struct AgentSinkStats {
  std::uint64_t sent = 0;         // records the agent's socket accepted
  std::uint64_t lost = 0;         // records dropped: queue full or agent away
  std::uint64_t connections = 0;  // successful connections (1 + reconnects)
  bool connected = false;
};

class AgentSink final : public RecordSink {
 public:
  // Starts the sender thread; the agent need not be up (it is tried with backoff).
  explicit AgentSink(AgentSinkOptions options);
  ~AgentSink() override;  // sends what is queued if connected (bounded wait), then stops
  AgentSink(const AgentSink&) = delete;
  AgentSink& operator=(const AgentSink&) = delete;

  void declare(const VdiskDeclaration& d) override;
  void declare_backend(const BackendProcess& b) override;
  void publish(const ContextRecord& r) noexcept override;
  // An image this export serves, announced on every connection before anything else, so the
  // agent watches its devices before a client connects (declarations come at connection time).
  void announce_image(const std::string& path);
  ExportTimings* timings() noexcept override { return options_.timings ? &timings_ : nullptr; }
  [[nodiscard]] AgentSinkStats stats() const;
  // Called (on the sender thread) with the probe's slot table and this export's row when the
  // agent grants them (common/ingest_wire.hpp), again after each re-grant; the fd is closed
  // after the call. A grant that came before the handler was set is delivered when it is set.
  void on_slot_table(std::function<void(int map_fd, std::uint32_t row)> handler);

 private:
  void run();
  int connect_once();
  bool send_batch(int fd, std::size_t& declared, std::size_t& backends_sent);
  bool receive_grants(int fd);
  void deliver_grant(int map_fd, std::uint32_t row);
  bool send_timings(int fd);

  AgentSinkOptions options_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::vector<ContextRecord> ring_;  // fixed capacity: no allocation on publish
  std::size_t head_ = 0, count_ = 0;
  std::vector<VdiskDeclaration> declarations_;
  std::vector<BackendProcess> backends_;
  std::vector<std::string> images_;
  ExportTimings timings_;
  bool stopping_ = false;
  std::atomic<std::uint64_t> sent_{0}, lost_{0}, connections_{0};
  std::atomic<bool> connected_{false};
  std::mutex grant_mu_;
  std::function<void(int, std::uint32_t)> grant_handler_;
  int pending_grant_fd_ = -1;  // a grant received before the handler was set
  std::uint32_t pending_grant_row_ = 0;
  std::thread sender_;
};

}  // namespace v2p::vfilter
