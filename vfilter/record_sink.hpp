// Where the vfilter's virtual-layer stream goes. Called from server threads, concurrently.
#pragma once

#include "common/record_file.hpp"
#include "v2p/records.hpp"

namespace v2p::vfilter {

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
};

}  // namespace v2p::vfilter
