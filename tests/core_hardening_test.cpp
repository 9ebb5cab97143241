// Atomic files, run locks and memory checks: what survives a kill, a second process and an
// impossible size.

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "psm/core/atomic_file.h"
#include "psm/core/error.h"
#include "psm/core/memory.h"
#include "psm/core/run_lock.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

class CoreHardening : public psm::test::ScratchDir {};

TEST_F(CoreHardening, WritingATargetRemovesTemporariesOfKilledProcessesOnly) {
  // pid 2147483647 is above any pid_max: no process has it.
  const fs::path dead = path(".out.txt.tmp.2147483647.0");
  const fs::path alive = path(fmt::format(".out.txt.tmp.{}.99", ::getpid()));
  const fs::path other_target = path(".other.txt.tmp.2147483647.0");
  for (const auto& file : {dead, alive, other_target}) std::ofstream(file) << "partial";
  psm::write_text_atomically(path("out.txt"), "complete");
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(alive));         // a write in progress elsewhere in this process
  EXPECT_TRUE(fs::exists(other_target));  // removed when other.txt is next written
  psm::write_text_atomically(path("other.txt"), "complete");
  EXPECT_FALSE(fs::exists(other_target));
}

TEST_F(CoreHardening, UnwritableOutputsAreFoundBeforeTheWork) {
  fs::create_directories(path("folder"));
  EXPECT_PSM_ERROR(psm::check_file_writable(path("folder")), "folder: is a directory");
  std::ofstream(path("plain")) << "x";
  EXPECT_PSM_ERROR(psm::check_file_writable(path("plain") / "out.npz"), "is not a directory");
  EXPECT_PSM_ERROR(psm::check_directory_writable(path("plain")), "exists and is not a directory");
  EXPECT_NO_THROW(psm::check_file_writable(path("new") / "deeper" / "out.npz"));
  EXPECT_NO_THROW(psm::check_directory_writable(path("run")));
  EXPECT_FALSE(fs::exists(path("new")));  // checking creates nothing
  if (::geteuid() != 0) {                 // root writes anywhere
    fs::create_directories(path("locked"));
    fs::permissions(path("locked"), fs::perms::owner_read | fs::perms::owner_exec);
    EXPECT_PSM_ERROR(psm::check_file_writable(path("locked") / "out.npz"), "permission denied");
    fs::permissions(path("locked"), fs::perms::owner_all);
  }
}

TEST_F(CoreHardening, AnOutputMayNotReplaceItsInput) {
  std::ofstream(path("in.npz")) << "x";
  EXPECT_PSM_ERROR(psm::check_distinct_files(path("in.npz"), path("in.npz")),
                   "the output would replace the input");
  EXPECT_PSM_ERROR(psm::check_distinct_files(path("in.npz"), dir_ / "sub" / ".." / "in.npz"),
                   "the output would replace the input");
  fs::create_directories(path("sub"));
  fs::create_symlink(path("in.npz"), path("link.npz"));
  EXPECT_PSM_ERROR(psm::check_distinct_files(path("in.npz"), path("link.npz")),
                   "the output would replace the input");
  EXPECT_NO_THROW(psm::check_distinct_files(path("in.npz"), path("out.npz")));
}

TEST_F(CoreHardening, ARunDirectoryHasOneHolderAtATime) {
  {
    const psm::RunLock first = psm::lock_run_directory(path("run"));
    // flock locks belong to open files: a second open in this process is refused like another
    // process would be.
    EXPECT_PSM_ERROR(psm::lock_run_directory(path("run")), "run: in use by another psm process",
                     fmt::format("(pid {})", ::getpid()));
    EXPECT_NO_THROW(psm::lock_run_directory(path("other")));
  }
  EXPECT_NO_THROW(psm::lock_run_directory(path("run")));  // released with the first
}

TEST(Memory, SizesBeyondTheMachineAreRefusedWithWhatWasAskedFor) {
  EXPECT_GT(psm::physical_memory_bytes(), 1e8);
  EXPECT_NO_THROW(psm::check_memory_fits(1e6, "a megabyte"));
  EXPECT_PSM_ERROR(psm::check_memory_fits(1e20, "--chains 100"),
                   "--chains 100 needs about 9.31e+10 GiB of memory, more than this machine's");
}

}  // namespace
