#!/usr/bin/env bash
# psm on one process against K MPI ranks (BENCHMARKS.md, "Several processes: MPI"):
#  1. `psm simulate` of LJ13 (MCMC, no force labels): chain-steps per second of the sampling
#     loop and of the whole command;
#  2. `psm train` of the LJ13 preset's network on LJ55 frames (batch 256): seconds per step and
#     the gradient allreduce's time and size per step.
# Usage: bench/mpi_scaling.sh [BUILD_DIR] [RANKS]     (defaults: build 2)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
ranks=${2:-2}
psm="$PWD/$build/psm"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Test containers run as root, which Open MPI refuses unless told.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi=(mpirun --oversubscribe -np "$ranks")

seconds() { date +%s.%N; }
elapsed() { echo "$(seconds) - $1" | bc; }

simulate=(simulate --system lj13 --chains 64 --burn-in 2000 --thin 10 --samples 64000 --seed 1
          --no-forces --no-progress)
for k in 1 "$ranks"; do
  launcher=()
  [ "$k" -gt 1 ] && launcher=("${mpi[@]}")
  start=$(seconds)
  out=$("${launcher[@]}" "$psm" --threads 1 "${simulate[@]}" --out "$work/lj13_$k.npz")
  total=$(elapsed "$start")
  wall=$(sed -n 's/.*(wall \([0-9.]*\)).*/\1/p' <<<"$out")
  # 64 chains x (2000 burn-in + 1000 rounds x 10) steps
  echo "simulate LJ13 K=$k: sampling wall $wall s ($(echo "64 * 12000 / $wall" | bc) chain-steps/s)," \
       "command wall $total s"
done

"$psm" --threads 2 simulate --system lj55 --chains 64 --burn-in 500 --thin 5 --samples 640 \
  --no-progress --out "$work/lj55.npz" >/dev/null
sed -e "s|runs/lj13_ref.npz|$work/lj55.npz|" -e 's/^validation_fraction = .*/validation_fraction = 0/' \
  -e 's/^steps = .*/steps = 6/' -e 's/^warmup_steps = .*/warmup_steps = 2/' \
  configs/train_lj13.toml >"$work/train.toml"
for k in 1 "$ranks"; do
  launcher=()
  threads=2
  [ "$k" -gt 1 ] && launcher=("${mpi[@]}") && threads=1
  out=$("${launcher[@]}" "$psm" --threads "$threads" train --no-progress --config "$work/train.toml" \
        --out "$work/train_$k")
  echo "train LJ55 K=$k: $(grep -E '^(trained|ranks) ' <<<"$out" | tr '\n' ' ')"
done
