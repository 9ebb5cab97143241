#include "psm/core/random.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <numbers>

#include "psm/core/error.h"

namespace psm {

namespace {
uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// Number i of the draw with key `key`, as a double in (0, 1): the top 53 bits, offset by half
/// a step so that 0 never comes (Box-Muller takes its logarithm).
double open_uniform(uint64_t key, uint64_t i) {
  return (static_cast<double>(splitmix64(key + i * 0x9e3779b97f4a7c15ULL) >> 11) + 0.5) * 0x1.0p-53;
}

torch::Tensor check_slice(int64_t first, int64_t count) {
  check(first >= 0 && count >= 0, "CounterRandom: first and count must be >= 0");
  return torch::empty({count}, torch::kFloat64);
}

}  // namespace

uint64_t derive_seed(uint64_t seed, uint64_t stream, uint64_t rank) {
  return splitmix64(splitmix64(splitmix64(seed) ^ stream) ^ (rank * 0xd1342543de82ef95ULL));
}

torch::Generator make_generator(uint64_t seed, uint64_t stream, uint64_t rank) {
  return at::make_generator<at::CPUGeneratorImpl>(derive_seed(seed, stream, rank));
}

CounterRandom::CounterRandom(uint64_t seed, uint64_t stream) : key_(derive_seed(seed, stream)) {}

torch::Tensor CounterRandom::normal(uint64_t draw, int64_t first, int64_t count) const {
  torch::Tensor out = check_slice(first, count);
  double* values = out.data_ptr<double>();
  const uint64_t key = splitmix64(key_ ^ draw);
  const int64_t end = first + count;
  for (int64_t pair = first / 2; 2 * pair < end; ++pair) {
    const double radius = std::sqrt(-2.0 * std::log(open_uniform(key, 2 * pair)));
    const double angle = 2.0 * std::numbers::pi * open_uniform(key, 2 * pair + 1);
    if (2 * pair >= first) values[2 * pair - first] = radius * std::cos(angle);
    if (2 * pair + 1 < end) values[2 * pair + 1 - first] = radius * std::sin(angle);
  }
  return out;
}

torch::Tensor CounterRandom::uniform(uint64_t draw, int64_t first, int64_t count) const {
  torch::Tensor out = check_slice(first, count);
  double* values = out.data_ptr<double>();
  const uint64_t key = splitmix64(key_ ^ draw);
  for (int64_t i = 0; i < count; ++i) values[i] = open_uniform(key, first + i);
  return out;
}

}  // namespace psm
