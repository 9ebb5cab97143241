#pragma once
// Factories of the built-in subcommands, one per src/cli/<name>_command.cpp.

#include <memory>

#include "psm/cli/command.h"

namespace psm::cli {

std::unique_ptr<Command> make_simulate_command();
std::unique_ptr<Command> make_train_command();   ///< `psm train --config FILE`
std::unique_ptr<Command> make_sample_command();  ///< `psm sample --checkpoint FILE`

}  // namespace psm::cli
