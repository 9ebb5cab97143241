#pragma once
// NumPy .npy and .npz files, read and written byte-compatibly with NumPy (format 1.0 headers as
// np.save writes them; npz archives as np.savez / np.savez_compressed write them).
// Supported dtypes: float32, float64, int32, int64, uint8 (little-endian). Arrays are
// contiguous CPU tensors; Fortran-order files are read and returned in C order.

#include <torch/types.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace psm {

/// The bytes np.save would write for `array` (any device; written in C order).
/// Throws psm::Error on an unsupported dtype.
std::string npy_bytes(const torch::Tensor& array);

/// Parses the bytes of a .npy file. `source_name` names the file (or "archive.npz:key") in
/// error messages. Throws psm::Error on a bad header, an unsupported dtype or short data.
torch::Tensor parse_npy(std::string_view bytes, const std::string& source_name);

/// Reads a .npy file. Throws psm::Error naming the file when it is missing, empty or invalid.
torch::Tensor read_npy(const std::filesystem::path& path);

/// Writes `array` as .npy, atomically, byte-identical to np.save.
void write_npy(const std::filesystem::path& path, const torch::Tensor& array);

/// Arrays of an .npz archive by key (the entry "<key>.npy" in the zip file).
using NpzArchive = std::map<std::string, torch::Tensor>;

enum class NpzCompression {
  stored,    ///< as np.savez
  deflated,  ///< as np.savez_compressed
};

/// An open .npz archive whose entries are read on demand, so that a file with some entries
/// psm cannot represent (strings in sGDML files) can still be used. One reader per thread:
/// libzip handles are not safe to share.
class NpzReader {
 public:
  /// Throws psm::Error naming the file when it is missing, empty or not a zip archive.
  explicit NpzReader(const std::filesystem::path& path);
  ~NpzReader();
  NpzReader(const NpzReader&) = delete;
  NpzReader& operator=(const NpzReader&) = delete;

  const std::filesystem::path& path() const { return path_; }
  /// Keys of the ".npy" entries, in archive order.
  const std::vector<std::string>& keys() const { return keys_; }
  bool contains(const std::string& key) const;

  /// The array stored under `key`. Throws psm::Error naming the file and key when the key is
  /// missing, the entry is corrupt (CRC or inflate failure) or its dtype is unsupported.
  torch::Tensor read(const std::string& key) const;

  /// A NumPy string scalar or one-element string array (dtype '<U…' or '|S…') as UTF-8.
  std::string read_string(const std::string& key) const;

 private:
  std::string entry_bytes(const std::string& key) const;

  struct Zip;
  std::filesystem::path path_;
  std::unique_ptr<Zip> zip_;
  std::vector<std::string> keys_;
};

/// Reads every array of an .npz archive (np.savez or np.savez_compressed).
NpzArchive read_npz(const std::filesystem::path& path);

/// Writes `arrays` as an .npz archive that np.load reads, atomically.
void write_npz(const std::filesystem::path& path, const NpzArchive& arrays,
               NpzCompression compression = NpzCompression::deflated);

}  // namespace psm
