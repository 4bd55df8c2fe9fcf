// The vfilter's RecordSink seen by the policy host: every declaration and completed request goes
// to the next sink (the record file, or none) and to the host's queue. Publishing never blocks
// and never throws, whatever the policies do.
#pragma once

#include "policy/host/policy_host.hpp"
#include "vfilter/record_sink.hpp"

namespace v2p::policy {

class RecordTee final : public vfilter::RecordSink {
 public:
  // `next` may be null (no record file). Neither is owned.
  RecordTee(PolicyHost& host, vfilter::RecordSink* next) : host_(host), next_(next) {}

  void declare(const VdiskDeclaration& d) override {
    if (next_ != nullptr) next_->declare(d);
    host_.declare(d);
  }
  // Policies see backend processes only through the map the correlator makes of their I/O.
  void declare_backend(const BackendProcess& b) override {
    if (next_ != nullptr) next_->declare_backend(b);
  }
  void publish(const ContextRecord& r) noexcept override {
    if (next_ != nullptr) next_->publish(r);
    host_.publish(r);
  }

 private:
  PolicyHost& host_;
  vfilter::RecordSink* next_;
};

}  // namespace v2p::policy
