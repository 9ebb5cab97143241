#include "psm/io/xyz.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <optional>
#include <vector>

#include "psm/core/atomic_file.h"
#include "psm/core/elements.h"
#include "psm/core/error.h"
#include "psm/io/file_bytes.h"

namespace psm {

namespace {

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split_whitespace(std::string_view s) {
  std::vector<std::string_view> tokens;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    const size_t start = i;
    while (i < s.size() && !is_space(s[i])) ++i;
    if (i > start) tokens.push_back(s.substr(start, i - start));
  }
  return tokens;
}

std::optional<double> to_double(std::string_view token) {
  if (token.starts_with('+')) token.remove_prefix(1);
  double value = 0;
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), value);
  if (ec != std::errc() || end != token.data() + token.size()) return std::nullopt;
  return value;
}

std::optional<int64_t> to_int(std::string_view token) {
  if (token.starts_with('+')) token.remove_prefix(1);
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), value);
  if (ec != std::errc() || end != token.data() + token.size()) return std::nullopt;
  return value;
}

/// Lines of a text with their 1-based numbers; accepts "\n" and "\r\n".
class LineReader {
 public:
  explicit LineReader(std::string_view text) : text_(text) {}
  bool next(std::string_view& line) {
    if (pos_ >= text_.size()) return false;
    size_t end = text_.find('\n', pos_);
    if (end == std::string_view::npos) end = text_.size();
    line = text_.substr(pos_, end - pos_);
    if (line.ends_with('\r')) line.remove_suffix(1);
    pos_ = end + 1;
    ++number_;
    return true;
  }
  int64_t number() const { return number_; }
  size_t remaining_bytes() const { return pos_ >= text_.size() ? 0 : text_.size() - pos_; }

 private:
  std::string_view text_;
  size_t pos_ = 0;
  int64_t number_ = 0;
};

/// One per-atom column group of the Properties key, e.g. pos:R:3.
struct Property {
  std::string name;
  char type;
  int64_t columns;
  int64_t first_column;
};

