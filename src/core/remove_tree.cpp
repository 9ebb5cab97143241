#include "psm/core/remove_tree.h"

#include <fmt/format.h>
#include <ftw.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "psm/core/error.h"

namespace psm {
namespace {

int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  return std::remove(path);
}

}  // namespace

void remove_tree(const std::filesystem::path& path) {
  // Depth first, so that each directory is empty when it is removed.
  constexpr int kOpenDirectories = 32;
  if (nftw(path.c_str(), remove_entry, kOpenDirectories, FTW_DEPTH | FTW_PHYS) != 0 &&
      errno != ENOENT) {
    throw Error(fmt::format("cannot remove {}: {}", path.string(), std::strerror(errno)));
  }
}

}  // namespace psm
