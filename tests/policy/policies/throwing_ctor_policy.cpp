// Refuses every set of arguments, as a policy does with a bad one.
#include <v2p/policy.hpp>

#include <stdexcept>

namespace {

class ThrowingCtor final : public v2p::Policy {
 public:
  ThrowingCtor(v2p::PolicyContext&, const v2p::PolicyArgs& args) {
    throw std::invalid_argument("size must be a number, got '" +
                                (args.empty() ? std::string() : args.front().second) + "'");
  }
  [[nodiscard]] std::string_view name() const override { return "never"; }
};

}  // namespace

V2P_POLICY(ThrowingCtor)
