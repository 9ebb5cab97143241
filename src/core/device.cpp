#include "psm/core/device.h"

#include <fmt/format.h>
#include <torch/cuda.h>

#include "psm/core/error.h"

namespace psm {

torch::Device parse_device(const std::string& name) {
  const auto device = [&]() -> std::optional<torch::Device> {
    try {
      return torch::Device(name);
    } catch (const c10::Error&) {
      return std::nullopt;
    }
  }();
  check(device && (device->is_cpu() || device->is_cuda()),
        fmt::format("device '{}': unknown (known: cpu, cuda, cuda:N)", name));
  if (device->is_cpu()) return *device;
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  check(count > 0,
        fmt::format("device '{}': no CUDA device (this psm's LibTorch has no CUDA support, or the "
                    "machine has no visible GPU); use --device cpu",
                    name));
  check(
      !device->has_index() || device->index() < count,
      fmt::format("device '{}': this machine has {} CUDA device{} (cuda:0{})", name, count,
                  count == 1 ? "" : "s", count == 1 ? "" : fmt::format(" to cuda:{}", count - 1)));
  return *device;
}

}  // namespace psm
