#include "policy/host/policy_library.hpp"

#include <dlfcn.h>
#include <fmt/core.h>

#include <exception>
#include <string_view>

#include "common/error.hpp"
#include "v2p/sdk.hpp"

namespace v2p::policy {

std::string sdk_release() {
  const std::string_view v = kSdkVersionString;
  const auto first = v.find('.');
  const auto second = first == std::string_view::npos ? first : v.find('.', first + 1);
  return std::string(v.substr(0, second));
}

std::unique_ptr<PolicyLibrary> PolicyLibrary::open(const std::filesystem::path& file) {
  const std::string name = file.filename().string();
  // A bare name would make dlopen search the library path: a policy is always a file.
  const std::string path = file.has_parent_path() ? file.string() : "./" + file.string();
  ::dlerror();
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    throw Error(fmt::format("cannot load policy {}: {}", name, why ? why : "unknown dlopen error"));
  }
  std::unique_ptr<PolicyLibrary> lib(new PolicyLibrary(file, handle));
  const auto symbol = [&](const char* sym) {
    ::dlerror();
    void* p = ::dlsym(handle, sym);
    if (p == nullptr) {
      throw Error(fmt::format(
          "policy {} does not export {}: build it with V2P_POLICY(ClassName) from <v2p/policy.hpp>",
          name, sym));
    }
    return p;
  };
  // The ABI stamp first: the other entry points' signatures are only meaningful if it matches.
  const auto abi = reinterpret_cast<AbiFn>(symbol("v2p_policy_abi"));
  lib->abi_ = abi();
  if (lib->abi_ != kSdkAbiVersion) {
    throw Error(fmt::format(
        "policy {} was built for SDK ABI {}, this v2p has ABI {}; rebuild it against v2p {}", name,
        lib->abi_, kSdkAbiVersion, sdk_release()));
  }
  lib->create_ = reinterpret_cast<CreateFn>(symbol("v2p_policy_create"));
  lib->destroy_ = reinterpret_cast<DestroyFn>(symbol("v2p_policy_destroy"));
  return lib;
}

PolicyLibrary::~PolicyLibrary() {
  if (handle_ != nullptr) ::dlclose(handle_);
}

Policy* PolicyLibrary::create(PolicyContext& context, const PolicyArgs& args) const {
  const std::string name = file_.filename().string();
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
