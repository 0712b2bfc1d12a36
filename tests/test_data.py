"""The loaders read real files: npz in medmnist's exact layout, image folders, digits."""

from __future__ import annotations

import hashlib
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qvit_hw import data
from qvit_hw.data import (
    DEFAULT_NORMALIZATION,
    SPLITS,
    Normalization,
    load_split,
    medmnist_path,
    resolve_dataset,
    split_indices,
    to_tensor,
)
from qvit_hw.errors import DataError

COUNTS = {"train": 6, "val": 3, "test": 4}


def write_medmnist(
    root: Path, flag: str, size: int, channels: int, n_classes: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """A tiny npz with medmnist's file name, keys, dtypes and shapes; returns its arrays."""
    rng = np.random.default_rng(seed)
    shape = (size, size) if channels == 1 else (size, size, 3)
    arrays = {}
    for split, n in COUNTS.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, n_classes, (n, 1), dtype=np.uint8)
    np.savez_compressed(medmnist_path(flag, size, root), **arrays)
    return arrays


def test_medmnist_grayscale_npz_loads_as_rgb(tmp_path: Path) -> None:
    arrays = write_medmnist(tmp_path, "pneumoniamnist", 28, channels=1, n_classes=2)
    assert medmnist_path("pneumoniamnist", 28, tmp_path).name == "pneumoniamnist.npz"

    got = load_split("pneumonia", "val", 28, tmp_path)

    assert got.name == "pneumoniamnist" and got.task == "binary-class"
    assert got.classes == ("normal", "pneumonia")
    assert got.images.shape == (3, 28, 28, 3) and got.images.dtype == np.uint8
    for c in range(3):  # grayscale replicated into R, G and B
        np.testing.assert_array_equal(got.images[..., c], arrays["val_images"])
    np.testing.assert_array_equal(got.labels, arrays["val_labels"][:, 0])
    assert got.labels.dtype == np.int64


def test_medmnist_rgb_224_file_is_the_one_medmnist_reads(tmp_path: Path) -> None:
    from medmnist import BloodMNIST

    arrays = write_medmnist(tmp_path, "bloodmnist", 224, channels=3, n_classes=8)
    ours = load_split("bloodmnist", "test", 224, tmp_path)
    theirs = BloodMNIST(split="test", root=str(tmp_path), size=224)  # medmnist's own reader

    assert medmnist_path("bloodmnist", 224, tmp_path).name == "bloodmnist_224.npz"
    np.testing.assert_array_equal(ours.images, theirs.imgs)
    np.testing.assert_array_equal(ours.labels, theirs.labels[:, 0])
    np.testing.assert_array_equal(ours.images, arrays["test_images"])
    assert ours.task == "multi-class" and len(ours.classes) == 8


def test_retina_is_ordinal_and_keeps_five_classes(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "retinamnist", 28, channels=3, n_classes=5)
    got = load_split("retinamnist", "train", 28, tmp_path)
    assert got.task == "ordinal-regression" and got.num_classes == 5


def test_missing_medmnist_file_names_it_and_how_to_get_it(tmp_path: Path) -> None:
    path = tmp_path / "dermamnist_224.npz"
    with pytest.raises(DataError, match=rf"{path} not found: run again with --download") as err:
        load_split("dermamnist", "train", 224, tmp_path)
    assert "zenodo.org" in str(err.value) and "\n" not in str(err.value)


def test_wrong_image_size_and_label_shape_are_refused(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "breastmnist", 28, channels=1, n_classes=2)
    medmnist_path("breastmnist", 28, tmp_path).rename(medmnist_path("breastmnist", 224, tmp_path))
    with pytest.raises(DataError, match=r"train_images has shape \(6, 28, 28\), expected"):
        load_split("breastmnist", "train", 224, tmp_path)

    arrays = write_medmnist(tmp_path, "breastmnist", 28, channels=1, n_classes=2)
    arrays["val_labels"] = arrays["val_labels"][:2]
    np.savez(medmnist_path("breastmnist", 28, tmp_path), **arrays)
    with pytest.raises(DataError, match=r"val_labels has shape \(2, 1\).*\(3, 1\) integers"):
        load_split("breastmnist", "val", 28, tmp_path)

    arrays["val_labels"] = np.full((3, 1), 7, dtype=np.uint8)
    np.savez(medmnist_path("breastmnist", 28, tmp_path), **arrays)
    with pytest.raises(DataError, match=r"labels outside 0..1"):
        load_split("breastmnist", "val", 28, tmp_path)

    np.savez(medmnist_path("breastmnist", 28, tmp_path), train_images=arrays["train_images"])
    with pytest.raises(DataError, match=r"has no array 'test_images'"):
        load_split("breastmnist", "test", 28, tmp_path)

    medmnist_path("breastmnist", 28, tmp_path).write_text("not an npz")
    with pytest.raises(DataError, match=r"is not a readable npz file"):
        load_split("breastmnist", "test", 28, tmp_path)


