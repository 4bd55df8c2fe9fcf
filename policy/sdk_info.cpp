#include "v2p/sdk.hpp"

namespace v2p {

SdkVersion sdk_version() noexcept {
  return {kSdkAbiVersion, kSdkVersionString};
}

}  // namespace v2p
