// Fault injection: `psm train`, `psm simulate` and `psm run` killed with SIGKILL at several
// points, then resumed. After every kill each file is complete (the old version or the new one),
// the resumed results equal those of an uninterrupted run, and no temporary file outlives the
// resume. Where the kills land varies with the machine's speed; the properties hold wherever.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "psm/io/dataset.h"
#include "psm/train/checkpoint.h"
#include "test_util.h"
#include "train_test_util.h"

namespace fs = std::filesystem;

namespace {

/// Delays after the start at which a run is killed: spread over start-up (LibTorch loads in
/// about a second), data preparation and the work itself.
const std::vector<std::chrono::milliseconds> kKillDelays = {
    std::chrono::milliseconds(300),  std::chrono::milliseconds(600),
    std::chrono::milliseconds(900),  std::chrono::milliseconds(1300),
    std::chrono::milliseconds(1700), std::chrono::milliseconds(2400)};

/// Runs the psm binary with `arguments` and SIGKILLs it after `delay` unless it ended first.
/// Returns whether it was killed.
bool run_and_kill(const std::vector<std::string>& arguments, std::chrono::milliseconds delay) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::dup2(null, 2);
    std::vector<char*> argv{const_cast<char*>(PSM_BINARY)};
    for (const auto& argument : arguments) argv.push_back(const_cast<char*>(argument.c_str()));
    argv.push_back(nullptr);
    ::execv(PSM_BINARY, argv.data());
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + delay;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return WIFSIGNALED(status);
}

std::string quoted(const std::vector<std::string>& arguments) {
  std::string line;
  for (const auto& argument : arguments) line += " '" + argument + "'";
  return line;
}

bool is_temporary(const fs::path& file) {
  return file.filename().string().find(".tmp.") != std::string::npos;
}

/// Every file under `dir` that a reader opens is complete: datasets load, checkpoints read, and
/// every line of a metrics log but a last one cut by the kill is JSON. Temporaries are allowed
/// (the kill may leave one) when `allow_temporaries`.
void expect_complete_files(const fs::path& dir, bool allow_temporaries) {
  if (!fs::exists(dir)) return;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    const fs::path& file = entry.path();
    if (is_temporary(file)) {
      EXPECT_TRUE(allow_temporaries) << "left behind: " << file;
      continue;
    }
    const std::string extension = file.extension().string();
    if (extension == ".npz") {
      EXPECT_NO_THROW(psm::load_dataset(file)) << file;
    } else if (file.filename() == "checkpoint.pt") {
      EXPECT_NO_THROW(psm::read_checkpoint_info(file)) << file;
    } else if (extension == ".jsonl") {
      std::ifstream in(file);
      std::vector<std::string> lines;
      for (std::string line; std::getline(in, line);) lines.push_back(line);
      for (size_t i = 0; i + 1 < lines.size(); ++i) {
        EXPECT_FALSE(nlohmann::json::parse(lines[i], nullptr, false).is_discarded())
            << file << " line " << i + 1;
      }
    } else if (extension == ".json") {
      std::ifstream in(file);
      EXPECT_FALSE(nlohmann::json::parse(in, nullptr, false).is_discarded()) << file;
    }
  }
}

/// (step, loss) of every line of a metrics log: equal for runs that trained alike.
std::vector<std::pair<int64_t, double>> logged_losses(const fs::path& file) {
  std::vector<std::pair<int64_t, double>> losses;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    const auto record = nlohmann::json::parse(line);
    if (record.contains("loss"))
      losses.emplace_back(record["step"].get<int64_t>(), record["loss"].get<double>());
  }
  return losses;
}

class FaultInjection : public psm::test::ScratchDir {};

TEST_F(FaultInjection, KilledTrainingResumesToTheUninterruptedResult) {
  psm::save_dataset(path("triangle.npz"), psm::test::spring_triangle(64, 9));
  std::ofstream(path("run.toml")) << "threads = 1\n"
                                  << "[data]\ntrain = \"" << path("triangle.npz").string()
                                  << "\"\nvalidation_fraction = 0.25\n"
                                  << "[model]\nlayers = 2\nwidth = 16\nnoise_features = 4\n"
                                  << "[diffusion]\nsigma_min = 0.01\nsigma_max = 3.0\n"
                                  << "[train]\nsteps = 300\nbatch_size = 16\nwarmup_steps = 2\n"
                                  << "checkpoint_every = 7\nvalidation_every = 50\nlog_every = 1\n";
  const auto train = [&](const fs::path& out, bool resume) {
    std::vector<std::string> arguments{"--threads",     "1",         "train",
                                       "--no-progress", "--config",  path("run.toml").string(),
                                       "--out",         out.string()};
    if (resume) arguments.push_back("--resume");
    return arguments;
  };
  const fs::path killed = path("killed");
  int kills = 0;
  for (const auto delay : kKillDelays) {
    const bool resume = fs::exists(killed / "checkpoint.pt");
    if (!run_and_kill(train(killed, resume), delay)) break;  // finished first
    ++kills;
    expect_complete_files(killed, /*allow_temporaries=*/true);
  }
  const bool resume = fs::exists(killed / "checkpoint.pt");
  const auto finish = psm::test::run_psm(quoted(train(killed, resume)));
  ASSERT_EQ(finish.exit_code, 0) << finish.output;
  expect_complete_files(killed, /*allow_temporaries=*/false);
  ASSERT_EQ(psm::test::run_psm(quoted(train(path("whole"), false))).exit_code, 0);
  EXPECT_EQ(psm::read_checkpoint_info(killed / "checkpoint.pt").step, 300);
  EXPECT_EQ(logged_losses(killed / "metrics.jsonl"), logged_losses(path("whole/metrics.jsonl")));
  RecordProperty("kills", kills);
}

