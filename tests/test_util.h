#pragma once
// Helpers shared by the tests: fixture paths, a scratch directory, running the psm binary,
// error-message checks.

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>

#include <filesystem>
#include <string>

#include "psm/core/error.h"
#include "psm/core/remove_tree.h"

namespace psm::test {

inline std::filesystem::path data_path(const std::string& name) {
  return std::filesystem::path(PSM_TEST_DATA_DIR) / name;
}

/// A fresh directory per test, removed afterwards.
class ScratchDir : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           (std::string("psm_") + info->test_suite_name() + "_" + info->name() + "_" +
            std::to_string(::getpid()));
    psm::remove_tree(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { psm::remove_tree(dir_); }
  std::filesystem::path path(const std::string& name) const { return dir_ / name; }
  int64_t file_count() const {
    return std::distance(std::filesystem::directory_iterator(dir_),
                         std::filesystem::directory_iterator{});
  }
  std::filesystem::path dir_;
};

struct RunResult {
  int exit_code;
  std::string output;  ///< stdout and stderr together
};

/// Runs `command` in a shell and captures stdout and stderr together.
inline RunResult run_shell(const std::string& command) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string output;
  std::array<char, 4096> buffer;
  size_t n = 0;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    output.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

/// Runs the psm binary with `arguments` (a shell-quoted string) and captures its output.
inline RunResult run_psm(const std::string& arguments) {
  return run_shell(std::string(PSM_BINARY) + " " + arguments);
}

}  // namespace psm::test

/// Expects `statement` to throw psm::Error whose one-line message contains every string in
/// the list (the file name and the problem).
#define EXPECT_PSM_ERROR(statement, ...)                                                \
  do {                                                                                  \
    try {                                                                               \
      statement;                                                                        \
      ADD_FAILURE() << "expected psm::Error from " #statement;                          \
    } catch (const psm::Error& e) {                                                     \
      const std::string message = e.what();                                             \
      EXPECT_EQ(message.find('\n'), std::string::npos) << message;                      \
      for (const std::string& part : std::initializer_list<std::string>{__VA_ARGS__}) { \
        EXPECT_NE(message.find(part), std::string::npos)                                \
            << "message lacks '" << part << "': " << message;                           \
      }                                                                                 \
    }                                                                                   \
  } while (false)
