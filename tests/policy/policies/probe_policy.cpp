// A well-behaved test policy that narrates every call through PolicyContext::log, one line per
// call, so the loader tests can check order, counts and what each hook saw.
#include <v2p/policy.hpp>

#include <string>

namespace {

class ProbePolicy final : public v2p::Policy {
 public:
  ProbePolicy(v2p::PolicyContext& context, const v2p::PolicyArgs& args) : context_(context) {
    std::string line = "created args=";
    for (const auto& [k, v] : args) line += k + "=" + v + ";";
    line += context_.cache() == nullptr ? " cache=none" : " cache=set";
    line += context_.tier() == nullptr ? " tier=none" : " tier=set";
    context_.log(line);
  }
  ~ProbePolicy() override { context_.log("destroyed"); }

  [[nodiscard]] std::string_view name() const override { return "probe"; }

  void on_io(const v2p::IoEvent& e) override {
    const v2p::ExtentRef extent{e.vdisk, e.voffset.value() / context_.heat().extent_bytes()};
    context_.log("io op=" + std::to_string(static_cast<int>(e.op)) +
                 " vm=" + std::string(e.vm_name) + " vdisk=" + std::string(e.vdisk_name) +
                 " named=" + context_.vm_name(e.vdisk.vm) + "/" + context_.vdisk_name(e.vdisk) +
                 " off=" + std::to_string(e.voffset.value()) + " len=" + std::to_string(e.length) +
                 " heat=" + std::to_string(context_.heat().heat(extent, e.time_ns)) +
                 " latency_count=" + std::to_string(context_.latency(e.vdisk).count) +
                 " physical=" + (e.has_physical ? std::to_string(e.sector.value()) : "none"));
  }
  void on_map_change(const v2p::MapChange& c) override {
    context_.log("map kind=" + std::to_string(static_cast<int>(c.kind)) +
                 " off=" + std::to_string(c.voffset.value()) + " len=" + std::to_string(c.length) +
                 " mapped_bytes=" + std::to_string(context_.map().mapped_bytes(c.vdisk)));
  }
  void on_tick(std::uint64_t now_ns) override {
    context_.log("tick now=" + std::to_string(now_ns));
  }
  [[nodiscard]] v2p::Admission admit(const v2p::IoEvent& miss) const override {
    return miss.vdisk_name == "probe-admit" ? v2p::Admission::kAdmit : v2p::Admission::kDefault;
  }

 private:
  v2p::PolicyContext& context_;
};

}  // namespace

V2P_POLICY(ProbePolicy)
