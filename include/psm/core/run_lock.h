#pragma once
// One writer per run: two psm processes writing the same run directory or state file would
// leave a mix of both runs' files.

#include <filesystem>

namespace psm {

/// An exclusive lock (flock) on a lock file, held while the object lives. The kernel releases it
/// when the process ends, however it ends, so a killed run never leaves a stale lock; the file
/// itself stays and holds the pid of its last holder.
class RunLock {
 public:
  /// Creates `lock_file` (and its folder) if needed and locks it. Throws psm::Error naming
  /// `what` (the run directory or file the lock guards) when another process holds it.
  RunLock(const std::filesystem::path& lock_file, const std::filesystem::path& what);
  ~RunLock();
  RunLock(RunLock&& other) noexcept;
  RunLock& operator=(RunLock&& other) noexcept;
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  int fd_ = -1;
};

/// The lock of a file that a run rewrites, e.g. a simulation checkpoint: `.NAME.lock` beside it.
RunLock lock_state_file(const std::filesystem::path& file);

/// The lock of run directory `directory`: `.NAME.lock` beside it.
RunLock lock_run_directory(const std::filesystem::path& directory);

}  // namespace psm
