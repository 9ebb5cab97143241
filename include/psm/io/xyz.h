#pragma once
// Extended XYZ (extxyz) in the form ASE writes and reads: per frame an atom count, a comment
// line of key=value pairs and one line per atom,
//
//   3
//   Properties=species:S:1:pos:R:3:forces:R:3 units=kcal/mol,angstrom kT=0.9936 energy=-1.5 pbc="F
//   F F" O        0.00000000       0.00000000       0.11926200       0.00000000 ...
//
// Files without a `units` key follow ASE's convention (eV, Å) and are converted to kcal/mol.
// psm writes `units`, `kT` (and `sampled_kT`, `temperature_kelvin`, `system`, `provenance` when
// set) so that its files say what they hold. Periodic frames are rejected: psm has no cell.

#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include "psm/io/dataset.h"

namespace psm {

/// Parses the key=value pairs of an extxyz comment line as ASE does: values may be quoted
/// with "", '', {} or []; a backslash escapes the next character; a key without a value is
/// "T". Values are returned unquoted and unconverted.
std::map<std::string, std::string> parse_extxyz_info(std::string_view line);

/// Parses all frames of an extxyz text. Every frame must have the same species; energies and
/// forces must be present in all frames or in none. The temperature comes from `options`, the
/// `kT` key or the `temperature_kelvin` key, in that order. `source_name` names the file in
/// errors ("water.xyz: line 7: ...").
Dataset parse_extxyz(std::string_view text, const std::string& source_name,
                     const LoadOptions& options = {});

/// Reads an extxyz file (see parse_extxyz). Does not validate; load_dataset does.
Dataset read_extxyz(const std::filesystem::path& path, const LoadOptions& options = {});

/// The extxyz text of `dataset`, positions and forces with ASE's "%16.8f". Throws psm::Error
/// for 2-D datasets (extxyz positions are 3-D).
std::string extxyz_string(const Dataset& dataset);

/// Writes extxyz_string(dataset) atomically; errors name `path`.
void write_extxyz(const std::filesystem::path& path, const Dataset& dataset);

}  // namespace psm
