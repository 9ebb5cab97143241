#pragma once
// Impossible sizes fail at once with what was asked for, not as std::bad_alloc minutes later.

#include <cstdint>
#include <string_view>

namespace psm {

/// Physical memory of this machine in bytes.
double physical_memory_bytes();

/// Throws psm::Error when `bytes` (what `what` needs, e.g. "--chains 100000000 of 13 atoms")
/// exceed the machine's physical memory.
void check_memory_fits(double bytes, std::string_view what);

}  // namespace psm
