// `v2p verify --image PATH`: compares the map of a vdisk with where its image really keeps its
// bytes (FIEMAP; btrfs chunk tree; qemu-img map for qcow2). Exits 1 below 100% accuracy unless
// --allow-mismatch.
#include <fmt/core.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "agent/agent_client.hpp"
#include "cli/agent_queries.hpp"
#include "cli/subcommand.hpp"
#include "common/error.hpp"
#include "correlator/map_source.hpp"
#include "correlator/verify.hpp"

namespace v2p::cli {
namespace {

struct VerifyOptions {
  correlator::MapSource source;
  std::filesystem::path image;
  std::string vm, vdisk, device;
  bool allow_mismatch = false;
  std::string agent = agent::kDefaultQuerySocket;
  bool json = false;
};

double mib(std::uint64_t b) {
  return static_cast<double>(b) / (1 << 20);
}

VdiskKey pick_vdisk(const correlator::Correlator& c, const VerifyOptions& o) {
  const auto keys = correlator::select_vdisks(c, o.vm, o.vdisk);
  if (keys.size() == 1) return keys.front();
  // Several vdisks: the one whose declared image is this file.
  const auto image = std::filesystem::weakly_canonical(o.image);
  for (const auto k : keys) {
    const auto d = c.vdisk(k);
    if (d && !d->image_path.empty() && std::filesystem::weakly_canonical(d->image_path) == image) {
      return k;
    }
  }
  throw v2p::Error(keys.empty() ? "the map has no vdisk"
                                : "several vdisks in the map; choose one with --vm and --vdisk");
}

int run_verify(const VerifyOptions& o) {
  if (o.source.streams.empty() && !o.source.snapshot) {
    if (o.vm.empty()) throw Error("asking the agent: give --vm (and --vdisk when it has several)");
    return agent_verify({o.agent, o.json}, o.vm, o.vdisk, o.allow_mismatch);
  }
  if (o.image.empty()) throw Error("--image is required with --stream or --snapshot");
  const auto corr = correlator::load_map(o.source);
  const VdiskKey key = pick_vdisk(*corr, o);
  const DeviceId dev = o.device.empty() ? correlator::filesystem_device(o.image)
                                        : correlator::parse_device(o.device);
  const auto r = correlator::verify_against_fiemap(corr->map(), key, o.image, dev);
  const bool exact_map = r.bytes_observed > 0 && r.bytes_wrong == 0;
  if (o.json) {
    nlohmann::json out{{"vdisk", correlator::vdisk_label(*corr, key)},
                       {"image", o.image.string()},
                       {"bytes_observed", r.bytes_observed},
                       {"bytes_right", r.bytes_right},
                       {"bytes_wrong", r.bytes_wrong},
                       {"bytes_allocated", r.bytes_allocated},
                       {"accuracy", r.accuracy()},
                       {"coverage", r.coverage()},
                       {"mean_confidence", r.mean_confidence()},
                       {"mismatches", r.mismatches}};
    fmt::print("{}\n", out.dump(2));
    return exact_map || o.allow_mismatch ? 0 : 1;
  }
  fmt::print("{} against {} on {}:{}\n", correlator::vdisk_label(*corr, key), o.image.string(),
             dev.major(), dev.minor());
  fmt::print("observed {:.2f} MiB, right {:.2f} MiB, wrong {:.2f} MiB: accuracy {:.2f}%\n",
             mib(r.bytes_observed), mib(r.bytes_right), mib(r.bytes_wrong), 100.0 * r.accuracy());
  // The map's own claim: how many of its bytes it expects to be right (confidence), next to
  // how many are. Exact joins have confidence 1; the window join (opaque backends) 1/n.
  fmt::print(
      "confidence {:.4f} (the map expects {:.2f} MiB right): accuracy {:.2f}% vs "
      "confidence {:.2f}%\n",
      r.mean_confidence(), r.expected_right / (1 << 20), 100.0 * r.accuracy(),
      100.0 * r.mean_confidence());
  for (std::size_t i = 0; i < r.buckets.size(); ++i) {
    const auto& b = r.buckets[i];
    if (b.bytes_observed == 0) continue;
    const float hi = i == 0 ? 1.0f : r.buckets[i - 1].min_confidence;
    fmt::print(
        "  confidence [{:.2f}, {:.2f}{}: observed {:.2f} MiB, accuracy {:.2f}%, mean "
        "confidence {:.2f}%\n",
        b.min_confidence, hi, i == 0 ? "]" : ")", mib(b.bytes_observed), 100.0 * b.accuracy(),
        100.0 * b.mean_confidence());
  }
  fmt::print("image has {:.2f} MiB allocated: coverage {:.2f}%\n", mib(r.bytes_allocated),
             100.0 * r.coverage());
  for (const auto& m : r.mismatches) fmt::print("mismatch: {}\n", m);
  const bool exact = r.bytes_observed > 0 && r.bytes_wrong == 0;
  if (!exact && !o.allow_mismatch) {
    fmt::print("v2p verify: the map is not 100% accurate\n");
    return 1;
  }
  return 0;
}

const Register kRegister{
    {"verify", "Check a vdisk's map against its image's real layout", [](CLI::App& app) {
       auto o = std::make_shared<VerifyOptions>();
       app.add_option("--image", o->image,
                      "The vdisk's image file (offline; the agent knows it from the export)")
           ->check(CLI::ExistingFile);
       app.add_option("--vm", o->vm, "VM (name or id)");
       app.add_option("--vdisk", o->vdisk, "vdisk (name or id)");
       app.add_option("--device", o->device,
                      "Device of the image's file system (default: found "
                      "from the mount table)");
       app.add_option("--stream", o->source.streams, "Recorded v2p stream files")
           ->check(CLI::ExistingFile);
       app.add_option("--snapshot", o->source.snapshot, "Map snapshot")->check(CLI::ExistingFile);
       app.add_option("--backend", o->source.backends, "Process id of an opaque upstream backend");
       app.add_option("--agent", o->agent,
                      "The agent's query socket, asked when neither --stream nor --snapshot is "
                      "given (default /run/v2p/agent.sock)");
       app.add_flag("--json", o->json, "Print JSON");
       app.add_flag("--allow-mismatch", o->allow_mismatch, "Exit 0 even below 100% accuracy");
       return [o] { return run_verify(*o); };
     }}};

}  // namespace
}  // namespace v2p::cli
