// `v2p ec status` output: the text table and the --json form of a PoolStatus.
#pragma once

#include <string>

#include "ec/pool.hpp"

namespace v2p::ec {

[[nodiscard]] std::string status_text(const PoolStatus& s);
[[nodiscard]] std::string status_json(const PoolStatus& s);

}  // namespace v2p::ec
