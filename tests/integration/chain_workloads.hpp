// What the end-to-end chain tests run: one case per (file system, workload), and the client
// command of each workload against an NBD URI. Shared by the tagged and the opaque chain tests so
// both paths see exactly the same I/O.
#pragma once

#include <gtest/gtest.h>

#include <cctype>
#include <string>
#include <vector>

namespace v2p::testing {

struct ChainCase {
  std::string fs;
  std::string workload;  // fio-qd1, fio-qd32, qemu-io
};

inline std::string case_name(const ::testing::TestParamInfo<ChainCase>& info) {
  std::string n = info.param.fs + "_" + info.param.workload;
  for (auto& c : n) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return n;
}

// qemu-io: three regions, one overwritten, two read back with their pattern. fio: 8 MiB of 4 KiB
// random writes at the workload's queue depth, verified with crc32c, ending with an fsync.
inline std::vector<std::string> workload_command(const std::string& kind, const std::string& uri) {
  if (kind == "qemu-io") {
    return {"qemu-io", "-f",
            "raw",     uri,
            "-c",      "write -P 0x11 0 1M",
            "-c",      "write -P 0x22 8M 3M",
            "-c",      "write -P 0x33 512k 256k",
            "-c",      "read -P 0x33 512k 256k",
            "-c",      "read -P 0x22 8M 3M",
            "-c",      "flush"};
  }
  const std::string depth = kind == "fio-qd1" ? "1" : "32";
  return {"fio",
          "--name=chain",
          "--ioengine=nbd",
          "--uri=" + uri,
          "--rw=randwrite",
          "--bs=4k",
          "--iodepth=" + depth,
          "--size=8M",
          "--verify=crc32c",
          "--do_verify=1",
          "--end_fsync=1",
          "--output-format=terse"};
}

}  // namespace v2p::testing
