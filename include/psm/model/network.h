#pragma once
// The network kinds of the score model (`model.kind`), their options and a factory: "egnn" (scalar
// messages over dense pairs, egnn.h) and "painn" (vector features, sparse neighbours, optional bond
// graph, painn.h). The score model (score_model.h) preconditions whichever ScoreNetwork it holds
// and knows nothing else of it.

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "psm/model/egnn.h"
#include "psm/model/painn.h"
#include "psm/model/score_network.h"

namespace psm {

/// The options of one network kind; the alternative held is the kind.
using NetworkOptions = std::variant<EgnnOptions, PainnOptions>;

/// "egnn" or "painn".
std::string network_kind(const NetworkOptions& options);
/// The names network_kind gives, in a fixed order (for error messages).
std::vector<std::string> network_kinds();
/// Default options of the kind `name`, dim 0 and no species; throws psm::Error listing the
/// known kinds when `name` is unknown.
NetworkOptions default_network_options(const std::string& name);

/// The options with the system's atoms set from its frames: dim, species and, for a PaiNN with
/// bond_graph on and chemical elements for species, the bond graph (majority_bonds of the
/// frames, as graph_distances capped at kGraphFarthest). Throws psm::Error when a cutoff is
/// shorter than the frames' shortest bond (the mean over frames of their closest pair).
/// @param positions [F, N, D] frames, length units; @param species [N] atomic numbers
NetworkOptions with_atoms(NetworkOptions options, const torch::Tensor& positions,
                          const std::vector<int64_t>& species);
/// The options with the initial-weight seed set.
NetworkOptions with_seed(NetworkOptions options, uint64_t seed);
/// The atoms' species [N] int64 of the options.
const torch::Tensor& network_species(const NetworkOptions& options);

/// A freshly initialised network: the module to register and the interface to call (an alias of
/// the same object).
std::pair<std::shared_ptr<torch::nn::Module>, std::shared_ptr<ScoreNetwork>> make_network(
    const NetworkOptions& options);

}  // namespace psm
