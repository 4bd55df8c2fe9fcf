// ec_bench: erasure-code throughput per core and pool read latency, in one run.
//   1. encode and decode GB/s for 4+2, 8+3, 10+4 through ec::Coder, through raw ISA-L calls and
//      through Jerasure (reed_sol_vandermonde_coding_matrix + jerasure_matrix_encode/decode);
//   2. latency of healthy and degraded 64 KiB reads from a real pool on directory stores.
// Pinned to one CPU; every rate comes from the median time of --calls calls, the coders called
// in turn so background load hits them alike.
#include <isa-l/erasure_code.h>
#include <jerasure.h>
#include <reed_sol.h>
#include <sched.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "ec/coder.hpp"
#include "ec/pool.hpp"

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;
using v2p::ec::Coder;

struct Options {
  int cpu = 1;
  int calls = 300;
  std::size_t chunk = 1U << 20;
  int reads = 300;
  fs::path dir = "/var/tmp";
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

struct Buffers {
  int k, m;
  std::size_t len;
  std::vector<std::vector<std::uint8_t>> chunks;  // k data + m parity
  Buffers(int k_, int m_, std::size_t l) : k(k_), m(m_), len(l) {
    chunks.assign(static_cast<std::size_t>(k + m), std::vector<std::uint8_t>(len));
    std::mt19937_64 gen(static_cast<std::uint64_t>(k * 100 + m));
    for (int i = 0; i < k; ++i) {
      for (auto& b : chunks[static_cast<std::size_t>(i)]) b = static_cast<std::uint8_t>(gen());
    }
  }
  std::vector<std::uint8_t*> ptrs(int from, int to) {
    std::vector<std::uint8_t*> p;
    for (int i = from; i < to; ++i) p.push_back(chunks[static_cast<std::size_t>(i)].data());
    return p;
  }
};

struct Row {
  std::string layout, op;
  double wrapper, raw, jerasure;
};

void coder_bench(const Options& o, int k, int m, std::vector<Row>& rows) {
  const std::size_t len = o.chunk;
  const std::size_t data_bytes = len * static_cast<std::size_t>(k);
  Buffers b(k, m, len);
  const Coder coder(k, m);
  auto data = b.ptrs(0, k);
  auto parity = b.ptrs(k, k + m);
  std::vector<const std::uint8_t*> cdata(data.begin(), data.end());

  // Raw ISA-L: the calls the wrapper makes, without the wrapper.
  std::vector<std::uint8_t> a(static_cast<std::size_t>((k + m) * k)), tbls(32U * k * m);
  gf_gen_cauchy1_matrix(a.data(), k + m, k);
  ec_init_tables(k, m, a.data() + k * k, tbls.data());
  // Jerasure: its own Vandermonde-derived RS matrix, w = 8, separate parity buffers.
  int* jmatrix = reed_sol_vandermonde_coding_matrix(k, m, 8);
  Buffers jb(k, m, len);
  auto jdata = jb.ptrs(0, k);
  auto jparity = jb.ptrs(k, k + m);
  std::vector<char*> jd, jc;
  for (auto* p : jdata) jd.push_back(reinterpret_cast<char*>(p));
  for (auto* p : jparity) jc.push_back(reinterpret_cast<char*>(p));

  // Decode: the first m data chunks are lost; survivors are data m..k-1 and all parity.
  std::vector<int> src, targets;
  for (int i = m; i < k + m; ++i) src.push_back(i);
  for (int i = 0; i < m; ++i) targets.push_back(i);
  std::vector<std::vector<std::uint8_t>> out(static_cast<std::size_t>(m),
                                             std::vector<std::uint8_t>(len));
  std::vector<std::uint8_t*> outp;
  for (auto& v : out) outp.push_back(v.data());
  std::vector<const std::uint8_t*> srcp;
  for (int i : src) srcp.push_back(b.chunks[static_cast<std::size_t>(i)].data());

  auto wrapper_encode = [&] { coder.encode(cdata, parity, len); };
  auto raw_encode = [&] {
    ec_encode_data(static_cast<int>(len), k, m, tbls.data(), data.data(), parity.data());
  };
  auto jer_encode = [&] {
    jerasure_matrix_encode(k, m, 8, jmatrix, jd.data(), jc.data(), static_cast<int>(len));
  };
  auto wrapper_decode = [&] {
    if (!coder.reconstruct(src, srcp, targets, outp, len)) std::abort();
  };
  // Raw decode: invert the survivors' rows, build tables, multiply (what ISA-L's own perf test
  // times for a decode).
  std::vector<std::uint8_t> bm(static_cast<std::size_t>(k * k)), dm(bm.size()),
      drows(static_cast<std::size_t>(m * k)), dtbls(32U * k * m);
  std::vector<std::uint8_t*> raw_src;
  for (int i : src) raw_src.push_back(b.chunks[static_cast<std::size_t>(i)].data());
  auto raw_decode = [&] {
    for (int r = 0; r < k; ++r)
      std::memcpy(&bm[static_cast<std::size_t>(r * k)],
                  &a[static_cast<std::size_t>(src[static_cast<std::size_t>(r)] * k)],
                  static_cast<std::size_t>(k));
    if (gf_invert_matrix(bm.data(), dm.data(), k) != 0) std::abort();
    // Lost chunks are data chunks: their decode rows are rows of the inverse.
    for (int t = 0; t < m; ++t)
      std::memcpy(&drows[static_cast<std::size_t>(t * k)],
                  &dm[static_cast<std::size_t>(targets[static_cast<std::size_t>(t)] * k)],
                  static_cast<std::size_t>(k));
    ec_init_tables(k, m, drows.data(), dtbls.data());
    ec_encode_data(static_cast<int>(len), k, m, dtbls.data(), raw_src.data(), outp.data());
  };
  std::vector<int> erasures;
  for (int i = 0; i < m; ++i) erasures.push_back(i);
  erasures.push_back(-1);
  auto jer_decode = [&] {
    if (jerasure_matrix_decode(k, m, 8, jmatrix, 1, erasures.data(), jd.data(), jc.data(),
                               static_cast<int>(len)) != 0) {
      std::abort();
    }
  };

  // Check once that every decoder really recovers the data, so no figure measures garbage.
  wrapper_encode();
  jer_encode();
  wrapper_decode();
  for (int t = 0; t < m; ++t) {
    if (out[static_cast<std::size_t>(t)] != b.chunks[static_cast<std::size_t>(t)]) std::abort();
  }
  std::fill(out[0].begin(), out[0].end(), 0);
  raw_decode();
  if (out[0] != b.chunks[0]) std::abort();
  const auto keep = jb.chunks[0];
  jer_decode();
  if (jb.chunks[0] != keep) std::abort();

  // Per-call times, the three coders called in turn, so a burst of background load hits all of
  // them; the median call time gives the rate.
  std::vector<double> we, re, je, wd, rd, jdd;
  auto timed = [](const std::function<void()>& fn) {
    const auto t0 = Clock::now();
    fn();
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  for (int i = 0; i < o.calls; ++i) {
    // The first call after Jerasure finds colder caches than the one after it: alternate which
    // of wrapper and raw goes first.
    if (i % 2 == 0) {
      we.push_back(timed(wrapper_encode));
      re.push_back(timed(raw_encode));
    } else {
      re.push_back(timed(raw_encode));
      we.push_back(timed(wrapper_encode));
    }
    je.push_back(timed(jer_encode));
    if (i % 2 == 0) {
      wd.push_back(timed(wrapper_decode));
      rd.push_back(timed(raw_decode));
    } else {
      rd.push_back(timed(raw_decode));
      wd.push_back(timed(wrapper_decode));
    }
    jdd.push_back(timed(jer_decode));
  }
  const auto gbs = [&](const std::vector<double>& t) {
    return static_cast<double>(data_bytes) / median(t) / 1e9;
  };
  const auto layout = fmt::format("{}+{}", k, m);
  rows.push_back({layout, "encode", gbs(we), gbs(re), gbs(je)});
  rows.push_back({layout, "decode", gbs(wd), gbs(rd), gbs(jdd)});
  std::free(jmatrix);
}

void read_bench(const Options& o) {
  const auto dir = o.dir / ("v2p-ec-bench." + std::to_string(::getpid()));
  fs::remove_all(dir);
  v2p::ec::PoolConfig cfg;
  cfg.metadata_dir = dir / "meta";
  for (std::uint32_t i = 1; i <= 6; ++i) {
    const auto s = dir / ("store" + std::to_string(i));
    fs::create_directories(s);
    cfg.stores.push_back({i, s});
  }
  cfg.default_layout = {4, 2};
  cfg.container_bytes = 4U << 20;
  cfg.block_bytes = 64U << 10;
  cfg.allow_shared_domains = true;  // the bench stores share this machine's disk
  const v2p::VdiskKey key{v2p::VmId{1}, v2p::VdiskId{0}};
  constexpr std::uint64_t kTotal = 64ULL << 20;
  std::vector<std::uint8_t> data(kTotal);
  std::mt19937_64 gen(5);
  for (auto& x : data) x = static_cast<std::uint8_t>(gen());
  std::vector<std::uint64_t> offsets;  // blocks in data chunk 0 of each container
  for (int i = 0; i < o.reads; ++i) {
    const std::uint64_t container = gen() % (kTotal / cfg.container_bytes);
    offsets.push_back(container * cfg.container_bytes + (gen() % 16) * cfg.block_bytes);
  }
  auto measure = [&](v2p::ec::Pool& pool) {
    std::vector<double> us;
    for (auto off : offsets) {
      const auto t0 = Clock::now();
      auto r = pool.read(key, v2p::VirtualOffset{off}, cfg.block_bytes);
      const auto t1 = Clock::now();
      if (!r.ok() || !std::equal(r.value().begin(), r.value().end(),
                                 data.begin() + static_cast<std::ptrdiff_t>(off))) {
        fmt::print(stderr, "read at {} failed: {}\n", off, r.ok() ? "wrong bytes" : r.error());
        std::exit(1);
      }
      us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
    return us;
  };
  std::vector<double> healthy, degraded;
  std::uint64_t degraded_reads = 0;
  {
    v2p::ec::Pool pool(cfg);
    pool.write(key, v2p::VirtualOffset{0}, data);
    pool.flush();
    (void)measure(pool);  // warm the page cache, as the degraded run will find it
    healthy = measure(pool);
    // Lose data chunk 0 of every container: each measured read must reconstruct.
    for (std::uint32_t i = 1; i <= 6; ++i) {
      for (const auto& e : fs::directory_iterator(dir / ("store" + std::to_string(i)) / "chunks")) {
        if (e.path().extension() == ".00") fs::remove(e.path());
      }
    }
    degraded = measure(pool);
    degraded_reads = pool.status().reads.degraded;
  }
  fs::remove_all(dir);
  fmt::print(
      "\npool reads: 4+2, 4 MiB containers, 64 KiB blocks, {} random reads, page cache warm\n",
      o.reads);
  fmt::print("{:<10} {:>12} {:>12}\n", "state", "median us", "p99 us");
  fmt::print("{:<10} {:>12.1f} {:>12.1f}\n", "healthy", median(healthy), percentile(healthy, 0.99));
  fmt::print("{:<10} {:>12.1f} {:>12.1f}\n", "degraded", median(degraded),
             percentile(degraded, 0.99));
  fmt::print("degraded/healthy median: {:.1f}x ({} reads went degraded)\n",
             median(degraded) / median(healthy), degraded_reads);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--cpu")
      o.cpu = std::atoi(argv[i + 1]);
    else if (flag == "--calls")
      o.calls = std::atoi(argv[i + 1]);
    else if (flag == "--chunk-kib")
      o.chunk = static_cast<std::size_t>(std::atoi(argv[i + 1])) << 10;
    else if (flag == "--reads")
      o.reads = std::atoi(argv[i + 1]);
    else if (flag == "--dir")
      o.dir = argv[i + 1];
    else {
      fmt::print(stderr,
                 "usage: ec_bench [--cpu N] [--calls N] [--chunk-kib N] [--reads N] [--dir D]\n");
      return 2;
    }
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(o.cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    fmt::print(stderr, "cannot pin to cpu {}: {}\n", o.cpu, std::strerror(errno));
    return 1;
  }
  fmt::print("ec_bench: cpu {}, chunk {} KiB, median of {} calls each; GB/s = 1e9 data bytes/s\n",
             o.cpu, o.chunk >> 10, o.calls);
  std::vector<Row> rows;
  for (auto [k, m] : {std::pair{4, 2}, {8, 3}, {10, 4}}) coder_bench(o, k, m, rows);
  fmt::print("{:<6} {:<7} {:>12} {:>12} {:>12} {:>12} {:>14}\n", "layout", "op", "wrapper",
             "isa-l raw", "jerasure", "wrapper/raw", "wrapper/jer");
  for (const auto& r : rows) {
    fmt::print("{:<6} {:<7} {:>12.2f} {:>12.2f} {:>12.2f} {:>12.3f} {:>14.2f}\n", r.layout, r.op,
               r.wrapper, r.raw, r.jerasure, r.wrapper / r.raw, r.wrapper / r.jerasure);
  }
  read_bench(o);
  return 0;
}
