#include "psm/core/run_lock.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "psm/core/error.h"

namespace psm {

namespace {

/// The pid the holder wrote into the lock file, for the message; empty when unreadable.
std::string holder_pid(int fd) {
  char buffer[32] = {};
  const ssize_t n = ::pread(fd, buffer, sizeof(buffer) - 1, 0);
  return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : std::string();
}

}  // namespace

RunLock::RunLock(const std::filesystem::path& lock_file, const std::filesystem::path& what) {
  if (lock_file.has_parent_path()) std::filesystem::create_directories(lock_file.parent_path());
  fd_ = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  check(fd_ >= 0,
        fmt::format("{}: cannot open lock file ({})", lock_file.string(), std::strerror(errno)));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const std::string pid = holder_pid(fd_);
    ::close(fd_);
    throw Error(
        fmt::format("{}: in use by another psm process{}; wait for it to end or choose "
                    "another output",
                    what.string(), pid.empty() ? "" : fmt::format(" (pid {})", pid)));
  }
  const std::string pid = std::to_string(::getpid());
  if (::ftruncate(fd_, 0) == 0) {
    [[maybe_unused]] const ssize_t written = ::pwrite(fd_, pid.data(), pid.size(), 0);
  }
}

RunLock::~RunLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

RunLock::RunLock(RunLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

RunLock& RunLock::operator=(RunLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

RunLock lock_run_directory(const std::filesystem::path& directory) {
  // Beside the directory, not in it: commands tell a fresh directory by its being empty.
  return lock_state_file(directory);
}

RunLock lock_state_file(const std::filesystem::path& file) {
  std::filesystem::path path = file.lexically_normal();
  if (!path.has_filename()) path = path.parent_path();  // "runs/x/"
  return RunLock(path.parent_path() / ("." + path.filename().string() + ".lock"), file);
}

}  // namespace psm
