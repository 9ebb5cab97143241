// libFuzzer target: a .npy file's bytes, as psm reads every array of an .npz.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "psm/core/error.h"
#include "psm/io/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    psm::parse_npy(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.npy");
  } catch (const psm::Error&) {
    // A one-line error is the correct answer to a bad file.
  }
  return 0;
}
