#include "pfilter/qemu_attach.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "common/error.hpp"
#include "pfilter/elf_symbols.hpp"
#include "pfilter/libbpf_log.hpp"
#include "qemu_uprobe.skel.h"

namespace v2p::pfilter {
namespace {

struct SkelDeleter {
  void operator()(qemu_uprobe_bpf* s) const noexcept { qemu_uprobe_bpf__destroy(s); }
};
struct RingDeleter {
  void operator()(ring_buffer* r) const noexcept { ring_buffer__free(r); }
};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// The checks that give the one-line reasons, before anything is loaded.
std::filesystem::path check_process(pid_t pid) {
  const std::filesystem::path proc = "/proc/" + std::to_string(pid);
  std::error_code ec;
  if (pid <= 0 || !std::filesystem::exists(proc, ec))
    throw Error("passive attach: no process " + std::to_string(pid));
  if (::geteuid() != 0)
    throw Error("passive attach to " + std::to_string(pid) +
                " needs root (uprobes need CAP_BPF and CAP_PERFMON, reading QEMU's memory ptrace "
                "access)");
  // Reading the process's memory (node names) needs ptrace access, like tracing it.
  const int fd = ::open((proc / "mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw Error("passive attach: may not trace process " + std::to_string(pid) + " (" +
                std::strerror(errno) + " on /proc/" + std::to_string(pid) +
                "/mem: another user's process, or kernel.yama.ptrace_scope forbids it)");
  ::close(fd);
  auto exe = std::filesystem::read_symlink(proc / "exe", ec);
  if (ec)
    throw Error("passive attach: cannot read /proc/" + std::to_string(pid) +
                "/exe: " + ec.message());
  // A binary replaced on disk since the process started (an upgrade) is reached through the
  // process's own mapping.
  if (!std::filesystem::exists(exe, ec)) exe = proc / "exe";
  return exe;
}

}  // namespace

const std::vector<std::string>& qemu_required_symbols() {
  static const std::vector<std::string> names = {"bdrv_co_preadv_part", "bdrv_co_pwritev_part"};
  return names;
}

struct QemuAttach::Impl {
  pid_t pid = 0;
  std::filesystem::path exe;
  int pidfd = -1;
  std::unique_ptr<qemu_uprobe_bpf, SkelDeleter> skel;
  std::vector<bpf_link*> links;
  std::unique_ptr<ring_buffer, RingDeleter> ring;
  const std::function<void(const v2p_qemu_event&)>* on_event = nullptr;
  std::size_t delivered = 0;

  static int on_sample(void* ctx, void* data, std::size_t size) {
    auto* s = static_cast<Impl*>(ctx);
    if (size < sizeof(v2p_qemu_event)) return 0;
    v2p_qemu_event e;
    std::memcpy(&e, data, sizeof e);
    ++s->delivered;
    (*s->on_event)(e);
    return 0;
  }

  void detach() noexcept {
    ring.reset();
    for (auto* l : links) bpf_link__destroy(l);
    links.clear();
    skel.reset();
    if (pidfd >= 0) ::close(pidfd);
    pidfd = -1;
  }
  ~Impl() { detach(); }
};

QemuAttach::QemuAttach(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
QemuAttach::~QemuAttach() = default;

std::unique_ptr<QemuAttach> QemuAttach::attach(pid_t pid, const QemuAttachOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->pid = pid;
  impl->exe = check_process(pid);
  const auto symbols = dynamic_functions(impl->exe);
  if (const auto missing = missing_symbols(symbols, qemu_required_symbols()); !missing.empty())
    throw Error("passive attach: " + impl->exe.string() + " (process " + std::to_string(pid) +
                ") does not export " + join(missing) +
                ": not a QEMU block layer, or a build without these dynamic symbols");
  impl->pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (impl->pidfd < 0)
    throw system_error("passive attach: pidfd_open(" + std::to_string(pid) + ")");

  const LibbpfLogCapture libbpf_log;
  impl->skel.reset(qemu_uprobe_bpf__open());
  if (!impl->skel) throw system_error("cannot open the passive-attach eBPF object");
  auto& skel = *impl->skel;
  bpf_map__set_max_entries(skel.maps.v2p_qemu_events, options.ring_bytes);
  if (const int rc = qemu_uprobe_bpf__load(&skel); rc != 0)
    throw Error("loading the passive-attach eBPF programs failed (" +
                std::string(std::strerror(-rc)) + "): " + libbpf_log.last());
  const std::uint32_t tgid = static_cast<std::uint32_t>(pid);
  const std::uint8_t one = 1;
  if (bpf_map_update_elem(bpf_map__fd(skel.maps.v2p_qemu_tgids), &tgid, &one, BPF_ANY) != 0)
    throw system_error("cannot add process " + std::to_string(pid) + " to the filter");

  const struct {
    bpf_program* prog;
    const char* symbol;
  } uprobes[] = {{skel.progs.v2p_qemu_preadv, "bdrv_co_preadv_part"},
                 {skel.progs.v2p_qemu_pwritev, "bdrv_co_pwritev_part"}};
  for (const auto& u : uprobes) {
    bpf_link* l = bpf_program__attach_uprobe(u.prog, false, pid, impl->exe.c_str(),
                                             symbols.at(u.symbol).file_offset);
    if (!l)
      throw system_error("passive attach: cannot attach a uprobe to " + std::string(u.symbol) +
                         " in " + impl->exe.string() + " (" + libbpf_log.last() + ")");
    impl->links.push_back(l);
  }
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, skel.obj) {
    if (bpf_program__type(prog) != BPF_PROG_TYPE_TRACEPOINT) continue;
    bpf_link* l = bpf_program__attach(prog);
    if (!l)
      throw system_error("passive attach: cannot attach " + std::string(bpf_program__name(prog)) +
                         " (" + libbpf_log.last() + ")");
    impl->links.push_back(l);
  }
  impl->ring.reset(ring_buffer__new(bpf_map__fd(skel.maps.v2p_qemu_events), &Impl::on_sample,
                                    impl.get(), nullptr));
  if (!impl->ring) throw system_error("cannot map the passive-attach ring buffer");
  return std::unique_ptr<QemuAttach>(new QemuAttach(std::move(impl)));
}

std::size_t QemuAttach::poll(int timeout_ms,
                             const std::function<void(const v2p_qemu_event&)>& on_event) {
  Impl& s = *impl_;
  if (!s.ring) return 0;
  s.on_event = &on_event;
  s.delivered = 0;
  const int rc = ring_buffer__poll(s.ring.get(), timeout_ms);
  s.on_event = nullptr;
  if (rc < 0 && rc != -EINTR) throw system_error("polling the passive-attach ring buffer", -rc);
  return s.delivered;
}

std::uint64_t QemuAttach::lost_events() const {
  if (!impl_->skel) return 0;
  const int cpus = libbpf_num_possible_cpus();
  std::vector<std::uint64_t> per_cpu(static_cast<std::size_t>(cpus > 0 ? cpus : 1));
  const std::uint32_t zero = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(impl_->skel->maps.v2p_qemu_lost), &zero, per_cpu.data()) != 0)
    return 0;
  std::uint64_t sum = 0;
  for (auto v : per_cpu) sum += v;
  return sum;
}

pid_t QemuAttach::pid() const noexcept {
  return impl_->pid;
}
const std::filesystem::path& QemuAttach::executable() const noexcept {
  return impl_->exe;
}

bool QemuAttach::exited() const {
  if (impl_->pidfd < 0) return true;
  pollfd p{impl_->pidfd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

void QemuAttach::detach() noexcept {
  impl_->detach();
}

}  // namespace v2p::pfilter
