#include "policy/tier/tier_stage.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/clock.hpp"
#include "common/crc32c.hpp"
#include "common/error.hpp"
#include "common/host_layout/aligned_buffer.hpp"

namespace v2p::tier {
namespace {

using vfilter::BlockBackend;
using vfilter::Fua;
using vfilter::IoTarget;

// One bio per chunk where the device allows: a throttled slow tier counts IOPS, not bytes.
constexpr std::uint64_t kChunk = 1024 * 1024;
constexpr unsigned kAbortsBeforeExclusive = 3;

std::filesystem::path with_suffix(const std::filesystem::path& p, const char* suffix) {
  auto out = p;
  out += suffix;
  return out;
}

// The fast tier file at least `bytes` long (sparse); created when absent.
void prepare_fast_file(const std::filesystem::path& path, std::uint64_t bytes) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw system_error("cannot create the fast tier file " + path.string());
  struct stat st {};
  int rc = ::fstat(fd, &st);
  if (rc == 0 && static_cast<std::uint64_t>(st.st_size) < bytes) {
    rc = ::ftruncate(fd, static_cast<off_t>(bytes));
  }
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw system_error("cannot size the fast tier file " + path.string(), err);
}

}  // namespace

TierStage::TierStage(std::shared_ptr<BlockBackend> slow, TierOptions options)
    : slow_(std::move(slow)),
      opts_(std::move(options)),
      heat_(opts_.extent_bytes != 0 && std::has_single_bit(opts_.extent_bytes) ? opts_.extent_bytes
                                                                               : 4096,
            opts_.heat_half_life_ns == 0 ? 1 : opts_.heat_half_life_ns) {
  if (!slow_) throw Error("tier: no slow tier backend");
  const auto eb = opts_.extent_bytes;
  if (eb < 4096 || !std::has_single_bit(eb)) {
    throw Error(fmt::format("--tier-extent {} must be a power of two of at least 4096 bytes", eb));
  }
  if (opts_.fast_file.empty()) throw Error("tier: give the fast tier file (--tier-fast FILE)");
  if (opts_.fast_bytes < eb) {
    throw Error(fmt::format("--tier-fast-size {} is smaller than one extent ({} bytes)",
                            opts_.fast_bytes, eb));
  }
  if (opts_.journal.empty()) opts_.journal = with_suffix(opts_.fast_file, ".journal");
  if (opts_.status_file.empty()) opts_.status_file = with_suffix(opts_.fast_file, ".status");
  geometry_ = Geometry{eb, (slow_->size() + eb - 1) / eb, opts_.fast_bytes / eb};
  if (geometry_.extents == 0) throw Error("tier: the slow tier image is empty");
  prepare_fast_file(opts_.fast_file, geometry_.fast_slots * eb);
  fast_ = std::make_unique<vfilter::FileBackend>(opts_.fast_file, false, opts_.want_direct);
  journal_ = std::make_unique<TierJournal>(opts_.journal, geometry_);
  live_.resize(geometry_.extents);
  for (std::uint64_t e = 0; e < geometry_.extents; ++e)
    live_[e] = journal_->table().at(ExtentIndex(e));
  fast_count_ = journal_->table().fast_count();
  write_gen_ = std::make_unique<std::atomic<std::uint64_t>[]>(geometry_.extents);
  queued_to_.assign(geometry_.extents, 0);
  clean_since_.assign(geometry_.extents, kNotClean);
  clean_crc_.assign(geometry_.extents, 0);
  thread_ = std::thread([this] { migration_loop(); });
}

TierStage::~TierStage() {
  {
    std::lock_guard l(meta_mu_);
    stop_ = true;
  }
  meta_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  try {
    write_status_file();
  } catch (...) {
    // The status file is informational; the journal already holds everything that matters.
  }
}

std::uint64_t TierStage::extent_length(ExtentIndex e) const noexcept {
  const auto begin = e.value() * geometry_.extent_bytes;
  return std::min(geometry_.extent_bytes, size() - begin);
}

std::shared_mutex& TierStage::lock_of(ExtentIndex e) const noexcept {
  return stripes_[e.value() % kStripes];
}

