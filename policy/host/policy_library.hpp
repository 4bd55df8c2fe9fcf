// One policy shared object, opened and checked: the loader half of the policy host, on the
// loader filters share (PluginLibrary). Opening validates the ABI stamp, then the V2P_POLICY
// entry points, before anything else runs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "policy/host/plugin_library.hpp"
#include "v2p/policy.hpp"

namespace v2p::policy {

class PolicyLibrary {
 public:
  using CreateFn = Policy* (*)(PolicyContext*, const PolicyArgs*);
  using DestroyFn = void (*)(Policy*);

  // dlopen(RTLD_NOW | RTLD_LOCAL), then checks the entry points and v2p_policy_abi() against
  // kSdkAbiVersion. Throws v2p::Error ("policy X.so was built for SDK ABI 3, this v2p has ABI 2;
  // rebuild it against v2p 0.1").
  static std::unique_ptr<PolicyLibrary> open(const std::filesystem::path& file);
  ~PolicyLibrary() = default;  // dlclose; every Policy it created must be destroyed first
  PolicyLibrary(const PolicyLibrary&) = delete;
  PolicyLibrary& operator=(const PolicyLibrary&) = delete;

  // Calls v2p_policy_create; an exception from the policy's constructor (or a null result)
  // becomes v2p::Error naming the file. The result is released with destroy().
  [[nodiscard]] Policy* create(PolicyContext& context, const PolicyArgs& args) const;
  void destroy(Policy* policy) const noexcept;

  [[nodiscard]] const std::filesystem::path& file() const noexcept { return plugin_->file(); }
  [[nodiscard]] std::uint32_t abi() const noexcept { return plugin_->abi(); }

 private:
  explicit PolicyLibrary(std::unique_ptr<PluginLibrary> plugin) : plugin_(std::move(plugin)) {}
  std::unique_ptr<PluginLibrary> plugin_;
  CreateFn create_ = nullptr;
  DestroyFn destroy_ = nullptr;
};

}  // namespace v2p::policy
