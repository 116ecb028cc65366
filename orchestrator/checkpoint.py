"""Trial checkpoints: written atomically; loading one never runs code.

A checkpoint is written at every rung milestone a trial goes on from (and at the end of an
attempt) as ``RUN_DIR/checkpoints/<trial_id>.pt``, through :func:`write_atomic`: a crash at
any instant leaves either the previous checkpoint or the new one, never a torn file.

Two formats, chosen by what the state can hold:

* in a process that uses torch, ``torch.save``, loaded with ``torch.load(weights_only=True)``:
  tensors, numbers, strings, lists, tuples and dicts, and loading cannot execute code;
* in a process that never imported torch (a torch-free trainer such as the synthetic one),
  the state cannot hold a tensor, and it is written as JSON: such a worker never pays torch's
  import (about 3 s per process here) for its checkpoints. A JSON checkpoint starts with
  ``{``, a torch one never does (it is a zip archive), so loading needs no hint.
"""

from __future__ import annotations

import io
import json
import pickle
import sys
from pathlib import Path
from typing import Any

from kdsweep.orchestrator.atomic import read_bytes, write_atomic


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically replace ``path`` with ``state`` (module docstring for the format)."""
    torch = sys.modules.get("torch")
    if torch is None:
        write_atomic(path, json.dumps(state).encode())
    else:
        write_atomic(path, lambda fh: torch.save(state, fh))


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint holds objects other than tensors and plain data; it was not loaded."""


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The state saved at ``path``, or None if there is none. Raises UnsafeCheckpointError
    naming the file when it holds anything but tensors and plain data (nothing in it runs),
    and PlantedLinkError when ``path`` is a symbolic link (never read through: a planted one
    would resume a trial from someone else's file)."""
    try:
        data = read_bytes(path)
    except FileNotFoundError:
        return None
    if data[:1] == b"{":
        try:
            state: dict[str, Any] = json.loads(data)
        except ValueError as exc:  # written atomically: damaged after the fact
            raise ValueError(f"checkpoint {path} is damaged ({exc}); delete it to train this trial from scratch") from None
        return state
    import torch  # deferred: only a checkpoint with tensors needs it

    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message advises weights_only=False, i.e. running the file's code: not
        # advice to pass on about a file that kdsweep did not write.
        raise UnsafeCheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain data, so it was not "
            "written by kdsweep and was not loaded; delete it to train this trial from scratch"
        ) from None
    return state
