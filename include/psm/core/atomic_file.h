#pragma once
// Outputs appear complete or not at all: write to a temporary name beside the target, then
// rename (atomic on POSIX within one filesystem).

#include <filesystem>
#include <functional>
#include <string>

namespace psm {

/// Calls write(tmp) with a temporary path in the same directory as `target`, then renames tmp
/// to target. If write throws, tmp is removed and the exception propagates; `target` is untouched.
/// Creates the parent directory if needed. Temporaries of `target` left by a process that was
/// killed (whose pid no longer runs) are removed first.
void write_atomically(const std::filesystem::path& target,
                      const std::function<void(const std::filesystem::path& tmp)>& write);

/// write_atomically of a whole text; throws psm::Error when the write fails.
void write_text_atomically(const std::filesystem::path& target, const std::string& text);

/// Throws psm::Error naming `target` when a file could not be written there: it is a directory,
/// or its folder is not a directory, cannot be created or cannot be written. Called before long
/// work whose result goes to `target`, so that the work is not lost.
void check_file_writable(const std::filesystem::path& target);

/// As check_file_writable, for a directory that will hold a run's files.
void check_directory_writable(const std::filesystem::path& directory);

/// Throws psm::Error when `output` names the file `input` (it would be replaced by the output).
void check_distinct_files(const std::filesystem::path& input, const std::filesystem::path& output);

}  // namespace psm
