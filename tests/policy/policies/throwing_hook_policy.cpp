// Throws from the hook named by its `hook` argument (on_io, on_tick, on_map_change, admit) the
// first time that hook runs; the host must report it once, unload it and keep serving.
#include <v2p/policy.hpp>

#include <stdexcept>
#include <string>

namespace {

class ThrowingHook final : public v2p::Policy {
 public:
  ThrowingHook(v2p::PolicyContext& context, const v2p::PolicyArgs& args) : context_(context) {
    for (const auto& [k, v] : args) {
      if (k == "hook") hook_ = v;
    }
  }
  ~ThrowingHook() override { context_.log("destroyed"); }
  [[nodiscard]] std::string_view name() const override { return "thrower"; }
  void on_io(const v2p::IoEvent&) override { maybe_throw("on_io"); }
  void on_map_change(const v2p::MapChange&) override { maybe_throw("on_map_change"); }
  void on_tick(std::uint64_t) override { maybe_throw("on_tick"); }
  [[nodiscard]] v2p::Admission admit(const v2p::IoEvent&) const override {
    if (hook_ == "admit") throw std::runtime_error("deliberate failure in admit");
    return v2p::Admission::kBypass;
  }

 private:
  void maybe_throw(const char* hook) {
    if (hook_ == hook) throw std::runtime_error(std::string("deliberate failure in ") + hook);
  }
  v2p::PolicyContext& context_;
  std::string hook_;
};

}  // namespace

V2P_POLICY(ThrowingHook)
