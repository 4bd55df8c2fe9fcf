// A plug-in shared object (a policy or a filter), opened and ABI-checked: the one loader both
// kinds share. Opening checks the `v2p_<kind>_abi` stamp against kSdkAbiVersion before any other
// entry point is looked up, and turns every way a file can be wrong into one sentence
// (v2p::Error) an operator can act on.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

namespace v2p::policy {

struct PluginKind {
  const char* noun;           // "policy", "filter": the entry points are v2p_<noun>_abi, …
  const char* register_with;  // how an author fixes a missing symbol
};

inline constexpr PluginKind kPolicyPlugin{"policy", "V2P_POLICY(ClassName) from <v2p/policy.hpp>"};
inline constexpr PluginKind kFilterPlugin{"filter", "V2P_FILTER(ClassName) from <v2p/filter.hpp>"};

class PluginLibrary {
 public:
  // dlopen(RTLD_NOW | RTLD_LOCAL), then the ABI stamp. Throws v2p::Error ("filter X.so was built
  // for SDK ABI 3, this v2p has ABI 2; rebuild it against v2p 0.1").
  static std::unique_ptr<PluginLibrary> open(const std::filesystem::path& file,
                                             const PluginKind& kind);
  ~PluginLibrary();  // dlclose; everything the plug-in created must be gone first
  PluginLibrary(const PluginLibrary&) = delete;
  PluginLibrary& operator=(const PluginLibrary&) = delete;

  // The entry point v2p_<noun>_<suffix>; throws naming the file and the macro when absent.
  [[nodiscard]] void* entry_point(const char* suffix) const;

  [[nodiscard]] const std::filesystem::path& file() const noexcept { return file_; }
  [[nodiscard]] std::string name() const { return file_.filename().string(); }
  [[nodiscard]] const PluginKind& kind() const noexcept { return kind_; }
  [[nodiscard]] std::uint32_t abi() const noexcept { return abi_; }

 private:
  PluginLibrary(std::filesystem::path file, const PluginKind& kind, void* handle)
      : file_(std::move(file)), kind_(kind), handle_(handle) {}
  std::filesystem::path file_;
  PluginKind kind_;
  void* handle_ = nullptr;
  std::uint32_t abi_ = 0;
};

// "0.1" from "0.1.0": the release a plug-in should be rebuilt against.
std::string sdk_release();

}  // namespace v2p::policy
