#pragma once
// Reading input files with one-line errors that name the file.

#include <filesystem>
#include <string>

namespace psm {

/// Throws psm::Error naming `path` when it does not exist, is not a regular file or is empty.
void require_nonempty_file(const std::filesystem::path& path);

/// The whole content of `path`; throws psm::Error as require_nonempty_file, or when reading fails.
std::string read_file_bytes(const std::filesystem::path& path);

/// Writes `bytes` to `path` (no atomic rename: call inside psm::write_atomically).
void write_file_bytes(const std::filesystem::path& path, const std::string& bytes);

}  // namespace psm
