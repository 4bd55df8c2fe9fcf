// `v2p ec …`: the erasure-coded pool for cold vdisk data (docs/ec.md). put demotes a byte range
// of an image into the pool, get reads it back, status reports protection per VM, scrub verifies
// and repairs every chunk, rebuild re-creates a replaced store, evacuate empties one.
#include <fcntl.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <filesystem>
#include <memory>

#include "cli/subcommand.hpp"
#include "common/error.hpp"
#include "ec/pool.hpp"
#include "ec/status.hpp"

namespace v2p::cli {
namespace {

namespace fs = std::filesystem;

struct PoolFlags {
  std::string config;
  std::string metadata;
  std::vector<std::string> stores;  // ID=PATH
  std::string layout;
  std::vector<std::string> vm_layouts;  // VM=K+M or VM:VDISK=K+M
  bool allow_shared = false;
  std::uint32_t container_bytes = 0;
  std::uint32_t block_bytes = 0;
};

struct RangeFlags {
  std::uint32_t vm = 0;
  std::uint32_t vdisk = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::string file;
  std::uint32_t store = 0;
  bool json = false;
};

void add_pool_flags(CLI::App& app, PoolFlags& f) {
  app.add_option("--config", f.config, "JSON pool configuration (docs/ec.md)");
  app.add_option("--metadata", f.metadata, "Metadata directory (the crash-safe log)");
  app.add_option("--store", f.stores, "Backend store ID=DIRECTORY (repeat)");
  app.add_option("--layout", f.layout, "Default k+m, e.g. 4+2");
  app.add_option("--vm-layout", f.vm_layouts, "k+m of one VM or vdisk: VM=K+M or VM:VDISK=K+M");
  app.add_flag("--allow-shared-domains", f.allow_shared,
               "Allow two chunks of a container on one disk (tests, single-disk hosts)");
  app.add_option("--container-bytes", f.container_bytes, "Container size, 1-16 MiB");
  app.add_option("--block-bytes", f.block_bytes, "Block size of the index and read checksums");
}

ec::PoolConfig pool_config(const PoolFlags& f) {
  ec::PoolConfig c;
  if (!f.config.empty()) c = ec::load_config(f.config);
  if (!f.metadata.empty()) c.metadata_dir = f.metadata;
  for (const auto& s : f.stores) {
    const auto eq = s.find('=');
    if (eq == std::string::npos) throw Error("--store wants ID=DIRECTORY, got '" + s + "'");
    c.stores.push_back(
        {static_cast<std::uint32_t>(std::stoul(s.substr(0, eq))), fs::absolute(s.substr(eq + 1))});
  }
  if (!f.layout.empty()) c.default_layout = ec::parse_layout(f.layout);
  for (const auto& v : f.vm_layouts) {
    const auto eq = v.find('=');
    if (eq == std::string::npos) throw Error("--vm-layout wants VM=K+M, got '" + v + "'");
    const auto who = v.substr(0, eq);
    const auto layout = ec::parse_layout(v.substr(eq + 1));
    const auto colon = who.find(':');
    if (colon == std::string::npos) {
      c.vm_layouts[static_cast<std::uint32_t>(std::stoul(who))] = layout;
    } else {
      c.vdisk_layouts[{static_cast<std::uint32_t>(std::stoul(who.substr(0, colon))),
                       static_cast<std::uint32_t>(std::stoul(who.substr(colon + 1)))}] = layout;
    }
  }
  if (f.allow_shared) c.allow_shared_domains = true;
  if (f.container_bytes) c.container_bytes = f.container_bytes;
  if (f.block_bytes) c.block_bytes = f.block_bytes;
  c.validate();
  return c;
}

constexpr std::size_t kPiece = 4U << 20;

int run_put(const PoolFlags& pf, const RangeFlags& r) {
  ec::Pool pool(pool_config(pf));
  const int fd = ::open(r.file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw system_error("cannot open " + r.file);
  const auto size = fs::file_size(r.file);
  const std::uint64_t end = r.length ? r.offset + r.length : size;
  if (end > size || r.offset > end) {
    ::close(fd);
    throw Error("range is beyond the end of " + r.file);
  }
  const VdiskKey key{VmId{r.vm}, VdiskId{r.vdisk}};
  std::vector<std::uint8_t> buf(kPiece);
  for (std::uint64_t off = r.offset; off < end;) {
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(kPiece, end - off));
    const ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(off));
    if (n <= 0) {
      ::close(fd);
      throw system_error("cannot read " + r.file);
    }
    pool.write(key, VirtualOffset{off}, std::span(buf).first(static_cast<std::size_t>(n)));
    off += static_cast<std::uint64_t>(n);
  }
  ::close(fd);
  pool.flush();
  const auto layout = pool.config().layout_for(key);
  fmt::print("vm {} vdisk {}: {} bytes from {} at offset {} protected as {} (durable)\n", r.vm,
             r.vdisk, end - r.offset, r.file, r.offset, layout.label());
  return 0;
}

int run_get(const PoolFlags& pf, const RangeFlags& r) {
  ec::Pool pool(pool_config(pf));
  const int fd = ::open(r.file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw system_error("cannot create " + r.file);
  const VdiskKey key{VmId{r.vm}, VdiskId{r.vdisk}};
  for (std::uint64_t done = 0; done < r.length;) {
    const auto want = std::min<std::uint64_t>(kPiece, r.length - done);
    auto got = pool.read(key, VirtualOffset{r.offset + done}, want);
    if (!got.ok()) {
      ::close(fd);
      fs::remove(r.file);
      throw Error(got.error());
    }
    if (::pwrite(fd, got.value().data(), got.value().size(), static_cast<off_t>(done)) !=
        static_cast<ssize_t>(got.value().size())) {
      ::close(fd);
      throw system_error("cannot write " + r.file);
    }
    done += want;
  }
  ::close(fd);
  const auto s = pool.status();
  fmt::print("vm {} vdisk {}: {} bytes written to {} ({} healthy, {} degraded container reads)\n",
             r.vm, r.vdisk, r.length, r.file, s.reads.healthy, s.reads.degraded);
  return 0;
}

int run_status(const PoolFlags& pf, const RangeFlags& r) {
  ec::Pool pool(pool_config(pf));
  const auto s = pool.status();
  fmt::print("{}", r.json ? ec::status_json(s) + "\n" : ec::status_text(s));
  return 0;
}

int run_scrub(const PoolFlags& pf) {
  ec::Pool pool(pool_config(pf));
  const auto rep = pool.scrub();
  for (const auto& p : rep.problems) fmt::print("  {}\n", p);
  fmt::print(
      "scrub: {} containers, {} chunks checked, {} bad, {} repaired, {} on offline stores, {} "
      "containers unrepairable, {} orphan files removed\n",
      rep.containers, rep.chunks_checked, rep.chunks_bad, rep.chunks_repaired, rep.chunks_offline,
      rep.unrepairable, rep.orphans_removed);
  return rep.unrepairable ? 1 : 0;
}

int run_rebuild(const PoolFlags& pf, const RangeFlags& r, bool evacuate) {
  ec::Pool pool(pool_config(pf));
  const char* verb = evacuate ? "evacuate" : "rebuild";
  auto progress = [&](std::uint64_t done, std::uint64_t total) {
    if (done == total || done % 64 == 0) {
      fmt::print("{} store {}: {}/{} chunks\n", verb, r.store, done, total);
    }
  };
  const auto rep = evacuate ? pool.evacuate(r.store, progress) : pool.rebuild(r.store, progress);
  for (const auto& p : rep.problems) fmt::print("  {}\n", p);
  fmt::print("{} store {}: {} chunks, {} intact, {} written, {} failed\n", verb, r.store,
             rep.chunks_total, rep.chunks_intact, rep.chunks_rebuilt, rep.failed);
  return rep.failed ? 1 : 0;
}

const Register kRegister{
    {"ec", "Erasure-coded pool for cold vdisk data: put, get, status, scrub, rebuild",
     [](CLI::App& app) {
       auto pf = std::make_shared<PoolFlags>();
       auto rf = std::make_shared<RangeFlags>();
       auto selected = std::make_shared<std::function<int()>>();
       app.require_subcommand(1);
       auto sub = [&](const char* name, const char* help, std::function<int()> run) {
         CLI::App* s = app.add_subcommand(name, help);
         add_pool_flags(*s, *pf);
         s->callback([selected, run] { *selected = run; });
         return s;
       };
       auto* put = sub("put", "Demote a byte range of an image file into the pool",
                       [pf, rf] { return run_put(*pf, *rf); });
       put->add_option("--vm", rf->vm, "VM id")->required();
       put->add_option("--vdisk", rf->vdisk, "vdisk id within the VM");
       put->add_option("--image", rf->file, "Image file to read")
           ->required()
           ->check(CLI::ExistingFile);
       put->add_option("--offset", rf->offset, "First byte (also the vdisk offset)");
       put->add_option("--length", rf->length, "Bytes (default: to the end of the image)");
       auto* get = sub("get", "Read a byte range of a vdisk back into a file",
                       [pf, rf] { return run_get(*pf, *rf); });
       get->add_option("--vm", rf->vm, "VM id")->required();
       get->add_option("--vdisk", rf->vdisk, "vdisk id within the VM");
       get->add_option("--offset", rf->offset, "First vdisk byte");
       get->add_option("--length", rf->length, "Bytes")->required();
       get->add_option("--out", rf->file, "File to write")->required();
       auto* status = sub("status", "Protected bytes, layouts, failure domains, rebuild progress",
                          [pf, rf] { return run_status(*pf, *rf); });
       status->add_flag("--json", rf->json, "Machine-readable output");
       sub("scrub", "Verify every chunk's checksum and repair bad or missing chunks",
           [pf] { return run_scrub(*pf); });
       auto* rebuild = sub("rebuild", "Re-create a store's chunks (an empty directory is adopted)",
                           [pf, rf] { return run_rebuild(*pf, *rf, false); });
       rebuild->add_option("STORE", rf->store, "Store id")->required();
       auto* evac = sub("evacuate", "Move every chunk off a store before removing it",
                        [pf, rf] { return run_rebuild(*pf, *rf, true); });
       evac->add_option("STORE", rf->store, "Store id")->required();
       return [selected] { return *selected ? (*selected)() : 1; };
     }}};

}  // namespace
}  // namespace v2p::cli
