// The per-process sequence number of context records, shared by every frontend (NBD
// connections, vhost-user queues) so a consumer can detect loss across all of them.
#pragma once

#include <cstdint>

namespace v2p::vfilter {

std::uint64_t next_record_seq() noexcept;

}  // namespace v2p::vfilter
