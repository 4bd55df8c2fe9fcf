// The observation path without privileges: the latency histogram layout and quantiles, the
// per-layer bookkeeping, the /metrics text (structure, escaping, promtool), `v2p top`'s
// arithmetic, and the HTTP server's limits against a real Agent fed through its ingest socket
// by a scripted export declaring 1 000 vdisks (which also times a scrape of them).
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "agent/agent.hpp"
#include "agent/io_layers.hpp"
#include "agent/metrics.hpp"
#include "agent/observation_json.hpp"
#include "cli/top_model.hpp"
#include "common/clock.hpp"
#include "common/ingest_wire.hpp"
#include "common/latency_histogram.hpp"
#include "common/test_skip.hpp"

namespace v2p::agent {
namespace {

namespace fs = std::filesystem;

TEST(LayerHistogram, BucketsMatchTheProbesLog2MicrosecondLayout) {
  EXPECT_EQ(latency_bucket(0), 0u);
  EXPECT_EQ(latency_bucket(999), 0u);      // below 1 µs
  EXPECT_EQ(latency_bucket(1'999), 0u);    // [1, 2) µs
  EXPECT_EQ(latency_bucket(2'000), 1u);    // [2, 4) µs
  EXPECT_EQ(latency_bucket(100'000), 6u);  // 100 µs in [64, 128)
  EXPECT_EQ(latency_bucket(~0ull), kLatencyBuckets - 1);
  EXPECT_DOUBLE_EQ(latency_bucket_upper_seconds(6), 128e-6);
}

TEST(LayerHistogram, QuantilesInterpolateInsideTheBucket) {
  LayerHistogram h;
  EXPECT_EQ(h.quantile_seconds(0.5), 0);
  for (int i = 0; i < 90; ++i) h.add(100'000);    // [64, 128) µs
  for (int i = 0; i < 10; ++i) h.add(5'000'000);  // 5 ms: [4096, 8192) µs
  EXPECT_EQ(h.count, 100u);
  const double p50 = h.quantile_seconds(0.5), p99 = h.quantile_seconds(0.99);
  EXPECT_GE(p50, 64e-6);
  EXPECT_LE(p50, 128e-6);
  EXPECT_GE(p99, 4096e-6);
  EXPECT_LE(p99, 8192e-6);
}

ContextRecord record(std::uint32_t vm, std::uint32_t vdisk, IoOp op, std::uint64_t ns) {
  ContextRecord r;
  r.vm_id = vm;
  r.vdisk_id = vdisk;
  r.op = static_cast<std::uint8_t>(op);
  r.length = 4096;
  r.submit_ns = 1'000'000;
  r.complete_ns = r.submit_ns + ns;
  return r;
}

TEST(IoLayers, HostLayerFromRecordsExportLayerFromCumulativeFigures) {
  IoLayers l;
  const VdiskKey a{VmId{1}, VdiskId{1}}, b{VmId{1}, VdiskId{2}};
  l.host_io(record(1, 1, IoOp::kRead, 50'000));
  l.host_io(record(1, 1, IoOp::kWrite, 70'000));
  l.host_io(record(1, 2, IoOp::kFlush, 9'000));
  l.host_io(record(1, 1, IoOp::kRead, 50'000));
  EXPECT_EQ(l.host_ops(a)[0].requests, 2u);
  EXPECT_EQ(l.host_ops(a)[0].bytes, 8192u);
  EXPECT_EQ(l.host_ops(a)[1].requests, 1u);
  EXPECT_EQ(l.host_ops(b)[2].requests, 1u);
  EXPECT_EQ(l.host_ops(b)[2].bytes, 0u);  // a flush moves no data

  ingest::ExportLatency e;
  e.op = 0;
  e.requests = 10;
  e.bytes = 40960;
  e.buckets[5] = 10;
  l.export_figures(7, a, e);
  e.requests = 30;  // cumulative: replaces, never adds
  e.buckets[5] = 30;
  l.export_figures(7, a, e);
  l.export_figures(8, a, e);  // a second export (connection) of the same vdisk adds
  EXPECT_EQ(l.export_ops(a)[0].requests, 60u);
  l.export_gone(7);  // its last figures stay
  EXPECT_EQ(l.export_ops(a)[0].requests, 60u);
  EXPECT_EQ(l.export_ops(a)[0].latency.count, 60u);
  l.drop(a);
  EXPECT_EQ(l.export_ops(a)[0].requests, 0u);
  EXPECT_EQ(l.host_ops(a)[0].requests, 0u);
}

Observation sample_observation(std::size_t vdisks) {
  Observation o;
  o.taken_ns = 1;
  for (std::size_t i = 0; i < vdisks; ++i) {
    auto& v = o.vdisks.emplace_back();
    v.vm = "vm" + std::to_string(i / 4);
    v.vdisk = "disk" + std::to_string(i % 4);
    v.devices = {DeviceId::from_major_minor(7, static_cast<std::uint32_t>(i % 8))};
    for (std::size_t op = 0; op < 2; ++op) {
      for (std::uint64_t n = 0; n < 50; ++n) {
        v.export_ops[op].requests++;
        v.export_ops[op].bytes += 4096;
        v.export_ops[op].latency.add(20'000 + n * 7'000);
        v.host_ops[op].requests++;
        v.host_ops[op].latency.add(10'000 + n * 5'000);
      }
    }
  }
  for (std::uint32_t d = 0; d < 8; ++d) {
    auto& dev = o.devices.emplace_back();
    dev.device = DeviceId::from_major_minor(7, d);
    dev.name = "loop" + std::to_string(d);
    dev.ops[1].requests = 5;
    dev.ops[1].latency.add(8'000);
  }
  return o;
}

TEST(Metrics, HistogramsAreCumulativeAndEndAtCount) {
  const std::string text = render_metrics(sample_observation(3));
  std::istringstream in(text);
  std::string line;
  std::map<std::string, std::vector<double>> buckets;
  std::map<std::string, double> counts;
  const std::regex bucket(R"re((\w+)_bucket\{(.*),le="([^"]+)"\} (\S+))re");
  const std::regex count(R"re((\w+)_count\{(.*)\} (\S+))re");
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_match(line, m, bucket))
      buckets[m[1].str() + m[2].str()].push_back(std::stod(m[4]));
    if (std::regex_match(line, m, count)) counts[m[1].str() + m[2].str()] = std::stod(m[3]);
  }
  ASSERT_EQ(buckets.size(), 3u * 2 * 2 + 8);  // vdisks x ops x layers, + 8 devices (write)
  for (const auto& [name, b] : buckets) {
    EXPECT_TRUE(std::is_sorted(b.begin(), b.end())) << name;
    EXPECT_EQ(b.back(), counts.at(name)) << name;
  }
  EXPECT_NE(text.find("# TYPE v2p_vdisk_export_latency_seconds histogram"), std::string::npos);
  EXPECT_NE(text.find("v2p_device_info{device=\"7:3\",name=\"loop3\"} 1"), std::string::npos);
}

TEST(Metrics, RenderingAThousandVdisks) {
  const Observation o = sample_observation(1000);
  std::vector<double> ms;
  std::size_t bytes = 0;
  for (int i = 0; i < 9; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    bytes = render_metrics(o).size();
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  std::printf("render_metrics, 1000 vdisks: %zu bytes, median %.1f ms, min %.1f ms\n", bytes,
              ms[ms.size() / 2], ms.front());
  EXPECT_GT(bytes, 1'000'000u);
}

TEST(Metrics, LabelValuesAreEscaped) {
  Observation o;
  auto& v = o.vdisks.emplace_back();
  v.vm = "a\"b\\c\nd";
  v.vdisk = "x";
  const std::string text = render_metrics(o);
  EXPECT_NE(text.find(R"(vm="a\"b\\c\nd")"), std::string::npos) << text;
}

TEST(Metrics, PromtoolAcceptsThem) {
  V2P_REQUIRE_TOOLS("promtool");
  const fs::path file = fs::temp_directory_path() / ("v2p-metrics-" + std::to_string(::getpid()));
  std::ofstream(file) << render_metrics(sample_observation(20));
  const int rc = std::system(("promtool check metrics < " + file.string() + " 2>&1").c_str());
  fs::remove(file);
  EXPECT_EQ(rc, 0);
}

TEST(Top, RatesAndQuantilesComeFromTheDifferenceOfTwoSamples) {
  Observation a = sample_observation(2);
  Observation b = a;
  b.taken_ns = a.taken_ns + 2'000'000'000;
  // In the two seconds: 400 reads of 1 MB at 1 ms on vdisk 0, nothing on vdisk 1.
  for (int i = 0; i < 400; ++i) {
    b.vdisks[0].export_ops[0].requests++;
    b.vdisks[0].export_ops[0].bytes += 1'000'000;
    b.vdisks[0].export_ops[0].latency.add(1'000'000);
  }
  const auto m = cli::top_model(a, b, 2.0, cli::TopSort::kIops);
  ASSERT_EQ(m.vdisks.size(), 2u);
  EXPECT_EQ(m.vdisks[0].vdisk, "disk0");
  EXPECT_DOUBLE_EQ(m.vdisks[0].iops, 200);
  EXPECT_DOUBLE_EQ(m.vdisks[0].mb_s, 200);
  EXPECT_DOUBLE_EQ(m.vdisks[0].read_share, 1);
  EXPECT_GE(m.vdisks[0].p50[0], 512e-6);  // 1 ms is in [512, 1024) µs... [1024, 2048) µs
  EXPECT_LE(m.vdisks[0].p50[0], 2048e-6);
  EXPECT_EQ(m.vdisks[1].iops, 0);
  EXPECT_EQ(m.vdisks[1].p50[0], 0);  // no request in the interval: no latency
  // The device view names who loads each device.
  const auto it = std::find_if(m.devices.begin(), m.devices.end(),
                               [](const auto& d) { return d.device == "7:0"; });
  ASSERT_NE(it, m.devices.end());
  ASSERT_EQ(it->users.size(), 1u);
  EXPECT_EQ(it->users[0].first, "vm0/disk0");
  const auto by_name = cli::top_model(a, b, 2.0, cli::TopSort::kName);
  EXPECT_EQ(by_name.vdisks[0].vdisk, "disk0");
  EXPECT_EQ(by_name.vdisks[1].vdisk, "disk1");
}

TEST(Top, ObservationSurvivesTheStatsAnswer) {
  const Observation o = sample_observation(5);
  nlohmann::json j = nlohmann::json::object();
  add_observation(j, o);
  const Observation back = observation_from_json(nlohmann::json::parse(j.dump()));
  ASSERT_EQ(back.vdisks.size(), 5u);
  EXPECT_EQ(back.vdisks[3].vm, "vm0");
  EXPECT_EQ(back.vdisks[3].export_ops[1].latency.buckets,
            o.vdisks[3].export_ops[1].latency.buckets);
  EXPECT_EQ(back.devices[2].ops[1].requests, 5u);
}

// An export scripted on the ingest socket: the agent cannot tell it from `v2p serve`.
class ScriptedExport {
 public:
  explicit ScriptedExport(const fs::path& socket) : fd_(::socket(AF_UNIX, SOCK_SEQPACKET, 0)) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", socket.c_str());
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ADD_FAILURE() << "connect";
    msg_.append(ingest::Hello{ingest::kProtocolVersion, static_cast<std::uint32_t>(::getpid())});
  }
  ~ScriptedExport() { ::close(fd_); }
  template <class T>
  void add(const T& frame) {
    if (msg_.append(frame)) return;
    flush();
    msg_.append(frame);
  }
  void flush() {
    if (msg_.empty()) return;
    ASSERT_EQ(::send(fd_, msg_.bytes().data(), msg_.bytes().size(), 0),
              static_cast<ssize_t>(msg_.bytes().size()));
    msg_.clear();
  }

 private:
  int fd_;
  ingest::MessageBuilder msg_;
};

class AgentHttp : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("v2p-observe-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream(dir_ / "image.raw") << "x";
    AgentOptions o;
    o.query_socket = dir_ / "agent.sock";
    o.ingest_socket = dir_ / "ingest.sock";
    o.state_dir.clear();
    o.probe = false;
    o.http_listen = "127.0.0.1:0";
    agent_ = std::make_unique<Agent>(o);
    thread_ = std::thread([this] {
      while (!stop_) agent_->round(5);
    });
    const auto addr = agent_->http_address();
    host_ = addr.substr(0, addr.rfind(':'));
    port_ = std::stoi(addr.substr(addr.rfind(':') + 1));
  }
  void TearDown() override {
    export_.reset();
    stop_ = true;
    thread_.join();
    agent_.reset();
    fs::remove_all(dir_);
  }
  // Declares `n` vdisks with 50 reads and 50 writes each (both layers).
  void feed(std::size_t n) {
    // Kept connected: the agent drops an export's vdisks when it goes.
    export_ = std::make_unique<ScriptedExport>(dir_ / "ingest.sock");
    ScriptedExport& e = *export_;
    for (std::uint32_t i = 1; i <= n; ++i) {
      e.add(VdiskDeclaration{(i - 1) / 4 + 1, i, "vm" + std::to_string((i - 1) / 4),
                             "disk" + std::to_string((i - 1) % 4), (dir_ / "image.raw").string()});
    }
    for (std::uint32_t i = 1; i <= n; ++i) {
      for (std::uint32_t op = 0; op < 2; ++op) {
        ingest::ExportLatency l;
        l.vm_id = (i - 1) / 4 + 1;
        l.vdisk_id = i;
        l.op = op;
        l.requests = 50;
        l.bytes = 50 * 4096;
        l.sum_ns = 50 * 100'000;
        l.buckets[6] = 50;
        e.add(l);
        for (int k = 0; k < 50; ++k) {
          e.add(record((i - 1) / 4 + 1, i, op == 0 ? IoOp::kRead : IoOp::kWrite, 80'000));
        }
      }
    }
    e.flush();
    // Everything is in once the last vdisk's host layer is.
    httplib::Client c(host_, port_);
    const std::string last = "vm" + std::to_string((n - 1) / 4) + "\",vdisk=\"disk" +
                             std::to_string((n - 1) % 4) + "\",op=\"write\"} 50";
    for (int i = 0; i < 200; ++i) {
      const auto r = c.Get("/metrics");
      if (r &&
          r->body.find("v2p_vdisk_host_latency_seconds_count{vm=\"" + last) != std::string::npos) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "the agent never showed the last vdisk's figures";
  }

  fs::path dir_;
  std::unique_ptr<Agent> agent_;
  std::unique_ptr<ScriptedExport> export_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::string host_;
  int port_ = 0;
};

TEST_F(AgentHttp, ScrapeOfAThousandVdisks) {
  feed(1000);
  httplib::Client c(host_, port_);
  std::vector<double> ms;
  std::size_t bytes = 0;
  for (int i = 0; i < 15; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = c.Get("/metrics");
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    bytes = r->body.size();
  }
  std::sort(ms.begin(), ms.end());
  double load = 0;
  std::ifstream("/proc/loadavg") >> load;
  std::printf(
      "scrape of 1000 vdisks: %zu bytes, median %.1f ms, min %.1f ms, max %.1f ms "
      "(load average %.2f)\n",
      bytes, ms[ms.size() / 2], ms.front(), ms.back(), load);
  // The target is 50 ms (docs/observe.md has the quiet-machine figure); a shared, loaded CI
  // machine gets headroom, a regression by an order of magnitude still fails.
  EXPECT_LT(ms.front(), 250);
}

TEST_F(AgentHttp, UnknownPathsAre404AndBadRequestsRefused) {
  feed(4);
  httplib::Client c(host_, port_);
  for (const char* path : {"/nope", "/metrics/x", "/api/region?device=7:0&region=1",
                           "/api/region?device=junk", "/api/region?device=1:1&region=99999"}) {
    const auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 404) << path;
  }
  const auto big = c.Get(("/" + std::string(20'000, 'a')).c_str());
  EXPECT_TRUE(!big || big->status == 414 || big->status == 400);
  const auto post = c.Post("/metrics", std::string(100'000, 'x'), "text/plain");
  EXPECT_TRUE(!post || post->status == 413 || post->status == 404 || post->status == 405);
  const auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<script src=\"/app.js\">"), std::string::npos);
  const auto obs = c.Get("/api/observation");
  ASSERT_TRUE(obs);
  EXPECT_EQ(nlohmann::json::parse(obs->body)["vdisks"].size(), 4u);
}

TEST_F(AgentHttp, IdleConnectionsBeyondTheLimitDoNotStopTheServer) {
  // 48 connections that never send a byte (8 workers, 32 queued, the rest in the kernel's
  // backlog): each is dropped after the 2 s idle timeout, and the server answers again.
  std::vector<int> idle;
  for (int i = 0; i < 48; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    idle.push_back(fd);
  }
  httplib::Client c(host_, port_);
  c.set_read_timeout(30, 0);
  c.set_connection_timeout(30, 0);
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = c.Get("/metrics");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const int fd : idle) ::close(fd);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  std::printf("answered after %.1f s behind 48 idle connections\n", s);
  EXPECT_LT(s, 25);  // 48 / 8 workers x 2 s = 12 s at most, plus a loaded machine
}

}  // namespace
}  // namespace v2p::agent
