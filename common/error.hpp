// Errors at the edges: configuration and set-up failures carry a sentence a person can act on.
// Hot paths do not throw; they return 0 or -errno and convert once, here.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>

namespace v2p {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "what: strerror(err)" as an Error, for failed system calls.
[[nodiscard]] Error system_error(const std::string& what, int err = errno);

// Throws system_error when a 0-or-negative-errno style return is negative.
inline void check_errno_result(int rc, const std::string& what) {
  if (rc < 0) throw system_error(what, -rc);
}

}  // namespace v2p
