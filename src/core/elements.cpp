#include "psm/core/elements.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
#include <utility>

#include "psm/core/error.h"

namespace psm {

namespace {

// Masses: IUPAC standard atomic weights 2013 (Meija et al., Pure Appl. Chem. 88, 265 (2016)),
// conventional values for ranged elements and the most stable isotope for Tc, Pm, Po, At, Rn;
// the same numbers as ase.data.atomic_masses. Radii: Cordero et al., Dalton Trans. 2832 (2008),
// as ase.data.covalent_radii (C: sp3 value).
constexpr std::array<Element, max_atomic_number> elements = {{
    {1, "H", 1.008, 0.31},          {2, "He", 4.002602, 0.28},     {3, "Li", 6.94, 1.28},
    {4, "Be", 9.0121831, 0.96},     {5, "B", 10.81, 0.84},         {6, "C", 12.011, 0.76},
    {7, "N", 14.007, 0.71},         {8, "O", 15.999, 0.66},        {9, "F", 18.998403163, 0.57},
    {10, "Ne", 20.1797, 0.58},      {11, "Na", 22.98976928, 1.66}, {12, "Mg", 24.305, 1.41},
    {13, "Al", 26.9815385, 1.21},   {14, "Si", 28.085, 1.11},      {15, "P", 30.973761998, 1.07},
    {16, "S", 32.06, 1.05},         {17, "Cl", 35.45, 1.02},       {18, "Ar", 39.948, 1.06},
    {19, "K", 39.0983, 2.03},       {20, "Ca", 40.078, 1.76},      {21, "Sc", 44.955908, 1.70},
    {22, "Ti", 47.867, 1.60},       {23, "V", 50.9415, 1.53},      {24, "Cr", 51.9961, 1.39},
    {25, "Mn", 54.938044, 1.39},    {26, "Fe", 55.845, 1.32},      {27, "Co", 58.933194, 1.26},
    {28, "Ni", 58.6934, 1.24},      {29, "Cu", 63.546, 1.32},      {30, "Zn", 65.38, 1.22},
    {31, "Ga", 69.723, 1.22},       {32, "Ge", 72.63, 1.20},       {33, "As", 74.921595, 1.19},
    {34, "Se", 78.971, 1.20},       {35, "Br", 79.904, 1.20},      {36, "Kr", 83.798, 1.16},
    {37, "Rb", 85.4678, 2.20},      {38, "Sr", 87.62, 1.95},       {39, "Y", 88.90584, 1.90},
    {40, "Zr", 91.224, 1.75},       {41, "Nb", 92.90637, 1.64},    {42, "Mo", 95.95, 1.54},
    {43, "Tc", 97.90721, 1.47},     {44, "Ru", 101.07, 1.46},      {45, "Rh", 102.9055, 1.42},
    {46, "Pd", 106.42, 1.39},       {47, "Ag", 107.8682, 1.45},    {48, "Cd", 112.414, 1.44},
    {49, "In", 114.818, 1.42},      {50, "Sn", 118.71, 1.39},      {51, "Sb", 121.76, 1.39},
    {52, "Te", 127.6, 1.38},        {53, "I", 126.90447, 1.39},    {54, "Xe", 131.293, 1.40},
    {55, "Cs", 132.90545196, 2.44}, {56, "Ba", 137.327, 2.15},     {57, "La", 138.90547, 2.07},
    {58, "Ce", 140.116, 2.04},      {59, "Pr", 140.90766, 2.03},   {60, "Nd", 144.242, 2.01},
    {61, "Pm", 144.91276, 1.99},    {62, "Sm", 150.36, 1.98},      {63, "Eu", 151.964, 1.98},
    {64, "Gd", 157.25, 1.96},       {65, "Tb", 158.92535, 1.94},   {66, "Dy", 162.5, 1.92},
    {67, "Ho", 164.93033, 1.92},    {68, "Er", 167.259, 1.89},     {69, "Tm", 168.93422, 1.90},
    {70, "Yb", 173.054, 1.87},      {71, "Lu", 174.9668, 1.87},    {72, "Hf", 178.49, 1.75},
    {73, "Ta", 180.94788, 1.70},    {74, "W", 183.84, 1.62},       {75, "Re", 186.207, 1.51},
    {76, "Os", 190.23, 1.44},       {77, "Ir", 192.217, 1.41},     {78, "Pt", 195.084, 1.36},
    {79, "Au", 196.966569, 1.36},   {80, "Hg", 200.592, 1.32},     {81, "Tl", 204.38, 1.45},
    {82, "Pb", 207.2, 1.46},        {83, "Bi", 208.9804, 1.48},    {84, "Po", 208.98243, 1.40},
    {85, "At", 209.98715, 1.50},    {86, "Rn", 222.01758, 1.50},
}};

}  // namespace

const Element& element(int64_t atomic_number) {
  check(atomic_number >= 1 && atomic_number <= max_atomic_number,
        fmt::format("no element with atomic number {} (psm knows 1..{})", atomic_number,
                    max_atomic_number));
  return elements[static_cast<size_t>(atomic_number - 1)];
}

std::string_view element_symbol(int64_t atomic_number) {
  if (atomic_number == 0) return "X";
  return element(atomic_number).symbol;
}

int64_t atomic_number(std::string_view symbol) {
  if (symbol == "X") return 0;
  const auto it = std::find_if(elements.begin(), elements.end(),
                               [&](const Element& e) { return e.symbol == symbol; });
  check(it != elements.end(), fmt::format("unknown element symbol '{}'", symbol));
  return it->atomic_number;
}

std::string chemical_formula(const std::vector<int64_t>& species) {
  std::map<std::string_view, int64_t> counts;
  for (const int64_t z : species) ++counts[element_symbol(z)];
  std::vector<std::string_view> order;
  const bool has_carbon = counts.contains("C");
  if (has_carbon) {
    order.push_back("C");
    if (counts.contains("H")) order.push_back("H");
  }
  for (const auto& [symbol, count] : counts) {  // std::map iterates alphabetically
    if (has_carbon && (symbol == "C" || symbol == "H")) continue;
    order.push_back(symbol);
  }
  std::string formula;
  for (const auto symbol : order) {
    formula += symbol;
    if (counts[symbol] > 1) formula += std::to_string(counts[symbol]);
  }
  return formula;
}

std::string bond_type(int64_t atomic_number_a, int64_t atomic_number_b) {
  std::string_view first = element_symbol(atomic_number_a);
  std::string_view second = element_symbol(atomic_number_b);
  if (second == "C" || (first != "C" && second < first)) std::swap(first, second);
  return fmt::format("{}-{}", first, second);
}

}  // namespace psm
