#!/usr/bin/env bash
# The GPU path measured (benchmarks/gpu_check.py): epoch time and images/s of the ResNet18
# student with and without bf16 + channels_last, the loss-weights and topology steps, four
# trials packed on one GPU against one, student and teacher latency. One line per figure;
# under 8 minutes on one GPU. Without CUDA (or with GPU_CHECK_TINY=1) a tiny run that only
# proves the script works.
#
# Needs torch, torchvision and numpy only: kdsweep.trainers is imported from this source tree
# through a temporary `kdsweep` package whose sub-packages link to the repository's folders
# (pyproject maps kdsweep.trainers to trainers/), so nothing is installed and ray, hyperopt
# and submitit are never imported.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shim="$(mktemp -d)"
trap 'rm -rf "$shim"' EXIT
mkdir "$shim/kdsweep"
touch "$shim/kdsweep/__init__.py"
for package in trainers orchestrator search_spaces; do
    ln -s "$root/$package" "$shim/kdsweep/$package"
done
PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" "$root/benchmarks/gpu_check.py" "$@"
