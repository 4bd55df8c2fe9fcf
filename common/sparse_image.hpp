// Creating the sparse raw vdisk images the demo and the tests serve.
#pragma once

#include <cstdint>
#include <filesystem>

namespace v2p {

// Creates (truncates) a sparse raw image of `bytes`. With `nocow` the file is marked NOCOW
// first, as libvirt does on btrfs: with data checksums on, btrfs turns O_DIRECT writes into
// buffered ones (measured on 6.18) whose writeback bios no longer carry the ioprio tag. The
// flag only takes while the file is empty. Throws v2p::Error.
void create_sparse_image(const std::filesystem::path& image, std::uint64_t bytes, bool nocow);

}  // namespace v2p
