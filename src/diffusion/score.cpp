#include "psm/diffusion/score.h"

namespace psm {

torch::Tensor remove_mean(const torch::Tensor& x) { return x - x.mean(1, /*keepdim=*/true); }

torch::Tensor project(const torch::Tensor& x, bool com_free) {
  return com_free ? remove_mean(x) : x;
}

int64_t effective_dim(int64_t num_atoms, int64_t dim, bool com_free) {
  return (com_free ? num_atoms - 1 : num_atoms) * dim;
}

torch::Tensor gaussian_noise(torch::IntArrayRef shape, torch::Generator& rng,
                             const torch::TensorOptions& options, bool com_free) {
  // Drawing on the generator's own device keeps one seeded stream whatever device the data use.
  const torch::Tensor z = torch::randn(shape, rng, options.device(rng.device()));
  return project(z.to(options.device()), com_free);
}

}  // namespace psm
