#pragma once
// Name tables for enums, shared by their to_string / *_from_string.

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "psm/core/error.h"

namespace psm::detail {

template <class Enum>
using EnumNames = std::vector<std::pair<Enum, std::string_view>>;

template <class Enum>
std::string enum_to_string(Enum value, const EnumNames<Enum>& names) {
  for (const auto& [candidate, name] : names)
    if (candidate == value) return std::string(name);
  throw Error("invalid enum value");
}

/// Throws psm::Error "unknown <what> 'name' (known: a, b)".
template <class Enum>
Enum enum_from_string(const std::string& name, const EnumNames<Enum>& names,
                      std::string_view what) {
  std::vector<std::string_view> known;
  for (const auto& [candidate, candidate_name] : names) {
    if (candidate_name == name) return candidate;
    known.push_back(candidate_name);
  }
  throw Error(fmt::format("unknown {} '{}' (known: {})", what, name, fmt::join(known, ", ")));
}

}  // namespace psm::detail
