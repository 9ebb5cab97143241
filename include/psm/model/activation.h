#pragma once
// The activation functions of the score networks, by their config names (model.activation).

#include <string>
#include <vector>

namespace psm {

enum class Activation { silu, gelu, relu, tanh };

/// "silu", "gelu", "relu" or "tanh"; throws psm::Error "unknown activation 'x' (known: ...)".
Activation activation_from_string(const std::string& name);
std::string to_string(Activation value);
/// The known names, in the order of the error message.
std::vector<std::string> activation_names();
/// Throws psm::Error "<context>: unknown activation 'x' (known: silu, gelu, relu, tanh)".
void check_activation(const std::string& name, const std::string& context);

}  // namespace psm
