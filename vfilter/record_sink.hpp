// Where the vfilter's virtual-layer stream goes. Called from server threads, concurrently.
#pragma once

#include "common/record_file.hpp"
#include "v2p/records.hpp"

namespace v2p::vfilter {

class ExportTimings;

class RecordSink {
 public:
  virtual ~RecordSink() = default;
  // Once per vdisk, before its first record. May block briefly (file I/O).
  virtual void declare(const VdiskDeclaration& d) = 0;
  // A process doing the host I/O of a declared vdisk untagged (an upstream NBD server); right
  // after the vdisk's declaration, before its first record. May block briefly.
  virtual void declare_backend(const BackendProcess& b) = 0;
  // One per completed host I/O, on the completion path: must not throw, should not block long.
  virtual void publish(const ContextRecord& r) noexcept = 0;
  // Where connections time their requests (request in -> reply out); null: nobody wants them,
  // and the data path reads no clock for it.
  virtual ExportTimings* timings() noexcept { return nullptr; }
};

}  // namespace v2p::vfilter
