#include "psm/core/atomic_file.h"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <fstream>

#include "psm/core/error.h"

namespace psm {

void write_atomically(const std::filesystem::path& target,
                      const std::function<void(const std::filesystem::path& tmp)>& write) {
  namespace fs = std::filesystem;
  static std::atomic<int> counter{0};
  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  const fs::path tmp =
      target.parent_path() /
      fmt::format(".{}.tmp.{}.{}", target.filename().string(), ::getpid(), counter++);
  try {
    write(tmp);
    fs::rename(tmp, target);
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
}

void write_text_atomically(const std::filesystem::path& target, const std::string& text) {
  write_atomically(target, [&](const std::filesystem::path& tmp) {
    std::ofstream out(tmp);
    out << text;
    check(static_cast<bool>(out), fmt::format("{}: cannot write", tmp.string()));
  });
}

}  // namespace psm
