#include "cluster/grpc_runtime.hpp"

#include <grpc/grpc.h>

namespace v2p::cluster {

void keep_grpc_initialised() {
  // Never shut down: the count stays above zero for the life of the process.
  static const bool initialised = (grpc_init(), true);
  (void)initialised;
}

}  // namespace v2p::cluster
