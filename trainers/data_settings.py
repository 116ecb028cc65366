"""The ``[data]`` table of the KD trainers and its validation, without torch: the config
loader, ``kdsweep status`` and ``report`` read sweep files of these trainers, and must not pay
for importing torch. Loading the data is ``trainers/data.py``'s business.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from kdsweep.orchestrator.config import SEED_RANGE, is_seed, path_problem

__all__ = ["CIFAR_LAYOUTS", "CifarLayout", "DataSettings", "DatasetName", "NATURAL_SIZE", "check_data", "uses_flip"]

DatasetName = Literal["digits", "cifar10", "cifar100"]

#: Sizes a model sees when ``image_size = 0``: CIFAR's own 32; digits' 8×8 doubled to 16, which
#: leaves the CIFAR models' downsampling stages a few pixels of spatial extent for longer.
NATURAL_SIZE: dict[str, int] = {"digits": 16, "cifar10": 32, "cifar100": 32}
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 256


@dataclasses.dataclass(frozen=True)
class CifarLayout:
    """Where torchvision puts one CIFAR variant and what its pickles hold."""

    title: str
    dirname: str
    archive: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    #: The files as the error messages list them.
    listing: str
    label_key: str
    names_key: str
    num_classes: int

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train_files, self.test_file, self.meta_file)

    @property
    def described(self) -> str:
        """What ``data.root`` must hold, for messages."""
        return (
            f"a directory containing {self.dirname}/{{{self.listing}}} or {self.archive} "
            f"(torchvision's {self.title} layout); nothing is downloaded"
        )


CIFAR_LAYOUTS: dict[str, CifarLayout] = {
    "cifar10": CifarLayout(
        title="CIFAR-10",
        dirname="cifar-10-batches-py",
        archive="cifar-10-python.tar.gz",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_file="test_batch",
        meta_file="batches.meta",
        listing="data_batch_1..5,test_batch,batches.meta",
        label_key="labels",
        names_key="label_names",
        num_classes=10,
    ),
    "cifar100": CifarLayout(
        title="CIFAR-100",
        dirname="cifar-100-python",
        archive="cifar-100-python.tar.gz",
        train_files=("train",),
        test_file="test",
        meta_file="meta",
        listing="train,test,meta",
        label_key="fine_labels",
        names_key="fine_label_names",
        num_classes=100,
    ),
}


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """The sweep file's ``[data]`` table (validated field by field by the config loader).

    ``root`` is a directory in torchvision's CIFAR layout (see ``check_data``), required for
    CIFAR and ignored for digits; ``~`` is expanded and a relative path is taken from the
    worker's working directory. ``val_fraction`` of the training set becomes the validation
    split, drawn with ``split_seed``. ``image_size = 0`` means the dataset's natural size (32
    for CIFAR, 16 for digits). ``augment`` turns on random-crop (padding ``image_size // 8``,
    i.e. 4 at 32) + horizontal flip on the training split; digits are not flipped (``uses_flip``).
    """

    dataset: DatasetName = "digits"
    root: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    image_size: int = 0
    augment: bool = True

    @property
    def resolved_image_size(self) -> int:
        """The side length models see: ``image_size``, or the dataset's natural size for 0."""
        return self.image_size or NATURAL_SIZE[self.dataset]


def uses_flip(settings: DataSettings) -> bool:
    """Whether augmentation of ``settings.dataset`` includes horizontal flips: CIFAR yes, digits no.

    A mirrored airplane is still an airplane, but a mirrored 2, 3, 4, 5, 7 or 9 is no digit of
    its class (and some read as another glyph), so flipping digits would teach label noise.
    Random crops keep the class for both.
    """
    return settings.dataset != "digits"


# --------------------------------------------------------------------------- validation


def check_data(settings: DataSettings) -> list[tuple[str, object, str]]:
    """Every bad field of ``settings`` as ``(field, value, allowed)``; empty when all are fine.

    Cheap enough for the config loader, before any run directory exists: no file is opened, a
    CIFAR ``root`` is only checked for the presence of the extracted files or the archive.
    Corrupt file contents are found by ``load_data`` (``DataError``).
    """
    issues: list[tuple[str, object, str]] = []
    if settings.dataset not in NATURAL_SIZE:
        issues.append(("data.dataset", settings.dataset, "one of " + ", ".join(map(repr, NATURAL_SIZE))))
        return issues
    # A negated comparison so that NaN is rejected too.
    if not 0.0 < settings.val_fraction <= 0.5:
        issues.append(("data.val_fraction", settings.val_fraction, "a number in (0, 0.5]"))
    if not is_seed(settings.split_seed):
        issues.append(("data.split_seed", settings.split_seed, SEED_RANGE))
    size = settings.image_size
    if size != 0 and not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        natural = "0 (the dataset's natural size: 32 for CIFAR, 16 for digits)"
        issues.append(("data.image_size", size, f"{natural} or an integer in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}]"))
    if settings.dataset in CIFAR_LAYOUTS:
        problem = root_problem(settings)
        if problem is not None:
            issues.append(("data.root", settings.root, f"{CIFAR_LAYOUTS[settings.dataset].described} ({problem})"))
    return issues


def root_problem(settings: DataSettings) -> str | None:
    """Why ``settings.root`` cannot hold the CIFAR copy, or None if it looks complete."""
    if settings.root is None:
        return f"required for {settings.dataset}"
    root = Path(settings.root).expanduser()
    # Before is_dir(), which raises for a name too long to ask about.
    refused = path_problem(root)
    if refused is not None:
        return refused
    if not root.is_dir():
        return f"{root} is not a directory"
    layout = CIFAR_LAYOUTS[settings.dataset]
    folder = root / layout.dirname
    if folder.is_dir():
        missing = [name for name in layout.files if not (folder / name).is_file()]
        return f"{folder} lacks {', '.join(missing)}" if missing else None
    if (root / layout.archive).is_file():
        return None
    return f"{root} holds neither {layout.dirname}/ nor {layout.archive}"
