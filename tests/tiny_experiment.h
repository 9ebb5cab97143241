#pragma once
// A whole DW4 experiment small enough for a test: two sets (limited, hot), DSM and PSM, a few
// training steps. Shared by the pipeline's tests and its MPI test.

namespace psm::test {

inline constexpr const char* kTinyDw4Experiment = R"(
name = "tiny"
seed = 3
variants = ["dsm", "psm"]
[system]
name = "dw4"
[reference]
samples = 300
test_samples = 200
chains = 20
burn_in = 200
thin = 5
[[sets]]
name = "limited"
kind = "limited"
frames = 60
[[sets]]
name = "hot"
kind = "temperature"
kT_data = 2.0
frames = 60
[sample]
n = 80
steps = 6
[model]
layers = 1
width = 8
noise_features = 4
[train]
steps = 12
batch_size = 16
warmup_steps = 2
checkpoint_every = 6
validation_every = 6
log_every = 3
)";

}  // namespace psm::test
