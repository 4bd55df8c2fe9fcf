// `v2p ec` through the real binary: put, get with lost stores, status --json, scrub, rebuild.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "common/subprocess.hpp"
#include "common/test_skip.hpp"

namespace v2p::ec {
namespace {

namespace fs = std::filesystem;

class EcCli : public ::testing::Test {
 protected:
  // dir_/s<i>, built by appends: g++ 12 -O3 misreads an inlined `"s" + std::to_string(i)`
  // (-Wrestrict false positive, GCC PR105329).
  fs::path store_dir(int i) const {
    std::string name = "s";
    name += std::to_string(i);
    return dir_ / name;
  }
  void SetUp() override {
    const char* bin = std::getenv("V2P_BINARY");
    if (!bin || !*bin) V2P_SKIP_MACHINE("V2P_BINARY is not set (run through ctest)");
    binary_ = bin;
    dir_ = fs::temp_directory_path() / ("v2p-ec-cli." + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (int i = 1; i <= 7; ++i) fs::create_directories(store_dir(i));
    std::ofstream cfg(dir_ / "pool.json");
    cfg << R"({"metadata": ")" << (dir_ / "meta").string() << R"(", "stores": [)";
    for (int i = 1; i <= 7; ++i) {
      cfg << (i > 1 ? "," : "") << R"({"id": )" << i << R"(, "path": ")" << store_dir(i).string()
          << R"("})";
    }
    cfg << R"(], "layout": "4+2", "vms": {"3": {"layout": "5+2"}}, "container_bytes": 1048576,
             "allow_shared_domains": true})";
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  CommandResult ec(std::vector<std::string> args) {
    args.insert(args.begin(), {binary_, "ec"});
    args.insert(args.begin() + 3, {"--config", (dir_ / "pool.json").string()});
    return run_command(args);
  }
  std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  std::string binary_;
  fs::path dir_;
};

TEST_F(EcCli, PutGetStatusScrubRebuild) {
  const auto image = dir_ / "vm3.img";
  {
    std::mt19937 gen(11);
    std::ofstream out(image, std::ios::binary);
    for (int i = 0; i < (5 << 20) / 4; ++i) {
      const auto x = gen();
      out.write(reinterpret_cast<const char*>(&x), 4);
    }
  }
  auto r = ec({"put", "--vm", "3", "--vdisk", "1", "--image", image.string()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("protected as 5+2"), std::string::npos) << r.out;

  fs::remove_all(dir_ / "s2");             // gone
  fs::remove_all(dir_ / "s6" / "chunks");  // chunk files gone, identity still there
  const auto back = dir_ / "back.img";
  r = ec({"get", "--vm", "3", "--vdisk", "1", "--length", std::to_string(5 << 20), "--out",
          back.string()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(slurp(back) == slurp(image));

  r = ec({"status", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["vms"].size(), 1U);
  EXPECT_EQ(j["vms"][0]["vm"], 3);
  EXPECT_EQ(j["vms"][0]["protected_bytes"], 5 << 20);
  EXPECT_EQ(j["vms"][0]["layouts"]["5+2"], j["containers"]);
  EXPECT_GT(j["vms"][0]["chunks_missing"].get<int>(), 0);

  // Another lost store is one too many for 5+2: a clear error and no output file.
  fs::rename(dir_ / "s4" / "chunks", dir_ / "s4" / "away");
  fs::create_directories(dir_ / "s4" / "chunks");
  r = ec({"get", "--vm", "3", "--vdisk", "1", "--length", std::to_string(5 << 20), "--out",
          back.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("chunks are readable, 5 needed"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(back));
  fs::remove_all(dir_ / "s4" / "chunks");
  fs::rename(dir_ / "s4" / "away", dir_ / "s4" / "chunks");

  // Store 4 is back; scrub repairs 6 (online, chunks gone); 2 needs a rebuild onto a new directory.
  r = ec({"scrub"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("0 containers unrepairable"), std::string::npos) << r.out;
  fs::create_directories(dir_ / "s2");
  r = ec({"rebuild", "2"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("0 failed"), std::string::npos) << r.out;
  r = ec({"status", "--json"});
  const auto after = nlohmann::json::parse(r.out);
  EXPECT_EQ(after["vms"][0]["chunks_missing"], 0);
  r = ec({"scrub"});
  EXPECT_NE(r.out.find(" 0 bad"), std::string::npos) << r.out;
}

TEST_F(EcCli, BadInvocationsSaySo) {
  auto r = run_command({binary_, "ec", "status", "--metadata", (dir_ / "m").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("at least one store"), std::string::npos) << r.err;
  r = ec({"put", "--vm", "1", "--image", (dir_ / "pool.json").string(), "--layout", "4+0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not supported"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace v2p::ec
