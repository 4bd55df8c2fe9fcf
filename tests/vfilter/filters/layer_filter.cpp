// An instrumented layer (as nbdkit's test-layers): every hook appends "NAME.hook>" before it
// forwards and "NAME.hook<" after, one line per write(2) with O_APPEND so lines from several
// layers interleave in call order. Args: name=, log=PATH, class=inspection|qos|compression|
// encryption|replication|cache, trim=no (narrows can_trim), and tagged=yes: reads and writes
// fail with EILSEQ unless the calling thread runs under the request's tag (ctx.tag, nonzero), so
// a passing test proves host I/O issued from a hook carries the guest request's tag.
// async=yes makes it an asynchronous filter (DataModel::kAsync): "NAME.hook<" is then written
// when the stage below completes; with no_workers=yes its hooks fail with EILSEQ when they run on
// a tagged worker thread ("v2p-tagged"), so a passing test proves the stack has no handoff.
#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <v2p/filter.hpp>

#include <map>
#include <stdexcept>
#include <string>

namespace {

class LayerFilter final : public v2p::Filter {
 public:
  LayerFilter(v2p::FilterContext&, const v2p::FilterArgs& args) {
    static const std::map<std::string, v2p::FilterClass> classes = {
        {"inspection", v2p::FilterClass::kInspection},
        {"qos", v2p::FilterClass::kQos},
        {"compression", v2p::FilterClass::kCompression},
        {"encryption", v2p::FilterClass::kEncryption},
        {"replication", v2p::FilterClass::kReplication},
        {"cache", v2p::FilterClass::kCache}};
    std::string log;
    for (const auto& [k, v] : args) {
      if (k == "name") {
        name_ = v;
      } else if (k == "log") {
        log = v;
      } else if (k == "class") {
        const auto c = classes.find(v);
        if (c == classes.end()) throw std::invalid_argument("unknown class " + v);
        class_ = c->second;
      } else if (k == "trim") {
        trim_ = v != "no";
      } else if (k == "no_workers") {
        no_workers_ = v == "yes";
      } else if (k == "async") {
        async_ = v == "yes";
      } else if (k == "tagged") {
        tagged_ = v == "yes";
      } else {
        throw std::invalid_argument("unknown argument '" + k + "'");
      }
    }
    if (name_.empty() || log.empty()) throw std::invalid_argument("name= and log= are required");
    fd_ = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) throw std::runtime_error("cannot open " + log);
  }
  ~LayerFilter() override { ::close(fd_); }

  std::string_view name() const override { return name_; }
  v2p::FilterClass filter_class() const override { return class_; }
  v2p::DataModel data_model() const override {
    return async_ ? v2p::DataModel::kAsync : v2p::DataModel::kBlocking;
  }

  std::unique_ptr<v2p::VdiskState> open(const v2p::VdiskInfo&, v2p::Next&) override {
    note("open");
    return nullptr;
  }
  void close(v2p::VdiskState*, v2p::Next&) override { note("close"); }

  int read(v2p::Next& next, v2p::VdiskState*, const v2p::RequestContext& ctx,
           std::span<std::byte> out, std::uint64_t offset) override {
    note("read>");
    if (!under_tag(ctx)) return -EILSEQ;
    const int rc = next.read(ctx, out, offset);
    note("read<");
    return rc;
  }
  int write(v2p::Next& next, v2p::VdiskState*, const v2p::RequestContext& ctx,
            std::span<const std::byte> data, std::uint64_t offset, v2p::Fua fua) override {
    note("write>");
    if (!under_tag(ctx)) return -EILSEQ;
    const int rc = next.write(ctx, data, offset, fua);
    note("write<");
    return rc;
  }
  int flush(v2p::Next& next, v2p::VdiskState*, const v2p::RequestContext& ctx) override {
    note("flush>");
    const int rc = next.flush(ctx);
    note("flush<");
    return rc;
  }
  void read_async(v2p::Next& next, v2p::VdiskState*, const v2p::RequestContext& ctx,
                  std::span<std::byte> out, std::uint64_t offset, v2p::Completion& done) override {
    note("read>");
    if (!async_ok(ctx)) return done.done(-EILSEQ);
    // A completion of its own (a test may allocate per request) to note the way back up.
    next.read_async(ctx, out, offset, *new Noted(*this, "read<", done));
  }
  void write_async(v2p::Next& next, v2p::VdiskState*, const v2p::RequestContext& ctx,
                   std::span<const std::byte> data, std::uint64_t offset, v2p::Fua fua,
                   v2p::Completion& done) override {
    note("write>");
    if (!async_ok(ctx)) return done.done(-EILSEQ);
    next.write_async(ctx, data, offset, fua, *new Noted(*this, "write<", done));
  }
  void flush_async(v2p::Next& next, v2p::VdiskState*, const v2p::RequestContext& ctx,
                   v2p::Completion& done) override {
    note("flush>");
    if (no_workers_ && on_worker()) return done.done(-EILSEQ);
    next.flush_async(ctx, *new Noted(*this, "flush<", done));
  }
  bool can_trim(v2p::Next& next, v2p::VdiskState*) override {
    note("can_trim");
    return trim_ && next.can_trim();
  }

 private:
  struct Noted final : v2p::Completion {
    Noted(const LayerFilter& f, const char* w, v2p::Completion& u) : filter(f), what(w), up(u) {}
    void done(int result) noexcept override {
      filter.note(what);
      v2p::Completion& u = up;
      delete this;
      u.done(result);
    }
    const LayerFilter& filter;
    const char* what;
    v2p::Completion& up;
  };
  // In an asynchronous hook the tag travels with the request (ctx.host) to the SQEs below.
  bool async_ok(const v2p::RequestContext& ctx) const {
    if (no_workers_ && on_worker()) return false;
    return !tagged_ || (ctx.tag != 0 && ctx.host != nullptr);
  }
  static bool on_worker() {
    char name[16] = {};
    ::pthread_getname_np(::pthread_self(), name, sizeof name);
    return std::string(name) == "v2p-tagged";
  }
  bool under_tag(const v2p::RequestContext& ctx) const {
    if (!tagged_) return true;
    constexpr int kWhoProcess = 1;  // IOPRIO_WHO_PROCESS; who 0 = the calling thread
    const long prio = ::syscall(SYS_ioprio_get, kWhoProcess, 0);
    return ctx.tag != 0 && prio == ctx.tag;
  }
  void note(const char* what) const {
    const std::string line = name_ + "." + what + "\n";
    (void)!::write(fd_, line.data(), line.size());
  }
  std::string name_;
  v2p::FilterClass class_ = v2p::FilterClass::kInspection;
  bool trim_ = true;
  bool tagged_ = false;
  bool async_ = false;
  bool no_workers_ = false;
  int fd_ = -1;
};

}  // namespace

V2P_FILTER(LayerFilter)
