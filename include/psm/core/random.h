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

/// Counter-based random numbers: number i of draw d is the SplitMix64 mix of a key made from
/// (seed, stream, d) and of i, so any slice of a draw is made without the rest. A process that
/// advances some rows of a batch (its MPI rank's chains) makes only their numbers, and the
/// result does not depend on how the rows are shared out. Normal numbers come in Box-Muller
/// pairs (2p, 2p + 1). About as fast as torch::randn on the CPU (15 ns a normal number).
class CounterRandom {
 public:
  CounterRandom(uint64_t seed, uint64_t stream);
  /// Standard normal numbers [first, first + count) of draw `draw`: [count] float64, CPU.
  torch::Tensor normal(uint64_t draw, int64_t first, int64_t count) const;
  /// Uniform numbers in (0, 1), likewise.
  torch::Tensor uniform(uint64_t draw, int64_t first, int64_t count) const;

 private:
  uint64_t key_;
};

}  // namespace psm
