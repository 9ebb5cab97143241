"""Failures reach Python as psm.Error with psm's one-line message; Ctrl-C stops long calls."""

import json
import os
import signal
import threading

import numpy as np
import pytest

import psm
from conftest import TINY_CONFIG, run_cli


def cli_error(*args):
    """The one-line message of a failing `psm COMMAND ...`, without its "psm COMMAND: error: "."""
    result = run_cli(*args, check=False)
    assert result.returncode != 0
    line = result.stderr.strip().splitlines()[-1]
    return line.split(": error: ", 1)[1]


def test_error_is_a_runtime_error():
    assert issubclass(psm.Error, RuntimeError)


def test_a_missing_file_gives_the_cli_message(tmp_path):
    missing = tmp_path / "missing.npz"
    message = cli_error("data", "info", missing)
    with pytest.raises(psm.Error) as caught:
        psm.load(missing)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def test_an_unknown_system_lists_the_known_ones():
    with pytest.raises(psm.Error, match=r"unknown system 'argon' \(known: .*lj13"):
        psm.System("argon")


def test_bad_arrays_and_options_are_psm_errors():
    with pytest.raises(psm.Error, match="expected positions"):
        psm.System("lj13").energy(np.zeros(13))
    with pytest.raises(psm.Error, match="species"):
        psm.Dataset(np.zeros((2, 3, 3)), [0, 0])
    with pytest.raises(psm.Error, match="unknown sampler 'gibbs'"):
        psm.simulate("lj13", samples=10, sampler="gibbs", progress=False)
    with pytest.raises(psm.Error):
        psm.Dataset(np.zeros((2, 3, 3)), kT=-1)


def test_a_bad_output_extension_fails_before_the_work(tmp_path):
    message = cli_error("simulate", "--system", "lj13", "--samples", 10, "--out",
                        tmp_path / "x.csv")
    with pytest.raises(psm.Error) as caught:
        psm.simulate("lj13", samples=10, out=tmp_path / "x.csv", progress=False)
    assert str(caught.value) == message


def test_ctrl_c_stops_a_long_simulation(tmp_path):
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    out = tmp_path / "long.npz"
    try:
        with pytest.raises(KeyboardInterrupt):
            psm.simulate("lj13", samples=10**6, progress=False, out=out)
    finally:
        timer.cancel()
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_an_exception_in_the_progress_callback_stops_training(lj13_reference, tmp_path):
    config = json.loads(json.dumps(TINY_CONFIG))
    config["data"] = {"train": str(lj13_reference)}
    config["train"]["steps"] = 10**6
    stopped_at = []

    def progress(done, total):
        if done >= 12:
            stopped_at.append(done)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        psm.train(config, out=tmp_path / "run", progress=progress)
    # A checkpoint of the last 10 steps (checkpoint_every) is whole: training resumes from it.
    config["train"]["steps"] = stopped_at[0] + 5
    result = psm.train(config, out=tmp_path / "run", resume=True, progress=False)
    assert 5 <= result["steps"] <= 15
