#include <gtest/gtest.h>
#include <torch/torch.h>

#include "psm/eval/molecular.h"
#include "psm/io/smiles.h"
#include "test_util.h"

namespace {

double distance(const psm::Dataset& molecule, int64_t i, int64_t j) {
  return (molecule.positions[0][i] - molecule.positions[0][j]).norm().item<double>();
}

TEST(MoleculeFromSmiles, EthanolEmbedsWithChemicalBondLengths) {
#ifndef PSM_WITH_RDKIT
  GTEST_SKIP() << "built without RDKit";
#endif
  const psm::Dataset ethanol = psm::molecule_from_smiles("CCO", {.seed = 1});
  // Heavy atoms as written, then hydrogens: 3 on C0, 2 on C1, 1 on O2.
  EXPECT_EQ(ethanol.species, (std::vector<int64_t>{6, 6, 8, 1, 1, 1, 1, 1, 1}));
  EXPECT_EQ(ethanol.positions.sizes(), (std::vector<int64_t>{1, 9, 3}));
  EXPECT_EQ(ethanol.units, psm::Units::kcal_mol_angstrom);
  EXPECT_NEAR(distance(ethanol, 0, 1), 1.51, 0.04);  // C-C
  EXPECT_NEAR(distance(ethanol, 1, 2), 1.42, 0.04);  // C-O
  EXPECT_EQ(ethanol.provenance["force_field"], "MMFF94");
  // The covalent bond graph of the geometry is ethanol's: C-C, C-O, 5 C-H and O-H.
  const torch::Tensor expected =
      torch::tensor({0, 1, 0, 3, 0, 4, 0, 5, 1, 2, 1, 6, 1, 7, 2, 8}, torch::kInt64)
          .reshape({8, 2});
  const torch::Tensor bonds = psm::majority_bonds(ethanol.positions, ethanol.species);
  EXPECT_TRUE(torch::equal(bonds, expected)) << bonds;
  // Same seed, same geometry.
  EXPECT_TRUE(
      torch::equal(psm::molecule_from_smiles("CCO", {.seed = 1}).positions, ethanol.positions));
}

TEST(MoleculeFromSmiles, BadSmilesNamesTheInput) {
#ifndef PSM_WITH_RDKIT
  GTEST_SKIP() << "built without RDKit";
#endif
  EXPECT_PSM_ERROR(psm::molecule_from_smiles("C1CC"), "SMILES 'C1CC'", "not a valid molecule");
  EXPECT_PSM_ERROR(psm::molecule_from_smiles("C(C)(C)(C)(C)C"), "SMILES 'C(C)(C)(C)(C)C'");
  EXPECT_PSM_ERROR(psm::molecule_from_smiles(""), "SMILES ''");
  EXPECT_PSM_ERROR(psm::molecule_from_smiles("[U]"), "SMILES '[U]'", "atomic number 92");
}

}  // namespace
