// libFuzzer target: a checkpoint's metadata record (the JSON that `psm sample`, `score-check`
// and `--resume` read before any weight), then the score model it describes, built and run once.
// The archive around it is LibTorch's (zip entries with checksums), which a mutated byte fails.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <variant>

#include "psm/core/error.h"
#include "psm/model/score_model.h"
#include "psm/train/checkpoint.h"

namespace {

/// Networks of this size or smaller are built: a record may name any size, but its weights
/// follow it in the file, so a large one is a large file, not a parser's concern.
bool small_enough(const psm::NetworkOptions& network) {
  return std::visit(
      [](const auto& o) {
        return o.layers() <= 4 && o.hidden() <= 32 && o.num_rbf() <= 32 &&
               o.noise_features() <= 32 && o.species().numel() <= 32;
      },
      network);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::optional<psm::CheckpointInfo> info;
  try {
    info = psm::checkpoint_info_from_json(nlohmann::json::parse(data, data + size), "fuzz.pt");
  } catch (const nlohmann::json::exception&) {
    return 0;  // not JSON: checkpoint_info_from_archive's one-line error
  } catch (const psm::Error&) {
    return 0;  // a one-line error is the correct answer to a bad record
  }
  // Not caught from here on: a record psm wrote that it cannot read is a bug, and so is a model
  // that fails other than with a psm::Error.
  psm::checkpoint_info_from_json(psm::to_json(*info), "fuzz.pt (written back)");
  if (!small_enough(info->network)) return 0;
  try {
    psm::ScoreModel model(psm::ScoreModelOptions(info->network, info->sigma_data));
    const int64_t atoms =
        std::visit([](const auto& o) { return o.species().numel(); }, info->network);
    const int64_t dim = std::visit([](const auto& o) { return o.dim(); }, info->network);
    torch::NoGradGuard no_grad;
    model->forward(torch::randn({2, atoms, dim}), torch::full({2}, 0.1));
  } catch (const psm::Error&) {
    return 0;
  }
  return 0;
}
