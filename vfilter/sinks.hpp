// Two ready-made RecordSinks: a v2p stream file, and an in-memory queue the correlator drains
// in-process. Both are safe to call from any number of server threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <vector>

#include "common/record_file.hpp"
#include "vfilter/record_sink.hpp"

namespace v2p::vfilter {

class RecordFileSink final : public RecordSink {
 public:
  // Creates (truncates) `path`; throws v2p::Error when it cannot.
  explicit RecordFileSink(const std::filesystem::path& path);
  void declare(const VdiskDeclaration& d) override;
  void declare_backend(const BackendProcess& b) override;
  void publish(const ContextRecord& r) noexcept override;
  // Pushes buffered frames to the file (durable = also fsync).
  void flush(bool durable = false);
  // Records that could not be written (disk full …), so a reader can tell a gap from silence.
  [[nodiscard]] std::uint64_t dropped() const noexcept { return dropped_.load(); }

 private:
  std::mutex mu_;
  StreamWriter writer_;
  std::atomic<std::uint64_t> dropped_{0};
};

class QueueSink final : public RecordSink {
 public:
  void declare(const VdiskDeclaration& d) override;
  void declare_backend(const BackendProcess& b) override;
  void publish(const ContextRecord& r) noexcept override;
  // Everything published since the last call, in completion order.
  std::vector<ContextRecord> drain();
  // Declarations made since the last call.
  std::vector<VdiskDeclaration> drain_declarations();
  // Backend processes declared since the last call.
  std::vector<BackendProcess> drain_backends();
  // Every declaration ever made (a late consumer still learns the names).
  std::vector<VdiskDeclaration> declarations() const;
  // Records dropped because allocation failed on the completion path.
  [[nodiscard]] std::uint64_t dropped() const noexcept { return dropped_.load(); }

 private:
  mutable std::mutex mu_;
  std::vector<ContextRecord> records_;
  std::vector<VdiskDeclaration> pending_declarations_;
  std::vector<VdiskDeclaration> all_declarations_;
  std::vector<BackendProcess> pending_backends_;
  std::atomic<std::uint64_t> dropped_{0};
};

}  // namespace v2p::vfilter
