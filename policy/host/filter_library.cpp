#include "policy/host/filter_library.hpp"

#include <fmt/core.h>

#include <exception>
#include <string>

#include "common/error.hpp"
#include "policy/host/plugin_library.hpp"

namespace v2p::policy {
namespace {

class LogContext final : public FilterContext {
 public:
  explicit LogContext(FilterLog log) : log_(std::move(log)) {}
  void log(std::string_view line) override {
    if (log_) log_(fmt::format("filter {}: {}", name, line));
  }
  std::string name;

 private:
  FilterLog log_;
};

// Everything one loaded filter needs alive: destroyed in reverse (filter, context, library).
struct Loaded {
  std::unique_ptr<PluginLibrary> library;
  LogContext context;
  void (*destroy)(Filter*) = nullptr;
  Filter* filter = nullptr;
  Loaded(std::unique_ptr<PluginLibrary> lib, FilterLog log)
      : library(std::move(lib)), context(std::move(log)) {}
  ~Loaded() {
    if (filter != nullptr) {
      try {
        destroy(filter);
      } catch (...) {  // a throwing destructor is only lost here
      }
    }
  }
};

}  // namespace

std::shared_ptr<Filter> load_filter(const std::filesystem::path& file, const FilterArgs& args,
                                    FilterLog log) {
  auto loaded = std::make_shared<Loaded>(PluginLibrary::open(file, kFilterPlugin), std::move(log));
  using CreateFn = Filter* (*)(FilterContext*, const FilterArgs*);
  const auto create = reinterpret_cast<CreateFn>(loaded->library->entry_point("create"));
  loaded->destroy = reinterpret_cast<void (*)(Filter*)>(loaded->library->entry_point("destroy"));
  const std::string name = loaded->library->name();
  try {
    loaded->filter = create(&loaded->context, &args);
  } catch (const std::exception& e) {
    throw Error(fmt::format("filter {} refused its arguments: {}", name, e.what()));
  } catch (...) {
    throw Error(fmt::format("filter {} threw a non-standard exception while starting", name));
  }
  if (loaded->filter == nullptr) {
    throw Error(fmt::format("filter {}: v2p_filter_create returned null", name));
  }
  loaded->context.name = std::string(loaded->filter->name());
  Filter* filter = loaded->filter;
  return std::shared_ptr<Filter>(std::move(loaded), filter);
}

}  // namespace v2p::policy
