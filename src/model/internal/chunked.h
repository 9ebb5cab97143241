#pragma once
// Chunked execution of a score network on the CPU: a batch is split into chunks that run in
// parallel on the intra-op threads, forward and backward, one fork/join per pass instead of one
// per tensor operation. For a given chunk size the results do not depend on the thread count.

#include <torch/types.h>

#include <cstdint>
#include <functional>

#include "psm/model/score_network.h"

namespace psm::chunked {

/// Runs body(c) for c in [0, count) on the intra-op threads, each thread with the caller's
/// thread-local state (grad and inference mode) and single-threaded tensor operations inside.
void for_each_chunk(int64_t count, const std::function<void(int64_t)>& body);

/// network.forward_chunk over chunks of `chunk` samples of x [B, N, D], c_noise [B] and
/// length_scale [B] (already in the network's dtype), concatenated. When autograd records,
/// gradients reach x and `parameters` (not c_noise or length_scale), and each chunk is
/// differentiated on its own thread in the backward pass; the parameter gradients are summed in
/// chunk order.
torch::Tensor forward(ScoreNetwork& network, int64_t chunk, const torch::Tensor& x,
                      const torch::Tensor& c_noise, const torch::Tensor& length_scale,
                      const std::vector<torch::Tensor>& parameters);

/// What run_network checks and uses of a network's options.
struct NetworkShape {
  int64_t atoms = 0;
  int64_t dim = 0;
  torch::Dtype dtype = torch::kFloat32;
  int64_t chunk_size = 0;  ///< CPU only; other devices take the whole batch in each kernel
};

/// A network's forward pass: throws psm::Error unless x is [B, atoms, dim] and c_noise and
/// length_scale are [B], converts the inputs to the network's dtype and runs forward() above.
torch::Tensor run_network(ScoreNetwork& network, const NetworkShape& shape, const torch::Tensor& x,
                          const torch::Tensor& c_noise, const torch::Tensor& length_scale,
                          const std::vector<torch::Tensor>& parameters);

}  // namespace psm::chunked
