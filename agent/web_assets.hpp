// The web page's files (agent/web/), compiled into the agent: nothing is fetched at run time.
#pragma once

#include <string>
#include <string_view>

namespace v2p::agent {

struct WebAsset {
  const char* content_type;
  std::string_view body;
};

// "/" is index.html; nullptr for anything that is not one of the page's files.
[[nodiscard]] const WebAsset* find_web_asset(const std::string& path);

}  // namespace v2p::agent
