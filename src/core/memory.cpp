#include "psm/core/memory.h"

#include <fmt/format.h>
#include <unistd.h>

#include "psm/core/error.h"

namespace psm {

double physical_memory_bytes() {
  return static_cast<double>(::sysconf(_SC_PHYS_PAGES)) *
         static_cast<double>(::sysconf(_SC_PAGE_SIZE));
}

void check_memory_fits(double bytes, std::string_view what) {
  constexpr double gib = 1024.0 * 1024.0 * 1024.0;
  const double available = physical_memory_bytes();
  check(bytes <= available,
        fmt::format("{} needs about {:.3g} GiB of memory, more than this machine's {:.3g} GiB",
                    what, bytes / gib, available / gib));
}

}  // namespace psm
