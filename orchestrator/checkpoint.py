"""Trial checkpoints: written atomically, loaded with ``torch.load(weights_only=True)``.

A checkpoint is written at every rung boundary (and on a preemption signal) as
``RUN_DIR/checkpoints/<trial_id>.pt``. Writing goes to a temporary name in the same
directory, is fsynced, then renamed over the old file, so a crash at any instant leaves
either the previous checkpoint or the new one, never a torn file. ``weights_only=True``
means a checkpoint can hold tensors, numbers, strings, lists, tuples and dicts, and loading
one cannot execute code.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any


def checkpoint_path(run_dir: str | os.PathLike[str], trial_id: str) -> Path:
    return Path(run_dir) / "checkpoints" / f"{trial_id}.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically replace ``path`` with ``state``."""
    import torch  # deferred: the orchestrator itself must not pay torch's import time

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The state saved at ``path``, or None if there is none."""
    import torch

    if not path.exists():
        return None
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return state
