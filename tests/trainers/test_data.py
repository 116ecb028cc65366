"""Tests of kdsweep.trainers.data: reading, splitting, normalising, validating, batching.

CIFAR is read from tiny fake copies in torchvision's exact format (``fake_cifar.py``); digits is
scikit-learn's bundled set. Every test runs on the CPU; the device-resident code path is the same
one a GPU runs, with the generator on the data's device.
"""

from __future__ import annotations

import math
import os
import pickle
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdsweep.trainers.data import (
    DIGITS_TEST_FRACTION,
    Batches,
    DataError,
    DataSettings,
    ImageData,
    Split,
    check_data,
    cifar_dataloader,
    load_data,
    uses_flip,
)
from tests.trainers.fake_cifar import (
    write_fake_cifar10,
    write_fake_cifar10_archive,
    write_fake_cifar100,
    write_fake_cifar100_archive,
)

N_PER_BATCH = 20  # fake CIFAR-10: 5 × 20 = 100 training images, 20 test images
CIFAR10_LAYOUT = "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}"


def cifar10(root: Path, **kw: object) -> DataSettings:
    return DataSettings(dataset="cifar10", root=str(root), **kw)


def assert_normalised(data: ImageData) -> None:
    std, mean = torch.std_mean(data.train.x, dim=(0, 2, 3), correction=0)
    assert torch.allclose(mean, torch.zeros(3), atol=1e-4)
    assert torch.allclose(std, torch.ones(3), atol=1e-4)
    assert data.train.mean == data.val.mean == data.test.mean
    assert data.train.std == data.val.std == data.test.std


# --------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("archive", [False, True], ids=["dir", "archive"])
def test_cifar10_shapes_labels_splits(tmp_path: Path, archive: bool) -> None:
    (write_fake_cifar10_archive if archive else write_fake_cifar10)(tmp_path, N_PER_BATCH)
    data = load_data(cifar10(tmp_path))
    assert (data.name, data.num_classes) == ("cifar10", 10)
    assert data.train.x.shape == (90, 3, 32, 32) and data.train.x.dtype == torch.float32
    assert data.val.x.shape == (10, 3, 32, 32)
    assert data.test.x.shape == (20, 3, 32, 32)
    for split in (data.train, data.val, data.test):
        assert split.y.dtype == torch.int64
        assert 0 <= int(split.y.min()) and int(split.y.max()) < 10
    # 10 balanced classes, val 10% of them: exactly one per class.
    assert sorted(data.val.y.tolist()) == list(range(10))
    assert_normalised(data)
    if archive:
        assert (tmp_path / "cifar-10-batches-py" / "data_batch_5").is_file()
        # Nothing but the archive, the extracted folder and the lock file remains.
        assert {p.name for p in tmp_path.iterdir()} == {
            "cifar-10-python.tar.gz", "cifar-10-batches-py", ".cifar-10-batches-py.lock",
        }  # fmt: skip


def test_cifar10_test_split_is_test_batch_in_pixel_order(tmp_path: Path) -> None:
    write_fake_cifar10(tmp_path, N_PER_BATCH)
    data = load_data(cifar10(tmp_path))
    with (tmp_path / "cifar-10-batches-py" / "test_batch").open("rb") as f:
        raw = pickle.load(f, encoding="bytes")
    pixels = torch.from_numpy(raw[b"data"]).float().div(255).view(-1, 3, 32, 32)
    mean = torch.tensor(data.test.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.test.std).view(1, 3, 1, 1)
    assert torch.allclose(data.test.x * std + mean, pixels, atol=1e-5)
    assert data.test.y.tolist() == raw[b"labels"]


@pytest.mark.parametrize("archive", [False, True], ids=["dir", "archive"])
def test_cifar100(tmp_path: Path, archive: bool) -> None:
    (write_fake_cifar100_archive if archive else write_fake_cifar100)(tmp_path, n_train=300, n_test=50)
    data = load_data(DataSettings(dataset="cifar100", root=str(tmp_path)))
    assert (data.name, data.num_classes) == ("cifar100", 100)
    assert (len(data.train), len(data.val), len(data.test)) == (270, 30, 50)
    assert int(data.train.y.max()) < 100 and int(data.train.y.min()) >= 0
    assert len(set(data.train.y.tolist())) == 100
    assert_normalised(data)


