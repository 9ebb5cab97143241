"""Energies and forces of psm.System equal those the CLI writes."""

import numpy as np
import pytest

import psm
from conftest import data_path, read_npz, run_cli


def test_lj13_energies_and_forces_equal_the_cli(lj13_reference):
    raw = read_npz(lj13_reference)
    system = psm.System("lj13")
    energies, forces = system.energy_and_forces(raw["positions"])
    np.testing.assert_allclose(energies, raw["energies"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(forces, raw["forces"], rtol=1e-12, atol=1e-12)
    one = system.energy(raw["positions"][3])
    assert isinstance(one, float) and one == pytest.approx(raw["energies"][3], rel=1e-12)


def test_dw4_energies_equal_the_cli(tmp_path):
    out = tmp_path / "dw4.npz"
    run_cli("simulate", "--system", "dw4", "--samples", 40, "--chains", 4, "--burn-in", 20,
            "--thin", 2, "--no-progress", "--out", out)
    raw = read_npz(out)
    system = psm.System("dw4")
    assert (system.num_atoms, system.dim, system.units) == (4, 2, "reduced")
    energies, forces = system.energy_and_forces(raw["positions"])
    np.testing.assert_allclose(energies, raw["energies"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(forces, raw["forces"], rtol=1e-12, atol=1e-12)


def test_system_options_as_keywords():
    system = psm.System("lj", n=5)
    assert system.num_atoms == 5 and system.spec["n"] == 5
    assert "lj13" in psm.systems() and "dw4" in psm.systems()


def test_xtb_energies_equal_the_cli(tmp_path):
    if "xtb" not in psm.systems():
        pytest.skip("psm built without xtb")
    molecule = data_path("ethanol.xyz")
    out = tmp_path / "ethanol.npz"
    run_cli("simulate", "--system", "xtb", "--molecule", molecule, "--samples", 2, "--chains", 1,
            "--burn-in", 2, "--thin", 2, "--no-progress", "--out", out)
    raw = read_npz(out)
    system = psm.System("xtb", molecule=str(molecule))
    assert system.units == "kcal/mol,angstrom" and system.start is not None
    energies, forces = system.energy_and_forces(raw["positions"])
    np.testing.assert_allclose(energies, raw["energies"], rtol=1e-10)
    np.testing.assert_allclose(forces, raw["forces"], rtol=1e-8, atol=1e-8)


def test_simulate_matches_the_cli_with_the_same_seed(tmp_path):
    out = tmp_path / "cli.npz"
    options = dict(samples=40, chains=4, burn_in=20, thin=2, seed=7)
    run_cli("simulate", "--system", "lj13", "--samples", 40, "--chains", 4, "--burn-in", 20,
            "--thin", 2, "--seed", 7, "--no-progress", "--out", out)
    calls = []
    d = psm.simulate("lj13", kT=1.0, progress=lambda done, total: calls.append((done, total)),
                     **options)
    cli = psm.load(out)
    np.testing.assert_array_equal(d.positions, cli.positions)
    np.testing.assert_array_equal(d.energies, cli.energies)
    assert calls and calls[-1][0] == calls[-1][1]


def test_simulate_reads_the_kinetic_thermometer(tmp_path):
    d = psm.simulate("dw4", kT=1.0, sampler="langevin", samples=400, chains=8, burn_in=200,
                     thin=5, seed=3)
    kinetic = d.provenance["thermometers"]["kinetic"]
    assert abs(kinetic["kT"] - 1.0) < 5 * kinetic["standard_error"] + 0.05
    assert isinstance(d.provenance["at_equilibrium"], bool)