def _fake_info(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, md5: str | None = None) -> Path:
    """Point pathmnist's URL at a local npz (file://), keeping medmnist's INFO otherwise."""
    source = tmp_path / "zenodo"
    source.mkdir()
    write_medmnist(source, "pathmnist", 28, channels=3, n_classes=9)
    blob = medmnist_path("pathmnist", 28, source)
    info = dict(data._info("pathmnist"))
    info["url"] = blob.as_uri()
    info["MD5"] = md5 or hashlib.md5(blob.read_bytes()).hexdigest()
    monkeypatch.setattr(data, "_info", lambda flag: info)
    return blob


def test_download_fetches_checks_md5_and_then_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = _fake_info(tmp_path, monkeypatch)
    root = tmp_path / "root"
    got = load_split("pathmnist", "train", 28, root, download=True)
    assert (root / "pathmnist.npz").read_bytes() == blob.read_bytes()
    assert got.images.shape == (6, 28, 28, 3)


def test_download_with_wrong_md5_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_info(tmp_path, monkeypatch, md5="0" * 32)
    root = tmp_path / "root"
    with pytest.raises(DataError, match=r"arrived with MD5 [0-9a-f]{32}, expected 0{32}"):
        load_split("pathmnist", "train", 28, root, download=True)
    assert list(root.iterdir()) == []


def test_download_offline_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match=r"could not download https://zenodo.*put it at") as err:
        load_split("organcmnist", "train", 28, tmp_path, download=True)
    assert "\n" not in str(err.value) and list(tmp_path.iterdir()) == []


def write_folder(root: Path, per_class: dict[str, int]) -> None:
    """PNG slices of mixed sizes and modes, one sub-folder per class."""
    rng = np.random.default_rng(1)
    for cls, n in per_class.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (40 + i, 30), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(root / cls / f"slice{i:03d}.png")


def test_image_folder_splits_every_class_in_a_fixed_order(tmp_path: Path) -> None:
    write_folder(tmp_path, {"NonDemented": 10, "MildDemented": 10, "VeryMildDemented": 20})
    splits = {s: load_split("oasis", s, 28, tmp_path) for s in ("train", "val", "test")}

    assert splits["train"].classes == ("MildDemented", "NonDemented", "VeryMildDemented")
    assert [len(s) for s in splits.values()] == [28, 4, 8]  # 70/10/20 of every class
    assert np.bincount(splits["test"].labels).tolist() == [2, 2, 4]
    assert splits["val"].images.shape == (4, 28, 28, 3) and splits["val"].task == "multi-class"
    again = load_split("oasis", "test", 28, tmp_path)
    np.testing.assert_array_equal(again.images, splits["test"].images)

    first = np.asarray(Image.open(tmp_path / "MildDemented" / "slice000.png").convert("RGB"))
    resized = np.asarray(Image.fromarray(first).resize((28, 28), Image.Resampling.BILINEAR))
    all_images = np.concatenate([s.images for s in splits.values()])
    assert any(np.array_equal(img, resized) for img in all_images)


def test_image_folder_with_split_folders_uses_them(tmp_path: Path) -> None:
    for split, n in (("train", 3), ("val", 1), ("test", 2)):
        write_folder(tmp_path / split, {"AD": n, "CN": n})
    got = load_split("oasis", "test", 224, tmp_path)
    assert len(got) == 4 and got.task == "binary-class" and got.images.shape[1:] == (224, 224, 3)
    assert got.labels.tolist() == [0, 0, 1, 1]


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"give its path with --data-root \(or as --dataset PATH"):
        load_split("folder", "train", 28)
    with pytest.raises(DataError, match="is not a folder"):
        load_split("oasis", "train", 28, tmp_path / "missing")