def test_cifar_image_size_resizes(tmp_path: Path) -> None:
    write_fake_cifar10(tmp_path, N_PER_BATCH)
    data = load_data(cifar10(tmp_path, image_size=16))
    assert data.train.x.shape[1:] == (3, 16, 16) and data.test.x.shape[1:] == (3, 16, 16)
    assert_normalised(data)


def test_concurrent_first_loads_extract_once(tmp_path: Path) -> None:
    write_fake_cifar10_archive(tmp_path, N_PER_BATCH)
    # Threads released together all miss the per-process cache (lru_cache does not hold a lock
    # while it computes), so they all reach the extraction; the lock file must serialise them.
    n = 4
    barrier = threading.Barrier(n)
    results: list[ImageData | BaseException] = []

    def load() -> None:
        barrier.wait()
        try:
            results.append(load_data(cifar10(tmp_path)))
        except BaseException as e:  # noqa: BLE001 (reported by the assertion below)
            results.append(e)

    threads = [threading.Thread(target=load) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == n and all(isinstance(r, ImageData) for r in results), results
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith((".gz", ".lock"))) == [
        "cifar-10-batches-py"
    ]


def test_decoded_files_are_cached_per_process(tmp_path: Path) -> None:
    write_fake_cifar10(tmp_path, N_PER_BATCH)
    first = load_data(cifar10(tmp_path))
    for f in (tmp_path / "cifar-10-batches-py").iterdir():
        f.unlink()
    again = load_data(cifar10(tmp_path, split_seed=0))
    assert torch.equal(first.train.x, again.train.x)
    # Fresh tensors each call: modifying one trial's copy cannot leak into another's.
    again.train.x.zero_()
    assert not torch.equal(load_data(cifar10(tmp_path)).train.x, again.train.x)


# --------------------------------------------------------------------------- digits


def digits(**kw: object) -> ImageData:
    return load_data(DataSettings(dataset="digits", **kw))


def test_digits_shapes_and_split_sizes() -> None:
    data = digits()
    assert (data.name, data.num_classes) == ("digits", 10)
    n_test = round(1797 * DIGITS_TEST_FRACTION)
    n_val = round((1797 - n_test) * 0.1)
    assert (len(data.train), len(data.val), len(data.test)) == (1797 - n_test - n_val, n_val, n_test)
    assert data.train.x.shape[1:] == (3, 16, 16)
    assert torch.equal(data.train.x[:, 0], data.train.x[:, 2])  # grey replicated to 3 channels
    assert_normalised(data)
    assert digits(image_size=8).train.x.shape[1:] == (3, 8, 8)


def test_digits_splits_partition_the_dataset() -> None:
    from sklearn.datasets import load_digits

    data = digits()
    raw = torch.from_numpy(load_digits().data.astype(np.float32) / 16).view(-1, 1, 8, 8)
    expected = F.interpolate(raw, size=(16, 16), mode="bilinear", align_corners=False, antialias=True)
    mean, std = data.train.mean[0], data.train.std[0]
    got = torch.cat([s.x[:, 0] * std + mean for s in (data.train, data.val, data.test)])
    # Equal multisets of images: compare sorted per-image sums, then sorted per-image sums of squares.
    for stat in (lambda t: t.sum((1, 2)), lambda t: (t * t).sum((1, 2))):
        assert torch.allclose(stat(got).sort().values, stat(expected[:, 0]).sort().values, atol=1e-3)


def test_digits_split_is_stratified() -> None:
    data = digits(val_fraction=0.25)
    total = torch.bincount(torch.cat([data.train.y, data.val.y]), minlength=10)
    val = torch.bincount(data.val.y, minlength=10)
    assert ((val.double() - total.double() * 0.25).abs() < 1).all()
    test = torch.bincount(data.test.y, minlength=10)
    everything = total + test
    assert ((test.double() - everything.double() * DIGITS_TEST_FRACTION).abs() < 1).all()


def test_digits_split_seed_determinism() -> None:
    a, b, c = digits(split_seed=1), digits(split_seed=1), digits(split_seed=2)
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.val.y, b.val.y)
    assert torch.equal(a.train.x, b.train.x)
    assert not torch.equal(a.val.x, c.val.x)
    # The test split does not depend on split_seed (its normalisation does, by design: it
    # uses the train split's statistics), so compare it in pixel space.
    def pixels(d: ImageData) -> torch.Tensor:
        return d.test.x * torch.tensor(d.train.std).view(1, 3, 1, 1) + torch.tensor(d.train.mean).view(1, 3, 1, 1)

    assert torch.allclose(pixels(a), pixels(c), atol=1e-5)
    assert torch.equal(a.test.y, c.test.y)


