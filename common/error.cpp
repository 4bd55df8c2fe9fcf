#include "common/error.hpp"

#include <cstring>

namespace v2p {

Error system_error(const std::string& what, int err) {
  return Error(what + ": " + std::strerror(err));
}

}  // namespace v2p
