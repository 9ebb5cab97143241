#!/usr/bin/env bash
# Installs the Debian packages psm needs (only those missing), then configures and builds.
# Idempotent: a second run installs nothing and rebuilds only what changed.
# Usage: scripts/setup.sh [BUILD_DIR]      (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}

packages=(
  build-essential cmake ninja-build pkg-config git
  libtorch-dev libopenblas0-openmp
  libxtb-dev librdkit-dev libboost-dev
  nlohmann-json3-dev libcli11-dev libtomlplusplus-dev libfmt-dev
  libzip-dev zipcmp zipmerge ziptool zlib1g-dev
  libgtest-dev libbenchmark-dev
  gnuplot-nox
  pybind11-dev python3-dev python3-numpy python3-pytest python3-ase   # the Python module psm
  # ASE's SciPy needs some BLAS development package; without this one apt picks OpenBLAS's
  # pthread build, whose higher alternatives priority would replace the OpenMP build under LibTorch.
  libblas-dev
  libfuzzer-14-dev      # the fuzzers (fuzz/): libFuzzer's runtime
  libopenmpi-dev openmpi-bin   # several processes (PSM_WITH_MPI): mpirun, srun
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "psm setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
# The Python packages above are Debian's, for Debian's python3 (not one found first on PATH).
python=()
[ -x /usr/bin/python3 ] && python=(-DPython3_EXECUTABLE=/usr/bin/python3)
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" "${generator[@]}" "${python[@]}" -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$build_dir" --parallel "$(nproc)"
