#include "psm/model/activation.h"

#include "psm/core/error.h"
#include "psm/core/value_registry.h"

namespace psm {

namespace {
const ValueRegistry<Activation> kActivations("activation", {{"silu", Activation::silu},
                                                            {"gelu", Activation::gelu},
                                                            {"relu", Activation::relu},
                                                            {"tanh", Activation::tanh}});
}  // namespace

Activation activation_from_string(const std::string& name) { return kActivations.get(name); }
std::string to_string(Activation value) { return kActivations.name_of(value); }
std::vector<std::string> activation_names() { return kActivations.names(); }

void check_activation(const std::string& name, const std::string& context) {
  try {
    kActivations.get(name);
  } catch (const Error& e) {
    throw Error(context + ": " + e.what());
  }
}

}  // namespace psm
