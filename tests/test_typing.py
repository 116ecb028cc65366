"""The package type-checks: mypy over the installed layout (``kdsweep.orchestrator`` ...).

The source folders are mapped into the ``kdsweep`` namespace only at install time, so mypy
run on the folders themselves would see every ``kdsweep.*`` import as missing (and silently
as Any). This test builds the same namespace from symlinks and checks it for real.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_clean(tmp_path: Path) -> None:
    tree = tmp_path / "kdsweep"
    tree.mkdir()
    for folder in ("orchestrator", "trainers", "search_spaces"):
        (tree / folder).symlink_to(ROOT / folder)
    cmd = [
        sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
        "--namespace-packages", "--explicit-package-bases", "--cache-dir", str(tmp_path / ".mypy_cache"),
        "-p", "kdsweep.orchestrator", "-p", "kdsweep.trainers", "-p", "kdsweep.search_spaces",
    ]  # fmt: skip
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
