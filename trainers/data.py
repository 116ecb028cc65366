"""Datasets for the KD trainers: digits, CIFAR-10 and CIFAR-100, resident on the training device.

Nothing here downloads. ``digits`` is scikit-learn's bundled 8×8 digit set (the offline default
the embedded demo runs on); CIFAR is read from a local copy in torchvision's on-disk layout, or
from torchvision's ``.tar.gz`` archive, which is extracted next to it once.

The flow of one trial::

    check_data(settings)            # config time: cheap, reads no file, returns every bad field
    data = load_data(settings, device)       # whole splits as normalised float32 on `device`
    for x, y in Batches(data.train, 128, shuffle=True, augment=settings.augment,
                        flip=uses_flip(settings), generator=g, drop_last=False): ...

Splits. ``train`` and ``val`` partition the dataset's training set (stratified by class, seeded
by ``split_seed``); the sweep metric is computed on ``val``. ``test`` is CIFAR's official test
batch, or for digits a stratified 20% hold-out drawn with a fixed seed that no setting changes,
so the final evaluation of a sweep's best configurations always sees the same images.

Normalisation. Every split is normalised with the per-channel mean and standard deviation of the
``train`` split (population statistics), computed after resizing to ``image_size``.

Device residency. CIFAR-10's training set is 50000×3×32×32 float32 = 614 MB, which fits on any
training GPU, so whole splits live on the device and batches are cut and augmented there with a
handful of batched kernels: no DataLoader workers, no host-to-device copy per step. Splits are
stored as normalised float32 rather than uint8 normalised per batch: uint8 would save 3/4 of
that memory, but every consumer (training, evaluation, teacher forward passes) would have to
repeat the normalisation, and even eight trials packed on one GPU hold under 6 GB this way.
"""

from __future__ import annotations

import codecs
import dataclasses
import fcntl
import functools
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from kdsweep.trainers.data_settings import CIFAR_LAYOUTS, NATURAL_SIZE, CifarLayout, DataSettings, check_data, uses_flip

__all__ = [
    "Batches",
    "DataError",
    "DataSettings",
    "ImageData",
    "Split",
    "check_data",
    "cifar_dataloader",
    "load_data",
    "uses_flip",
]

#: Seed of the digits test hold-out. Fixed, and independent of ``split_seed``, so the test set
#: is the same in every sweep.
DIGITS_TEST_SEED = 20_240_601
#: Share of digits held out as its test split (digits ships no official test set).
DIGITS_TEST_FRACTION = 0.2

class DataError(Exception):
    """A dataset copy is missing, incomplete or corrupt; the message names the path and the layout."""


def _check_values(settings: DataSettings) -> None:
    """``ValueError`` for bad non-path fields (paths get ``DataError`` from the reader)."""
    bad = [issue for issue in check_data(settings) if issue[0] != "data.root"]
    if bad:
        raise ValueError("; ".join(f"{field} = {value!r}: must be {allowed}" for field, value, allowed in bad))


# --------------------------------------------------------------------------- splits


@dataclasses.dataclass
class Split:
    """One split: ``x`` float32 ``[N, 3, H, W]``, ``y`` int64 ``[N]``, on the same device.

    ``mean``/``std`` are the per-channel statistics ``x`` was normalised with (the training
    split's, for every split); the defaults describe unnormalised data. They define
    ``pad_value``, which augmentation pads with.
    """

    x: Tensor
    y: Tensor
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.x.dtype != torch.float32:
            raise ValueError(f"Split.x must be float32 [N, C, H, W], got {self.x.dtype} {tuple(self.x.shape)}")
        if self.y.shape != (self.x.shape[0],) or self.y.dtype != torch.int64:
            raise ValueError(
                f"Split.y must be int64 [{self.x.shape[0]}], got {self.y.dtype} {tuple(self.y.shape)}"
            )
        if self.x.device != self.y.device:
            raise ValueError(f"Split.x is on {self.x.device} but Split.y on {self.y.device}")
        if not len(self.mean) == len(self.std) == self.x.shape[1]:
            raise ValueError(f"Split.mean/std need one value per channel ({self.x.shape[1]})")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def pad_value(self) -> tuple[float, ...]:
        """Per channel, the normalised value of a pixel that was 0 before normalisation.

        Padding with it is what torchvision's ``RandomCrop(padding=4)`` does (it pads the raw
        image with black, then ``Normalize`` runs): black borders for CIFAR, background for
        digits, rather than mean-grey borders from padding the normalised tensor with 0.
        """
        return tuple(-m / s for m, s in zip(self.mean, self.std, strict=True))

    def to(self, device: torch.device | str) -> Split:
        """This split on ``device`` (no copy if already there)."""
        return Split(self.x.to(device), self.y.to(device), self.mean, self.std)


