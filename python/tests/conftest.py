"""Fixtures of the Python tests: the psm command-line program (PSM_BINARY, set by ctest) and
small LJ13 data and a tiny trained checkpoint made once per session."""

import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

import psm

REPO = pathlib.Path(__file__).resolve().parents[2]


def psm_binary():
    path = os.environ.get("PSM_BINARY", str(REPO / "build" / "psm"))
    if not os.path.exists(path):
        pytest.skip(f"the psm program is not built ({path}; set PSM_BINARY)")
    return path


def run_cli(*args, check=True):
    """Runs `psm --threads 1 ARGS`; returns the CompletedProcess (text)."""
    result = subprocess.run(
        [psm_binary(), "--threads", "1", *map(str, args)], capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise AssertionError(f"psm {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result


def data_path(name):
    return pathlib.Path(os.environ.get("PSM_TEST_DATA_DIR", REPO / "tests" / "data")) / name


def read_npz(path):
    """A psm .npz as numpy sees it: arrays and the decoded metadata."""
    with np.load(path) as f:
        arrays = {key: f[key] for key in f.files}
    arrays["metadata"] = json.loads(arrays["metadata"].tobytes())
    return arrays


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("psm")


@pytest.fixture(scope="session")
def lj13_reference(workdir):
    """400 LJ13 frames with energies and forces, written by `psm simulate`."""
    out = workdir / "lj13_ref.npz"
    run_cli("simulate", "--system", "lj13", "--samples", 400, "--chains", 8, "--burn-in", 200,
            "--thin", 5, "--seed", 1, "--no-progress", "--out", out)
    return out


TINY_CONFIG = {
    "model": {"layers": 1, "width": 16, "noise_features": 8, "chunk_size": 0},
    "diffusion": {"sigma_min": 0.01, "sigma_max": 4.0},
    "train": {"steps": 30, "batch_size": 32, "warmup_steps": 5, "checkpoint_every": 10,
              "validation_every": 15, "log_every": 5},
}


@pytest.fixture(scope="session")
def tiny_checkpoint(workdir, lj13_reference):
    """A tiny LJ13 model trained by psm.train from a dict config (30 steps)."""
    config = json.loads(json.dumps(TINY_CONFIG))
    config["data"] = {"train": str(lj13_reference), "validation_fraction": 0.1}
    result = psm.train(config, out=workdir / "tiny_run", progress=False)
    return pathlib.Path(result["checkpoint"])