std::vector<Property> parse_properties(const std::string& spec, const std::string& where) {
  std::vector<std::string> fields;
  size_t start = 0;
  while (true) {
    const size_t colon = spec.find(':', start);
    fields.push_back(spec.substr(start, colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  check(fields.size() % 3 == 0,
        fmt::format("{}: Properties '{}' is not a list of name:type:columns", where, spec));
  std::vector<Property> properties;
  int64_t column = 0;
  for (size_t i = 0; i < fields.size(); i += 3) {
    const auto columns = to_int(fields[i + 2]);
    check(fields[i + 1].size() == 1 &&
              std::string_view("RISL").find(fields[i + 1][0]) != std::string_view::npos,
          fmt::format("{}: Properties '{}': unknown type '{}' (R, I, S or L)", where, spec,
                      fields[i + 1]));
    check(columns.has_value() && *columns > 0,
          fmt::format("{}: Properties '{}': bad column count '{}'", where, spec, fields[i + 2]));
    properties.push_back({fields[i], fields[i + 1][0], *columns, column});
    column += *columns;
  }
  return properties;
}

const Property* find_property(const std::vector<Property>& properties, std::string_view name) {
  const auto it = std::find_if(properties.begin(), properties.end(),
                               [&](const Property& p) { return p.name == name; });
  return it == properties.end() ? nullptr : &*it;
}

/// ASE's spelling of T/F values.
std::optional<bool> to_bool(std::string_view token) {
  if (token == "T" || token == "True" || token == "true" || token == "TRUE") return true;
  if (token == "F" || token == "False" || token == "false" || token == "FALSE") return false;
  return std::nullopt;
}

/// Python's repr of a float (shortest round trip; "500.0" rather than "500").
std::string python_float(double value) {
  std::string text = fmt::format("{}", value);
  if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
  return text;
}

/// Quotes a value the way ASE's writer does when it holds spaces, quotes or brackets; also
/// escapes backslashes so that JSON strings survive a read.
std::string quote_value(const std::string& value) {
  if (value.find_first_of(" \"'{}[]\\") == std::string::npos && !value.empty()) return value;
  std::string quoted = "\"";
  for (const char c : value) {
    if (c == '"' || c == '\\') quoted += '\\';
    quoted += c;
  }
  return quoted + "\"";
}

/// Everything a frame's comment line and atom lines say, before units are applied.
struct Frame {
  std::vector<int64_t> species;
  std::vector<double> positions;  ///< N * 3
  std::vector<double> forces;     ///< N * 3 or empty
  std::optional<double> energy;
  std::map<std::string, std::string> info;
};

Frame parse_frame(LineReader& lines, int64_t atom_count, const std::string& source) {
  Frame frame;
  std::string_view line;
  check(lines.next(line),
        fmt::format("{}: line {}: file ends before the comment line", source, lines.number() + 1));
  const std::string where = fmt::format("{}: line {}", source, lines.number());
  frame.info = parse_extxyz_info(line);

  const auto pbc = frame.info.find("pbc");
  bool periodic = pbc == frame.info.end() && frame.info.contains("Lattice");
  if (pbc != frame.info.end()) {
    for (const auto token : split_whitespace(pbc->second)) {
      const auto flag = to_bool(token);
      check(flag.has_value(), fmt::format("{}: bad pbc value '{}'", where, pbc->second));
      periodic = periodic || *flag;
    }
  }
  check(!periodic, fmt::format("{}: periodic frames are not supported (pbc=\"{}\")", where,
                               pbc == frame.info.end() ? "T T T" : pbc->second));

  const auto spec = frame.info.find("Properties");
  const std::vector<Property> properties =
      parse_properties(spec == frame.info.end() ? "species:S:1:pos:R:3" : spec->second, where);
  const Property* species = find_property(properties, "species");
  const Property* numbers = find_property(properties, "Z");
  const Property* pos = find_property(properties, "pos");
  const Property* forces = find_property(properties, "forces");
  check(species != nullptr || numbers != nullptr,
        fmt::format("{}: Properties has no species:S:1 or Z:I:1 column", where));
  check(pos != nullptr && pos->type == 'R' && pos->columns == 3,
        fmt::format("{}: Properties has no pos:R:3 column", where));
  check(forces == nullptr || (forces->type == 'R' && forces->columns == 3),
        fmt::format("{}: Properties column forces must be forces:R:3", where));
  const int64_t columns = properties.back().first_column + properties.back().columns;

  if (const auto energy = frame.info.find("energy"); energy != frame.info.end()) {
    frame.energy = to_double(energy->second);
    check(frame.energy.has_value(),
          fmt::format("{}: energy '{}' is not a number", where, energy->second));
  }

  frame.species.reserve(static_cast<size_t>(atom_count));
  frame.positions.reserve(static_cast<size_t>(3 * atom_count));
  for (int64_t atom = 0; atom < atom_count; ++atom) {
    check(lines.next(line),
          fmt::format("{}: file ends after {} of {} atom lines", where, atom, atom_count));
    const std::string at = fmt::format("{}: line {}", source, lines.number());
    const auto tokens = split_whitespace(line);
    check(static_cast<int64_t>(tokens.size()) == columns,
          fmt::format("{}: expected {} columns, got {}", at, columns, tokens.size()));
    if (species != nullptr) {
      // ASE capitalises symbols ("CL" -> "Cl").
      std::string symbol(tokens[static_cast<size_t>(species->first_column)]);
      for (size_t i = 0; i < symbol.size(); ++i) {
        symbol[i] = static_cast<char>(i == 0 ? std::toupper(static_cast<unsigned char>(symbol[i]))
                                             : std::tolower(static_cast<unsigned char>(symbol[i])));
      }
      try {
        frame.species.push_back(atomic_number(symbol));
      } catch (const Error& e) {
        throw Error(fmt::format("{}: {}", at, e.what()));
      }
    } else {
      const auto z = to_int(tokens[static_cast<size_t>(numbers->first_column)]);
      check(z.has_value() && *z >= 0 && *z <= max_atomic_number,
            fmt::format("{}: bad atomic number '{}'", at,
                        tokens[static_cast<size_t>(numbers->first_column)]));
      frame.species.push_back(*z);
    }
    const auto read_vector = [&](const Property& property, std::vector<double>& out) {
      for (int64_t k = 0; k < 3; ++k) {
        const auto token = tokens[static_cast<size_t>(property.first_column + k)];
        const auto value = to_double(token);
        check(value.has_value(),
              fmt::format("{}: {} value '{}' is not a number", at, property.name, token));
        out.push_back(*value);
      }
    };
    read_vector(*pos, frame.positions);
    if (forces != nullptr) read_vector(*forces, frame.forces);
  }
  return frame;
}

std::optional<double> info_number(const Frame& frame, const std::string& key,
                                  const std::string& where) {
  const auto it = frame.info.find(key);
  if (it == frame.info.end()) return std::nullopt;
  const auto value = to_double(it->second);
  check(value.has_value(), fmt::format("{}: {} '{}' is not a number", where, key, it->second));
  return value;
}

nlohmann::json info_json(const Frame& frame, const std::string& key, const std::string& where) {
  const auto it = frame.info.find(key);
  if (it == frame.info.end()) return nullptr;
  std::string_view text = it->second;
  check(text.starts_with("_JSON "),
        fmt::format("{}: {} must be a \"_JSON ...\" value", where, key));
  text.remove_prefix(6);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: {} is not valid JSON: {}", where, key, e.what()));
  }
}

torch::Tensor frames_tensor(const std::vector<double>& values, int64_t frames, int64_t atoms) {
  return torch::tensor(values, torch::kFloat64).reshape({frames, atoms, 3});
}

}  // namespace

std::map<std::string, std::string> parse_extxyz_info(std::string_view line) {
  // Each pair is [key, value, value, ...]: '=' inside an unquoted value starts another part,
  // which is joined back with '=' (as ASE does).
  std::vector<std::vector<std::string>> pairs{{""}};
  char closing = '\0';
  bool escaped = false;
  for (const char c : trim(line)) {
    if (escaped) {
      pairs.back().back() += c;
      escaped = false;
    } else if (c == '\\') {
      escaped = true;
    } else if (closing != '\0') {
      if (c == closing) {
        closing = '\0';
      } else {
        pairs.back().back() += c;
      }
    } else if (c == '"' || c == '\'' || c == '{' || c == '[') {
      closing = c == '{' ? '}' : c == '[' ? ']' : c;
    } else if (is_space(c)) {
      if (pairs.back().back().empty()) continue;
      pairs.push_back({""});
    } else if (c == '=') {
      // "key =value": the space started an empty pair that belongs to the previous key.
      if (pairs.size() > 1 && pairs.back().size() == 1 && pairs.back()[0].empty()) {
        pairs.pop_back();
      }
      pairs.back().emplace_back();
    } else {
      pairs.back().back() += c;
    }
  }
  std::map<std::string, std::string> info;
  for (const auto& parts : pairs) {
    if (parts.size() == 1 && parts[0].empty()) continue;
    std::string value = parts.size() == 1 ? "T" : parts[1];
    for (size_t i = 2; i < parts.size(); ++i) value += "=" + parts[i];
    info[parts[0]] = value;
  }
  return info;
}

Dataset parse_extxyz(std::string_view text, const std::string& source_name,
                     const LoadOptions& options) {
  std::vector<Frame> frames;
  LineReader lines(text);
  std::string_view line;
  while (lines.next(line)) {
    if (trim(line).empty()) continue;
    const auto atom_count = to_int(trim(line));
    check(atom_count.has_value() && *atom_count > 0,
          fmt::format("{}: line {}: expected a positive atom count, got '{}'", source_name,
                      lines.number(), trim(line)));
    // An atom line ("H 0 0 0") takes at least 8 bytes: a count the rest of the file cannot
    // hold is a corrupt file, refused before memory is reserved for it.
    const auto atoms_possible = static_cast<int64_t>(lines.remaining_bytes() / 8 + 1);
    check(*atom_count <= atoms_possible,
          fmt::format("{}: line {}: the count line says {} atoms, but the {} bytes left in the "
                      "file hold at most {} atom lines",
                      source_name, lines.number(), *atom_count, lines.remaining_bytes(),
                      atoms_possible));
    frames.push_back(parse_frame(lines, *atom_count, source_name));
  }
  check(!frames.empty(), fmt::format("{}: no frames", source_name));

  const Frame& first = frames.front();
  const int64_t atoms = static_cast<int64_t>(first.species.size());
  std::vector<double> positions, forces, energies;
  for (size_t f = 0; f < frames.size(); ++f) {
    const Frame& frame = frames[f];
    const std::string where = fmt::format("{}: frame {}", source_name, f + 1);
    check(frame.species == first.species,
          fmt::format("{}: atoms or species differ from frame 1", where));
    check(frame.forces.empty() == first.forces.empty(),
          fmt::format("{}: forces present in some frames only", where));
    check(frame.energy.has_value() == first.energy.has_value(),
          fmt::format("{}: energy present in some frames only", where));
    for (const char* key : {"units", "kT"}) {
      const auto a = first.info.find(key), b = frame.info.find(key);
      const bool same = (a == first.info.end()) == (b == frame.info.end()) &&
                        (a == first.info.end() || a->second == b->second);
      check(same, fmt::format("{}: {} differs from frame 1", where, key));
    }
    positions.insert(positions.end(), frame.positions.begin(), frame.positions.end());
    forces.insert(forces.end(), frame.forces.begin(), frame.forces.end());
    if (frame.energy) energies.push_back(*frame.energy);
  }

  Dataset dataset;
  const auto frame_count = static_cast<int64_t>(frames.size());
  for (const auto& [key, column] :
       {std::pair{"log_q", &dataset.log_q}, std::pair{"log_q_error", &dataset.log_q_error},
        std::pair{"log_weights", &dataset.log_weights}}) {
    if (!first.info.contains(key)) continue;
    std::vector<double> values;
    for (size_t f = 0; f < frames.size(); ++f) {
      const std::string where = fmt::format("{}: frame {}", source_name, f + 1);
      const auto value = info_number(frames[f], key, where);
      check(value.has_value(), fmt::format("{}: {} present in some frames only", where, key));
      values.push_back(*value);
    }
    *column = torch::tensor(values, torch::kFloat64);
  }
  dataset.positions = frames_tensor(positions, frame_count, atoms);
  if (!forces.empty()) dataset.forces = frames_tensor(forces, frame_count, atoms);
  if (!energies.empty()) dataset.energies = torch::tensor(energies, torch::kFloat64);
  dataset.species = first.species;

  // Without a units key the file follows ASE: eV and Å.
  const std::string where = fmt::format("{}: frame 1", source_name);
  double energy_scale = 1.0;
  if (const auto units = first.info.find("units"); units != first.info.end()) {
    try {
      dataset.units = units_from_string(units->second);
    } catch (const Error& e) {
      throw Error(fmt::format("{}: {}", where, e.what()));
    }
  } else {
    dataset.units = Units::kcal_mol_angstrom;
    energy_scale = constants::electronvolt_in_kcal_mol;
  }
  if (dataset.has_energies()) dataset.energies *= energy_scale;
  if (dataset.has_forces()) dataset.forces *= energy_scale;

  dataset.temperature_kelvin = info_number(first, "temperature_kelvin", where);
  if (const auto sampled = info_number(first, "sampled_kT", where)) {
    dataset.sampled_kT = *sampled * energy_scale;
  }
  const auto kT = info_number(first, "kT", where);
  if (options.temperature_kelvin) {
    check(dataset.units == Units::kcal_mol_angstrom,
          fmt::format("{}: a temperature in kelvin needs kcal/mol data, not {} units", source_name,
                      to_string(dataset.units)));
    dataset.temperature_kelvin = options.temperature_kelvin;
    dataset.kT = kT_from_kelvin(*options.temperature_kelvin);
  } else if (kT) {
    dataset.kT = *kT * energy_scale;
  } else {
    check(dataset.temperature_kelvin.has_value() && dataset.units == Units::kcal_mol_angstrom,
          fmt::format("{}: no kT or temperature_kelvin key; give the temperature (--temperature)",
                      source_name));
    dataset.kT = kT_from_kelvin(*dataset.temperature_kelvin);
  }
  dataset.system = info_json(first, "system", where);
  dataset.provenance = info_json(first, "provenance", where);
  return dataset;
}

Dataset read_extxyz(const std::filesystem::path& path, const LoadOptions& options) {
  return parse_extxyz(read_file_bytes(path), path.string(), options);
}

std::string extxyz_string(const Dataset& dataset) {
  check(dataset.positions.defined() && dataset.positions.dim() == 3,
        "extended XYZ needs positions [frames, atoms, dim]");
  check(dataset.dim() == 3,
        fmt::format("extended XYZ holds 3-D positions; this dataset is {}-D (use .npz)",
                    dataset.dim()));
  const auto cpu_float64 = [](const torch::Tensor& t) {
    return t.to(torch::kCPU, torch::kFloat64).contiguous();
  };
  const bool has_forces = dataset.has_forces(), has_energies = dataset.has_energies();
  // Accessors need defined tensors; empty stand-ins are never read.
  const torch::Tensor positions = cpu_float64(dataset.positions);
  const torch::Tensor forces =
      has_forces ? cpu_float64(dataset.forces) : torch::zeros({0, 0, 0}, torch::kFloat64);
  const torch::Tensor energies =
      has_energies ? cpu_float64(dataset.energies) : torch::zeros({0}, torch::kFloat64);
  const auto x = positions.accessor<double, 3>();
  const auto g = forces.accessor<double, 3>();
  const auto e = energies.accessor<double, 1>();
  std::vector<std::string_view> symbols;
  for (const int64_t z : dataset.species) symbols.push_back(element_symbol(z));

  // The frame-independent part of the comment line, in ASE's order: Properties, info keys;
  // then per frame the energy (a calculator result) and pbc.
  std::string header = "Properties=species:S:1:pos:R:3";
  if (has_forces) header += ":forces:R:3";
  header += " units=" + quote_value(to_string(dataset.units));
  header += " kT=" + python_float(dataset.kT);
  if (dataset.sampled_kT) header += " sampled_kT=" + python_float(*dataset.sampled_kT);
  if (dataset.temperature_kelvin) {
    header += " temperature_kelvin=" + python_float(*dataset.temperature_kelvin);
  }
  if (!dataset.system.is_null()) {
    header += " system=" + quote_value("_JSON " + dataset.system.dump());
  }
  if (!dataset.provenance.is_null()) {
    header += " provenance=" + quote_value("_JSON " + dataset.provenance.dump());
  }

  // Per-frame numbers beside the energy, as ASE's atoms.info keys.
  std::vector<std::pair<const char*, torch::Tensor>> frame_values;
  for (const auto& [key, column] :
       {std::pair{"log_q", &dataset.log_q}, std::pair{"log_q_error", &dataset.log_q_error},
        std::pair{"log_weights", &dataset.log_weights}}) {
    if (column->defined()) frame_values.emplace_back(key, cpu_float64(*column));
  }

  std::string out;
  for (int64_t f = 0; f < dataset.num_frames(); ++f) {
    out += fmt::format("{}\n{}", dataset.num_atoms(), header);
    for (const auto& [key, values] : frame_values) {
      out += fmt::format(" {}={}", key, python_float(values[f].item<double>()));
    }
    if (has_energies) out += " energy=" + python_float(e[f]);
    out += " pbc=\"F F F\"\n";
    for (int64_t i = 0; i < dataset.num_atoms(); ++i) {
      out += fmt::format("{:<2} {:16.8f} {:16.8f} {:16.8f}", symbols[static_cast<size_t>(i)],
                         x[f][i][0], x[f][i][1], x[f][i][2]);
      if (has_forces) {
        out += fmt::format(" {:16.8f} {:16.8f} {:16.8f}", g[f][i][0], g[f][i][1], g[f][i][2]);
      }
      out += '\n';
    }
  }
  return out;
}

void write_extxyz(const std::filesystem::path& path, const Dataset& dataset) {
  std::string text;
  try {
    text = extxyz_string(dataset);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", path.string(), e.what()));
  }
  write_atomically(path, [&](const std::filesystem::path& tmp) { write_file_bytes(tmp, text); });
}

}  // namespace psm