@dataclasses.dataclass
class ImageData:
    """A dataset's three splits on one device; ``name`` is the ``dataset`` setting."""

    train: Split
    val: Split
    test: Split
    num_classes: int
    name: str

    def to(self, device: torch.device | str) -> ImageData:
        """All splits on ``device`` (tensors already there are not copied)."""
        return ImageData(
            self.train.to(device), self.val.to(device), self.test.to(device), self.num_classes, self.name
        )


# --------------------------------------------------------------------------- reading


@dataclasses.dataclass(frozen=True)
class _Decoded:
    """A dataset as read from disk, before splitting, resizing and normalising (CPU).

    ``train_x``/``test_x``: uint8 ``[N, 3, 32, 32]`` for CIFAR, float32 ``[N, 1, 8, 8]`` in
    [0, 1] for digits; labels int64 ``[N]``. Shared by every caller through the cache: never
    modified in place.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int


def load_data(settings: DataSettings, device: torch.device | str = "cpu") -> ImageData:
    """The dataset of ``settings``, split, resized and normalised, on ``device``.

    Returns float32 ``[N, 3, S, S]`` images (``S = settings.resolved_image_size``) normalised
    with the train split's per-channel mean/std, and int64 labels. The same ``split_seed``
    gives the same train/val split, whatever the device or image size. Files are read once per
    process (the decoded uint8 copy is cached per dataset and root); splitting and normalising
    run on ``device`` and return fresh tensors, so callers may modify them.

    Raises ``DataError`` when the copy is missing or corrupt (the message names the path and the
    layout expected), ``ValueError`` for settings ``check_data`` rejects.
    """
    _check_values(settings)
    decoded = _decode(settings.dataset, _cache_root(settings))
    train_idx, val_idx = _stratified_split(decoded.train_y.numpy(), settings.val_fraction, settings.split_seed)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise DataError(
            f"{settings.dataset}: {len(decoded.train_y)} training images are too few for val_fraction "
            f"{settings.val_fraction} (an empty split)"
        )
    size = settings.resolved_image_size
    device = torch.device(device)
    train_idx_t, val_idx_t = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
    # Index and move the compact raw copy, then convert on the device: 4× less to transfer for
    # CIFAR, and the resize/normalise kernels run on the GPU when there is one.
    train_x = _to_float(decoded.train_x[train_idx_t].to(device), size)
    val_x = _to_float(decoded.train_x[val_idx_t].to(device), size)
    test_x = _to_float(decoded.test_x.to(device), size)
    std, mean = torch.std_mean(train_x, dim=(0, 2, 3), correction=0)
    if bool((std == 0).any()):
        raise DataError(f"{settings.dataset}: a colour channel is constant over the training split; corrupt copy?")
    mean_t, std_t = tuple(mean.tolist()), tuple(std.tolist())
    scale, shift = (1 / std).view(1, -1, 1, 1), mean.view(1, -1, 1, 1)

    def split(x: Tensor, y: Tensor) -> Split:
        return Split(x.sub_(shift).mul_(scale), y.to(device), mean_t, std_t)

    return ImageData(
        train=split(train_x, decoded.train_y[train_idx_t]),
        val=split(val_x, decoded.train_y[val_idx_t]),
        test=split(test_x, decoded.test_y),
        num_classes=decoded.num_classes,
        name=settings.dataset,
    )


def _cache_root(settings: DataSettings) -> str | None:
    """The cache key's root: absolute for CIFAR (so spellings of one path share an entry)."""
    if settings.dataset == "digits":
        return None
    if settings.root is None:
        raise DataError(f"data.root is required for {settings.dataset}: {CIFAR_LAYOUTS[settings.dataset].described}")
    return str(Path(settings.root).expanduser().resolve())


