#include "psm/core/random.h"

#include <ATen/CPUGeneratorImpl.h>

namespace psm {

namespace {
uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
}  // namespace

uint64_t derive_seed(uint64_t seed, uint64_t stream, uint64_t rank) {
  return splitmix64(splitmix64(splitmix64(seed) ^ stream) ^ (rank * 0xd1342543de82ef95ULL));
}

torch::Generator make_generator(uint64_t seed, uint64_t stream, uint64_t rank) {
  return at::make_generator<at::CPUGeneratorImpl>(derive_seed(seed, stream, rank));
}

}  // namespace psm