void TierStage::note_access(const IoTarget& who, std::uint64_t offset, std::uint64_t length) {
  if (!identified_.load(std::memory_order_acquire) && (who.vm_id != 0 || !who.vm.empty())) {
    std::lock_guard l(meta_mu_);
    if (!identified_.load(std::memory_order_relaxed)) {
      key_ = VdiskKey{VmId(who.vm_id), VdiskId(who.vdisk_id)};
      vm_name_ = std::string(who.vm);
      vdisk_name_ = std::string(who.vdisk);
      identified_.store(true, std::memory_order_release);
    }
  }
  const double weight = heat_weight_.load(std::memory_order_relaxed);
  std::lock_guard l(heat_mu_);
  // Heat is kept per stage (one vdisk): the key is the stage's, fixed, so ExtentRef lookups work
  // before the identity is known.
  heat_.add(VdiskKey{}, VirtualOffset(offset), length, monotonic_ns(), weight);
}

template <class F>
int TierStage::for_each_extent(std::uint64_t offset, std::uint64_t length, bool is_write, F&& f) {
  const auto eb = geometry_.extent_bytes;
  std::uint64_t done = 0;
  while (done < length) {
    const std::uint64_t off = offset + done;
    const ExtentIndex e(off / eb);
    const std::uint64_t in = off % eb;
    const std::uint64_t n = std::min(length - done, eb - in);
    std::shared_lock lock(lock_of(e));
    // Write intent first: a copy that started before this write sees the generation move.
    if (is_write) write_gen_[e.value()].fetch_add(1, std::memory_order_acq_rel);
    const Placement p = live_[e.value()];
    BlockBackend& target = p.tier == Tier::kFast ? *fast_ : *slow_;
    const std::uint64_t at = p.tier == Tier::kFast ? p.slot.value() * eb + in : off;
    const int rc = f(target, at, done, n);
    if (rc < 0) return rc;
    done += n;
  }
  return 0;
}

int TierStage::read(const IoTarget& who, std::span<std::byte> out, std::uint64_t offset) {
  note_access(who, offset, out.size());
  return for_each_extent(offset, out.size(), false,
                         [&](BlockBackend& b, std::uint64_t at, std::uint64_t done,
                             std::uint64_t n) { return b.read(who, out.subspan(done, n), at); });
}

int TierStage::write(const IoTarget& who, std::span<const std::byte> data, std::uint64_t offset,
                     Fua fua) {
  note_access(who, offset, data.size());
  return for_each_extent(
      offset, data.size(), true,
      [&](BlockBackend& b, std::uint64_t at, std::uint64_t done, std::uint64_t n) {
        return b.write(who, data.subspan(done, n), at, fua);
      });
}

int TierStage::write_zeroes(const IoTarget& who, std::uint64_t offset, std::uint64_t length,
                            vfilter::MayPunch may_punch, Fua fua) {
  note_access(who, offset, length);
  return for_each_extent(offset, length, true,
                         [&](BlockBackend& b, std::uint64_t at, std::uint64_t, std::uint64_t n) {
                           return b.write_zeroes(who, at, n, may_punch, fua);
                         });
}

int TierStage::trim(const IoTarget& who, std::uint64_t offset, std::uint64_t length) {
  // A trim changes the extent's contents too: it counts as a write for a copy in progress.
  return for_each_extent(offset, length, true,
                         [&](BlockBackend& b, std::uint64_t at, std::uint64_t, std::uint64_t n) {
                           return b.trim(who, at, n);
                         });
}

int TierStage::flush(const IoTarget& who) {
  const int a = fast_->flush(who);
  const int b = slow_->flush(who);
  return a < 0 ? a : b;
}

VdiskKey TierStage::key() const {
  std::lock_guard l(meta_mu_);
  return key_;
}

Placement TierStage::placement(ExtentIndex e) const {
  std::lock_guard l(meta_mu_);
  return e.value() < live_.size() ? live_[e.value()] : Placement{};
}

std::vector<ExtentIndex> TierStage::fast_extents() const {
  std::lock_guard l(meta_mu_);
  std::vector<ExtentIndex> out;
  for (std::uint64_t e = 0; e < live_.size(); ++e) {
    if (live_[e].tier == Tier::kFast) out.emplace_back(e);
  }
  return out;
}

std::uint64_t TierStage::fast_cap_locked() const noexcept {
  const double share = std::clamp(cos_.fast_share, 0.0, 1.0);
  return static_cast<std::uint64_t>(share * static_cast<double>(geometry_.fast_slots) + 1e-9);
}

