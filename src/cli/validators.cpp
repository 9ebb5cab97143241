#include "psm/cli/validators.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>

namespace psm::cli {

namespace {

/// A validator that accepts numbers for which `accept` holds, else says they must be `wanted`.
CLI::Validator number_check(const std::function<bool(double)>& accept, const std::string& wanted,
                            const std::string& name) {
  return CLI::Validator(
      [accept, wanted](std::string& input) {
        double value = 0;
        if (!CLI::detail::lexical_cast(input, value) || !accept(value))
          return fmt::format("must be {}, got {}", wanted, input);
        return std::string();
      },
      name);
}

}  // namespace

const CLI::Validator positive_number = number_check(
    [](double x) { return std::isfinite(x) && x > 0; }, "a positive number", "POSITIVE");
const CLI::Validator non_negative_number = number_check(
    [](double x) { return std::isfinite(x) && x >= 0; }, "a number >= 0", "NONNEGATIVE");
const CLI::Validator unit_interval =
    number_check([](double x) { return x >= 0 && x <= 1; }, "between 0 and 1", "[0, 1]");

const CLI::Validator seed_value(
    [](std::string& input) {
      uint64_t value = 0;
      const auto [end, ec] = std::from_chars(input.data(), input.data() + input.size(), value);
      if (ec != std::errc() || end != input.data() + input.size())
        return fmt::format("a seed is an integer from 0 to {}, got {}", UINT64_MAX, input);
      return std::string();
    },
    "SEED");

}  // namespace psm::cli
