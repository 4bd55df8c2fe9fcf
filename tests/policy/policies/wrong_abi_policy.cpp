// A policy built against a future SDK: the entry points written out by hand with ABI 2, as the
// V2P_POLICY of that SDK would stamp them. The host must refuse it before calling create.
#include <v2p/policy.hpp>

#include <cstdlib>

extern "C" V2P_API std::uint32_t v2p_policy_abi() {
  return ::v2p::kSdkAbiVersion + 1;
}
extern "C" V2P_API v2p::Policy* v2p_policy_create(v2p::PolicyContext*, const v2p::PolicyArgs*) {
  std::abort();  // reaching this means the ABI check did not run first
}
extern "C" V2P_API void v2p_policy_destroy(v2p::Policy*) {
  std::abort();
}
