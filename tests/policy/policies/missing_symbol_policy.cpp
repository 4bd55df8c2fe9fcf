// A plug-in written without V2P_POLICY: it stamps the ABI but forgets v2p_policy_destroy.
#include <v2p/policy.hpp>

#include <cstdlib>

extern "C" V2P_API std::uint32_t v2p_policy_abi() {
  return ::v2p::kSdkAbiVersion;
}
extern "C" V2P_API v2p::Policy* v2p_policy_create(v2p::PolicyContext*, const v2p::PolicyArgs*) {
  std::abort();
}
