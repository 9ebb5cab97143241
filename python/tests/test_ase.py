"""Conversions to and from ase.Atoms."""

import numpy as np
import pytest

import psm
from conftest import data_path

ase = pytest.importorskip("ase")


def test_lj_frames_round_trip_through_atoms(lj13_reference):
    d = psm.load(lj13_reference).select(range(4))
    images = psm.to_atoms(d)
    assert len(images) == 4 and all(a.get_chemical_symbols() == ["X"] * 13 for a in images)
    assert images[1].get_potential_energy() == pytest.approx(d.energies[1])
    back = psm.from_atoms(images, kT=1.0)
    assert back.units == "reduced"
    np.testing.assert_allclose(back.positions, d.positions)
    np.testing.assert_allclose(back.forces, d.forces)
    np.testing.assert_allclose(back.energies, d.energies)


def test_molecules_convert_between_ev_and_kcal_mol():
    from ase.calculators.singlepoint import SinglePointCalculator

    d = psm.load(data_path("ethanol.xyz"), temperature=300)
    atoms = psm.to_atoms(d)[0]
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.ones((len(atoms), 3)))
    back = psm.from_atoms([atoms], temperature=300)
    assert back.units == "kcal/mol,angstrom" and back.temperature == 300
    assert back.energies[0] == pytest.approx(-23.060547830619, rel=1e-6)
    np.testing.assert_allclose(back.forces, 23.060547830619, rtol=1e-6)


def test_system_energies_of_atoms():
    system = psm.System("lj13")
    rng = np.random.default_rng(0)
    atoms = ase.Atoms(numbers=[0] * 13, positions=rng.normal(scale=1.5, size=(13, 3)))
    assert system.energy(atoms) == pytest.approx(system.energy(atoms.get_positions()))
    energies, forces = system.energy_and_forces([atoms, atoms])
    assert energies.shape == (2,) and forces.shape == (2, 13, 3)
