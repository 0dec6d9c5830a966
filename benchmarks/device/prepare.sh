#!/usr/bin/env bash
# Run HERE (a machine with PyPI) before a GPU device check: download the wheels the device
# machine lacks into .whl/ (git-ignored through .git/info/exclude), for its Python 3.12 and its
# own torch (2.11 + CUDA 13 when last seen; frl's pure code and Inductor options adapt to it).
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
mkdir -p .whl
for pkg in tensordict==0.14.3 torchrl==0.14.1 gymnasium==1.4.0 farama-notifications==0.0.6 \
    orjson pyvers==0.2.3 importlib_metadata hoptorch==0.1.4 lazy-importer; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$pkg"
done
cp benchmarks/device/run.sh .whl/run.sh
ls .whl
