// The agent's figures, measured in one run (docs/agent.md, "Performance"):
//   ingest:  joined events per second on one core: a simulated workload's records go through the
//            ingest wire (encode by the export, parse by the agent, id translation) and, with the
//            block-layer events, into the correlator, as the agent's round does
//   socket:  records per second from a real AgentSink into a real Agent over the ingest socket
//   restart: a state dir holding a 1 M-extent snapshot -> Agent constructed and answering
//   queries: whose and point map p50/p99 over the query socket on that map (one client)
//   rss:     resident bytes per extent of the restored agent
// Usage: agent_bench [extents (default 1000000)] [map|ingest]. Prints one JSON object.
#include <fmt/core.h>
#include <malloc.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string_view>
#include <thread>

#include "agent/agent.hpp"
#include "agent/agent_client.hpp"
#include "common/ingest_wire.hpp"
#include "correlator/sim/host_fs_sim.hpp"
#include "correlator/snapshot.hpp"
#include "vfilter/agent_sink.hpp"

namespace v2p {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::uint64_t rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

// The agent's per-record work on the wire: parse and translate the export's ids.
struct Translate final : ingest::MessageVisitor {
  correlator::Correlator* corr = nullptr;
  void on_hello(const ingest::Hello&) override {}
  void on_declaration(const VdiskDeclaration& d) override { corr->declare(d); }
  void on_backend(const BackendProcess&) override {}
  void on_lost(const ingest::LostRecords&) override {}
  void on_image(const std::string&) override {}
  void on_record(const ContextRecord& r) override {
    ContextRecord g = r;
    g.vm_id = r.vm_id;  // identity translation: same cost class as the agent's cached lookup
    corr->on_record(g);
  }
};

nlohmann::json bench_ingest(int rounds) {
  correlator::sim::SimOptions o;
  o.seed = 99;
  o.tagged_vdisks = 4;
  o.vdisk_blocks = 1 << 18;
  o.device_blocks = 1 << 21;
  o.requests = 200'000;
  o.concurrency = 32;
  o.fragmentation = 0.2;
  o.journal_per_request = 0.05;
  o.metadata_per_request = 0.0;
  const auto s = correlator::sim::simulate(o);
  // The exports' messages, built beforehand (their cost is the export's, not the agent's).
  struct Batch {
    std::vector<std::byte> message;
    std::vector<PhysEvent> events;       // delivered before the batch's records
    std::vector<ContextRecord> records;  // the message's records, for the direct feed
    std::uint64_t at_ns = 0;
  };
  std::vector<Batch> batches(1);
  ingest::MessageBuilder m;
  for (const auto& d : s.deliveries) {
    if (d.is_record) {
      if (!m.append(d.record)) {
        batches.back().message.assign(m.bytes().begin(), m.bytes().end());
        batches.emplace_back();
        m.clear();
        m.append(d.record);
      }
      batches.back().records.push_back(d.record);
      batches.back().at_ns = d.at_ns;
    } else {
      batches.back().events.push_back(d.event);
    }
  }
  batches.back().message.assign(m.bytes().begin(), m.bytes().end());
  // Wire rounds (the agent's path) and direct rounds (the same batches straight into the
  // correlator, same advance points) alternate, so both see the same machine; best of 7 each.
  // Their ratio is what the ingest wire and id translation cost.
  double best = 1e9, direct = 1e9;
  std::uint64_t joined = 0;
  for (int round = 0; round < rounds; ++round) {
    {
      correlator::Correlator c;
      for (const auto& d : s.declarations) c.declare(d);
      Translate t;
      t.corr = &c;
      const auto start = Clock::now();
      for (const auto& b : batches) {
        for (const auto& e : b.events) c.on_event(e);
        ingest::parse_message(b.message, t);
        c.advance(b.at_ns);
      }
      c.drain();
      best = std::min(best, seconds_since(start));
      joined = c.stats().joined_exact;
    }
    {
      correlator::Correlator c;
      for (const auto& d : s.declarations) c.declare(d);
      const auto start = Clock::now();
      for (const auto& b : batches) {
        for (const auto& e : b.events) c.on_event(e);
        for (const auto& r : b.records) c.on_record(r);
        c.advance(b.at_ns);
      }
      c.drain();
      direct = std::min(direct, seconds_since(start));
    }
  }
  return {{"joined_events", joined},
          {"seconds", best},
          {"joined_events_per_second", static_cast<double>(joined) / best},
          {"correlator_only_joined_events_per_second", static_cast<double>(joined) / direct},
          {"ratio_agent_to_correlator_only", direct / best}};
}

struct Running {
  explicit Running(agent::AgentOptions o) {
    const auto start = Clock::now();
    a = std::make_unique<agent::Agent>(std::move(o));
    construct_seconds = seconds_since(start);
    thread = std::thread([this] {
      while (!stop) a->round(1);
    });
  }
  ~Running() {
    stop = true;
    thread.join();
  }
  std::unique_ptr<agent::Agent> a;
  double construct_seconds = 0;
  std::atomic<bool> stop{false};
  std::thread thread;
};

nlohmann::json bench_socket(const std::filesystem::path& dir) {
  agent::AgentOptions o;
  o.query_socket = dir / "q.sock";
  o.ingest_socket = dir / "i.sock";
  o.state_dir.clear();
  o.probe = false;
  Running agent(o);
  vfilter::AgentSinkOptions so;
  so.socket = o.ingest_socket;
  so.queue_records = 1 << 20;
  vfilter::AgentSink sink(so);
  sink.declare({1, 1, "vm1", "d0", (dir / "none").string()});
  while (!sink.stats().connected) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  constexpr std::uint64_t kRecords = 2'000'000;
  ContextRecord r;
  r.vm_id = 1;
  r.vdisk_id = 1;
  const auto start = Clock::now();
  for (std::uint64_t i = 0; i < kRecords; ++i) {
    r.voffset = i * 4096;
    sink.publish(r);
    // Paced in bursts of a queue's worth so the bench measures transport, not drops.
    if (i % 65536 == 65535) {
      while (sink.stats().sent + sink.stats().lost + 65536 < i) std::this_thread::yield();
    }
  }
  std::uint64_t ingested = 0;
  while (Clock::now() - start < std::chrono::seconds(30)) {
    ingested = agent::query_agent(o.query_socket, {{"op", "stats"}})["agent"]["records_ingested"];
    if (ingested + sink.stats().lost >= kRecords) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const double secs = seconds_since(start);
  return {{"records", kRecords},
          {"ingested", ingested},
          {"lost", sink.stats().lost},
          {"seconds", secs},
          {"records_per_second", static_cast<double>(ingested) / secs}};
}

int connect_to(const std::filesystem::path& p) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, p.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) std::abort();
  return fd;
}

