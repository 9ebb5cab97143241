#pragma once
// Name -> factory maps instead of switch statements (LAMMPS pair styles). Each layer has one
// explicit register_builtin_*() function; nothing registers itself through static initialisers.

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "psm/core/error.h"

namespace psm {

template <class Base, class... Args>
class Registry {
 public:
  using Factory = std::function<std::unique_ptr<Base>(Args...)>;

  /// `kind` names what is registered ("system", "command") in error messages.
  explicit Registry(std::string kind) : kind_(std::move(kind)) {}

  /// Throws psm::Error when `name` is already registered.
  void add(const std::string& name, std::string summary, Factory make) {
    check(!entries_.contains(name), fmt::format("{} '{}' is registered twice", kind_, name));
    entries_.emplace(name, Entry{std::move(summary), std::move(make)});
  }

  /// Throws psm::Error listing the known names when `name` is unknown.
  std::unique_ptr<Base> create(const std::string& name, Args... args) const {
    auto it = entries_.find(name);
    check(it != entries_.end(),
          fmt::format("unknown {} '{}' (known: {})", kind_, name, fmt::join(names(), ", ")));
    return it->second.make(std::forward<Args>(args)...);
  }

  bool contains(const std::string& name) const { return entries_.contains(name); }
  const std::string& summary(const std::string& name) const { return entries_.at(name).summary; }

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, entry] : entries_) out.push_back(name);
    return out;
  }

 private:
  struct Entry {
    std::string summary;
    Factory make;
  };
  std::string kind_;
  std::map<std::string, Entry> entries_;
};

}  // namespace psm
