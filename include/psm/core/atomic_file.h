#pragma once
// Outputs appear complete or not at all: write to a temporary name beside the target, then
// rename (atomic on POSIX within one filesystem).

#include <filesystem>
#include <functional>

namespace psm {

/// Calls write(tmp) with a temporary path in the same directory as `target`, then renames tmp
/// to target. If write throws, tmp is removed and the exception propagates; `target` is untouched.
/// Creates the parent directory if needed.
void write_atomically(const std::filesystem::path& target,
                      const std::function<void(const std::filesystem::path& tmp)>& write);

}  // namespace psm
