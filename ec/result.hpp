// What a data-path call returns instead of throwing: a value, or a sentence saying why not.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace v2p::ec {

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit on purpose, like expected
  static Result failure(std::string why) {
    Result r;
    r.error_ = std::move(why);
    return r;
  }
  [[nodiscard]] bool ok() const noexcept { return value_.has_value(); }
  [[nodiscard]] T& value() & { return *value_; }
  [[nodiscard]] T&& value() && { return std::move(*value_); }
  [[nodiscard]] const T& value() const& { return *value_; }
  [[nodiscard]] const std::string& error() const noexcept { return error_; }

 private:
  Result() = default;
  std::optional<T> value_;
  std::string error_;
};

}  // namespace v2p::ec
