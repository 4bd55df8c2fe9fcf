// Not a test of v2p: the subject of test_skip_test.cpp, which runs it with and without CI=true
// and reads what GoogleTest made of each kind of skip.
#include "common/test_skip.hpp"

TEST(SkipProbe, MissingTool) {
  V2P_REQUIRE_TOOLS("sh", "v2p-no-such-tool");
}

TEST(SkipProbe, MissingPackage) {
  V2P_SKIP_MISSING_PACKAGE("v2p-no-such-package not installed");
}

TEST(SkipProbe, MachineLacks) {
  V2P_SKIP_MACHINE("the machine lacks v2p-no-such-feature");
}

TEST(SkipProbe, ToolPresent) {
  V2P_REQUIRE_TOOLS("sh");
  SUCCEED();
}
