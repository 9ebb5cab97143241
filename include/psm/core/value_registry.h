#pragma once
// Name -> value tables for the named choices of configs and flags (solvers, samplers,
// activations, training-set kinds, ...): the value-typed sibling of Registry (registry.h),
// with the same one-line error for an unknown name. Each table is a constant of the layer that
// owns the choice; nothing registers itself.

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "psm/core/error.h"

namespace psm {

template <class Value>
class ValueRegistry {
 public:
  using Entry = std::pair<std::string, Value>;

  /// `kind` names what is registered ("solver", "activation") in error messages. A value may
  /// have several names (aliases); the first is its canonical name. Throws psm::Error when a name
  /// is given twice.
  ValueRegistry(std::string kind, std::vector<Entry> entries)
      : kind_(std::move(kind)), entries_(std::move(entries)) {
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      check(std::none_of(entries_.begin(), it,
                         [&](const Entry& earlier) { return earlier.first == it->first; }),
            fmt::format("{} '{}' is registered twice", kind_, it->first));
    }
  }

  /// The value named `name`; throws psm::Error "unknown <kind> 'name' (known: a, b)".
  const Value& get(const std::string& name) const {
    for (const auto& [candidate, value] : entries_) {
      if (candidate == name) return value;
    }
    throw Error(fmt::format("unknown {} '{}' (known: {})", kind_, name, fmt::join(names(), ", ")));
  }

  bool contains(const std::string& name) const {
    return std::any_of(entries_.begin(), entries_.end(),
                       [&](const Entry& entry) { return entry.first == name; });
  }

  /// The canonical (first registered) name of `value`; throws psm::Error for an unregistered one.
  const std::string& name_of(const Value& value) const {
    for (const auto& [name, candidate] : entries_) {
      if (candidate == value) return name;
    }
    throw Error(fmt::format("{}: a value without a name", kind_));
  }

  /// Every name, aliases included, in registration order.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& entry : entries_) out.push_back(entry.first);
    return out;
  }

  const std::string& kind() const { return kind_; }

 private:
  std::string kind_;
  std::vector<Entry> entries_;
};

}  // namespace psm
