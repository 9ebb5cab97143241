#include "psm/systems/potential.h"

namespace psm {

void register_builtin_systems(SystemRegistry& registry) { (void)registry; }

}  // namespace psm
