#include "correlator/map_source.hpp"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <fstream>
#include <set>
#include <sstream>

#include "common/error.hpp"
#include "common/host_layout/mountinfo.hpp"
#include "correlator/replay.hpp"
#include "correlator/snapshot.hpp"

namespace v2p::correlator {

std::unique_ptr<Correlator> load_map(const MapSource& source) {
  if (source.streams.empty() && !source.snapshot) {
    throw Error("give the map's source: --stream FILE... (recorded streams) or --snapshot FILE");
  }
  auto c = std::make_unique<Correlator>();
  std::uint64_t after = 0;
  if (source.snapshot) {
    const auto s = load_snapshot(*source.snapshot);
    restore_snapshot(*c, s);
    after = s.as_of_ns;
  }
  for (const auto t : source.backends) c->add_backend_process(t);
  if (!source.streams.empty()) replay_streams(*c, source.streams, after);
  return c;
}

DeviceId parse_device(const std::string& text) {
  unsigned major = 0, minor = 0;
  char colon = 0;
  std::istringstream in(text);
  if (in >> major >> colon >> minor && colon == ':' && in.peek() == EOF) {
    return DeviceId::from_major_minor(major, minor);
  }
  struct stat st {};
  if (::stat(text.c_str(), &st) != 0) throw system_error("cannot stat device " + text);
  if (!S_ISBLK(st.st_mode))
    throw Error(text + " is not a block device (give MAJOR:MINOR or /dev/…)");
  return DeviceId::from_major_minor(::major(st.st_rdev), ::minor(st.st_rdev));
}

DeviceId filesystem_device(const std::filesystem::path& path) {
  const auto target = std::filesystem::weakly_canonical(path).string();
  const auto mounts = host_layout::read_mountinfo();
  const auto* m = host_layout::mount_holding(mounts, target);
  if (m == nullptr || m->source.empty() || m->source[0] != '/') {
    throw Error("cannot tell which block device holds " + path.string() + " (give --device)");
  }
  return parse_device(m->source);
}

std::vector<VdiskKey> select_vdisks(const Correlator& c, const std::string& vm,
                                    const std::string& vdisk) {
  std::set<VdiskKey> keys;
  for (const auto k : c.map().vdisks()) keys.insert(k);
  for (const auto& d : c.vdisk_declarations()) keys.insert({VmId{d.vm_id}, VdiskId{d.vdisk_id}});
  auto matches = [](const std::string& want, const std::string& name, std::uint32_t id) {
    return want.empty() || want == name || want == std::to_string(id);
  };
  std::vector<VdiskKey> out;
  std::string known;
  for (const auto k : keys) {
    const auto d = c.vdisk(k);
    const std::string vm_name = d ? d->vm_name : "";
    const std::string vdisk_name = d ? d->vdisk_name : "";
    // Two appends, not `" " + label`: g++ 12 -O3 misreads that temporary (-Wrestrict, PR105329).
    known += ' ';
    known += vdisk_label(c, k);
    if (matches(vm, vm_name, k.vm.value()) && matches(vdisk, vdisk_name, k.vdisk.value())) {
      out.push_back(k);
    }
  }
  if (out.empty() && (!vm.empty() || !vdisk.empty())) {
    throw Error("no vdisk matches --vm '" + vm + "' --vdisk '" + vdisk +
                "' (known:" + (known.empty() ? std::string(" none") : known) + ")");
  }
  return out;
}

std::string vdisk_label(const Correlator& c, VdiskKey key) {
  if (const auto d = c.vdisk(key)) return d->vm_name + "/" + d->vdisk_name;
  return "vm" + std::to_string(key.vm.value()) + "/vdisk" + std::to_string(key.vdisk.value());
}

}  // namespace v2p::correlator