def test_only_cifar_is_flipped() -> None:
    assert not uses_flip(DataSettings(dataset="digits"))
    assert uses_flip(DataSettings(dataset="cifar10")) and uses_flip(DataSettings(dataset="cifar100"))


def test_image_data_to_device() -> None:
    data = digits().to("cpu")
    assert data.train.x.device.type == "cpu" and data.test.y.device.type == "cpu"


# --------------------------------------------------------------------------- errors


def test_missing_root_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data\.root is required.*cifar-10-batches-py"):
        load_data(DataSettings(dataset="cifar10"))
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="nope.*not a directory.*cifar-10-python.tar.gz"):
        load_data(cifar10(missing))


def test_empty_dir_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_data(cifar10(tmp_path))
    assert str(tmp_path) in str(info.value) and CIFAR10_LAYOUT in str(info.value)


def test_truncated_batch_is_a_data_error(tmp_path: Path) -> None:
    write_fake_cifar10(tmp_path, N_PER_BATCH)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:1000])
    with pytest.raises(DataError) as info:
        load_data(cifar10(tmp_path))
    assert str(batch) in str(info.value) and CIFAR10_LAYOUT in str(info.value)


def test_missing_batch_file_is_a_data_error(tmp_path: Path) -> None:
    write_fake_cifar10(tmp_path, N_PER_BATCH)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch is missing"):
        load_data(cifar10(tmp_path))


def test_corrupt_archive_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b\x08 not really gzip")
    with pytest.raises(DataError, match="cannot extract .*cifar-10-python.tar.gz"):
        load_data(cifar10(tmp_path))
    assert not (tmp_path / "cifar-10-batches-py").exists()


def test_pickles_cannot_run_code(tmp_path: Path) -> None:
    write_fake_cifar10(tmp_path, N_PER_BATCH)

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo pwned",))

    (tmp_path / "cifar-10-batches-py" / "batches.meta").write_bytes(pickle.dumps({b"label_names": Evil()}))
    with pytest.raises(DataError, match="refusing to load"):
        load_data(cifar10(tmp_path))


def test_bad_values_are_value_errors() -> None:
    with pytest.raises(ValueError, match=r"data\.val_fraction = 0\.9"):
        load_data(DataSettings(val_fraction=0.9))


def test_check_data_accepts_good_settings(tmp_path: Path) -> None:
    assert check_data(DataSettings()) == []
    assert check_data(DataSettings(image_size=8, val_fraction=0.5)) == []
    assert check_data(DataSettings(image_size=256)) == []
    write_fake_cifar10(tmp_path / "dir", N_PER_BATCH)
    write_fake_cifar10_archive(tmp_path / "archive", N_PER_BATCH)
    write_fake_cifar100(tmp_path / "dir100")
    assert check_data(cifar10(tmp_path / "dir")) == []
    assert check_data(cifar10(tmp_path / "archive")) == []
    assert check_data(DataSettings(dataset="cifar100", root=str(tmp_path / "dir100"))) == []


@pytest.mark.parametrize("value", [0.0, -0.1, 0.51, math.nan])
def test_check_data_val_fraction(value: float) -> None:
    [(field, got, allowed)] = check_data(DataSettings(val_fraction=value))
    assert field == "data.val_fraction" and allowed == "a number in (0, 0.5]"
    assert got is value


@pytest.mark.parametrize("value", [-1, 1, 7, 257])
def test_check_data_image_size(value: int) -> None:
    [(field, got, allowed)] = check_data(DataSettings(image_size=value))
    assert (field, got) == ("data.image_size", value)
    assert "0 (the dataset's natural size" in allowed and "[8, 256]" in allowed


