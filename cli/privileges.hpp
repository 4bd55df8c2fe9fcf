// The checks that turn "permission denied" deep inside libbpf into one sentence up front.
#pragma once

namespace v2p::cli {

// Throws v2p::Error with a one-line reason when not root or when the kernel has no BTF.
void require_root_and_btf(const char* what);

}  // namespace v2p::cli