def test_every_unreadable_image_of_a_folder_is_in_one_error(tmp_path: Path) -> None:
    """Finding 5: corrupted images, in every split, are found by one load, not one per run."""
    write_folder(tmp_path, {"a": 10, "b": 10})
    broken = ["a/slice000.png", "a/slice005.png", "a/slice009.png", "b/slice001.png"]
    broken += ["b/slice003.png", "b/slice008.png", "b/slice009.png"]
    for rel in broken:
        (tmp_path / rel).write_bytes(b"broken")
    with pytest.raises(DataError) as err:
        load_split("folder", "train", 28, tmp_path)
    text = str(err.value)
    assert text.startswith(f"{tmp_path}: 7 unreadable images: a/slice000.png (")
    assert "b/slice003.png" in text and "; and 2 more; fix or remove them" in text
    assert text.endswith("or pass --skip-unreadable to leave them out") and "\n" not in text

    kept = {s: load_split("folder", s, 28, tmp_path, skip_unreadable=True) for s in SPLITS}
    assert sum(len(k.skipped) for k in kept.values()) == 7
    assert sum(len(k) for k in kept.values()) == 20 - 7
    assert {
        Path(f).relative_to(tmp_path).as_posix() for k in kept.values() for f in k.skipped
    } == set(broken)


def test_sixteen_bit_and_float_grayscale_read_as_their_eight_bit_selves(
    tmp_path: Path, image_folder
) -> None:
    """Finding 2: 16-bit PNGs (mode I;16) and float TIFFs give the 8-bit images' tensors to
    one grey level (they used to read as nearly white)."""
    per_class = {"no": 10, "yes": 10}
    for kind in ("png8", "png16", "tiff-float"):
        image_folder(tmp_path / kind, per_class, kind)
    assert Image.open(next((tmp_path / "png16" / "no").iterdir())).mode.startswith("I")
    for size in (28, 224):
        for split in SPLITS:
            eight = load_split("folder", split, size, tmp_path / "png8")
            for kind in ("png16", "tiff-float"):
                other = load_split("folder", split, size, tmp_path / kind)
                diff = (to_tensor(other.images) - to_tensor(eight.images)).abs().max()
                assert float(diff) <= 2 / 255 + 1e-6, (kind, size, split)  # 1 grey level
                assert other.labels.tolist() == eight.labels.tolist()
    got = data.read_image_file(next((tmp_path / "png16" / "yes").iterdir()))
    first = np.asarray(Image.open(next((tmp_path / "png8" / "yes").iterdir())))
    np.testing.assert_array_equal(got[..., 0], first)  # unresized: exact


def test_dicom_is_read_through_its_rescale_and_window(tmp_path: Path, image_folder) -> None:
    from image_files import write_dicom

    made = image_folder(tmp_path, {"a": 2, "b": 2}, "dcm")
    v = made["a"][1]
    got = data.read_image_file(tmp_path / "a" / "slice001.dcm")
    assert got.shape == (*v.shape, 3) and got.dtype == np.uint8
    assert np.abs(got[..., 0].astype(int) - v).max() <= 1  # the window maps them back
    stored = np.arange(600, 1800, dtype=np.uint16).reshape(30, 40)
    write_dicom(tmp_path / "plain.dcm", stored, window=False)
    plain = data.read_image_file(tmp_path / "plain.dcm")[..., 0]
    assert plain.min() == 0 and plain.max() == 255  # no window: its own min..max
    write_dicom(tmp_path / "inverted.dcm", stored, window=False, photometric="MONOCHROME1")
    inverted = data.read_image_file(tmp_path / "inverted.dcm")[..., 0]
    np.testing.assert_array_equal(inverted.astype(int), 255 - plain.astype(int))
    (tmp_path / "b" / "slice000.dcm").write_bytes(b"not dicom")
    with pytest.raises(DataError, match=r"1 unreadable images: b/slice000.dcm \("):
        load_split("folder", "train", 28, tmp_path)


