#include "psm/io/file_bytes.h"

#include <fmt/format.h>

#include <fstream>
#include <iterator>

#include "psm/core/error.h"

namespace psm {

void require_nonempty_file(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto status = fs::status(path, ec);
  check(fs::exists(status), fmt::format("{}: no such file", path.string()));
  check(fs::is_regular_file(status), fmt::format("{}: not a regular file", path.string()));
  check(fs::file_size(path, ec) > 0 || ec, fmt::format("{}: empty file", path.string()));
}

std::string read_file_bytes(const std::filesystem::path& path) {
  require_nonempty_file(path);
  std::ifstream in(path, std::ios::binary);
  check(in.good(), fmt::format("{}: cannot open for reading", path.string()));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  check(!in.bad(), fmt::format("{}: read error", path.string()));
  return bytes;
}

void write_file_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  check(out.good(), fmt::format("{}: write failed", path.string()));
}

}  // namespace psm
