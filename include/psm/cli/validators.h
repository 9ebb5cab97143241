#pragma once
// Option checks whose messages say what was wrong in the user's terms ("--n: must be a positive
// number, got 0"), where CLI11's ranges print their 300-digit bounds.

#include <CLI/CLI.hpp>

namespace psm::cli {

/// A finite number > 0.
extern const CLI::Validator positive_number;
/// A finite number >= 0.
extern const CLI::Validator non_negative_number;
/// A number in [0, 1].
extern const CLI::Validator unit_interval;
/// A random seed: an integer from 0 to 2^64 - 1 (CLI11 would wrap -1 to 2^64 - 1).
extern const CLI::Validator seed_value;

}  // namespace psm::cli
