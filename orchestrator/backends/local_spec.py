"""The local backend's registration (``backend.kind = "local"``): worker processes on this
machine (``local.py``), sized by ``[backend]`` alone; it has no table of its own."""

from __future__ import annotations

from typing import ClassVar

from kdsweep.orchestrator.backends import BackendSpec


class Local(BackendSpec):
    """``local``: ``backend.max_concurrent`` worker processes here; no options, no checks."""

    backend: ClassVar[str] = "kdsweep.orchestrator.backends.local:LocalBackend"