def _to_float(x: Tensor, size: int) -> Tensor:
    """Images in [0, 1] as float32 ``[N, 3, size, size]``, never sharing memory with ``x``.

    ``x`` is uint8 (0..255) or float in [0, 1], ``[N, 1 or 3, h, w]``; the result is modified in
    place by the caller, and ``x`` may be the cached decoded copy.
    """
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.to(torch.float32, copy=True)
    if x.shape[-1] != size:
        # antialias matters when shrinking (CIFAR below 32); bilinear weights are convex, so
        # values stay in [0, 1].
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    # Grey digits become three identical channels, as the RGB models expect.
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


@functools.lru_cache(maxsize=4)
def _decode(dataset: str, root: str | None) -> _Decoded:
    """Read ``dataset`` from disk once per process (CIFAR-10 decoded: 184 MB of uint8)."""
    if root is None:  # digits (``_cache_root`` gives every CIFAR dataset a root)
        return _decode_digits()
    return _decode_cifar(dataset, Path(root))


def _decode_digits() -> _Decoded:
    # Imported here: scikit-learn is slow to import and only the digits path needs it.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 0..16 intensities (16 = ink), 8×8.
    images = torch.from_numpy(np.asarray(bunch.data, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    pool_idx, test_idx = _stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_TEST_SEED)
    pool, test = torch.from_numpy(pool_idx), torch.from_numpy(test_idx)
    y = torch.from_numpy(labels)
    return _Decoded(images[pool], y[pool], images[test], y[test], num_classes=10)


def _decode_cifar(dataset: str, root: Path) -> _Decoded:
    layout = CIFAR_LAYOUTS[dataset]
    described = layout.described
    if not root.is_dir():
        raise DataError(f"data.root {root} is not a directory; expected {described}")
    folder = root / layout.dirname
    if not folder.is_dir():
        if not (root / layout.archive).is_file():
            raise DataError(f"{root} holds neither {layout.dirname}/ nor {layout.archive}; expected {described}")
        _extract_once(root / layout.archive, folder, described)

    meta = _read_pickle(folder / layout.meta_file, described)
    names = meta.get(layout.names_key)
    if not isinstance(names, list) or len(names) != layout.num_classes:
        raise DataError(
            f"{folder / layout.meta_file}: expected {layout.names_key!r} listing {layout.num_classes} "
            f"class names; expected {described}"
        )
    parts = [_read_batch(folder / name, layout, described) for name in layout.train_files]
    test_x, test_y = _read_batch(folder / layout.test_file, layout, described)
    return _Decoded(
        train_x=torch.cat([x for x, _ in parts]),
        train_y=torch.cat([y for _, y in parts]),
        test_x=test_x,
        test_y=test_y,
        num_classes=layout.num_classes,
    )


def _read_batch(path: Path, layout: CifarLayout, described: str) -> tuple[Tensor, Tensor]:
    """One pickled batch as uint8 ``[n, 3, 32, 32]`` images and int64 ``[n]`` labels."""
    batch = _read_pickle(path, described)
    data, labels = batch.get("data"), batch.get(layout.label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: expected 'data' as a uint8 array [n, 3072]; expected {described}")
    try:
        y: np.ndarray | None = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        y = None
    if y is None or y.shape != (data.shape[0],) or (y.size and not (0 <= y.min() and y.max() < layout.num_classes)):
        raise DataError(
            f"{path}: expected {layout.label_key!r} as {data.shape[0]} class ids in "
            f"[0, {layout.num_classes}); expected {described}"
        )
    # Rows are 1024 red, 1024 green, 1024 blue values, each plane row-major: [n, 3, 32, 32].
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(y)


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers only: a shared dataset directory on a
    cluster is not trusted to run code, which ``pickle.load`` would allow."""

    # ndarray.__reduce__ names numpy's array-rebuilding function wherever this numpy keeps it
    # (numpy.core in 1.x, numpy._core in 2.x); CIFAR's Python 2 pickles name numpy.core.
    _RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]
    _ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Python 3 writes bytes at pickle protocol 2 as _codecs.encode(str, "latin1"): a copy
        # re-pickled with Python 3 needs it, and it only turns text into bytes.
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file") from None


def _read_pickle(path: Path, described: str) -> dict[str, Any]:
    """A CIFAR pickle as a dict with str keys (Python 2 pickles give bytes keys)."""
    try:
        with path.open("rb") as f:
            # encoding="bytes" is what the CIFAR authors document for their Python 2 pickles.
            loaded = _CifarUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"{path} is missing; expected {described}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, OSError) as e:
        raise DataError(f"{path} is not a readable CIFAR pickle ({e!r}); expected {described}") from None
    if not isinstance(loaded, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(loaded).__name__}; expected {described}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in loaded.items()}


def _extract_once(archive: Path, folder: Path, described: str) -> None:
    """Extract ``archive`` (holding ``folder.name/``) into ``folder`` exactly once.

    Trials starting together on one node or on a shared file system serialise on a lock file;
    the archive is unpacked into a temporary directory beside ``folder`` and renamed into place,
    so ``folder`` either does not exist or is complete, even if a process dies mid-extraction.
    """
    root = folder.parent
    try:
        lock = open(root / f".{folder.name}.lock", "a")  # noqa: SIM115 (held across the block below)
    except OSError as e:
        raise DataError(
            f"cannot extract {archive}: {root} is not writable ({e.strerror}); extract it there by hand "
            f"(tar -xzf {archive.name}); expected {described}"
        ) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if folder.is_dir():  # another process extracted it while this one waited
            return
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(staging, filter="data")
            if not (staging / folder.name).is_dir():
                raise DataError(f"{archive} does not contain {folder.name}/; expected {described}")
            os.rename(staging / folder.name, folder)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise DataError(f"cannot extract {archive} ({e!r}); expected {described}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(kept, held)`` (each sorted, int64) with ``round(N · fraction)`` held out.

    Every class contributes ``floor(n_c · fraction)`` held-out samples, plus one for the classes
    with the largest remainders until the total is reached, so class shares match the dataset's
    to within one sample. Which samples is drawn from ``numpy.random.default_rng(seed)``.
    """
    n = len(labels)
    rng = np.random.default_rng(seed)
    # A random order, then a stable sort by class: each class's members in random order.
    order = rng.permutation(n)
    order = order[np.argsort(labels[order], kind="stable")]
    _, counts = np.unique(labels, return_counts=True)
    exact = counts * fraction
    quota = np.floor(exact).astype(np.int64)
    short = round(n * fraction) - int(quota.sum())
    quota[np.argsort(quota - exact, kind="stable")[:short]] += 1
    starts = np.cumsum(counts) - counts
    rank_in_class = np.arange(n) - np.repeat(starts, counts)
    held = rank_in_class < np.repeat(quota, counts)
    return np.sort(order[~held]).astype(np.int64), np.sort(order[held]).astype(np.int64)


# --------------------------------------------------------------------------- batches


class Batches:
    """Mini-batches of a ``Split``, shuffled and augmented on the split's device.

    Each iteration is one epoch yielding ``(x, y)``: float32 ``[B, C, H, W]`` and int64 ``[B]``
    on the split's device (the last batch is smaller unless ``drop_last``). With ``augment``,
    every sample is randomly cropped from the image padded by ``H // 8`` pixels (4 at 32) of
    ``split.pad_value``, and with ``flip`` also mirrored left-right with probability 1/2
    (``flip`` does nothing without ``augment``); the whole batch is done with two gathers, no
    per-sample Python loop.

    Randomness comes only from ``generator``, which must live on the split's device (a CUDA
    tensor cannot be drawn from a CPU generator). An epoch draws all of its randomness (the
    permutation, crop offsets, flip decisions) when iteration starts, so equal generator states
    give identical epochs, and checkpointing ``generator.get_state()`` between epochs resumes
    exactly, even after an epoch abandoned midway. ``generator`` may be None only when neither
    ``shuffle`` nor ``augment`` is set (evaluation).
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        flip: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        device = split.x.device
        if generator is None:
            if shuffle or augment:
                raise ValueError("shuffle and augment need a generator (on the split's device)")
        elif not _same_device(generator.device, device):
            raise ValueError(
                f"generator is on {generator.device} but the split is on {device}; create it with "
                f"torch.Generator(device={str(device)!r})"
            )
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.flip = flip
        self.generator = generator
        self.drop_last = drop_last
        self._pad = split.x.shape[-1] // 8
        self._fill = torch.tensor(split.pad_value, dtype=split.x.dtype, device=device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        x, y, g = self.split.x, self.split.y, self.generator
        n, device = len(self.split), x.device
        order = torch.randperm(n, generator=g, device=device) if self.shuffle else torch.arange(n, device=device)
        offsets = flips = None
        if self.augment:
            offsets = torch.randint(0, 2 * self._pad + 1, (2, n), generator=g, device=device)
            if self.flip:
                flips = torch.rand(n, generator=g, device=device) < 0.5
        for i in range(len(self)):
            rows = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = order[rows]
            xb = x[idx]
            if offsets is not None:
                xb = _crop_flip(xb, offsets[:, rows], None if flips is None else flips[rows], self._pad, self._fill)
            yield xb, y[idx]


def _crop_flip(x: Tensor, offsets: Tensor, flips: Tensor | None, pad: int, fill: Tensor) -> Tensor:
    """Per-sample random crops (and optional mirroring) of a batch, vectorised.

    ``x``: ``[B, C, H, W]``; ``offsets``: int64 ``[2, B]`` (row, column) in ``[0, 2·pad]``, the
    top-left corner of each window in the image padded by ``pad`` with ``fill``
    (``[1, C, 1, 1]``); ``flips``: bool ``[B]`` or None. Sample ``b`` of the result is
    ``padded[b, :, r:r+H, c:c+W]``, reversed along W where ``flips[b]``. All on ``x``'s device.
    """
    b, c, h, w = x.shape
    padded = fill.expand(b, c, h + 2 * pad, w + 2 * pad).clone()
    padded[:, :, pad : pad + h, pad : pad + w] = x
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device).expand(b, w)
    if flips is not None:
        # Mirroring a window is reading its columns backwards: fold it into the gather index.
        cols = torch.where(flips[:, None], cols.flip(1), cols)
    cols = offsets[1, :, None] + cols
    out = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * pad))
    return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def _same_device(a: torch.device, b: torch.device) -> bool:
    # "cuda" (no index) means the current device; treat it as matching any index.
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


# --------------------------------------------------------------------------- torchvision path


class _TransformedImages(torch.utils.data.Dataset[tuple[Tensor, int]]):
    """uint8 HWC images + labels, each sample passed through a torchvision transform.

    With ``ToPILImage`` first in the transform this is what ``torchvision.datasets.CIFAR10``
    does per sample; it is not that class because torchvision checks the MD5 sums of the
    official files (rejecting any other copy, such as the tests' fake one), unpickles without
    restriction, and has no validation hold-out.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Any) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.transform(self.images[i]), int(self.labels[i])


def cifar_dataloader(
    settings: DataSettings,
    split: Literal["train", "val", "test"] = "train",
    *,
    batch_size: int = 128,
    num_workers: int = 0,
    seed: int = 0,
) -> torch.utils.data.DataLoader[tuple[Tensor, int]]:
    """The conventional host-side pipeline, for benchmarks against ``Batches``.

    Same files, same split and same normalisation as ``load_data``, but each sample goes
    through PIL and ``Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor(),
    Normalize(mean, std)])`` (the crop and flip only for ``split="train"`` with ``augment``) in
    DataLoader worker processes; batches are CPU float32 ``[B, 3, 32, 32]`` / int64 ``[B]``,
    shuffled for ``train``. ``seed`` seeds the shuffling and, through the DataLoader, each
    worker's transforms; with ``num_workers=0`` the transforms draw from torch's global RNG
    (torchvision offers no other), so only the order is reproducible then.

    CIFAR at its natural 32×32 only (``ValueError`` otherwise); ``DataError`` as ``load_data``.
    """
    from torchvision import transforms

    if settings.dataset not in CIFAR_LAYOUTS or settings.resolved_image_size != 32:
        raise ValueError(
            f"cifar_dataloader serves CIFAR at 32×32, not {settings.dataset} at {settings.resolved_image_size}; "
            "use load_data + Batches"
        )
    _check_values(settings)
    decoded = _decode(settings.dataset, _cache_root(settings))
    train_idx, val_idx = _stratified_split(decoded.train_y.numpy(), settings.val_fraction, settings.split_seed)
    train_x = decoded.train_x[torch.from_numpy(train_idx)]
    std, mean = torch.std_mean(train_x.float().div_(255), dim=(0, 2, 3), correction=0)
    if split == "test":
        images, labels = decoded.test_x, decoded.test_y
    else:
        chosen = torch.from_numpy(train_idx if split == "train" else val_idx)
        images, labels = decoded.train_x[chosen], decoded.train_y[chosen]
    steps: list[Any] = [transforms.ToPILImage()]
    if split == "train" and settings.augment:
        steps += [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    steps += [transforms.ToTensor(), transforms.Normalize(mean.tolist(), std.tolist())]
    dataset = _TransformedImages(
        images.permute(0, 2, 3, 1).contiguous().numpy(), labels.numpy(), transforms.Compose(steps)
    )
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=split == "train",
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )

