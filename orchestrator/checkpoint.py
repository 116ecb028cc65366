"""Trial checkpoints: written atomically, loaded with ``torch.load(weights_only=True)``.

A checkpoint is written at every rung boundary (and on a preemption signal) as
``RUN_DIR/checkpoints/<trial_id>.pt``. Writing goes to a temporary name in the same
directory, is fsynced, then renamed over the old file, so a crash at any instant leaves
either the previous checkpoint or the new one, never a torn file. ``weights_only=True``
means a checkpoint can hold tensors, numbers, strings, lists, tuples and dicts, and loading
one cannot execute code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from kdsweep.orchestrator.atomic import write_atomic


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically replace ``path`` with ``state``."""
    import torch  # deferred: the orchestrator itself must not pay torch's import time

    write_atomic(path, lambda fh: torch.save(state, fh))


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint holds objects other than tensors and plain data; it was not loaded."""


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The state saved at ``path``, or None if there is none. Raises UnsafeCheckpointError
    naming the file when it holds anything but tensors and plain data (nothing in it runs)."""
    import torch

    if not path.exists():
        return None
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message advises weights_only=False, i.e. running the file's code: not
        # advice to pass on about a file that kdsweep did not write.
        raise UnsafeCheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain data, so it was not "
            "written by kdsweep and was not loaded; delete it to train this trial from scratch"
        ) from None
    return state
