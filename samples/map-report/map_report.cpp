// v2p-map-report: for each VM in a saved map, how many bytes of each vdisk are placed, on how
// many extents, and on which devices — the questions a capacity or placement policy asks first.
#include <v2p/map.hpp>
#include <v2p/sdk.hpp>
#include <v2p/snapshot.hpp>

#include <cstdio>
#include <exception>
#include <map>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s SNAPSHOT   (from `v2p map --save-snapshot SNAPSHOT`)\n",
                 argv[0]);
    return 2;
  }
  // A tool built against one SDK may run against another libv2p: say so instead of misbehaving.
  if (v2p::sdk_version().abi != v2p::kSdkAbiVersion) {
    std::fprintf(stderr, "built for SDK ABI %u, running against libv2p ABI %u\n",
                 v2p::kSdkAbiVersion, v2p::sdk_version().abi);
    return 1;
  }
  try {
    const v2p::MapSnapshot snapshot = v2p::load_map_snapshot(argv[1]);
    for (const auto& d : snapshot.vdisks) {
      const v2p::VdiskKey key{v2p::VmId{d.vm_id}, v2p::VdiskId{d.vdisk_id}};
      std::map<std::string, std::uint64_t> bytes_per_device;
      const auto extents = snapshot.map.extents(key);
      for (const auto& e : extents) {
        bytes_per_device[std::to_string(e.device.major()) + ":" +
                         std::to_string(e.device.minor())] += e.length;
      }
      std::printf("%s/%s: %llu bytes mapped in %zu extents\n", d.vm_name.c_str(),
                  d.vdisk_name.c_str(),
                  static_cast<unsigned long long>(snapshot.map.mapped_bytes(key)), extents.size());
      for (const auto& [device, bytes] : bytes_per_device) {
        std::printf("  device %s: %llu bytes\n", device.c_str(),
                    static_cast<unsigned long long>(bytes));
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "v2p-map-report: %s\n", e.what());
    return 1;
  }
  return 0;
}
