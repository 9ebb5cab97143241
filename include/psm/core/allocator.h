#pragma once
// Process-wide settings of the C allocator for tensor workloads.

namespace psm {

/// Keeps freed large blocks in the heap instead of returning them to the kernel: a training or
/// sampling step frees and reallocates the same multi-megabyte tensors every step, and glibc's
/// defaults (mmap above 128 KiB-32 MiB, trim above 128 KiB) turn each of them into fresh,
/// page-faulting memory. Costs at most a few hundred MiB of retained heap. Call once, early in
/// main().
void keep_freed_memory_for_reuse();

}  // namespace psm
