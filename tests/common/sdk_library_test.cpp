// Links against the shared libv2p only, as a policy author's program would.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include "v2p/sdk.hpp"

namespace {

TEST(SdkLibrary, ReportsTheAbiItWasBuiltWith) {
  const auto v = v2p::sdk_version();
  EXPECT_EQ(v.abi, v2p::kSdkAbiVersion);
  EXPECT_STREQ(v.version, v2p::kSdkVersionString);
}

TEST(SdkLibrary, InternalSymbolsStayHidden) {
  void* self = dlopen("libv2p.so." V2P_SOVERSION_STRING, RTLD_NOW | RTLD_NOLOAD);
  ASSERT_NE(self, nullptr) << dlerror();
  EXPECT_NE(dlsym(self, "_ZN3v2p11sdk_versionEv"), nullptr);
  // v2p::system_error(std::string const&, int) is internal to the library.
  EXPECT_EQ(
      dlsym(self, "_ZN3v2p12system_errorERKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEEi"),
      nullptr);
  dlclose(self);
}

}  // namespace
