// The export -> agent ingest protocol: SOCK_SEQPACKET messages on a unix socket, each message a
// run of v2p stream frames (u16 type, u16 reserved, u32 length, payload; docs/agent.md). The
// record frames are the stream file's; two frame types exist only here (hello, lost records).
// SEQPACKET keeps message boundaries and can carry file descriptors (SCM_RIGHTS) later.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/record_file.hpp"

namespace v2p::ingest {

inline constexpr std::uint32_t kProtocolVersion = 1;
// No message is larger: the agent's receive buffer, and the sender's batch limit.
inline constexpr std::size_t kMaxMessageBytes = 64 * 1024;

// Frame types of the ingest protocol that are not stream-file frames.
inline constexpr std::uint16_t kHelloFrame = 100;        // first frame of every connection
inline constexpr std::uint16_t kLostRecordsFrame = 101;  // records the export could not send
// An image the export serves, sent at connection before any client: the agent attaches the
// probe to its devices before the first I/O. Payload: the absolute path, at most kMaxPathBytes.
inline constexpr std::uint16_t kImageFrame = 102;
inline constexpr std::size_t kMaxPathBytes = 4096;
// The export's request timings for one vdisk and op class, cumulative since the export started
// (so a lost message costs resolution, never counts), sent about once a second.
inline constexpr std::uint16_t kExportLatencyFrame = 103;

// The only agent -> export message: the probe's slot table (its map fd rides along as
// SCM_RIGHTS) and the row the export publishes its slot contexts in (pfilter/slot_table.hpp), so
// the kernel can tell the export's tagged repeats from news. Sent after the agent attached the
// probe for the export's images, and again after a re-attach.
inline constexpr std::uint16_t kSlotTableFrame = 104;
struct SlotTableGrant {
  std::uint32_t row = 0;
  std::uint32_t reserved = 0;
};
static_assert(sizeof(SlotTableGrant) == 8);

struct Hello {
  std::uint32_t version = kProtocolVersion;
  std::uint32_t pid = 0;
};
static_assert(sizeof(Hello) == 8);

// Cumulative count of records the export dropped (queue full, agent away) since it started.
struct LostRecords {
  std::uint64_t lost_total = 0;
};
static_assert(sizeof(LostRecords) == 8);

// NBD request in -> reply out, as the export timed it (docs/observe.md).
struct ExportLatency {
  std::uint32_t vm_id = 0;
  std::uint32_t vdisk_id = 0;
  std::uint32_t op = 0;  // 0 read, 1 write, 2 other (flush, trim, write zeroes)
  std::uint32_t reserved = 0;
  std::uint64_t requests = 0;
  std::uint64_t bytes = 0;
  std::uint64_t sum_ns = 0;
  std::uint64_t buckets[32] = {};  // common/latency_histogram.hpp's layout
};
static_assert(sizeof(ExportLatency) == 296);

// Builds one message. append_* return false (and add nothing) when the frame would not fit.
class MessageBuilder {
 public:
  bool append(std::uint16_t type, std::span<const std::byte> payload);
  bool append(const ContextRecord& r);
  bool append(const VdiskDeclaration& d);
  bool append(const BackendProcess& b);
  bool append(const Hello& h);
  bool append(const LostRecords& l);
  bool append_image(const std::string& path);
  bool append(const SlotTableGrant& g);
  bool append(const ExportLatency& l);
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return buf_; }
  [[nodiscard]] bool empty() const noexcept { return buf_.empty(); }
  void clear() noexcept { buf_.clear(); }

 private:
  std::vector<std::byte> buf_;
};

// What a message contains, delivered frame by frame.
class MessageVisitor {
 public:
  virtual ~MessageVisitor() = default;
  virtual void on_hello(const Hello& h) = 0;
  virtual void on_declaration(const VdiskDeclaration& d) = 0;
  virtual void on_backend(const BackendProcess& b) = 0;
  virtual void on_record(const ContextRecord& r) = 0;
  virtual void on_lost(const LostRecords& l) = 0;
  virtual void on_image(const std::string& path) = 0;
  virtual void on_export_latency(const ExportLatency& /*l*/) {}
};

// Parses one received message; every length is checked against the message. Throws v2p::Error
// on a truncated frame, a wrong fixed size or an unknown frame type (frames before the bad one
// have been delivered).
void parse_message(std::span<const std::byte> message, MessageVisitor& visitor);

// The grant of an agent -> export message; throws v2p::Error when the message is anything else.
[[nodiscard]] SlotTableGrant parse_grant(std::span<const std::byte> message);

}  // namespace v2p::ingest
