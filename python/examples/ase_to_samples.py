#!/usr/bin/env python3
"""From an ASE trajectory to samples of the Boltzmann distribution, with psm from Python.

    PYTHONPATH=build/python python3 python/examples/ase_to_samples.py            # LJ13 demo
    PYTHONPATH=build/python python3 python/examples/ase_to_samples.py \\
        --trajectory md.traj --temperature 300 --system xtb --config configs/my_model.toml

trajectory (frames with energies and forces, e.g. from an ASE MD run) -> psm dataset -> a PSM
score model trained on it -> samples with their exact log-likelihood -> importance weights from
the system's energies -> reweighted averages and metrics against the trajectory -> samples
written back as an ASE trajectory.

Without --trajectory it first writes one: LJ13 frames by psm's MCMC, saved with ase.io as a
stand-in for the output of an MD code.
"""

import argparse
import pathlib

import ase.io
import numpy as np

import psm


def demo_trajectory(path):
    """An LJ13 trajectory at kT = 1 (reduced units, particles 'X') written by ASE."""
    frames = psm.simulate("lj13", kT=1.0, samples=2000, seed=1)
    ase.io.write(path, psm.to_atoms(frames))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectory", help="ASE-readable frames with energies and forces")
    parser.add_argument("--kT", type=float, help="k_B T in the data's energy units")
    parser.add_argument("--temperature", type=float, help="temperature in K (molecules)")
    parser.add_argument("--system", default="lj13", help="potential of the data (psm.systems())")
    parser.add_argument("--config", default="configs/train_lj13.toml", help="training config")
    parser.add_argument("--steps", type=int, default=2000, help="training steps")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--out", default="runs/ase_to_samples", help="working directory")
    args = parser.parse_args()

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trajectory = args.trajectory
    kT = args.kT
    if trajectory is None:
        trajectory = out / "lj13_md.traj"
        demo_trajectory(trajectory)
        kT = 1.0

    # 1. ASE frames (energies and forces from their calculators) -> a psm dataset.
    images = ase.io.read(trajectory, ":")
    system = psm.System(args.system) if args.system != "xtb" else None
    spec = system.spec if system is not None else {"name": "xtb"}
    data = psm.from_atoms(images, kT=kT, temperature=args.temperature, system=spec)
    if data.forces is None:
        raise SystemExit(f"{trajectory}: PSM trains on forces; the frames have none")
    train_file = out / "train.npz"
    data.save(train_file)
    print(data)

    # 2. Train a score model on it (the config's model, this data, --steps steps).
    run = psm.train(
        args.config,
        out=out / "run",
        set=[f"data.train={train_file}", f"train.steps={args.steps}"],
        resume=(out / "run" / "checkpoint.pt").exists(),
    )

    # 3. Samples of the probability-flow ODE with their log-density log q (the likelihood
    #    integration costs far more than the sampling), labelled with the system's energies and
    #    the log importance weights -U/kT - log q when the system is known.
    samples = psm.sample(run["checkpoint"], n=args.samples, steps=100, likelihood=True)
    print(f"log q: mean {np.mean(samples.log_q):.3f} nats, integration error "
          f"{np.mean(samples.log_q_error):.2g}")

    # 4. Reweighting: self-normalised weights w_i ∝ exp(-U(x_i) / kT) / q(x_i) turn averages over
    #    the samples into averages over the Boltzmann distribution.
    if samples.log_weights is not None:
        w = np.exp(samples.log_weights - np.max(samples.log_weights))
        w /= w.sum()
        ess = 1.0 / (len(w) * np.sum(w**2))
        print(f"effective sample size {ess:.3f} of {len(w)} samples")
        print(f"mean energy: unweighted {np.mean(samples.energies):.4f}, reweighted "
              f"{np.sum(w * samples.energies):.4f}, trajectory {np.mean(data.energies):.4f}")

    # 5. Metrics against the trajectory, unweighted and reweighted (out/eval).
    metrics = psm.eval(samples, data, out=out / "eval", weights=samples.log_weights is not None)
    for key in ("energy_w1", "distance_tvd", "distance_w2", "outlier_fraction"):
        print(f"{key:>18} {metrics.get(key)}")
    weighted = metrics.get("weighted")
    if weighted and not weighted["degenerate"]:
        for key in ("energy_w1", "distance_tvd", "distance_w2", "outlier_fraction"):
            print(f"{key + ' (reweighted)':>31} {weighted['metrics'].get(key)}")

    # 6. The samples back to ASE.
    ase.io.write(out / "samples.traj", psm.to_atoms(samples))
    print(f"wrote {out / 'samples.traj'}")


if __name__ == "__main__":
    main()
