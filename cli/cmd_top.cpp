// `v2p top`: one row per VM/vdisk with IOPS, MB/s and p50/p99 per layer, or per device with the
// VMs loading it, refreshed from the agent (docs/top.md). --once --json for scripts.
#include <curses.h>
#include <fmt/core.h>

#include <chrono>
#include <memory>
#include <thread>

#include "agent/agent_client.hpp"
#include "agent/observation_json.hpp"
#include "cli/subcommand.hpp"
#include "cli/top_model.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "common/stop_signal.hpp"

namespace v2p::cli {
namespace {

struct TopFlags {
  std::string agent = agent::kDefaultQuerySocket;
  double interval = 1;
  bool once = false;
  bool json = false;
  bool devices = false;
  std::string sort = "iops";
};

agent::Observation sample(const std::string& socket) {
  return agent::observation_from_json(agent::query_agent(socket, {{"op", "stats"}}, 5000));
}

double seconds_between(const agent::Observation& a, const agent::Observation& b) {
  return b.taken_ns > a.taken_ns ? static_cast<double>(b.taken_ns - a.taken_ns) * 1e-9 : 0;
}

// Curses owned for the scope: the terminal comes back even when a query throws.
struct Screen {
  Screen() {
    initscr();
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);
  }
  ~Screen() { endwin(); }
  Screen(const Screen&) = delete;
  Screen& operator=(const Screen&) = delete;
};

int run_top(TopFlags f) {
  auto sort = top_sort_from(f.sort);
  if (!sort) throw Error("--sort must be iops, mbs, latency or name");
  auto wait = std::chrono::milliseconds(static_cast<long>(f.interval * 1000));
  if (f.once) {
    const auto a = sample(f.agent);
    std::this_thread::sleep_for(wait);
    const auto b = sample(f.agent);
    const auto m = top_model(a, b, seconds_between(a, b), *sort);
    if (f.json) {
      fmt::print("{}\n", top_json(m).dump(2));
    } else {
      for (const auto& l : top_lines(m, f.devices, 400)) fmt::print("{}\n", l);
    }
    return 0;
  }
  StopSignal stop;
  Screen screen;
  agent::Observation prev = sample(f.agent);
  std::string error;
  bool device_view = f.devices;
  timeout(0);
  auto next = std::chrono::steady_clock::now();  // draw at once (rates from the next sample)
  TopModel m = top_model({}, prev, 0, *sort);
  while (!stop.requested()) {
    if (std::chrono::steady_clock::now() >= next) {
      try {
        auto cur = sample(f.agent);
        m = top_model(prev, cur, seconds_between(prev, cur), *sort);
        prev = std::move(cur);
        error.clear();
      } catch (const Error& e) {
        error = e.what();
      }
      next = std::chrono::steady_clock::now() + wait;
    }
    erase();
    const auto width = static_cast<std::size_t>(std::max(COLS, 20));
    mvprintw(0, 0, "%s",
             fmt::format("v2p top  {}  every {:.1f}s  sort: {}  [i]ops [m]b/s [l]atency [n]ame "
                         "[d]evices [+/-] interval [q]uit",
                         device_view ? "devices" : "vdisks", f.interval, f.sort)
                 .substr(0, width)
                 .c_str());
    if (!error.empty()) mvprintw(1, 0, "%s", ("agent: " + error).substr(0, width).c_str());
    int y = 2;
    const auto lines = top_lines(m, device_view, width);
    for (std::size_t i = 0; i < lines.size() && y < LINES; ++i, ++y) {
      if (i == 0) attron(A_REVERSE);
      mvprintw(y, 0, "%s", lines[i].c_str());
      if (i == 0) attroff(A_REVERSE);
    }
    refresh();
    timeout(200);
    const int ch = getch();
    if (ch == 'q' || ch == 'Q') break;
    if (ch == 'd') device_view = !device_view;
    if (ch == '+') f.interval = std::min(f.interval * 2, 60.0);
    if (ch == '-') f.interval = std::max(f.interval / 2, 0.25);
    if (ch == '+' || ch == '-') {
      next = std::chrono::steady_clock::now();
      wait = std::chrono::milliseconds(static_cast<long>(f.interval * 1000));
    }
    if (ch > 0 && ch < 128) {
      const char key[2] = {static_cast<char>(ch), 0};
      if (const auto s = top_sort_from(key)) {
        sort = s;
        f.sort = ch == 'i' ? "iops" : ch == 'm' ? "mbs" : ch == 'l' ? "latency" : "name";
        next = std::chrono::steady_clock::now();
      }
    }
  }
  return 0;
}

const Register kTop{
    {"top", "Live view of every VM's I/O: IOPS, MB/s, latency per layer, devices",
     [](CLI::App& app) {
       auto f = std::make_shared<TopFlags>();
       app.add_option("--agent", f->agent,
                      "The agent's query socket (default /run/v2p/agent.sock)");
       app.add_option("--interval", f->interval, "Seconds between refreshes (default 1)")
           ->check(CLI::Range(0.1, 3600.0));
       app.add_flag("--once", f->once,
                    "Print one sample (two readings an interval apart) and exit");
       app.add_flag("--json", f->json, "With --once: JSON for scripts");
       app.add_flag("--devices", f->devices, "Start in the device view");
       app.add_option("--sort", f->sort, "iops (default), mbs, latency (export p99) or name");
       return [f] { return run_top(*f); };
     }}};

}  // namespace
}  // namespace v2p::cli
