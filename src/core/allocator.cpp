#include "psm/core/allocator.h"

#include <malloc.h>

namespace psm {

void keep_freed_memory_for_reuse() {
  constexpr int kMmapThreshold = 256 << 20;  // blocks below this come from the heap
  constexpr int kTrimThreshold = 1 << 30;    // free heap top kept before returning it
  mallopt(M_MMAP_THRESHOLD, kMmapThreshold);
  mallopt(M_TRIM_THRESHOLD, kTrimThreshold);
}

}  // namespace psm
