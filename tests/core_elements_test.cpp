#include <gtest/gtest.h>

#include "psm/core/elements.h"
#include "psm/core/error.h"

namespace {

TEST(Elements, SymbolsAndNumbersRoundTrip) {
  for (int64_t z = 0; z <= psm::max_atomic_number; ++z) {
    EXPECT_EQ(psm::atomic_number(psm::element_symbol(z)), z);
  }
  EXPECT_EQ(psm::element_symbol(0), "X");
  EXPECT_EQ(psm::element_symbol(1), "H");
  EXPECT_EQ(psm::element_symbol(17), "Cl");
  EXPECT_EQ(psm::element_symbol(86), "Rn");
  EXPECT_EQ(psm::atomic_number("Br"), 35);
  EXPECT_THROW(psm::atomic_number("Xx"), psm::Error);
  EXPECT_THROW(psm::element_symbol(87), psm::Error);
  EXPECT_THROW(psm::element_symbol(-1), psm::Error);
}

TEST(Elements, MassesAndRadiiOfCommonElements) {
  EXPECT_DOUBLE_EQ(psm::element(1).mass, 1.008);
  EXPECT_DOUBLE_EQ(psm::element(6).mass, 12.011);
  EXPECT_DOUBLE_EQ(psm::element(8).mass, 15.999);
  EXPECT_DOUBLE_EQ(psm::element(17).mass, 35.45);
  EXPECT_DOUBLE_EQ(psm::element(53).mass, 126.90447);
  EXPECT_DOUBLE_EQ(psm::element(1).covalent_radius, 0.31);
  EXPECT_DOUBLE_EQ(psm::element(6).covalent_radius, 0.76);
  EXPECT_DOUBLE_EQ(psm::element(7).covalent_radius, 0.71);
  EXPECT_DOUBLE_EQ(psm::element(35).covalent_radius, 1.20);
  // Masses grow with Z apart from the known inversions (Ar/K, Co/Ni, Te/I).
  int inversions = 0;
  for (int64_t z = 2; z <= psm::max_atomic_number; ++z) {
    inversions += psm::element(z).mass < psm::element(z - 1).mass;
  }
  EXPECT_EQ(inversions, 3);
}

TEST(Elements, HillFormula) {
  EXPECT_EQ(psm::chemical_formula({6, 6, 8, 1, 1, 1, 1, 1, 1}), "C2H6O");
  EXPECT_EQ(psm::chemical_formula({8, 1, 1}), "H2O");
  EXPECT_EQ(psm::chemical_formula({11, 17}), "ClNa");
  EXPECT_EQ(psm::chemical_formula({6, 6, 6, 6, 6, 6, 6, 6, 6, 8, 8, 8, 8, 1, 1, 1, 1, 1, 1, 1, 1}),
            "C9H8O4");
  EXPECT_EQ(psm::chemical_formula(std::vector<int64_t>(13, 0)), "X13");
}

TEST(Elements, BondTypesInHillOrder) {
  EXPECT_EQ(psm::bond_type(1, 6), "C-H");
  EXPECT_EQ(psm::bond_type(6, 1), "C-H");
  EXPECT_EQ(psm::bond_type(8, 6), "C-O");
  EXPECT_EQ(psm::bond_type(6, 6), "C-C");
  EXPECT_EQ(psm::bond_type(8, 1), "H-O");
  EXPECT_EQ(psm::bond_type(17, 1), "Cl-H");
  EXPECT_THROW(psm::bond_type(6, 99), psm::Error);
}

}  // namespace
