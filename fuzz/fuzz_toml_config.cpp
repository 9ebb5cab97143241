// libFuzzer target: a TOML config as `psm train` and `psm run` read it; what psm writes back
// (the run directory's config.toml) must read again.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "psm/core/config.h"
#include "psm/core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::optional<psm::Config> config;
  try {
    config = psm::Config::from_toml_string(std::string(reinterpret_cast<const char*>(data), size),
                                           "fuzz.toml");
    config->set("train.steps=3");
  } catch (const psm::Error&) {
    return 0;  // a one-line error is the correct answer to a bad file
  }
  // Not caught: a config psm wrote that it cannot read is a bug.
  psm::Config::from_toml_string(config->to_toml(), "fuzz.toml (written back)");
  return 0;
}
