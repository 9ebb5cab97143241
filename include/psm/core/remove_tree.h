#pragma once
// Removing a directory tree without std::filesystem::remove_all: PyTorch's LibTorch 2.x exports
// its own, older copy of std::filesystem from libtorch.so, and a program linked against it can
// bind remove_all to that copy, which crashes (SIGSEGV) on a non-empty directory.

#include <filesystem>

namespace psm {

/// Removes `path` and everything under it, without following symbolic links. A missing path is
/// not an error; an entry that cannot be removed throws psm::Error.
void remove_tree(const std::filesystem::path& path);

}  // namespace psm
