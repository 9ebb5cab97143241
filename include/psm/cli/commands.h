#pragma once
// Factories of the built-in `psm` subcommands, registered in register_builtin_commands.

#include <memory>

#include "psm/cli/command.h"

namespace psm::cli {

std::unique_ptr<Command> make_data_command();         ///< `psm data info|...`
std::unique_ptr<Command> make_simulate_command();     ///< `psm simulate`
std::unique_ptr<Command> make_validate_command();     ///< `psm validate`
std::unique_ptr<Command> make_train_command();        ///< `psm train --config FILE`
std::unique_ptr<Command> make_sample_command();       ///< `psm sample --checkpoint FILE`
std::unique_ptr<Command> make_run_command();          ///< `psm run [CONFIG]`
std::unique_ptr<Command> make_eval_command();         ///< `psm eval`
std::unique_ptr<Command> make_score_check_command();  ///< `psm score-check`
std::unique_ptr<Command> make_likelihood_command();   ///< `psm likelihood --checkpoint FILE`

}  // namespace psm::cli
