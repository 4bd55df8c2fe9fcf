// A deterministic stand-in for the real chain: a "host file system" that allocates blocks for
// vdisk images (fragmenting, optionally relocating on overwrite, freeing on trim), a vfilter
// that tags its requests, an opaque backend that does not, journal and metadata I/O of other
// processes, and two delivery streams (records, events) that are each in order but skewed
// against each other. It produces both streams and the hidden truth the tests compare with.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <vector>

#include "v2p/records.hpp"

namespace v2p::correlator::sim {

struct SimOptions {
  std::uint64_t seed = 1;
  std::uint32_t tagged_vdisks = 2;      // served by the vfilter (tagged requests)
  std::uint32_t backend_vdisks = 0;     // served by an opaque backend (untagged, one block each)
  std::uint64_t vdisk_blocks = 4096;    // 4 KiB blocks per vdisk
  std::uint64_t device_blocks = 32768;  // data region of the device
  std::uint64_t meta_blocks = 1024;     // journal and metadata region (device start)
  std::uint32_t requests = 1500;
  std::uint32_t concurrency = 8;  // requests in flight at most
  std::uint32_t max_request_blocks = 32;
  std::uint32_t max_bio_blocks = 16;  // the file system splits larger runs
  double read_fraction = 0.3;
  double trim_fraction = 0.05;
  double fragmentation = 0.2;         // chance an allocated block starts a new random run
  bool copy_on_write = false;         // overwrites relocate (btrfs-like)
  double journal_per_request = 0.3;   // other-process bios per request
  double metadata_per_request = 0.1;  // untagged bios of the vfilter itself
  // Tagged writes that also carry the request's tag on file-system metadata, as a thread that
  // sets its own ioprio to the tag and fdatasyncs gets on btrfs (docs/design.md): two REQ_META
  // copies (DUP), an empty flush bio and a superblock write (REQ_META | PREFLUSH | FUA), at
  // random times inside the request's window, before, between or after its data bios.
  double tagged_metadata_per_request = 0.0;
  // Backend requests of up to this many blocks (each physically contiguous run is one bio).
  std::uint32_t backend_max_request_blocks = 1;
  // Backend file-system metadata inside a backend request's window, flagged REQ_META.
  double backend_req_meta_per_request = 0.0;
  std::uint64_t max_delivery_skew_ns = 50'000'000;
  std::uint64_t reuse_delay_ns = 5'000'000'000;  // freed blocks wait for the journal commit
  std::uint64_t mean_gap_ns = 40'000;            // between submissions
  std::uint64_t backend_gap_ns = 0;  // extra spacing for backend requests (0 = as mean_gap_ns)
};

struct Delivery {
  std::uint64_t at_ns = 0;  // when the correlator receives it
  bool is_record = false;
  ContextRecord record;
  PhysEvent event;
};

// Where a backend bio truly belongs (for calibration checks).
struct BioTruth {
  VdiskKey vdisk;
  std::uint64_t voffset = 0;
  bool metadata = false;  // belongs to no request (any assignment is wrong)
};

struct SimOutput {
  std::vector<VdiskDeclaration> declarations;
  std::vector<Delivery> deliveries;  // in delivery order
  DeviceId device;
  std::uint32_t vfilter_tgid = 0;
  std::uint32_t backend_tgid = 0;
  std::vector<VdiskKey> tagged, backend;
  // Final layout: vdisk → (vblock → device block); device block → sector = block * 8.
  std::map<VdiskKey, std::map<std::uint64_t, std::uint64_t>> truth;
  // Backend bios by (ts, sector).
  std::map<std::pair<std::uint64_t, std::uint64_t>, BioTruth> backend_bios;
  std::uint64_t meta_blocks = 0;
  std::uint64_t untagged_foreign_bios = 0;  // journal + metadata bios generated
  std::uint64_t tagged_bios = 0;            // tagged data bios
  std::uint64_t tagged_metadata_bios = 0;   // tagged REQ_META and empty bios
  std::uint64_t backend_metadata_bios = 0;  // backend REQ_META bios
};

inline constexpr std::uint64_t kBlock = 4096;

SimOutput simulate(const SimOptions& options);

// Writes the deliveries as one v2p stream file (declarations first).
void write_stream(const SimOutput& out, const std::filesystem::path& path);

}  // namespace v2p::correlator::sim
