#pragma once
// Experiment configuration: TOML files (configs/*.toml) with `--set key.path=value` overrides
// from the command line. Options structs read their section through ConfigSection, which
// rejects unknown keys and wrong types with the file and the dotted key in the message.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "psm/core/error.h"

namespace psm {

/// A parsed configuration tree plus the name of where it came from (for error messages).
struct Config {
  nlohmann::json tree = nlohmann::json::object();
  std::string source = "<defaults>";

  /// Parses a TOML file. Throws psm::Error naming the file, line and problem.
  static Config from_toml_file(const std::filesystem::path& path);
  /// Parses TOML text; `source` names it in errors.
  static Config from_toml_string(const std::string& text, const std::string& source);

  /// Applies "a.b.c=value"; value is parsed as a TOML value (1e-3, true, "text", [1, 2]) and
  /// falls back to a bare string (so `--set system=lj13` works without quotes).
  void set(const std::string& assignment);

  /// The whole tree as TOML text (for checkpoints and reports).
  std::string to_toml() const;
};

/// Reads one table of a Config, remembering which keys were read so finish() can reject typos.
class ConfigSection {
 public:
  ConfigSection(const nlohmann::json& node, std::string path, std::string source);

  /// The value at `key`, or `fallback` when absent. Throws on a wrong type.
  template <class T>
  T get(const std::string& key, const T& fallback) {
    const nlohmann::json* value = lookup(key);
    return value ? convert<T>(*value, key) : fallback;
  }

  /// The value at `key`; throws psm::Error when absent.
  template <class T>
  T require(const std::string& key) {
    const nlohmann::json* value = lookup(key);
    check(value != nullptr, fmt::format("{}: missing key '{}'", source_, qualified(key)));
    return convert<T>(*value, key);
  }

  bool has(const std::string& key) const;
  /// A sub-table (empty when absent); it checks its own keys in its own finish().
  ConfigSection section(const std::string& key);
  /// Throws psm::Error listing keys present in the table but never read.
  void finish() const;

 private:
  const nlohmann::json* lookup(const std::string& key);
  std::string qualified(const std::string& key) const;

  template <class T>
  T convert(const nlohmann::json& value, const std::string& key) const {
    try {
      if constexpr (std::is_floating_point_v<T>) {
        check(value.is_number(), "expected a number");
      } else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
        check(value.is_number_integer(), "expected an integer");
      } else if constexpr (std::is_same_v<T, bool>) {
        check(value.is_boolean(), "expected true or false");
      } else if constexpr (std::is_same_v<T, std::string>) {
        check(value.is_string(), "expected a string");
      }
      return value.get<T>();
    } catch (const std::exception& e) {
      throw Error(fmt::format("{}: key '{}': {} (got {})", source_, qualified(key), e.what(),
                              value.dump()));
    }
  }

  const nlohmann::json& node_;
  std::string path_;
  std::string source_;
  std::set<std::string> read_;
};

}  // namespace psm