def test_check_data_root(tmp_path: Path) -> None:
    layout = (
        "a directory containing cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} or "
        "cifar-10-python.tar.gz (torchvision's CIFAR-10 layout); nothing is downloaded"
    )
    # Missing for CIFAR.
    [(field, value, allowed)] = check_data(DataSettings(dataset="cifar10"))
    assert (field, value) == ("data.root", None) and allowed.startswith(layout)
    # Not a directory: a file, and a path that does not exist.
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for root in (a_file, tmp_path / "missing"):
        [(field, value, allowed)] = check_data(cifar10(root))
        assert (field, value) == ("data.root", str(root)) and allowed.startswith(layout)
        assert "not a directory" in allowed
    # An empty directory.
    [(field, value, allowed)] = check_data(cifar10(tmp_path))
    assert allowed.startswith(layout) and "neither" in allowed
    # An incomplete extracted copy names what is missing.
    write_fake_cifar10(tmp_path, N_PER_BATCH)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    [(_, _, allowed)] = check_data(cifar10(tmp_path))
    assert "lacks data_batch_4" in allowed
    # CIFAR-100 names its own layout.
    [(_, _, allowed)] = check_data(DataSettings(dataset="cifar100", root=str(tmp_path)))
    assert "cifar-100-python/{train,test,meta} or cifar-100-python.tar.gz" in allowed
    # Digits ignores root.
    assert check_data(DataSettings(dataset="digits", root=str(tmp_path / "missing"))) == []


def test_check_data_reports_every_bad_field() -> None:
    issues = check_data(DataSettings(dataset="cifar10", val_fraction=2.0, image_size=-3))
    assert [field for field, _, _ in issues] == ["data.val_fraction", "data.image_size", "data.root"]


# --------------------------------------------------------------------------- batches


def coded_split(n: int, size: int = 16) -> Split:
    """Images whose pixels encode (sample, row, column): value = 1 + w + size·h + size²·i.

    Unnormalised (pad value 0), so padding is told apart from every real pixel (all >= 1).
    """
    i = torch.arange(n).view(n, 1, 1, 1)
    h = torch.arange(size).view(1, 1, size, 1)
    w = torch.arange(size).view(1, 1, 1, size)
    x = (1 + w + size * h + size * size * i).float().expand(n, 3, size, size).contiguous()
    return Split(x, torch.arange(n))


def epoch(batches: Batches) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(batches)


@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_cover_every_sample_once(drop_last: bool) -> None:
    split = coded_split(50)
    batches = Batches(
        split, 8, shuffle=True, augment=True, flip=True, generator=torch.Generator().manual_seed(0),
        drop_last=drop_last,
    )  # fmt: skip
    got = epoch(batches)
    assert len(got) == len(batches) == (6 if drop_last else 7)
    ys = torch.cat([y for _, y in got])
    assert len(ys.unique()) == len(ys)
    if drop_last:
        assert all(len(y) == 8 for _, y in got) and len(ys) == 48
    else:
        assert sorted(ys.tolist()) == list(range(50))
    assert ys.tolist() != list(range(50))  # shuffled
    for x, y in got:
        assert x.shape == (len(y), 3, 16, 16)


def test_unshuffled_batches_need_no_generator() -> None:
    split = coded_split(10)
    got = epoch(Batches(split, 4))
    assert [len(y) for _, y in got] == [4, 4, 2]
    assert torch.equal(torch.cat([x for x, _ in got]), split.x)
    with pytest.raises(ValueError, match="generator"):
        Batches(split, 4, shuffle=True)
    with pytest.raises(ValueError, match="batch_size"):
        Batches(split, 0)


def test_generator_must_be_on_the_split_device() -> None:
    # The meta device stands in for CUDA here: the check runs before any data is touched.
    split = Split(torch.empty(4, 3, 8, 8, device="meta"), torch.empty(4, dtype=torch.int64, device="meta"))
    with pytest.raises(ValueError, match="generator is on cpu but the split is on meta"):
        Batches(split, 2, shuffle=True, generator=torch.Generator())


def test_equal_generator_states_give_identical_epochs() -> None:
    split = coded_split(40)
    g = torch.Generator().manual_seed(7)

    def make(gen: torch.Generator) -> Batches:
        return Batches(split, 16, shuffle=True, augment=True, flip=True, generator=gen, drop_last=False)

    state = g.get_state()
    first = epoch(make(g))
    resumed = torch.Generator()
    resumed.set_state(state)
    again = epoch(make(resumed))
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    # Resuming mid-run: the state checkpointed after epoch 1 reproduces epoch 2, even when
    # epoch 1 was abandoned after its first batch.
    g = torch.Generator().manual_seed(7)
    next(iter(make(g)))
    checkpoint = g.get_state()
    second = epoch(make(g))
    restored = torch.Generator()
    restored.set_state(checkpoint)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(second, epoch(make(restored)), strict=True))
    assert not torch.equal(first[0][0], second[0][0])  # epochs differ from each other


