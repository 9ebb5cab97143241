#pragma once
// One exception type for every user-facing failure, thrown where bad input is first seen.

#include <source_location>
#include <stdexcept>
#include <string>
#include <string_view>

namespace psm {

/// A failure the user can act on: bad input, a missing file, an impossible option.
/// what() is one line meant for the user; where() is the throwing source location, for
/// developers (printed by the CLI with --verbose).
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message,
                 std::source_location location = std::source_location::current());
  const std::string& where() const { return where_; }

 private:
  std::string where_;
};

/// Throws psm::Error(message) when condition is false.
inline void check(bool condition, std::string_view message,
                  std::source_location location = std::source_location::current()) {
  if (!condition) throw Error(std::string(message), location);
}

}  // namespace psm
