#pragma once
// Outputs appear complete or not at all: write to a temporary name beside the target, then
// rename (atomic on POSIX within one filesystem).

#include <filesystem>
#include <functional>
#include <string>

namespace psm {

/// Calls write(tmp) with a temporary path in the same directory as `target`, then renames tmp
/// to target. If write throws, tmp is removed and the exception propagates; `target` is untouched.
/// Creates the parent directory if needed.
void write_atomically(const std::filesystem::path& target,
                      const std::function<void(const std::filesystem::path& tmp)>& write);

/// write_atomically of a whole text; throws psm::Error when the write fails.
void write_text_atomically(const std::filesystem::path& target, const std::string& text);

}  // namespace psm
