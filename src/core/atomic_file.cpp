#include "psm/core/atomic_file.h"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <fstream>

#include "psm/core/error.h"

namespace psm {

namespace fs = std::filesystem;

namespace {

std::string temporary_prefix(const fs::path& target) {
  return fmt::format(".{}.tmp.", target.filename().string());
}

bool process_is_gone(pid_t pid) { return ::kill(pid, 0) == -1 && errno == ESRCH; }

/// Removes `.NAME.tmp.PID.N` files of `target` whose process has ended: a kill between writing
/// and renaming leaves them, and only the next write of the same target knows they are stale.
void remove_stale_temporaries(const fs::path& target) {
  const fs::path directory = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string prefix = temporary_prefix(target);
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(directory, error)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(prefix)) continue;
    pid_t pid = 0;
    const char* first = name.data() + prefix.size();
    const auto [end, ec] = std::from_chars(first, name.data() + name.size(), pid);
    if (ec != std::errc() || end == first || *end != '.' || pid <= 0) continue;
    if (process_is_gone(pid)) fs::remove(entry.path(), error);
  }
}

/// The deepest existing directory that `path` is in or would be created in.
fs::path existing_ancestor(const fs::path& path) {
  fs::path ancestor = fs::absolute(path);
  while (!fs::exists(ancestor) && ancestor.has_parent_path() && ancestor != ancestor.parent_path())
    ancestor = ancestor.parent_path();
  return ancestor;
}

void check_can_create_in(const fs::path& directory, const fs::path& target) {
  const fs::path ancestor = existing_ancestor(directory.empty() ? fs::path(".") : directory);
  check(fs::is_directory(ancestor),
        fmt::format("{}: cannot write: {} is not a directory", target.string(), ancestor.string()));
  check(::access(ancestor.c_str(), W_OK | X_OK) == 0,
        fmt::format("{}: cannot write in {} (permission denied)", target.string(),
                    ancestor.string()));
}

}  // namespace

void write_atomically(const fs::path& target,
                      const std::function<void(const fs::path& tmp)>& write) {
  static std::atomic<int> counter{0};
  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  remove_stale_temporaries(target);
  const fs::path tmp = target.parent_path() /
                       fmt::format("{}{}.{}", temporary_prefix(target), ::getpid(), counter++);
  try {
    write(tmp);
    fs::rename(tmp, target);
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
}

void write_text_atomically(const fs::path& target, const std::string& text) {
  write_atomically(target, [&](const fs::path& tmp) {
    std::ofstream out(tmp);
    out << text;
    check(static_cast<bool>(out), fmt::format("{}: cannot write", tmp.string()));
  });
}

void check_file_writable(const fs::path& target) {
  check(!fs::is_directory(target),
        fmt::format("{}: is a directory; name a file to write", target.string()));
  check_can_create_in(target.parent_path(), target);
}

void check_directory_writable(const fs::path& directory) {
  if (fs::exists(directory)) {
    check(fs::is_directory(directory),
          fmt::format("{}: exists and is not a directory", directory.string()));
  }
  check_can_create_in(directory, directory);
}

void check_distinct_files(const fs::path& input, const fs::path& output) {
  std::error_code error;
  const bool same = fs::exists(output)
                        ? fs::equivalent(input, output, error)
                        : fs::weakly_canonical(input, error) == fs::weakly_canonical(output, error);
  check(!same, fmt::format("{}: the output would replace the input; choose another output name",
                           output.string()));
}

}  // namespace psm
