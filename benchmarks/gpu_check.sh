#!/usr/bin/env bash
# The GPU path measured (benchmarks/gpu_check.py): epoch time and images/s of the ResNet18
# student with and without bf16 + channels_last, the loss-weights, topology and graph-gates
# steps, four trials packed on one GPU through kdsweep's Ray backend against one at a time,
# student and teacher latency. One line per figure; about 4 minutes on one H200 (estimate in
# gpu_check.py), under 8.
#
#   bash benchmarks/gpu_check.sh           # on a GPU machine; without CUDA it exits with status 2
#   bash benchmarks/gpu_check.sh --tiny    # anywhere, ~30 s: checks the script works; numbers meaningless
#
# Needs kdsweep installed from this checkout (pip install -e ., as in README.md): the sweep
# runs through its entry points and Ray's workers import it. PYTHON defaults to the
# repository's .venv/bin/python when there is one, else python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then
        PYTHON="$root/.venv/bin/python"
    else
        PYTHON=python3
    fi
fi
exec "$PYTHON" "$root/benchmarks/gpu_check.py" "$@"