TEST_F(FaultInjection, KilledSimulationResumesToTheUninterruptedResult) {
  const auto simulate = [&](const std::string& out, bool resume) {
    std::vector<std::string> arguments{"--threads",
                                       "1",
                                       "simulate",
                                       "--system",
                                       "lj13",
                                       "--chains",
                                       "8",
                                       "--burn-in",
                                       "2000",
                                       "--thin",
                                       "50",
                                       "--samples",
                                       "4000",
                                       "--seed",
                                       "5",
                                       "--no-progress",
                                       "--checkpoint-every",
                                       "200",
                                       "--checkpoint",
                                       path(out + ".state").string(),
                                       "--out",
                                       path(out + ".npz").string()};
    if (resume) arguments.push_back("--resume");
    return arguments;
  };
  int kills = 0;
  for (const auto delay : kKillDelays) {
    const bool resume = fs::exists(path("killed.state"));
    if (!run_and_kill(simulate("killed", resume), delay)) break;
    ++kills;
    expect_complete_files(dir_, /*allow_temporaries=*/true);
    if (fs::exists(path("killed.state"))) {
      // The state file is always a whole one: resuming from it works.
      EXPECT_NE(fs::file_size(path("killed.state")), 0u);
    }
  }
  const auto finish =
      psm::test::run_psm(quoted(simulate("killed", fs::exists(path("killed.state")))));
  ASSERT_EQ(finish.exit_code, 0) << finish.output;
  ASSERT_EQ(psm::test::run_psm(quoted(simulate("whole", false))).exit_code, 0);
  expect_complete_files(dir_, /*allow_temporaries=*/false);
  const psm::Dataset a = psm::load_dataset(path("killed.npz"));
  const psm::Dataset b = psm::load_dataset(path("whole.npz"));
  EXPECT_TRUE(torch::equal(a.positions, b.positions));
  EXPECT_TRUE(torch::equal(a.energies, b.energies));
  RecordProperty("kills", kills);
}

constexpr const char* kTinyExperiment = R"(
name = "tiny"
seed = 3
threads = 1
variants = ["dsm", "psm"]
[system]
name = "dw4"
[reference]
samples = 400
test_samples = 200
chains = 20
burn_in = 2000
thin = 20
[[sets]]
name = "limited"
kind = "limited"
frames = 60
[sample]
n = 80
steps = 6
[model]
layers = 1
width = 8
noise_features = 4
[train]
steps = 60
batch_size = 16
warmup_steps = 2
checkpoint_every = 5
validation_every = 20
log_every = 5
)";

TEST_F(FaultInjection, KilledExperimentResumesToTheUninterruptedResult) {
  std::ofstream(path("tiny.toml")) << kTinyExperiment;
  const auto experiment = [&](const fs::path& out) {
    return std::vector<std::string>{
        "--threads",     "1",          "run",   path("tiny.toml").string(),
        "--no-progress", "--no-plots", "--out", out.string()};
  };
  int kills = 0;
  for (const auto delay : kKillDelays) {
    if (!run_and_kill(experiment(path("killed")), delay)) break;
    ++kills;
    expect_complete_files(path("killed"), /*allow_temporaries=*/true);
  }
  const auto finish = psm::test::run_psm(quoted(experiment(path("killed"))));
  ASSERT_EQ(finish.exit_code, 0) << finish.output;
  expect_complete_files(path("killed"), /*allow_temporaries=*/false);
  const auto whole = psm::test::run_psm(quoted(experiment(path("whole"))));
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  int compared = 0;
  for (const auto& entry : fs::recursive_directory_iterator(path("whole"))) {
    if (entry.path().extension() != ".npz") continue;
    const fs::path other = path("killed") / fs::relative(entry.path(), path("whole"));
    const psm::Dataset a = psm::load_dataset(entry.path()), b = psm::load_dataset(other);
    EXPECT_TRUE(torch::equal(a.positions, b.positions)) << other;
    ++compared;
  }
  EXPECT_GE(compared, 4);  // reference pool and test set, the training set, the samples
  RecordProperty("kills", kills);
}

}  // namespace
