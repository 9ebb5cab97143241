"""A tiny train and sample from Python, against the CLI on the same checkpoint."""

import json

import numpy as np
import pytest

import psm
from conftest import TINY_CONFIG, run_cli


def test_train_writes_a_checkpoint(tiny_checkpoint):
    assert tiny_checkpoint.exists()
    assert (tiny_checkpoint.parent / "metrics.jsonl").exists()


def test_train_from_a_toml_file_with_overrides(tmp_path, lj13_reference):
    config = tmp_path / "tiny.toml"
    lines = [f'[data]\ntrain = "{lj13_reference}"\n']
    for section, values in TINY_CONFIG.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    config.write_text("\n".join(lines) + "\n")
    seen = []
    result = psm.train(config, out=tmp_path / "run", set=["train.steps=4"],
                       progress=lambda done, total: seen.append((done, total)))
    assert result["steps"] == 4 and seen[-1] == (4, 4)
    with pytest.raises(psm.Error, match="exists: pass --resume"):
        psm.train(config, out=tmp_path / "run", progress=False)
    again = psm.train(config, out=tmp_path / "run", set=["train.steps=6"], resume=True,
                      progress=False)
    assert again["steps"] == 2


def test_sample_equals_the_cli(tiny_checkpoint, tmp_path):
    out = tmp_path / "cli_samples.npz"
    run_cli("sample", "--checkpoint", tiny_checkpoint, "--n", 64, "--steps", 4, "--batch", 32,
            "--seed", 3, "--no-progress", "--out", out)
    cli = psm.load(out)
    py = psm.sample(tiny_checkpoint, n=64, steps=4, batch=32, seed=3, progress=False)
    assert py.positions.shape == (64, 13, 3)
    np.testing.assert_array_equal(py.positions, cli.positions)
    if cli.energies is not None:
        np.testing.assert_array_equal(py.energies, cli.energies)
    assert py.kT == cli.kT and py.system == cli.system


def test_every_solver_equals_the_cli(tiny_checkpoint, tmp_path):
    for solver, options in [("edm", {"churn": 2.0, "churn_sigma_min": 0.05, "churn_sigma_max": 1.0}),
                            ("dpm2", {}), ("adaptive", {"tolerance": 0.1})]:
        out = tmp_path / f"{solver}.npz"
        flags = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
        run_cli("sample", "--checkpoint", tiny_checkpoint, "--n", 16, "--steps", 6, "--seed", 4,
                "--solver", solver, *flags, "--no-progress", "--out", out)
        py = psm.sample(tiny_checkpoint, n=16, steps=6, seed=4, solver=solver, progress=False,
                        **options)
        np.testing.assert_array_equal(py.positions, psm.load(out).positions, err_msg=solver)


def test_score_has_the_shape_of_the_positions(tiny_checkpoint, lj13_reference):
    x = psm.load(lj13_reference).positions[:5]
    batch = psm.score(tiny_checkpoint, x, 0.1)
    assert batch.shape == (5, 13, 3) and np.isfinite(batch).all()
    one = psm.score(tiny_checkpoint, x[2], 0.1)
    np.testing.assert_allclose(one, batch[2], rtol=1e-6, atol=1e-8)
    per_frame = psm.score(tiny_checkpoint, x, np.full(5, 0.1))
    np.testing.assert_allclose(per_frame, batch, rtol=1e-6, atol=1e-8)


def test_eval_returns_the_metrics_of_the_cli(tiny_checkpoint, lj13_reference, tmp_path):
    samples = tmp_path / "s.npz"
    run_cli("sample", "--checkpoint", tiny_checkpoint, "--n", 100, "--steps", 4, "--seed", 1,
            "--no-progress", "--out", samples)
    run_cli("eval", "--samples", samples, "--reference", lj13_reference, "--out",
            tmp_path / "cli_eval", "--no-plots")
    cli = json.loads((tmp_path / "cli_eval" / "metrics.json").read_text())
    metrics = psm.eval(samples, lj13_reference, out=tmp_path / "py_eval")
    assert (tmp_path / "py_eval" / "report.md").exists()
    for key in ("energy_w1", "distance_tvd", "outlier_fraction"):
        assert key in metrics
    (row,) = cli["models"]
    for key, value in metrics.items():
        assert row[key] == value, key


def test_sample_with_likelihood_equals_the_cli(tiny_checkpoint, lj13_reference, tmp_path):
    out = tmp_path / "cli_weighted.npz"
    run_cli("sample", "--checkpoint", tiny_checkpoint, "--n", 16, "--steps", 4, "--batch", 8,
            "--likelihood", "--likelihood-steps", 4, "--seed", 2, "--no-progress", "--out", out)
    cli = psm.load(out)
    py = psm.sample(tiny_checkpoint, n=16, steps=4, batch=8, likelihood=True,
                    likelihood_steps=4, seed=2, progress=False)
    assert py.log_q.shape == (16,) and np.isfinite(py.log_q).all()
    np.testing.assert_allclose(py.log_q, cli.log_q, rtol=1e-9)
    assert py.log_weights.shape == (16,)
    with pytest.raises(psm.Error, match="the reverse SDE's samples have no tractable density"):
        psm.sample(tiny_checkpoint, n=4, solver="sde", likelihood=True, progress=False)
    result = psm.eval(py, lj13_reference, out=tmp_path / "weighted_eval", weights=True,
                      min_ess=0.0)
    assert 0 < result["weighted"]["ess_fraction"] <= 1
    assert result["weighted"]["metrics"]["energy_w2"] is not None
    # The report's second row is the reweighted samples, with the same metrics.
    report = json.loads((tmp_path / "weighted_eval" / "metrics.json").read_text())
    unweighted, reweighted = report["models"]
    assert reweighted["name"] == unweighted["name"] + " reweighted"
    assert reweighted["energy_w2"] == pytest.approx(result["weighted"]["metrics"]["energy_w2"])
    assert "| " + reweighted["name"] + " |" in (tmp_path / "weighted_eval" / "report.md").read_text()