def test_limit_takes_every_class_in_its_share_and_the_same_images(tmp_path: Path) -> None:
    """Finding 1: --limit on a folder sorted by class took the first N: one class."""
    write_folder(tmp_path, {"no": 60, "yes": 60})
    test = load_split("folder", "test", 28, tmp_path)  # 24 images, 12 per class, in order
    assert test.labels.tolist() == [0] * 12 + [1] * 12
    for limit in (4, 10, 23):
        part = test.subset(limit)
        assert len(part) == limit and np.bincount(part.labels).min() >= limit // 2
        again = load_split("folder", "test", 28, tmp_path).subset(limit)
        np.testing.assert_array_equal(again.images, part.images)
        assert part.coverage() == ""
    assert test.subset(100) is test and test.subset(None) is test
    one = test.subset(1)
    assert one.coverage() == (
        "the test split (1 images) holds only class 'no': ROC AUC is undefined (n/a) and "
        "accuracy says nothing about the other classes"
    )
    with pytest.raises(ValueError, match="limit must be >= 1, got 0"):
        test.subset(0)


def test_stratified_shares_follow_class_sizes() -> None:
    labels = np.array([0] * 90 + [1] * 5 + [2] * 5)
    assert np.bincount(labels[data.stratified(labels, 10)]).tolist() == [8, 1, 1]
    assert np.bincount(labels[data.stratified(labels, 3)]).tolist() == [1, 1, 1]
    assert np.bincount(labels[data.stratified(labels, 50)]).tolist() == [44, 3, 3]
    assert data.stratified(labels, 200).tolist() == list(range(100))


def test_a_folder_is_a_data_set_of_its_own(tmp_path: Path) -> None:
    """Finding 3: `folder`, `imagefolder` or the folder's path; classes and task from it."""
    write_folder(tmp_path / "mri", {"no": 10, "yes": 10})
    assert data.dataset_source(str(tmp_path / "mri"), None) == ("folder", str(tmp_path / "mri"))
    assert data.dataset_source("imagefolder", "x") == ("folder", "x")
    assert data.dataset_source("digits", None) == ("digits", None)
    with pytest.raises(ValueError, match="is a folder and --data-root says"):
        data.dataset_source(str(tmp_path / "mri"), str(tmp_path))
    got = load_split("folder", "test", 28, tmp_path / "mri")
    assert got.classes == ("no", "yes") and got.task == "binary-class"
    assert got.root == str(tmp_path / "mri") and got.fingerprint.startswith("folder:sha256:")
    same = load_split("folder", "val", 28, tmp_path / "mri")
    assert same.fingerprint == got.fingerprint
    (tmp_path / "mri" / "yes" / "slice000.png").write_bytes(
        (tmp_path / "mri" / "yes" / "slice001.png").read_bytes()
    )
    assert load_split("folder", "val", 28, tmp_path / "mri").fingerprint != got.fingerprint
    rows = {r.name: r for r in data.dataset_infos()}
    assert rows["folder"].task == "from its folders" and rows["folder"].classes is None


def test_digits_are_real_upsampled_images_split_70_10_20() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    parts = {s: load_split("digits", s, 28) for s in ("train", "val", "test")}
    assert [len(p) for p in parts.values()] == [1258, 180, 359]
    indices = [split_indices(digits.target, s) for s in parts]
    assert len(np.unique(np.concatenate(indices))) == 1797  # disjoint and complete
    train = parts["train"]
    assert train.images.shape == (1258, 28, 28, 3) and train.num_classes == 10
    np.testing.assert_array_equal(train.labels, digits.target[indices[0]])
    # each 28x28 image is its 8x8 digit: 4x4 block means agree
    ours = torch.nn.functional.avg_pool2d(
        torch.from_numpy(train.images[:50, :, :, 0].copy()).float(), 7
    )
    theirs = torch.nn.functional.avg_pool2d(torch.from_numpy(digits.images[indices[0][:50]]), 2)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.corrcoef(torch.stack([a.flatten(), b.float().flatten()]))[0, 1] > 0.9


