#include "policy/host/policy_library.hpp"

#include <fmt/core.h>

#include <exception>

#include "common/error.hpp"

namespace v2p::policy {

std::unique_ptr<PolicyLibrary> PolicyLibrary::open(const std::filesystem::path& file) {
  std::unique_ptr<PolicyLibrary> lib(new PolicyLibrary(PluginLibrary::open(file, kPolicyPlugin)));
  lib->create_ = reinterpret_cast<CreateFn>(lib->plugin_->entry_point("create"));
  lib->destroy_ = reinterpret_cast<DestroyFn>(lib->plugin_->entry_point("destroy"));
  return lib;
}

Policy* PolicyLibrary::create(PolicyContext& context, const PolicyArgs& args) const {
  const std::string name = plugin_->name();
  Policy* p = nullptr;
  try {
    p = create_(&context, &args);
  } catch (const std::exception& e) {
    throw Error(fmt::format("policy {} refused its arguments: {}", name, e.what()));
  } catch (...) {
    throw Error(fmt::format("policy {} threw a non-standard exception while starting", name));
  }
  if (p == nullptr) throw Error(fmt::format("policy {}: v2p_policy_create returned null", name));
  return p;
}

void PolicyLibrary::destroy(Policy* policy) const noexcept {
  try {
    destroy_(policy);
  } catch (...) {  // a destructor that throws ends in terminate elsewhere; here it is only lost
  }
}

}  // namespace v2p::policy