TierRequestResult TierStage::request(ExtentIndex e, Tier to) {
  std::lock_guard l(meta_mu_);
  if (e.value() >= geometry_.extents) return TierRequestResult::kUnknown;
  const std::uint8_t want = to == Tier::kFast ? 2 : 1;
  auto& q = queued_to_[e.value()];
  if (q == want) return TierRequestResult::kAlreadyThere;
  if (q != 0) {
    // Queued the other way: that request is withdrawn.
    std::erase_if(queue_, [&](const Move& m) { return m.extent == e; });
    if (q == 2) --queued_promotions_;
    q = 0;
    if (live_[e.value()].tier == to) return TierRequestResult::kQueued;
  }
  const bool moving_now = copying_ && current_ == e;
  if (moving_now ? current_to_ == to : live_[e.value()].tier == to) {
    return TierRequestResult::kAlreadyThere;
  }
  const std::uint64_t promoting = copying_ && current_to_ == Tier::kFast ? 1 : 0;
  if (to == Tier::kFast && fast_count_ + queued_promotions_ + promoting >= fast_cap_locked()) {
    return TierRequestResult::kNoSpace;
  }
  queue_.push_back(Move{e, to, 0});
  q = want;
  if (to == Tier::kFast) ++queued_promotions_;
  meta_cv_.notify_all();
  return TierRequestResult::kQueued;
}

void TierStage::set_class_of_service(TierClassOfService cos) {
  std::lock_guard l(meta_mu_);
  cos_ = cos;
  heat_weight_.store(cos.heat_weight, std::memory_order_relaxed);
}

TierClassOfService TierStage::class_of_service() const {
  std::lock_guard l(meta_mu_);
  return cos_;
}

std::vector<HotExtent> TierStage::hottest(std::size_t n, std::uint64_t now_ns) const {
  std::lock_guard l(heat_mu_);
  return heat_.hottest(n, now_ns);
}

double TierStage::heat(ExtentIndex e, std::uint64_t now_ns) const {
  std::lock_guard l(heat_mu_);
  return heat_.heat(ExtentRef{VdiskKey{}, e.value()}, now_ns);
}

TierVdiskStatus TierStage::status() const {
  const auto now = monotonic_ns();
  std::vector<HotExtent> hot;
  {
    std::lock_guard l(heat_mu_);
    hot = heat_.hottest(heat_.tracked(), now);
  }
  TierVdiskStatus s;
  std::lock_guard l(meta_mu_);
  s.vdisk = key_;
  s.vm_name = vm_name_;
  s.vdisk_name = vdisk_name_;
  s.extent_bytes = geometry_.extent_bytes;
  s.extents = geometry_.extents;
  s.fast_capacity = geometry_.fast_slots;
  s.fast_extents = fast_count_;
  for (const auto& h : hot) {
    if (h.heat < opts_.hot_threshold || h.extent.index >= live_.size()) continue;
    ++s.hot_extents;
    if (live_[h.extent.index].tier == Tier::kFast) ++s.hot_on_fast;
  }
  s.queued = queue_.size();
  s.migrating = copying_ ? 1 : 0;
  s.promoted = promoted_;
  s.demoted = demoted_;
  s.aborted = aborted_;
  s.failed = failed_;
  s.clean_demotions = clean_demotions_;
  s.bytes_migrated = bytes_migrated_;
  s.current_done = copying_ ? current_done_.load() : 0;
  s.cos = cos_;
  return s;
}

bool TierStage::wait_idle(std::chrono::milliseconds timeout) {
  std::unique_lock l(meta_mu_);
  return meta_cv_.wait_for(l, timeout, [&] { return stop_ || (queue_.empty() && !copying_); });
}

