// A filter built against a future SDK: the entry points written out by hand with ABI + 1, as
// that SDK's V2P_FILTER would stamp them. The host must refuse it before calling create.
#include <v2p/filter.hpp>

#include <cstdlib>

extern "C" V2P_API std::uint32_t v2p_filter_abi() {
  return ::v2p::kSdkAbiVersion + 1;
}
extern "C" V2P_API v2p::Filter* v2p_filter_create(v2p::FilterContext*, const v2p::FilterArgs*) {
  std::abort();  // reaching this means the ABI check did not run first
}
extern "C" V2P_API void v2p_filter_destroy(v2p::Filter*) {
  std::abort();
}
