// One policy shared object, opened and checked: the loader half of the policy host. Opening
// validates the three V2P_POLICY entry points and the ABI stamp before anything else runs, and
// turns every way a file can be wrong into one sentence (v2p::Error) an operator can act on.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "v2p/policy.hpp"

namespace v2p::policy {

class PolicyLibrary {
 public:
  using AbiFn = std::uint32_t (*)();
  using CreateFn = Policy* (*)(PolicyContext*, const PolicyArgs*);
  using DestroyFn = void (*)(Policy*);

  // dlopen(RTLD_NOW | RTLD_LOCAL), then checks the entry points and v2p_policy_abi() against
  // kSdkAbiVersion. Throws v2p::Error ("policy X.so was built for SDK ABI 2, this v2p has ABI 1;
  // rebuild it against v2p 0.1").
  static std::unique_ptr<PolicyLibrary> open(const std::filesystem::path& file);
  ~PolicyLibrary();  // dlclose; every Policy it created must be destroyed first
  PolicyLibrary(const PolicyLibrary&) = delete;
  PolicyLibrary& operator=(const PolicyLibrary&) = delete;

  // Calls v2p_policy_create; an exception from the policy's constructor (or a null result)
  // becomes v2p::Error naming the file. The result is released with destroy().
  [[nodiscard]] Policy* create(PolicyContext& context, const PolicyArgs& args) const;
  void destroy(Policy* policy) const noexcept;

  [[nodiscard]] const std::filesystem::path& file() const noexcept { return file_; }
  [[nodiscard]] std::uint32_t abi() const noexcept { return abi_; }

 private:
  PolicyLibrary(std::filesystem::path file, void* handle)
      : file_(std::move(file)), handle_(handle) {}
  std::filesystem::path file_;
  void* handle_ = nullptr;
  std::uint32_t abi_ = 0;
  CreateFn create_ = nullptr;
  DestroyFn destroy_ = nullptr;
};

// "0.1" from "0.1.0": the release a policy should be rebuilt against.
std::string sdk_release();

}  // namespace v2p::policy
