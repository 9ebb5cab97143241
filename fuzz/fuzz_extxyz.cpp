// libFuzzer target: an extended XYZ text, parsed and validated as `load_dataset` does.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "psm/core/error.h"
#include "psm/io/xyz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const psm::Dataset dataset =
        psm::parse_extxyz(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.xyz",
                          {.temperature_kelvin = 300.0});
    dataset.validate("fuzz.xyz");
  } catch (const psm::Error&) {
    // A one-line error is the correct answer to a bad file.
  }
  return 0;
}