bool TierStage::throttle(std::uint64_t bytes) {
  std::unique_lock l(meta_mu_);
  if (stop_) return false;
  if (opts_.rate_bytes_per_s == 0) return true;
  const auto now = std::chrono::steady_clock::now();
  // No credit for idle time: a burst after a pause is one chunk, not everything saved up.
  const auto start = std::max(now, next_allowed_);
  next_allowed_ =
      start + std::chrono::nanoseconds(bytes * 1'000'000'000ULL / opts_.rate_bytes_per_s);
  meta_cv_.wait_until(l, start, [&] { return stop_; });
  return !stop_;
}

int TierStage::migrate(ExtentIndex e, Tier to, bool exclusive) {
  const auto eb = geometry_.extent_bytes;
  const Placement from = live_[e.value()];  // this thread is the only writer of live_
  if (from.tier == to) return 1;
  Placement dest{to, FastSlot(0)};
  if (to == Tier::kFast) {
    {
      std::lock_guard l(meta_mu_);
      if (fast_count_ >= fast_cap_locked()) return 1;
    }
    const auto slot = journal_->table().free_slot();
    if (!slot) return 1;
    dest.slot = *slot;
  }
  BlockBackend& src = from.tier == Tier::kFast ? *fast_ : *slow_;
  BlockBackend& dst = to == Tier::kFast ? *fast_ : *slow_;
  const std::uint64_t src_off = from.tier == Tier::kFast ? from.slot.value() * eb : e.value() * eb;
  const std::uint64_t dst_off = to == Tier::kFast ? dest.slot.value() * eb : e.value() * eb;
  const std::uint64_t len = extent_length(e);
  const std::uint64_t chunk = std::min(len, kChunk);
  host_layout::AlignedBuffer buf(chunk);
  const IoTarget nobody{};

  std::unique_lock lock(lock_of(e), std::defer_lock);
  // A clean demotion: not written since its promotion, so the home still holds exactly the fast
  // copy's bytes (a write bumps the generation; a restart forgets cleanliness). Only the journal
  // record is needed; the home is synced first, as a copied demotion's destination would be.
  if (to == Tier::kSlow && clean_since_[e.value()] != kNotClean) {
    const int rc = slow_->flush(IoTarget{});
    if (rc < 0) return rc;
    lock.lock();
    if (write_gen_[e.value()].load(std::memory_order_acquire) == clean_since_[e.value()]) {
      const int c = journal_->commit(e, dest, clean_crc_[e.value()]);
      if (c < 0) return c;
      clean_since_[e.value()] = kNotClean;
      std::lock_guard l(meta_mu_);
      live_[e.value()] = dest;
      --fast_count_;
      ++demoted_;
      ++clean_demotions_;
      return 0;
    }
    lock.unlock();
  }
  lock.lock();  // drains writes in flight: the generation below covers everything after
  const std::uint64_t gen0 = write_gen_[e.value()].load(std::memory_order_acquire);
  if (!exclusive) lock.unlock();

  std::uint32_t crc = 0;
  for (std::uint64_t done = 0; done < len; done += chunk) {
    const auto n = std::min(chunk, len - done);
    const std::span<std::byte> piece(buf.data(), n);
    if (!throttle(n)) return -ECANCELED;
    int rc = src.read(nobody, piece, src_off + done);
    if (rc < 0) return rc;
    crc = crc32c(piece, crc);
    rc = dst.write(nobody, piece, dst_off + done, Fua::kNo);
    if (rc < 0) return rc;
    current_done_.store(done + n);
    if (!exclusive) {
      if (opts_.on_copy_chunk) opts_.on_copy_chunk(e, done + n);
      if (write_gen_[e.value()].load(std::memory_order_acquire) != gen0) return -EAGAIN;
    }
  }
  // The copy is durable and reads back as what was read from the source.
  int rc = dst.flush(nobody);
  if (rc < 0) return rc;
  std::uint32_t check = 0;
  for (std::uint64_t done = 0; done < len; done += chunk) {
    const auto n = std::min(chunk, len - done);
    const std::span<std::byte> piece(buf.data(), n);
    rc = dst.read(nobody, piece, dst_off + done);
    if (rc < 0) return rc;
    check = crc32c(piece, check);
  }
  if (check != crc) return -EIO;

  if (!exclusive) lock.lock();
  if (write_gen_[e.value()].load(std::memory_order_acquire) != gen0) return -EAGAIN;
  rc = journal_->commit(e, dest, crc);
  if (rc < 0) return rc;
  // After a promotion the home equals the fast copy until the next write; after a demotion
  // there is no fast copy.
  clean_since_[e.value()] = to == Tier::kFast ? gen0 : kNotClean;
  clean_crc_[e.value()] = crc;
  std::lock_guard l(meta_mu_);
  live_[e.value()] = dest;
  if (to == Tier::kFast) {
    ++fast_count_;
    ++promoted_;
  } else {
    --fast_count_;
    ++demoted_;
  }
  bytes_migrated_ += len;
  return 0;
}

void TierStage::migration_loop() {
  std::unique_lock l(meta_mu_);
  auto last_status = std::chrono::steady_clock::time_point{};
  bool dirty = true;
  while (!stop_) {
    const auto now = std::chrono::steady_clock::now();
    if (dirty && now - last_status >= std::chrono::milliseconds(500)) {
      l.unlock();
      try {
        write_status_file();
      } catch (...) {
        // Informational only; retried at the next change.
      }
      l.lock();
      last_status = now;
      dirty = false;
      continue;
    }
    if (queue_.empty()) {
      meta_cv_.wait_for(l, std::chrono::milliseconds(500));
      dirty = true;  // heat changes with time: refresh the hot-set fraction
      continue;
    }
    const Move m = queue_.front();
    queue_.pop_front();
    if (queued_to_[m.extent.value()] == 2) --queued_promotions_;
    queued_to_[m.extent.value()] = 0;
    copying_ = true;
    current_ = m.extent;
    current_to_ = m.to;
    current_done_.store(0);
    l.unlock();
    const int rc = migrate(m.extent, m.to, m.attempts >= kAbortsBeforeExclusive);
    if (rc == 0 && journal_->records_since_compaction() >
                       std::max<std::uint64_t>(4096, 4 * geometry_.fast_slots)) {
      (void)journal_->compact();  // on failure the long journal stays valid
    }
    l.lock();
    copying_ = false;
    dirty = true;
    if (rc == -EAGAIN && !stop_) {
      ++aborted_;
      // Written to during the copy: try again, unless the policy changed its mind meanwhile.
      if (queued_to_[m.extent.value()] == 0) {
        queue_.push_back(Move{m.extent, m.to, m.attempts + 1});
        queued_to_[m.extent.value()] = m.to == Tier::kFast ? 2 : 1;
        if (m.to == Tier::kFast) ++queued_promotions_;
      }
    } else if (rc < 0 && rc != -ECANCELED) {
      ++failed_;
    }
    meta_cv_.notify_all();
  }
}

void TierStage::write_status_file() const {
  const auto s = status();
  nlohmann::json j = {
      {"vm", s.vm_name},
      {"vdisk", s.vdisk_name},
      {"vm_id", s.vdisk.vm.value()},
      {"vdisk_id", s.vdisk.vdisk.value()},
      {"pid", ::getpid()},
      {"updated_unix_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count()},
      {"extent_bytes", s.extent_bytes},
      {"extents", s.extents},
      {"fast_capacity", s.fast_capacity},
      {"fast_extents", s.fast_extents},
      {"hot_threshold", opts_.hot_threshold},
      {"hot_extents", s.hot_extents},
      {"hot_on_fast", s.hot_on_fast},
      {"queued", s.queued},
      {"migrating", s.migrating},
      {"current_done", s.current_done},
      {"promoted", s.promoted},
      {"demoted", s.demoted},
      {"aborted", s.aborted},
      {"failed", s.failed},
      {"clean_demotions", s.clean_demotions},
      {"bytes_migrated", s.bytes_migrated},
      {"heat_weight", s.cos.heat_weight},
      {"fast_share", s.cos.fast_share},
      {"journal", opts_.journal.string()},
      {"slow", slow_->describe()},
  };
  const auto tmp = with_suffix(opts_.status_file, ".tmp");
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump(2) << "\n";
    if (!out) throw Error("cannot write the tier status file " + tmp.string());
  }
  std::filesystem::rename(tmp, opts_.status_file);
}

TierVdiskStatus read_status_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot read the tier status file " + path.string());
  try {
    const auto j = nlohmann::json::parse(in);
    TierVdiskStatus s;
    s.vdisk = VdiskKey{VmId(j.at("vm_id").get<std::uint32_t>()),
                       VdiskId(j.at("vdisk_id").get<std::uint32_t>())};
    s.vm_name = j.at("vm").get<std::string>();
    s.vdisk_name = j.at("vdisk").get<std::string>();
    s.extent_bytes = j.at("extent_bytes").get<std::uint64_t>();
    s.extents = j.at("extents").get<std::uint64_t>();
    s.fast_capacity = j.at("fast_capacity").get<std::uint64_t>();
    s.fast_extents = j.at("fast_extents").get<std::uint64_t>();
    s.hot_extents = j.at("hot_extents").get<std::uint64_t>();
    s.hot_on_fast = j.at("hot_on_fast").get<std::uint64_t>();
    s.queued = j.at("queued").get<std::uint64_t>();
    s.migrating = j.at("migrating").get<std::uint64_t>();
    s.current_done = j.at("current_done").get<std::uint64_t>();
    s.promoted = j.at("promoted").get<std::uint64_t>();
    s.demoted = j.at("demoted").get<std::uint64_t>();
    s.aborted = j.at("aborted").get<std::uint64_t>();
    s.failed = j.at("failed").get<std::uint64_t>();
    s.clean_demotions = j.value("clean_demotions", std::uint64_t{0});
    s.bytes_migrated = j.at("bytes_migrated").get<std::uint64_t>();
    s.cos.heat_weight = j.at("heat_weight").get<double>();
    s.cos.fast_share = j.at("fast_share").get<double>();
    return s;
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{} is not a tier status file: {}", path.string(), e.what()));
  }
}

}  // namespace v2p::tier
