// libFuzzer target: a file loaded as a dataset through libzip: psm .npz, rMD17 and sGDML keys
// (MD17 family), each array through the .npy parser.

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "psm/core/error.h"
#include "psm/io/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // libzip reads files, so each input is written to one file per fuzzing process.
  static const std::filesystem::path file =
      std::filesystem::temp_directory_path() / ("psm_fuzz_" + std::to_string(::getpid()) + ".npz");
  {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    psm::load_dataset(file);
  } catch (const psm::Error&) {
    // A one-line error is the correct answer to a bad file.
  }
  return 0;
}
