#include "ec/status.hpp"

#include <fmt/core.h>

#include <nlohmann/json.hpp>
#include <set>

namespace v2p::ec {

PoolStatus Pool::status() const {
  PoolStatus s;
  std::lock_guard lock(mu_);
  s.pool_id = pool_id_;
  s.containers = containers_.size();
  s.dropped_tail = dropped_tail_;
  for (const auto& [key, oc] : open_) s.unsealed_bytes += oc.data.size();
  std::map<std::uint32_t, Store::State> states;
  for (const auto& [id, info] : stores_) {
    const auto st = info.configured ? info.store.probe(pool_id_) : Store::State::kMissing;
    states[id] = st;
    s.stores.push_back({id, info.store.root().string(),
                        info.configured ? to_string(st) : "removed from the configuration",
                        info.domain.major == 0xffffffffU ? info.domain.name : info.domain.label(),
                        info.configured, 0, 0});
  }
  auto store_status = [&](std::uint32_t id) -> StoreStatus& {
    for (auto& x : s.stores) {
      if (x.id == id) return x;
    }
    return s.stores.front();  // every referenced store has an entry (apply() makes one)
  };
  std::map<std::uint32_t, VmStatus> vms;
  std::map<std::uint32_t, std::set<std::string>> vm_domains;
  for (const auto& [id, c] : containers_) {
    auto& v = vms[c.vm];
    v.vm = c.vm;
    ++v.containers;
    v.stored_bytes += std::uint64_t{c.chunk_len} * c.stores.size();
    ++v.layouts[std::to_string(c.k) + "+" + std::to_string(c.m)];
    std::set<FailureDomain> seen;
    bool shared = false;
    for (std::size_t i = 0; i < c.stores.size(); ++i) {
      const auto& info = stores_.at(c.stores[i]);
      shared |= !seen.insert(info.domain).second;
      vm_domains[c.vm].insert(info.domain.major == 0xffffffffU ? info.domain.name
                                                               : info.domain.label());
      auto& ss = store_status(c.stores[i]);
      ++ss.chunks_expected;
      const bool present = states[c.stores[i]] == Store::State::kOnline &&
                           info.store.has_chunk(expect(c, static_cast<int>(i)));
      if (present) {
        ++ss.chunks_present;
      } else {
        ++v.chunks_missing;
      }
    }
    if (shared) ++v.containers_sharing_domains;
  }
  for (const auto key : index_.vdisks()) {
    auto& v = vms[key.vm.value()];
    v.vm = key.vm.value();
    v.protected_bytes += index_.live_bytes(key);
  }
  for (auto& [vm, v] : vms) {
    v.domains.assign(vm_domains[vm].begin(), vm_domains[vm].end());
    s.vms.push_back(std::move(v));
  }
  {
    std::lock_guard rl(rebuild_mu_);
    s.rebuild = rebuild_progress_;
  }
  s.reads = {reads_healthy_.load(), reads_degraded_.load(), reads_hedged_.load()};
  return s;
}

std::string status_text(const PoolStatus& s) {
  std::string out = fmt::format("pool {:016x}: {} containers, {} bytes not yet sealed\n", s.pool_id,
                                s.containers, s.unsealed_bytes);
  if (!s.dropped_tail.empty())
    out += "metadata log: torn tail dropped at open (" + s.dropped_tail + ")\n";
  out += fmt::format("{:>6} {:>16} {:>16} {:>10} {:<12} {:>8} {:>8}  {}\n", "vm", "protected B",
                     "stored B", "containers", "layouts", "missing", "shared", "failure domains");
  for (const auto& v : s.vms) {
    std::string layouts, domains;
    for (const auto& [l, n] : v.layouts) layouts += (layouts.empty() ? "" : ",") + l;
    for (const auto& d : v.domains) domains += (domains.empty() ? "" : ", ") + d;
    out += fmt::format("{:>6} {:>16} {:>16} {:>10} {:<12} {:>8} {:>8}  {}\n", v.vm,
                       v.protected_bytes, v.stored_bytes, v.containers, layouts, v.chunks_missing,
                       v.containers_sharing_domains, domains);
  }
  out += fmt::format("{:>6} {:>10} {:>10} {:>8}  {:<24} {}\n", "store", "chunks", "present",
                     "rebuilt", "failure domain", "state / path");
  for (const auto& st : s.stores) {
    const double pct = st.chunks_expected ? 100.0 * static_cast<double>(st.chunks_present) /
                                                static_cast<double>(st.chunks_expected)
                                          : 100.0;
    out += fmt::format("{:>6} {:>10} {:>10} {:>7.1f}%  {:<24} {} {}\n", st.id, st.chunks_expected,
                       st.chunks_present, pct, st.domain, st.state, st.path);
  }
  if (s.rebuild.running || s.rebuild.total || !s.rebuild.error.empty()) {
    out += fmt::format("rebuild of store {}: {}/{} chunks{}{}\n", s.rebuild.store, s.rebuild.done,
                       s.rebuild.total, s.rebuild.running ? " (running)" : "",
                       s.rebuild.error.empty() ? "" : ", failed: " + s.rebuild.error);
  }
  return out;
}

std::string status_json(const PoolStatus& s) {
  using nlohmann::json;
  json j;
  j["pool_id"] = fmt::format("{:016x}", s.pool_id);
  j["containers"] = s.containers;
  j["unsealed_bytes"] = s.unsealed_bytes;
  j["metadata_tail_dropped"] = s.dropped_tail;
  j["vms"] = json::array();
  for (const auto& v : s.vms) {
    j["vms"].push_back({{"vm", v.vm},
                        {"protected_bytes", v.protected_bytes},
                        {"stored_bytes", v.stored_bytes},
                        {"containers", v.containers},
                        {"layouts", v.layouts},
                        {"failure_domains", v.domains},
                        {"containers_sharing_domains", v.containers_sharing_domains},
                        {"chunks_missing", v.chunks_missing}});
  }
  j["stores"] = json::array();
  for (const auto& st : s.stores) {
    j["stores"].push_back({{"id", st.id},
                           {"path", st.path},
                           {"state", st.state},
                           {"failure_domain", st.domain},
                           {"configured", st.configured},
                           {"chunks_expected", st.chunks_expected},
                           {"chunks_present", st.chunks_present}});
  }
  j["rebuild"] = {{"running", s.rebuild.running},
                  {"store", s.rebuild.store},
                  {"done", s.rebuild.done},
                  {"total", s.rebuild.total},
                  {"error", s.rebuild.error}};
  j["reads"] = {
      {"healthy", s.reads.healthy}, {"degraded", s.reads.degraded}, {"hedged", s.reads.hedged}};
  return j.dump(2);
}

}  // namespace v2p::ec
