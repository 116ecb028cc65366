"""Launchable sweep files shipped with kdsweep, and how a sweep argument resolves to a file.

``kdsweep launch synthetic`` and ``kdsweep launch search_spaces/synthetic.toml`` both work:
an argument that is not an existing path is looked up among the embedded files by name.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: The sweep ``kdsweep launch`` runs when given no file.
DEMO = "demo.toml"


def embedded() -> list[str]:
    """Names of the sweep files shipped inside the package."""
    return sorted(p.name for p in resources.files(__name__).iterdir() if p.name.endswith(".toml"))


def resolve(arg: str | Path) -> Path:
    """The file a sweep argument names: an existing path, else an embedded sweep by name.

    A name that matches neither is returned as given, so that reading it fails with the
    user's own spelling in the message.
    """
    path = Path(arg)
    if path.exists():
        return path
    name = path.name if path.suffix == ".toml" else f"{path.name}.toml"
    if str(arg) in (name, name[: -len(".toml")]) and name in embedded():
        return Path(str(resources.files(__name__).joinpath(name)))
    return path
