"""Tiny fake CIFAR copies in torchvision's exact on-disk format, for tests that read CIFAR.

The files are what the real ones are: pickled dicts with bytes keys, ``b"data"`` a uint8
``[n, 3072]`` array (1024 red, 1024 green, 1024 blue values, each plane row-major) and the
labels a list of ints. Pixels are uniform random, labels cycle through every class (shuffled),
so stratified splits see every class. Everything is drawn from ``numpy.random.default_rng(seed)``.

- ``write_fake_cifar10(root)``: ``root/cifar-10-batches-py/{data_batch_1..5, test_batch,
  batches.meta}``
- ``write_fake_cifar100(root)``: ``root/cifar-100-python/{train, test, meta}``
- ``write_fake_cifar10_archive(root)`` / ``write_fake_cifar100_archive(root)``: only
  ``root/cifar-10-python.tar.gz`` / ``root/cifar-100-python.tar.gz``, holding the folder above.

Each returns ``root``: the value for ``DataSettings.root``.
"""

from __future__ import annotations

import pickle
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "write_fake_cifar10",
    "write_fake_cifar10_archive",
    "write_fake_cifar100",
    "write_fake_cifar100_archive",
]

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


def _dump(path: Path, obj: dict[bytes, Any]) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _labels(rng: np.random.Generator, n: int, num_classes: int) -> list[int]:
    return [int(v) for v in rng.permutation(np.arange(n) % num_classes)]


def write_fake_cifar10(root: Path, n_per_batch: int = 20, seed: int = 0) -> Path:
    """Write ``root/cifar-10-batches-py/`` with ``n_per_batch`` images per batch file (6 files)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _dump(folder / name, {
            b"batch_label": name.encode(),
            b"labels": _labels(rng, n_per_batch, 10),
            b"data": _images(rng, n_per_batch),
            b"filenames": [f"{name}_{i}.png".encode() for i in range(n_per_batch)],
        })  # fmt: skip
    _dump(folder / "batches.meta", {
        b"label_names": [c.encode() for c in CIFAR10_CLASSES],
        b"num_cases_per_batch": n_per_batch,
        b"num_vis": 3072,
    })  # fmt: skip
    return root


def write_fake_cifar100(root: Path, n_train: int = 300, n_test: int = 100, seed: int = 0) -> Path:
    """Write ``root/cifar-100-python/`` with ``n_train`` training and ``n_test`` test images."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, n in (("train", n_train), ("test", n_test)):
        fine = _labels(rng, n, 100)
        _dump(folder / name, {
            b"filenames": [f"{name}_{i}.png".encode() for i in range(n)],
            b"batch_label": name.encode(),
            b"fine_labels": fine,
            b"coarse_labels": [v // 5 for v in fine],
            b"data": _images(rng, n),
        })  # fmt: skip
    _dump(folder / "meta", {
        b"fine_label_names": [f"class_{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"superclass_{i}".encode() for i in range(20)],
    })  # fmt: skip
    return root


def _archive(root: Path, folder_name: str, archive_name: str, write: Callable[[Path], Path]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as staging:
        write(Path(staging))
        with tarfile.open(root / archive_name, "w:gz") as tar:
            tar.add(Path(staging) / folder_name, arcname=folder_name)
    return root


def write_fake_cifar10_archive(root: Path, n_per_batch: int = 20, seed: int = 0) -> Path:
    """Write only ``root/cifar-10-python.tar.gz``, holding ``cifar-10-batches-py/``."""
    return _archive(
        root, "cifar-10-batches-py", "cifar-10-python.tar.gz",
        lambda staging: write_fake_cifar10(staging, n_per_batch, seed),
    )  # fmt: skip


def write_fake_cifar100_archive(root: Path, n_train: int = 300, n_test: int = 100, seed: int = 0) -> Path:
    """Write only ``root/cifar-100-python.tar.gz``, holding ``cifar-100-python/``."""
    return _archive(
        root, "cifar-100-python", "cifar-100-python.tar.gz",
        lambda staging: write_fake_cifar100(staging, n_train, n_test, seed),
    )  # fmt: skip

