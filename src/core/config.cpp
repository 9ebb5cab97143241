#include "psm/core/config.h"

#include <fmt/ranges.h>

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <sstream>

namespace psm {

namespace {

/// psm's keys are bare TOML keys (letters, digits, '_', '-'). Others are refused on reading:
/// none is a psm key, and toml++ writes some (a quoted "\t") back as keys it cannot read.
void check_bare_key(const std::string& key, const std::string& where) {
  check(!key.empty() && std::ranges::all_of(key,
                                            [](char c) {
                                              return std::isalnum(static_cast<unsigned char>(c)) ||
                                                     c == '_' || c == '-';
                                            }),
        fmt::format(
            "{}: key {} is not a psm config key (letters, digits, '_' and '-')", where,
            nlohmann::json(key).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
}

nlohmann::json to_json(const toml::node& node, const std::string& source) {
  if (const auto* table = node.as_table()) {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [key, value] : *table) {
      const std::string name(key.str());
      check_bare_key(name, source);
      out[name] = to_json(value, source);
    }
    return out;
  }
  if (const auto* array = node.as_array()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& value : *array) out.push_back(to_json(value, source));
    return out;
  }
  if (const auto* v = node.as_string()) return v->get();
  if (const auto* v = node.as_integer()) return v->get();
  if (const auto* v = node.as_floating_point()) return v->get();
  if (const auto* v = node.as_boolean()) return v->get();
  throw Error(fmt::format("{}: dates and times are not supported in psm configs", source));
}

void insert_toml(const nlohmann::json& value, toml::table& out, const std::string& key);

toml::array to_toml_array(const nlohmann::json& value) {
  toml::array out;
  for (const auto& item : value) {
    if (item.is_object()) {
      toml::table table;
      for (const auto& [k, v] : item.items()) insert_toml(v, table, k);
      out.push_back(std::move(table));
    } else if (item.is_array()) {
      out.push_back(to_toml_array(item));
    } else if (item.is_string()) {
      out.push_back(item.get<std::string>());
    } else if (item.is_boolean()) {
      out.push_back(item.get<bool>());
    } else if (item.is_number_integer()) {
      out.push_back(item.get<int64_t>());
    } else if (item.is_number()) {
      out.push_back(item.get<double>());
    }
  }
  return out;
}

void insert_toml(const nlohmann::json& value, toml::table& out, const std::string& key) {
  if (value.is_object()) {
    toml::table table;
    for (const auto& [k, v] : value.items()) insert_toml(v, table, k);
    out.insert_or_assign(key, std::move(table));
  } else if (value.is_array()) {
    out.insert_or_assign(key, to_toml_array(value));
  } else if (value.is_string()) {
    out.insert_or_assign(key, value.get<std::string>());
  } else if (value.is_boolean()) {
    out.insert_or_assign(key, value.get<bool>());
  } else if (value.is_number_integer()) {
    out.insert_or_assign(key, value.get<int64_t>());
  } else if (value.is_number()) {
    out.insert_or_assign(key, value.get<double>());
  }
}

}  // namespace

Config Config::from_toml_string(const std::string& text, const std::string& source) {
  try {
    return Config{to_json(toml::parse(text, source), source), source};
  } catch (const toml::parse_error& e) {
    throw Error(fmt::format("{}:{}:{}: {}", source, e.source().begin.line, e.source().begin.column,
                            e.description()));
  }
}

Config Config::from_toml_file(const std::filesystem::path& path) {
  check(std::filesystem::is_regular_file(path),
        fmt::format("{}: no such config file", path.string()));
  try {
    return Config{to_json(toml::parse_file(path.string()), path.string()), path.string()};
  } catch (const toml::parse_error& e) {
    throw Error(fmt::format("{}:{}:{}: {}", path.string(), e.source().begin.line,
                            e.source().begin.column, e.description()));
  }
}

void Config::set(const std::string& assignment) {
  const auto eq = assignment.find('=');
  check(eq != std::string::npos && eq > 0,
        fmt::format("--set '{}': expected key=value (e.g. train.steps=2000)", assignment));
  const std::string key = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  nlohmann::json value;
  try {
    value = to_json(*toml::parse("v = " + text)["v"].node(), fmt::format("--set '{}'", assignment));
  } catch (const toml::parse_error&) {
    value = text;  // bare words: --set system=lj13
  }
  nlohmann::json* node = &tree;
  std::string::size_type start = 0;
  while (true) {
    const auto dot = key.find('.', start);
    const std::string part = key.substr(start, dot == std::string::npos ? dot : dot - start);
    check(!part.empty(), fmt::format("--set '{}': empty key component", assignment));
    check_bare_key(part, fmt::format("--set '{}'", assignment));
    check(node->is_object(),
          fmt::format("--set '{}': '{}' is not a table", assignment, key.substr(0, start - 1)));
    if (dot == std::string::npos) {
      (*node)[part] = value;
      return;
    }
    node = &(*node)[part];
    if (node->is_null()) *node = nlohmann::json::object();
    start = dot + 1;
  }
}

std::string Config::to_toml() const {
  toml::table root;
  for (const auto& [k, v] : tree.items()) insert_toml(v, root, k);
  std::ostringstream out;
  out << root;
  return out.str();
}

ConfigSection::ConfigSection(const nlohmann::json& node, std::string path, std::string source)
    : node_(node), path_(std::move(path)), source_(std::move(source)) {
  check(node_.is_object() || node_.is_null(),
        fmt::format("{}: '{}' must be a table", source_, path_));
}

bool ConfigSection::has(const std::string& key) const {
  return node_.is_object() && node_.contains(key);
}

const nlohmann::json* ConfigSection::lookup(const std::string& key) {
  read_.insert(key);
  if (!has(key)) return nullptr;
  return &node_.at(key);
}

std::string ConfigSection::qualified(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

ConfigSection ConfigSection::section(const std::string& key) {
  static const nlohmann::json empty = nlohmann::json::object();
  const nlohmann::json* value = lookup(key);
  return ConfigSection(value ? *value : empty, qualified(key), source_);
}

void ConfigSection::finish() const {
  if (!node_.is_object()) return;
  std::vector<std::string> unknown;
  for (const auto& [key, value] : node_.items()) {
    if (!read_.contains(key)) unknown.push_back(qualified(key));
  }
  std::vector<std::string> known;
  for (const auto& key : read_) known.push_back(qualified(key));
  check(unknown.empty(), fmt::format("{}: unknown key(s) {} (known here: {})", source_,
                                     fmt::join(unknown, ", "), fmt::join(known, ", ")));
}

}  // namespace psm
