// gRPC's library is reference-counted per channel and server: when the last one goes, grpc_shutdown
// runs and can block for seconds (it waits for its timer threads). A host service and its tests
// create and drop channels all the time, so the library is initialised once and kept.
#pragma once

namespace v2p::cluster {

void keep_grpc_initialised();

}  // namespace v2p::cluster
