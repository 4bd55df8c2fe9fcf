#include "vfilter/sinks.hpp"

#include <new>

namespace v2p::vfilter {

RecordFileSink::RecordFileSink(const std::filesystem::path& path) : writer_(path) {}

void RecordFileSink::declare(const VdiskDeclaration& d) {
  std::lock_guard lock(mu_);
  writer_.write(d);
  // Declarations are rare and a reader needs them before any record: push them out now.
  writer_.flush();
}

void RecordFileSink::declare_backend(const BackendProcess& b) {
  std::lock_guard lock(mu_);
  writer_.write(b);
  writer_.flush();
}

void RecordFileSink::publish(const ContextRecord& r) noexcept {
  try {
    std::lock_guard lock(mu_);
    writer_.write(r);
  } catch (...) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
  }
}

void RecordFileSink::flush(bool durable) {
  std::lock_guard lock(mu_);
  writer_.flush(durable);
}

void QueueSink::declare(const VdiskDeclaration& d) {
  std::lock_guard lock(mu_);
  pending_declarations_.push_back(d);
  all_declarations_.push_back(d);
}

void QueueSink::declare_backend(const BackendProcess& b) {
  std::lock_guard lock(mu_);
  pending_backends_.push_back(b);
}

void QueueSink::publish(const ContextRecord& r) noexcept {
  try {
    std::lock_guard lock(mu_);
    records_.push_back(r);
  } catch (const std::bad_alloc&) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
  }
}

std::vector<ContextRecord> QueueSink::drain() {
  std::vector<ContextRecord> out;
  std::lock_guard lock(mu_);
  out.swap(records_);
  return out;
}

std::vector<VdiskDeclaration> QueueSink::drain_declarations() {
  std::vector<VdiskDeclaration> out;
  std::lock_guard lock(mu_);
  out.swap(pending_declarations_);
  return out;
}

std::vector<BackendProcess> QueueSink::drain_backends() {
  std::vector<BackendProcess> out;
  std::lock_guard lock(mu_);
  out.swap(pending_backends_);
  return out;
}

std::vector<VdiskDeclaration> QueueSink::declarations() const {
  std::lock_guard lock(mu_);
  return all_declarations_;
}

}  // namespace v2p::vfilter
