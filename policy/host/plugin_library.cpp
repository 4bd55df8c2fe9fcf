#include "policy/host/plugin_library.hpp"

#include <dlfcn.h>
#include <fmt/core.h>

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

std::unique_ptr<PluginLibrary> PluginLibrary::open(const std::filesystem::path& file,
                                                   const PluginKind& kind) {
  // A bare name would make dlopen search the library path: a plug-in is always a file.
  const std::string path = file.has_parent_path() ? file.string() : "./" + file.string();
  ::dlerror();
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    throw Error(fmt::format("cannot load {} {}: {}", kind.noun, file.filename().string(),
                            why ? why : "unknown dlopen error"));
  }
  std::unique_ptr<PluginLibrary> lib(new PluginLibrary(file, kind, handle));
  // The ABI stamp first: the other entry points' signatures are only meaningful if it matches.
  using AbiFn = std::uint32_t (*)();
  lib->abi_ = reinterpret_cast<AbiFn>(lib->entry_point("abi"))();
  if (lib->abi_ != kSdkAbiVersion) {
    throw Error(fmt::format(
        "{} {} was built for SDK ABI {}, this v2p has ABI {}; rebuild it against v2p {}", kind.noun,
        lib->name(), lib->abi_, kSdkAbiVersion, sdk_release()));
  }
  return lib;
}

void* PluginLibrary::entry_point(const char* suffix) const {
  const std::string symbol = fmt::format("v2p_{}_{}", kind_.noun, suffix);
  ::dlerror();
  void* p = ::dlsym(handle_, symbol.c_str());
  if (p == nullptr) {
    throw Error(fmt::format("{} {} does not export {}: build it with {}", kind_.noun, name(),
                            symbol, kind_.register_with));
  }
  return p;
}

PluginLibrary::~PluginLibrary() {
  if (handle_ != nullptr) ::dlclose(handle_);
}

}  // namespace v2p::policy
