#pragma once
// Explicit, seedable random streams. No global RNG: every sampler, trainer and subset takes a
// generator. Streams are derived from (seed, stream id, rank) so MPI ranks never share numbers.

#include <torch/types.h>

#include <cstdint>

namespace psm {

/// Mixes a base seed, a stream id (which component draws) and a rank into one 64-bit seed
/// (SplitMix64 finaliser), so that nearby inputs give unrelated streams.
uint64_t derive_seed(uint64_t seed, uint64_t stream = 0, uint64_t rank = 0);

/// A CPU generator seeded with derive_seed(seed, stream, rank).
torch::Generator make_generator(uint64_t seed, uint64_t stream = 0, uint64_t rank = 0);

}  // namespace psm