def test_augmentation_is_a_shifted_window_of_the_padded_image() -> None:
    torch.manual_seed(0)  # only for the test's input images; Batches draws from its generator
    n, size, pad = 8, 32, 4
    raw = torch.rand(n, 3, size, size)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    x = (raw - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    split = Split(x, torch.arange(n), mean, std)
    gen = torch.Generator().manual_seed(3)
    out, y = next(iter(Batches(split, n, shuffle=False, augment=True, flip=True, generator=gen)))
    assert out.shape == x.shape and not torch.equal(out, x)
    # The padding is black in pixel space (torchvision's RandomCrop(padding=4) then Normalize).
    padded = F.pad(raw, (pad,) * 4)
    padded = (padded - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    for b in range(n):
        windows = [
            (r, c, flipped)
            for r in range(2 * pad + 1)
            for c in range(2 * pad + 1)
            for flipped in (False, True)
            if torch.allclose(
                out[b],
                padded[y[b], :, r : r + size, c : c + size].flip(2)
                if flipped
                else padded[y[b], :, r : r + size, c : c + size],
            )
        ]
        assert len(windows) == 1, (b, windows)


def test_crop_offsets_and_flip_rate() -> None:
    n, size = 2000, 16
    split = coded_split(n, size)
    gen = torch.Generator().manual_seed(11)
    x, _ = next(iter(Batches(split, n, shuffle=False, augment=True, flip=True, generator=gen)))
    code = x[:, 0] - 1 - size * size * torch.arange(n).view(n, 1, 1)  # w + size·h where not padding
    centre = code[:, size // 2, size // 2]
    step = code[:, size // 2, size // 2 + 1] - centre
    flipped = step == -1
    assert ((step == 1) | flipped).all()
    rate = flipped.float().mean().item()
    assert 0.45 < rate < 0.55, rate
    # The source row of the centre pixel, minus the centre: the vertical shift in [-pad, pad].
    shift = torch.div(centre, size, rounding_mode="floor") - size // 2
    pad = size // 8
    assert set(shift.tolist()) == set(range(-pad, pad + 1))
    # Without flip, nothing is mirrored.
    gen = torch.Generator().manual_seed(11)
    x, _ = next(iter(Batches(split, n, augment=True, flip=False, generator=gen)))
    assert (x[:, 0, size // 2, size // 2 + 1] - x[:, 0, size // 2, size // 2] == 1).all()


def test_augmentation_speed() -> None:
    split = Split(torch.randn(512, 3, 32, 32), torch.zeros(512, dtype=torch.int64))
    gen = torch.Generator().manual_seed(0)
    batches = Batches(split, 512, shuffle=True, augment=True, flip=True, generator=gen)
    next(iter(batches))  # warm-up
    repeats = 10
    start = time.perf_counter()
    for _ in range(repeats):
        next(iter(batches))
    ms = (time.perf_counter() - start) / repeats * 1e3
    print(f"\nshuffle + crop + flip of a 512×3×32×32 batch on the CPU: {ms:.1f} ms")


# --------------------------------------------------------------------------- torchvision path


def test_cifar_dataloader(tmp_path: Path) -> None:
    write_fake_cifar10(tmp_path, N_PER_BATCH)
    settings = cifar10(tmp_path)
    loader = cifar_dataloader(settings, "train", batch_size=16, num_workers=0, seed=0)
    x, y = next(iter(loader))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    sizes = {s: len(cifar_dataloader(settings, s, batch_size=16).dataset) for s in ("train", "val", "test")}
    assert sizes == {"train": 90, "val": 10, "test": 20}
    # Unaugmented splits carry exactly the tensors load_data makes.
    data = load_data(settings)
    x, y = next(iter(cifar_dataloader(settings, "val", batch_size=10)))
    assert torch.allclose(x, data.val.x, atol=1e-5) and torch.equal(y, data.val.y)
    with pytest.raises(ValueError, match="CIFAR"):
        cifar_dataloader(DataSettings(), "train")