// One request line, one answer line, on a kept connection; returns seconds.
double ask(int fd, const std::string& line, std::string& answer) {
  const auto start = Clock::now();
  if (::send(fd, line.data(), line.size(), 0) != ssize_t(line.size())) std::abort();
  answer.clear();
  char buf[65536];
  while (answer.find('\n') == std::string::npos) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) std::abort();
    answer.append(buf, static_cast<std::size_t>(n));
  }
  return seconds_since(start);
}

nlohmann::json percentiles(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const auto at = [&](double q) { return v[static_cast<std::size_t>(q * (v.size() - 1))] * 1e6; };
  return {{"p50_us", at(0.5)}, {"p99_us", at(0.99)}, {"max_us", v.back() * 1e6}};
}

nlohmann::json bench_map(const std::filesystem::path& dir, std::uint64_t extents) {
  const auto state = dir / "state";
  std::filesystem::create_directories(state);
  const DeviceId dev = DeviceId::from_major_minor(259, 1);
  const VdiskKey key{VmId{1}, VdiskId{1}};
  {
    correlator::Correlator c;
    c.declare({1, 1, "vm1", "d0", "/nonexistent/vm1.raw"});
    // 4 KiB extents every 8 KiB of the vdisk, scattered over the device: no two coalesce.
    std::mt19937_64 rng(7);
    for (std::uint64_t i = 0; i < extents; ++i) {
      Mapping m;
      m.voffset = VirtualOffset{i * 8192};
      m.length = 4096;
      m.device = dev;
      m.sector = PhysicalSector{(rng() % (extents * 64)) * 16};
      m.seen_ns = i;
      c.mutable_map().map(key, m);
    }
    correlator::save_snapshot(c, state / "map.snap");
  }
  ::malloc_trim(0);
  const std::uint64_t rss_before = rss_bytes();
  agent::AgentOptions o;
  o.query_socket = dir / "mq.sock";
  o.ingest_socket = dir / "mi.sock";
  o.state_dir = state;
  o.snapshot_interval_ms = 86'400'000;
  o.probe = false;
  const auto start = Clock::now();
  Running agent(o);
  const int fd = connect_to(o.query_socket);
  std::string answer;
  ask(fd,
      R"({"v":1,"op":"stats"})"
      "\n",
      answer);
  const double restart = seconds_since(start);
  const auto stats = nlohmann::json::parse(answer);
  const std::uint64_t rss_after = rss_bytes();
  std::vector<double> whose, point;
  std::mt19937_64 rng(11);
  const auto snap = correlator::load_snapshot(state / "map.snap");
  const auto all = snap.map.extents(key);
  for (int i = 0; i < 20'000; ++i) {
    const auto& e = all[rng() % all.size()];
    whose.push_back(ask(fd,
                        fmt::format(R"({{"v":1,"op":"whose","device":"259:1","sector":{}}})"
                                    "\n",
                                    e.sector.value() + 3),
                        answer));
    if (answer.find("\"vm\":\"vm1\"") == std::string::npos) std::abort();
    point.push_back(ask(fd,
                        fmt::format(R"({{"v":1,"op":"map","vm":"vm1","offset":{},"length":1}})"
                                    "\n",
                                    e.voffset.value() + 100),
                        answer));
  }
  ::close(fd);
  return {{"extents", stats["extents"]},
          {"restart_to_answer_seconds", restart},
          {"agent_construct_seconds", agent.construct_seconds},
          {"rss_bytes_per_extent",
           static_cast<double>(rss_after - rss_before) / static_cast<double>(extents)},
          {"map_memory_bytes_per_extent",
           stats["map_memory_bytes"].get<double>() / static_cast<double>(extents)},
          {"whose", percentiles(whose)},
          {"point_map", percentiles(point)}};
}

}  // namespace
}  // namespace v2p

int main(int argc, char** argv) {
  const std::uint64_t extents = argc > 1 ? std::stoull(argv[1]) : 1'000'000;
  const auto dir =
      std::filesystem::temp_directory_path() / ("v2p-agent-bench-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  nlohmann::json out;
  const std::string_view only = argc > 2 ? argv[2] : "";
  // "map": only the restart, query and RSS figures (repeated runs); "ingest": one ingest round
  // only (for profiling, e.g. under valgrind --tool=callgrind).
  if (only == "ingest") {
    out["ingest"] = v2p::bench_ingest(1);
  } else {
    out["map"] = v2p::bench_map(dir, extents);  // first: RSS is measured from a quiet process
    if (only != "map") {
      out["ingest"] = v2p::bench_ingest(7);
      out["socket"] = v2p::bench_socket(dir);
    }
  }
  std::filesystem::remove_all(dir);
  fmt::print("{}\n", out.dump(2));
  return 0;
}
