"""Conversions between psm datasets and ase.Atoms (ASE is imported only when these are called).

ASE works in eV and Å. psm's molecular datasets are in kcal/mol and Å and are converted; the
model particles of reduced-unit systems (LJ, DW4; species 0, ASE's symbol "X") keep their
reduced energies and lengths unchanged.
"""

import numpy as np

from psm._psm import Dataset


def _kcal_mol_in_ev():
    from ase import units

    return units.kcal / units.mol


def to_atoms(dataset, frames=None):
    """ase.Atoms of the frames of `dataset` (all, or the indices `frames`), with energy and
    forces attached through a SinglePointCalculator when the dataset has them. Molecular
    energies and forces are converted to eV and eV/Å. Returns a list of Atoms."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    if dataset.dim != 3:
        raise ValueError(f"to_atoms: ase.Atoms are 3-D, the dataset is {dataset.dim}-D")
    scale = _kcal_mol_in_ev() if dataset.units == "kcal/mol,angstrom" else 1.0
    indices = range(dataset.num_frames) if frames is None else frames
    positions, energies, forces = dataset.positions, dataset.energies, dataset.forces
    images = []
    for i in indices:
        atoms = Atoms(numbers=dataset.species, positions=np.array(positions[i]))
        results = {}
        if energies is not None:
            results["energy"] = float(energies[i]) * scale
        if forces is not None:
            results["forces"] = np.array(forces[i]) * scale
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        images.append(atoms)
    return images


def from_atoms(images, *, kT=None, temperature=None, units=None, system=None):
    """A psm Dataset from ase.Atoms (a list, or an ASE trajectory or anything iterable).

    Species are the atomic numbers (all images alike). Energies and forces come from each
    image's calculator when every image has them (ase.io.read of an extended XYZ file or a
    trajectory attaches them). `units`: "kcal/mol,angstrom" (the default when the species are
    real elements; eV are converted) or "reduced" (the default for species 0, no conversion).
    The temperature: kT (energy units) or temperature (K, molecules); system: the spec of the
    potential, e.g. {"name": "lj13"}."""
    images = list(images)
    if not images:
        raise ValueError("from_atoms: no images")
    species = [int(z) for z in images[0].numbers]
    for atoms in images:
        if [int(z) for z in atoms.numbers] != species:
            raise ValueError("from_atoms: the images have different species")
    if units is None:
        units = "reduced" if all(z == 0 for z in species) else "kcal/mol,angstrom"
    scale = 1.0 / _kcal_mol_in_ev() if units == "kcal/mol,angstrom" else 1.0
    positions = np.stack([atoms.get_positions() for atoms in images])
    energies = forces = None
    if all(atoms.calc is not None for atoms in images):
        try:
            energies = np.array([atoms.get_potential_energy() for atoms in images]) * scale
            forces = np.stack([atoms.get_forces() for atoms in images]) * scale
        except Exception:  # a calculator without stored results: frames only
            energies = forces = None
    return Dataset(
        positions,
        species,
        forces=forces,
        energies=energies,
        units=units,
        kT=kT,
        temperature=temperature,
        system=system,
        provenance={"command": "psm.from_atoms", "frames": len(images)},
    )