def test_to_tensor_normalises_once() -> None:
    images = np.zeros((2, 28, 28, 3), dtype=np.uint8)
    images[1] = 255
    x = to_tensor(images)
    assert x.shape == (2, 3, 28, 28) and x.dtype == torch.float32
    assert x[0].eq(-1).all() and x[1].eq(1).all()
    custom = Normalization(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    assert to_tensor(images, custom)[1].eq(1).all()
    assert Normalization.from_dict(DEFAULT_NORMALIZATION.to_dict()) == DEFAULT_NORMALIZATION
    with pytest.raises(TypeError, match="images must be a uint8 numpy array"):
        to_tensor(images.astype(np.float32))
    with pytest.raises(ValueError, match=r"images must have shape \(N, S, S, 3\)"):
        to_tensor(images[..., 0])


def test_names_sizes_and_splits_are_checked() -> None:
    assert resolve_dataset("PneumoniaMNIST") == "pneumoniamnist"
    assert resolve_dataset("blood") == "bloodmnist"
    with pytest.raises(ValueError, match="unknown data set 'digitz'; did you mean digits"):
        resolve_dataset("digitz")
    with pytest.raises(ValueError, match=r"size must be one of \(28, 224\), got 64"):
        load_split("digits", "train", 64)
    with pytest.raises(ValueError, match="split must be one of train, val, test"):
        load_split("digits", "validation")


# --- memory-mapped images -----------------------------------------------------------------


def mapped_file(array: np.ndarray) -> str | None:
    """The file an array's memory map reads, or None for an array in memory."""
    base = array
    while base is not None and not isinstance(base, np.memmap):
        base = base.base
    return None if base is None else str(base.filename)


def test_compressed_npz_is_decompressed_once_and_memory_mapped(tmp_path: Path) -> None:
    arrays = write_medmnist(tmp_path, "bloodmnist", 28, channels=3, n_classes=8)  # compressed
    source = medmnist_path("bloodmnist", 28, tmp_path)
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    cache = tmp_path / data.CACHE_DIR / f"bloodmnist-{md5}" / "train_images.npy"

    got = load_split("bloodmnist", "train", 28, tmp_path)

    assert mapped_file(got.images) == str(cache) and not got.images.flags.writeable
    np.testing.assert_array_equal(got.images, arrays["train_images"])
    built = cache.stat().st_mtime_ns
    again = load_split("bloodmnist", "train", 28, tmp_path)  # the cache is reused as it is
    assert cache.stat().st_mtime_ns == built
    np.testing.assert_array_equal(again.images, arrays["train_images"])
    data.release_pages(again.images)  # drops resident pages; the values stay
    np.testing.assert_array_equal(again.images, arrays["train_images"])


def test_changed_npz_rebuilds_the_cache_and_drops_the_old_one(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "bloodmnist", 28, channels=3, n_classes=8, seed=0)
    load_split("bloodmnist", "val", 28, tmp_path)
    first = sorted((tmp_path / data.CACHE_DIR).glob("bloodmnist-*"))
    new = write_medmnist(tmp_path, "bloodmnist", 28, channels=3, n_classes=8, seed=1)

    got = load_split("bloodmnist", "val", 28, tmp_path)

    np.testing.assert_array_equal(got.images, new["val_images"])
    folders = sorted((tmp_path / data.CACHE_DIR).glob("bloodmnist-*"))
    assert len(first) == len(folders) == 1 and first != folders
    md5 = hashlib.md5(medmnist_path("bloodmnist", 28, tmp_path).read_bytes()).hexdigest()
    assert folders[0].name == f"bloodmnist-{md5}"


def test_uncompressed_npz_member_is_mapped_in_place(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 2, (5, 1), dtype=np.uint8)
    path = medmnist_path("breastmnist", 28, tmp_path)
    np.savez(path, train_images=images, train_labels=labels)  # stored, not deflated

    got = load_split("breastmnist", "train", 28, tmp_path)

    assert mapped_file(got.images) == str(path)  # no copy anywhere
    assert not (tmp_path / data.CACHE_DIR).exists()
    np.testing.assert_array_equal(got.images[..., 1], images)
    np.testing.assert_array_equal(got.labels, labels[:, 0])


def test_truncated_npz_is_one_clear_error(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "bloodmnist", 28, channels=3, n_classes=8)
    path = medmnist_path("bloodmnist", 28, tmp_path)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError, match=r"bloodmnist.npz is not a readable npz file"):
        load_split("bloodmnist", "train", 28, tmp_path)
