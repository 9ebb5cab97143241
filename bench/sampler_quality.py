#!/usr/bin/env python3
"""Sample quality against cost for every solver of `psm sample`, on one trained checkpoint.

For each solver setting it draws --n samples, evaluates them against a reference set with
`psm eval`, and records the score evaluations per sample (as counted by psm sample) with the
distance TVD, energy W2, outlier fraction, the fraction of samples that diverged (non-finite
positions, left out of the metrics) and, for molecules, the intact fraction. Writes
OUT/quality.tsv (one row per setting), OUT/quality.gp and, when gnuplot is found,
OUT/quality.png (one panel per metric, evaluations on a log axis).

    bench/sampler_quality.py --checkpoint runs/lj13/models/limited/hybrid/checkpoint.pt \
        --reference runs/lj13/reference/test.npz --out runs/sampler_quality/lj13 --n 2000

Settings already in OUT (their eval/metrics.json exists) are not drawn again, so an
interrupted benchmark goes on where it stopped.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

# (label, solver, psm sample options): the SDE and Heun, each with and without Langevin corrector
# steps, EDM's stochastic sampler with churn in two bands of σ (length units of the checkpoint),
# DPM-Solver++(2M) and adaptive Heun, each over 20-600 score evaluations per sample.
SETTINGS = (
    [("sde+2 corrector", "sde", ["--steps", s, "--corrector-steps", "2"]) for s in (10, 30, 100, 200)]
    + [("sde", "sde", ["--steps", s]) for s in (20, 60, 200, 600)]
    + [("heun", "heun", ["--steps", s]) for s in (10, 20, 30, 50, 100)]
    + [("heun+1 corrector", "heun", ["--steps", s, "--corrector-steps", "1"])
       for s in (7, 10, 15, 20, 30)]
    + [("edm churn 0.05-1", "edm", ["--steps", s, "--churn", str(s // 2), "--churn-sigma-min",
                                     "0.05", "--churn-sigma-max", "1"]) for s in (10, 20, 30, 50, 100)]
    + [("edm churn 0.01-0.3", "edm", ["--steps", s, "--churn", str(s // 3), "--churn-sigma-min",
                                       "0.01", "--churn-sigma-max", "0.3"])
       for s in (9, 19, 29, 49, 99)]
    + [("dpm2", "dpm2", ["--steps", s]) for s in (20, 40, 60, 100, 200)]
    + [("adaptive", "adaptive", ["--tolerance", t]) for t in ("0.2", "0.1", "0.05", "0.02", "0.01")]
)

METRICS = [("distance_tvd", "distance TVD"), ("energy_w2", "energy W2"),
           ("outlier_fraction", "outlier fraction"), ("intact_fraction", "intact fraction"),
           ("diverged_fraction", "diverged fraction")]


def run(command, tolerated=None):
    """Runs a command and returns its stdout and stderr; exits on failure unless the output
    contains `tolerated`, when it returns None."""
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        if tolerated is not None and tolerated in output:
            return None
        sys.exit(f"failed: {' '.join(map(str, command))}\n{output}")
    return output


def measure(args, label, solver, options, directory):
    """Draws and evaluates one setting into `directory`; returns its row."""
    metrics_file = directory / "eval" / "metrics.json"
    cost_file = directory / "cost.json"
    row = {"label": label, "solver": solver, "options": " ".join(map(str, options))}
    if not cost_file.exists():
        directory.mkdir(parents=True, exist_ok=True)
        samples = directory / "samples.npz"
        output = run([args.psm, "--threads", args.threads, "sample", "--no-progress",
                      "--checkpoint", args.checkpoint, "--n", args.n, "--seed", args.seed,
                      "--solver", solver, *options, "--out", samples],
                     tolerated="every sample diverged")
        if output is None:
            cost = {"seconds": "nan", "evaluations": "nan", "diverged_fraction": 1.0}
        else:
            found = re.search(r"in ([0-9.]+) s: .* ([0-9.e+]+) score evaluations each", output)
            if not found:
                sys.exit(f"unexpected psm sample output:\n{output}")
            diverged = re.search(r"note: ([0-9]+) of ([0-9]+) samples diverged", output)
            cost = {"seconds": float(found.group(1)), "evaluations": float(found.group(2)),
                    "diverged_fraction": int(diverged.group(1)) / int(diverged.group(2))
                    if diverged else 0.0}
            run([args.psm, "--threads", args.threads, "eval", "--no-plots", "--xtb-frames", "0",
                 "--samples", samples, "--reference", args.reference, "--out",
                 directory / "eval"])
            samples.unlink()  # the metrics are what the benchmark keeps
        cost_file.write_text(json.dumps(cost))
    row.update(json.loads(cost_file.read_text()))
    (model,) = json.loads(metrics_file.read_text())["models"] if metrics_file.exists() else ({},)
    for key, _ in METRICS:
        value = row.get(key, model.get(key, model.get("molecular", {}).get(key)))
        row[key] = "nan" if value is None else value
    return row


def plot(out, rows):
    labels = list(dict.fromkeys(row["label"] for row in rows))
    # A metric that is missing or zero for every plotted setting gets no panel.
    panels = [(key, title) for key, title in METRICS
              if any(row[key] not in ("nan", 0, 0.0) and row["evaluations"] != "nan"
                     for row in rows)]
    script = [f"set terminal pngcairo size {600 * len(panels)},450 font ',10'",
              f"set output '{out / 'quality.png'}'",
              f"set multiplot layout 1,{len(panels)}",
              "set datafile separator '\\t'", "set logscale x", "set xlabel 'score evaluations per sample'", "set grid",
              "set key top right"]
    for key, title in panels:
        column = 6 + [k for k, _ in METRICS].index(key)
        script.append(f"set title '{title}'")
        # Distances span decades; fractions reach 0, which a log axis cannot show.
        script.append("unset logscale y" if key.endswith("fraction") else "set logscale y")
        script.append("plot " + ", \\\n     ".join(
            f"'{out / 'quality.tsv'}' using (strcol(1) eq '{label}' ? $4 : 1/0):{column} "
            f"with linespoints lw 2 pt 7 title '{label}'" for label in labels))
    script.append("unset multiplot")
    (out / "quality.gp").write_text("\n".join(script) + "\n")
    if shutil.which("gnuplot"):
        run(["gnuplot", out / "quality.gp"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--reference", required=True, help="reference frames (.npz)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--n", default="2000", help="samples per setting")
    parser.add_argument("--seed", default="1")
    parser.add_argument("--threads", default="1")
    parser.add_argument("--psm", default=str(Path(__file__).resolve().parent.parent / "build/psm"))
    parser.add_argument("--only", default="", help="comma-separated labels to run (default: all)")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    rows = []
    for label, solver, options in SETTINGS:
        if only and label not in only:
            continue
        name = re.sub(r"[^A-Za-z0-9.]+", "_", f"{label} {' '.join(map(str, options))}")
        row = measure(args, label, solver, options, args.out / name)
        rows.append(row)
        print("\t".join(str(row[k]) for k in ("label", "options", "evaluations", "seconds",
                                               *[k for k, _ in METRICS])), flush=True)
    if not rows:
        sys.exit(f"no setting is labelled {args.only!r}")
    header = ["label", "solver", "options", "evaluations", "seconds", *[k for k, _ in METRICS]]
    table = ["\t".join(header)] + ["\t".join(str(row[k]) for k in header) for row in rows]
    (args.out / "quality.tsv").write_text("\n".join(table) + "\n")
    plot(args.out, rows)


if __name__ == "__main__":
    main()
