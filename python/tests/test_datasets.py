"""Datasets between numpy and psm files, both ways."""

import numpy as np
import pytest

import psm
from conftest import data_path, read_npz, run_cli


def make_dataset(frames=5, atoms=4, seed=0):
    rng = np.random.default_rng(seed)
    return psm.Dataset(
        rng.normal(size=(frames, atoms, 3)),
        [0] * atoms,
        forces=rng.normal(size=(frames, atoms, 3)),
        energies=rng.normal(size=frames),
        kT=0.8,
        system={"name": "lj", "n": atoms},
    )


def test_dataset_from_numpy_keeps_arrays_and_metadata():
    d = make_dataset()
    assert (d.num_frames, d.num_atoms, d.dim, len(d)) == (5, 4, 3, 5)
    assert d.positions.dtype == np.float64 and d.positions.shape == (5, 4, 3)
    assert d.energies.shape == (5,) and d.forces.shape == (5, 4, 3)
    assert d.units == "reduced" and d.kT == 0.8 and d.species == [0, 0, 0, 0]
    assert d.system == {"name": "lj", "n": 4}


def test_npz_round_trip_is_exact_and_numpy_reads_it(tmp_path):
    d = make_dataset()
    path = tmp_path / "d.npz"
    d.save(path)
    back = psm.load(path)
    np.testing.assert_array_equal(back.positions, d.positions)
    np.testing.assert_array_equal(back.forces, d.forces)
    np.testing.assert_array_equal(back.energies, d.energies)
    assert back.kT == d.kT and back.species == d.species and back.system == d.system
    raw = read_npz(path)
    np.testing.assert_array_equal(raw["positions"], d.positions)
    np.testing.assert_array_equal(raw["energies"], d.energies)
    assert raw["metadata"]["kT"] == 0.8


def test_files_of_the_cli_read_as_numpy_reads_them(lj13_reference):
    d = psm.load(lj13_reference)
    raw = read_npz(lj13_reference)
    np.testing.assert_array_equal(d.positions, raw["positions"])
    np.testing.assert_array_equal(d.forces, raw["forces"])
    np.testing.assert_array_equal(d.energies, raw["energies"])
    assert d.system == {"name": "lj13"} or d.system["name"].startswith("lj")


def test_a_file_written_from_python_is_read_by_the_cli(tmp_path):
    path = tmp_path / "py.npz"
    psm.save(make_dataset(frames=7), path)
    info = run_cli("data", "info", path)
    assert "7" in info.stdout


def test_molecular_datasets_take_a_temperature_in_kelvin():
    rng = np.random.default_rng(1)
    d = psm.Dataset(rng.normal(size=(2, 3, 3)), [8, 1, 1], units="kcal/mol,angstrom",
                    temperature=300)
    assert d.temperature == 300
    assert d.kT == pytest.approx(0.0019872041 * 300)


def test_select_and_extxyz(tmp_path):
    d = psm.load(data_path("ethanol.xyz"), temperature=300)
    first = d.select([0])
    assert first.num_frames == 1 and first.species == d.species
    first.save(tmp_path / "one.xyz")
    np.testing.assert_allclose(psm.load(tmp_path / "one.xyz").positions, first.positions)


def test_positions_come_out_without_a_copy():
    d = make_dataset()
    a, b = d.positions, d.positions
    assert np.shares_memory(a, b)


def test_subset_limited_as_the_cli(lj13_reference, tmp_path):
    cli = tmp_path / "cli.npz"
    run_cli("data", "subset", "--in", lj13_reference, "--out", cli, "--kind", "limited",
            "--frames", 50, "--seed", 4)
    py = psm.subset(lj13_reference, "limited", frames=50, seed=4)
    np.testing.assert_array_equal(py.positions, psm.load(cli).positions)
    hot = psm.subset(psm.load(lj13_reference), "temperature", target_kT=0.5)
    assert hot.kT == 0.5 and hot.sampled_kT == pytest.approx(1.0)
