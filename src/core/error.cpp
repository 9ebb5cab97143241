#include "psm/core/error.h"

#include <fmt/format.h>

namespace psm {

Error::Error(const std::string& message, std::source_location location)
    : std::runtime_error(message),
      where_(fmt::format("{}:{} ({})", location.file_name(), location.line(),
                         location.function_name())) {}

}  // namespace psm
