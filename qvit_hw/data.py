"""The paper's data sets as uint8 RGB arrays, and the one transform into model inputs.

Three sources, one result (`ImageSet`: images (N, S, S, 3) uint8, labels (N,) int64):

- MedMNIST v3, read from the ``medmnist`` package's files: ``{root}/{flag}.npz`` for 28x28
  and ``{root}/{flag}_{size}.npz`` otherwise, with arrays ``{split}_images`` ((N, S, S)
  grayscale or (N, S, S, 3) RGB, uint8) and ``{split}_labels`` ((N, 1) int). The npz is read
  here rather than through ``medmnist``'s Dataset classes, which insist on the official
  sample counts; ``medmnist.INFO`` gives tasks, class names, URLs and MD5 sums.
- An image folder (``folder``, or a folder's path as the data set; ``oasis`` is the OASIS
  layout): one sub-folder per class, images resized to S x S; the class names (sorted) and
  the task (binary with two classes, else multi-class) come from the sub-folders. With
  ``train/``, ``val/`` and ``test/`` sub-folders those are the splits; without, every class
  is split 70/10/20 in a fixed order. Pictures in 8 bits (any PIL mode) are converted to
  RGB; 16-bit and 32-bit integer grayscale by the full range of 16 bits (v / 65535), float
  grayscale from [0, 1] (or its own min..max when outside); DICOM (``.dcm``, the ``dicom``
  extra) through its rescale slope/intercept and its own window (else its min..max). An
  unreadable image stops the load with every unreadable file of the folder counted in one
  error, unless ``skip_unreadable`` (then `ImageSet.skipped` names them).
- scikit-learn's bundled ``digits`` (1,797 real 8x8 images, 10 classes) upsampled to S x S:
  the offline demo, split 70/10/20 per class in a fixed order.

``load_split(dataset, split, size, root)`` gives an `ImageSet`; ``to_tensor(images, norm)``
turns its images into model inputs (N, 3, S, S). Training, distillation and ``qvit-hw run``
all go through these two functions, so every stage sees the same pixels.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import mmap
import os
import shutil
import struct
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import DataError, one_line

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
SIZES = (28, 224)  # the model's two input sizes (2x2 and 16x16 patches)
MEDMNIST = (
    "breastmnist",
    "retinamnist",
    "pneumoniamnist",
    "dermamnist",
    "bloodmnist",
    "organcmnist",
    "pathmnist",
)
FOLDER = "folder"
IMAGE_FOLDERS = (FOLDER, "oasis")
ALIASES = {"imagefolder": FOLDER, "image-folder": FOLDER, "image_folder": FOLDER}
DIGITS = "digits"
DATASETS = (*MEDMNIST, *IMAGE_FOLDERS, DIGITS)
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)  # train / val / test where a source has no splits
SPLIT_SEED = 0
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".dcm"}
)
UNREADABLE_NAMED = 5  # an error about unreadable images names the first few


@dataclass(frozen=True)
class ImageSet:
    """One split of a data set: RGB uint8 images and integer labels."""

    name: str
    split: str
    images: np.ndarray  # (N, S, S, 3) uint8; read-only: grayscale is broadcast, not copied
    labels: np.ndarray  # (N,) int64 in 0..len(classes)-1
    task: str  # "binary-class", "multi-class" or "ordinal-regression" (MedMNIST's words)
    classes: tuple[str, ...]
    fingerprint: str = ""  # of the data set's source (`fingerprint`): same string, same data
    root: str | None = None  # an image folder's absolute path
    skipped: tuple[str, ...] = ()  # unreadable files left out (skip_unreadable)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, limit: int | None, seed: int = SPLIT_SEED) -> ImageSet:
        """``limit`` images (all if None) chosen by `stratified`: every class in its share,
        the same images on every call, in the split's order. Quick trials on large sets."""
        if limit is not None and (isinstance(limit, bool) or limit < 1):
            raise ValueError(f"limit must be >= 1, got {limit}")
        if limit is None or limit >= len(self):
            return self
        index = stratified(self.labels, limit, seed)
        return replace(self, images=np.asarray(self.images[index]), labels=self.labels[index])

    def coverage(self) -> str:
        """ "" when the split holds every class, else one line saying which it lacks and what
        that means (ROC AUC needs two classes)."""
        present = np.unique(self.labels)
        if len(present) == self.num_classes:
            return ""
        where = f"the {self.split} split ({len(self)} images)"
        if len(present) == 1:
            return (
                f"{where} holds only class {self.classes[present[0]]!r}: ROC AUC is undefined "
                "(n/a) and accuracy says nothing about the other classes"
            )
        missing = [self.classes[c] for c in range(self.num_classes) if c not in present]
        return f"{where} lacks {len(missing)} classes ({', '.join(missing)})"


def stratified(labels: np.ndarray, limit: int, seed: int = SPLIT_SEED) -> np.ndarray:
    """Sorted indices of ``limit`` of ``labels``: one image of every class while ``limit``
    allows, the rest shared in proportion to what each class has left (largest remainders,
    ties to the lower class); within a class a seeded permutation, so the same arguments give
    the same images."""
    labels = np.asarray(labels)
    if limit >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    base = np.ones_like(counts) if limit >= len(classes) else np.zeros_like(counts)
    share = (limit - base.sum()) * (counts - base) / (counts - base).sum()
    quota = base + np.floor(share).astype(int)
    order = np.argsort(-(share - np.floor(share)), kind="stable")
    quota[order[: limit - quota.sum()]] += 1
    rng = np.random.default_rng(seed)
    chosen = [
        rng.permutation(np.flatnonzero(labels == c))[:q]
        for c, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(x / 255 - mean) / std``; stored in checkpoints and bundles."""

    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalization:
        return cls(tuple(map(float, data["mean"])), tuple(map(float, data["std"])))


DEFAULT_NORMALIZATION = Normalization()  # [0, 1] then mean 0.5 / std 0.5, as MedMNIST's examples


def to_tensor(images: np.ndarray, norm: Normalization = DEFAULT_NORMALIZATION) -> Tensor:
    """Model inputs from RGB uint8 images: (N, S, S, 3) uint8 -> (N, 3, S, S) float32."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise TypeError(f"images must be a uint8 numpy array, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must have shape (N, S, S, 3), got {images.shape}")
    return normalize(torch.from_numpy(np.ascontiguousarray(images)), norm)


def normalize(images: Tensor, norm: Normalization = DEFAULT_NORMALIZATION) -> Tensor:
    """`to_tensor` on a uint8 tensor (N, S, S, 3), on its own device (the training loader
    moves uint8 batches to the GPU and normalises there): -> (N, 3, S, S) float32."""
    # one float tensor, then in place: a batch of 128 at 224 is 77 MB, not five of them
    x = images.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
    mean = torch.tensor(norm.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(norm.std, device=x.device).view(1, 3, 1, 1)
    return x.div_(255.0).sub_(mean).div_(std)  # (N, 3, S, S)


def resolve_dataset(name: str) -> str:
    """Canonical data set name: 'pneumonia' and 'PneumoniaMNIST' both give 'pneumoniamnist'."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key in DATASETS:
        return key
    if f"{key}mnist" in MEDMNIST:
        return f"{key}mnist"
    close = difflib.get_close_matches(key, DATASETS, n=2)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise ValueError(
        f"dataset: unknown data set {name!r}{hint} (known: {', '.join(DATASETS)}, or an image "
        "folder's path)"
    )


def dataset_source(name: str, root: str | None) -> tuple[str, str | None]:
    """(data set, root) from the --dataset and --data-root flags: a --dataset that names an
    existing folder (and no known data set) is that image folder, ``folder`` with it as
    the root; anything else is `resolve_dataset`'s."""
    path = Path(name).expanduser()
    if name.strip().lower() not in (*DATASETS, *ALIASES) and path.is_dir():
        if root is not None and Path(root).expanduser().resolve() != path.resolve():
            raise ValueError(
                f"dataset: {name} is a folder and --data-root says {root}: give the folder once"
            )
        return FOLDER, str(path.resolve())
    return resolve_dataset(name), root


def medmnist_path(flag: str, size: int, root: str | os.PathLike[str] | None = None) -> Path:
    """Where medmnist keeps a data set: ``{root}/{flag}.npz`` (28) or ``{flag}_{size}.npz``."""
    name = f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"
    return _medmnist_root(root) / name


def load_split(
    dataset: str,
    split: str,
    size: int = 28,
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    skip_unreadable: bool = False,
) -> ImageSet:
    """Load one split of a data set as RGB uint8 images of ``size`` x ``size``.

    ``root`` is the MedMNIST folder (default ``~/.medmnist``) or, for an image folder, the
    folder itself; ``download`` fetches a missing MedMNIST file; ``skip_unreadable`` leaves
    out an image folder's unreadable files (named in `ImageSet.skipped`) instead of failing.
    Raises `DataError` for a missing or malformed file, ValueError for a bad name, split or
    size.
    """
    name = resolve_dataset(dataset)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size}")
    if name in MEDMNIST:
        return _load_medmnist(name, split, size, root, download)
    if name in IMAGE_FOLDERS:
        if root is None:
            raise DataError(
                f"{name} is an image folder (one sub-folder per class): give its path with "
                "--data-root (or as --dataset PATH)"
            )
        return _load_folder(name, Path(root).expanduser(), split, size, skip_unreadable)
    return _load_digits(split, size)


# --- MedMNIST -----------------------------------------------------------------------------


def _info(flag: str) -> dict[str, Any]:
    from medmnist.info import INFO

    return INFO[flag]


def _medmnist_root(root: str | os.PathLike[str] | None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    return Path.home() / ".medmnist"  # medmnist's DEFAULT_ROOT


def _load_medmnist(
    flag: str, split: str, size: int, root: str | os.PathLike[str] | None, download: bool
) -> ImageSet:
    info = _info(flag)
    path = medmnist_path(flag, size, root)
    if not path.is_file():
        if not download:
            raise DataError(
                f"{path} not found: run again with --download, or fetch "
                f"{info[_url_key(size)]} into {path.parent}"
            )
        download_medmnist(flag, size, root)
    images_key, labels_key = f"{split}_images", f"{split}_labels"
    images, labels = _read_npz(path, images_key, labels_key)
    classes = tuple(info["label"][str(i)] for i in range(len(info["label"])))
    where = f"{path}: {images_key}"
    return ImageSet(
        flag,
        split,
        _as_rgb(images, size, where),
        _as_labels(labels, len(images), len(classes), f"{path}: {labels_key}"),
        info["task"],
        classes,
        fingerprint=f"medmnist:{path.name}:md5:{info['MD5' if size == 28 else f'MD5_{size}']}",
    )


def _url_key(size: int) -> str:
    return "url" if size == 28 else f"url_{size}"


# --- memory-mapped images -----------------------------------------------------------------
#
# A split's images are never read into memory whole (PathMNIST's train split at 224 is
# 13.5 GB). An npz member stored uncompressed is memory-mapped where it lies in the zip; a
# compressed one is decompressed once, streaming, into
# ``{root}/.qvit-hw-cache/{stem}-{md5}/{split}_images.npy`` and opened with
# ``np.load(mmap_mode="r")``. The folder is named by the npz's MD5, so a changed file gets
# a new cache (and the old one is removed). The MD5 is recomputed only when the file's size
# or modification time changes (``{name}.md5.json`` remembers them). `release_pages` drops
# the pages a reader has touched from its resident set (the page cache keeps them).

CACHE_DIR = ".qvit-hw-cache"
_ZIP_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zipfile's structFileHeader (30 bytes)


def _read_npz(path: Path, images_key: str, labels_key: str) -> tuple[np.ndarray, np.ndarray]:
    """(images memory-mapped, labels in memory) of one split of a medmnist npz."""
    try:
        with zipfile.ZipFile(path) as zf:
            files = [n.removesuffix(".npy") for n in zf.namelist()]
            missing = [k for k in (images_key, labels_key) if k not in files]
            if missing:
                raise DataError(f"{path} has no array {missing[0]!r} (it holds {files})")
            with zf.open(f"{labels_key}.npy") as f:
                labels = np.lib.format.read_array(f, allow_pickle=False)
            info = zf.getinfo(f"{images_key}.npy")
            if info.compress_type == zipfile.ZIP_STORED:
                return _map_member(path, info), labels
            return _cached_member(path, zf, info), labels
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path} is not a readable npz file ({exc})") from exc


def _npy_header(f: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    fmt = np.lib.format
    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran, dtype = read(f)
    return tuple(shape), bool(fortran), dtype


def _map_member(path: Path, info: zipfile.ZipInfo) -> np.ndarray:
    """An uncompressed npz member, memory-mapped in place."""
    with path.open("rb") as f:
        f.seek(info.header_offset)
        header = _ZIP_LOCAL_HEADER.unpack(f.read(_ZIP_LOCAL_HEADER.size))
        f.seek(info.header_offset + _ZIP_LOCAL_HEADER.size + header[10] + header[11])
        shape, fortran, dtype = _npy_header(f)
        offset = f.tell()
    if dtype.hasobject:
        raise ValueError(f"{info.filename} holds Python objects")
    return np.memmap(path, dtype, "r", offset, shape, order="F" if fortran else "C")


def _cached_member(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """A compressed npz member, decompressed once to a raw .npy and memory-mapped."""
    cache_root = path.parent / CACHE_DIR
    try:
        cache_root.mkdir(exist_ok=True)
        md5 = source_md5(path, cache_root)
        folder = cache_root / f"{path.stem}-{md5}"
        target = folder / info.filename
        if not target.is_file():
            with _cache_lock(cache_root):
                if not target.is_file():  # another process may have built it meanwhile
                    for old in cache_root.glob(f"{path.stem}-*"):
                        if old != folder and old.is_dir():
                            shutil.rmtree(old, ignore_errors=True)
                    folder.mkdir(exist_ok=True)
                    _decompress(zf, info, target)
    except PermissionError:  # a read-only data folder: read this split into memory
        with zf.open(info) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    return np.load(target, mmap_mode="r")


def _decompress(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    """Stream one member to ``target`` (a .npy) in 16 MB chunks; atomic."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with zf.open(info) as src, tmp.open("wb") as out:
            shape, fortran, dtype = _npy_header(src)
            if dtype.hasobject:
                raise ValueError(f"{info.filename} holds Python objects")
            header = {
                "descr": np.lib.format.dtype_to_descr(dtype),
                "fortran_order": fortran,
                "shape": shape,
            }
            np.lib.format.write_array_header_2_0(out, header)
            expected = int(np.prod(shape)) * dtype.itemsize
            copied = 0
            while chunk := src.read(16 << 20):
                out.write(chunk)
                copied += len(chunk)
        if copied != expected:
            raise ValueError(f"{info.filename} holds {copied} bytes, its header says {expected}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _cache_lock(folder: Path) -> Iterator[None]:
    import fcntl

    with (folder / ".lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def source_md5(path: Path, cache_root: Path) -> str:
    """The MD5 of ``path``, recomputed only when its size or modification time changed."""
    stat = path.stat()
    memo = cache_root / f"{path.name}.md5.json"
    seen = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        saved = json.loads(memo.read_text())
        if {k: saved[k] for k in seen} == seen:
            return str(saved["md5"])
    digest = hashlib.md5()
    with path.open("rb") as f:
        while chunk := f.read(16 << 20):
            digest.update(chunk)
    md5 = digest.hexdigest()
    tmp = memo.with_name(f".{memo.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**seen, "md5": md5}))
    os.replace(tmp, memo)
    return md5


def release_pages(array: np.ndarray) -> None:
    """Drop the pages of ``array``'s memory map from this process's resident set (Linux
    ``madvise(MADV_DONTNEED)``; the data stay in the page cache and in the file). Nothing
    for arrays in memory."""
    base: Any = array
    while base is not None and getattr(base, "_mmap", None) is None:
        base = getattr(base, "base", None)
    mm = getattr(base, "_mmap", None)
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if mm is not None and advice is not None:
        with contextlib.suppress(OSError, ValueError):
            mm.madvise(advice)


def download_medmnist(flag: str, size: int, root: str | os.PathLike[str] | None = None) -> Path:
    """Download ``{flag}[_{size}].npz`` from medmnist's Zenodo record and check its MD5.

    (medmnist's own ``download()`` needs torchvision, which this environment cannot import.)
    The file appears only once complete and verified.
    """
    from rich.console import Console
    from rich.progress import wrap_file

    info = _info(flag)
    url = info[_url_key(size)]
    md5 = info["MD5" if size == 28 else f"MD5_{size}"]
    path = medmnist_path(flag, size, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    md5sum = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, part.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            console = Console(stderr=True)
            with wrap_file(response, total, description=path.name, console=console) as src:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
                    md5sum.update(chunk)
        digest = md5sum.hexdigest()
        if digest != md5:
            raise DataError(f"{url} arrived with MD5 {digest}, expected {md5}; try again")
        os.replace(part, path)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"could not download {url} ({reason}); fetch it elsewhere and put it at {path}"
        ) from exc
    finally:
        part.unlink(missing_ok=True)
    return path


def _as_rgb(images: np.ndarray, size: int, where: str) -> np.ndarray:
    """(N, S, S) or (N, S, S, 3) uint8 -> (N, S, S, 3); grayscale is broadcast, not copied."""
    if images.dtype != np.uint8:
        raise DataError(f"{where} has dtype {images.dtype}, expected uint8")
    if images.ndim == 3 and images.shape[1:] == (size, size):
        return np.broadcast_to(images[..., None], (*images.shape, 3))
    if images.ndim == 4 and images.shape[1:] == (size, size, 3):
        return images
    raise DataError(
        f"{where} has shape {images.shape}, expected (N, {size}, {size}) or "
        f"(N, {size}, {size}, 3) for size {size}"
    )


def _as_labels(labels: np.ndarray, n: int, n_classes: int, where: str) -> np.ndarray:
    """(N, 1) or (N,) integer labels -> (N,) int64, checked against the class count."""
    flat = labels[:, 0] if labels.ndim == 2 and labels.shape[1] == 1 else labels
    if flat.ndim != 1 or len(flat) != n or not np.issubdtype(flat.dtype, np.integer):
        raise DataError(
            f"{where} has shape {labels.shape} and dtype {labels.dtype}, expected ({n}, 1) "
            "integers (one label per image)"
        )
    labels = flat
    if n and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"{where} holds labels outside 0..{n_classes - 1}")
    return labels.astype(np.int64)


# --- image folders -----------------------------------------------------------------------


def _load_folder(
    name: str, root: Path, split: str, size: int, skip_unreadable: bool = False
) -> ImageSet:
    if not root.is_dir():
        raise DataError(f"{root} is not a folder (expected one sub-folder per class)")
    has_splits = (root / "train").is_dir()
    classes = _class_folders(root / "train" if has_splits else root)
    if has_splits:
        base = root / split
        if not base.is_dir():
            raise DataError(f"{root} has a train/ folder but no {split}/ folder")
        unknown = sorted(set(_class_folders(base)) - set(classes))
        if unknown:
            raise DataError(f"{base} has classes {unknown} that {root / 'train'} lacks")
        files = [(f, c) for c, cls in enumerate(classes) for f in _images_in(base / cls)]
    else:
        every = [(f, c) for c, cls in enumerate(classes) for f in _images_in(root / cls)]
        labels = np.array([c for _, c in every], dtype=np.int64)
        files = [every[i] for i in split_indices(labels, split)] if every else []
    if not files:
        raise DataError(f"{root}: the {split} split holds no images")
    pixels, bad = [], []
    for f, c in files:
        try:
            pixels.append((read_image_file(f, size), c))
        except DataError as exc:
            bad.append((f, exc))
    if bad and not skip_unreadable:
        # the whole folder, so that one error names every file to fix
        checked = {f for f, _ in files}
        rest = [f for f in _every_image(root) if f not in checked]
        bad += [(f, exc) for f in rest if (exc := _unreadable(f)) is not None]
        raise DataError(_unreadable_message(root, bad))
    if not pixels:
        raise DataError(f"{root}: every image of the {split} split is unreadable")
    images = np.stack([p for p, _ in pixels])  # (N, S, S, 3)
    labels = np.array([c for _, c in pixels], dtype=np.int64)
    task = "binary-class" if len(classes) == 2 else "multi-class"
    return ImageSet(
        name, split, images, labels, task, classes,
        fingerprint=folder_fingerprint(root), root=str(root.resolve()),
        skipped=tuple(str(f) for f, _ in bad),
    )  # fmt: skip


def _unreadable_message(root: Path, bad: list[tuple[Path, DataError]]) -> str:
    bad = sorted(bad, key=lambda b: b[0])
    named = "; ".join(
        f"{f.relative_to(root)} ({_reason(exc, f)})" for f, exc in bad[:UNREADABLE_NAMED]
    )
    more = f"; and {len(bad) - UNREADABLE_NAMED} more" if len(bad) > UNREADABLE_NAMED else ""
    return (
        f"{root}: {len(bad)} unreadable images: {named}{more}; fix or remove them, or pass "
        "--skip-unreadable to leave them out"
    )


def _reason(exc: DataError, path: Path) -> str:
    """Why a file is unreadable, without its path (the message names it already)."""
    text = one_line(exc.__cause__ or exc).replace(f"'{path}'", "").replace(str(path), "")
    return text.strip(" :") or "unreadable"


def _unreadable(path: Path) -> DataError | None:
    try:
        read_image_file(path, SIZES[0])
    except DataError as exc:
        return exc
    return None


def _every_image(root: Path) -> list[Path]:
    """Every image file of an image folder, sorted (class folders, split folders too)."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def folder_fingerprint(root: Path) -> str:
    """sha256 over every image file of a folder: its path inside the folder and its bytes.
    The same folder gives the same string wherever it lies; one changed, added, removed or
    moved image changes it."""
    digest = hashlib.sha256()
    for path in _every_image(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return f"folder:sha256:{digest.hexdigest()}"


def _class_folders(base: Path) -> tuple[str, ...]:
    classes = tuple(sorted(d.name for d in base.iterdir() if d.is_dir() and d.name[0] != "."))
    if len(classes) < 2:
        raise DataError(f"{base} needs at least two class sub-folders, found {list(classes)}")
    return classes


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)


GRAY_HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # PIL modes scaled by range


def read_image_file(path: str | os.PathLike[str], size: int | None = None) -> np.ndarray:
    """One image file as RGB pixels (H, W, 3): a picture (.png, .jpg, ..., .dcm) as uint8,
    or a .npy array as stored (a grayscale (H, W) array gets three equal channels).

    ``size`` resizes a picture to size x size (bilinear); None keeps it as it is. 16-bit,
    32-bit and float grayscale and DICOM are scaled to 0..255 first (see the module's
    docstring), and resized before rounding to 8 bits.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        array = np.load(path)
        return np.repeat(array[..., None], 3, axis=-1) if array.ndim == 2 else array
    if path.suffix.lower() == ".dcm":
        return _gray_to_rgb(_read_dicom(path), size)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.mode in GRAY_HIGH_DEPTH:
                return _gray_to_rgb(_unit_range(np.asarray(img), img.mode), size)
            rgb = img.convert("RGB")
            if size is not None:
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)  # (S, S, 3)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path} is not a readable image ({one_line(exc)})") from exc


def _unit_range(array: np.ndarray, mode: str) -> np.ndarray:
    """A high-depth grayscale picture as float64 in [0, 1]: integers by 16 bits' full range
    (v / 65535, so an 8-bit image saved as 16 bits, v * 257, reads as itself), floats as
    they are when in [0, 1], else (and integers outside 0..65535) by their min..max."""
    x = np.asarray(array, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError("the image holds NaN or infinite pixels")
    low, high = (0.0, 1.0) if mode == "F" else (0.0, 65535.0)
    if x.min() < low or x.max() > high:
        low, high = float(x.min()), float(x.max())
    return (x - low) / (high - low) if high > low else np.zeros_like(x)


def _gray_to_rgb(unit: np.ndarray, size: int | None) -> np.ndarray:
    """A grayscale image in [0, 1] (H, W) -> uint8 RGB (S, S, 3), resized in float."""
    from PIL import Image

    gray = Image.fromarray((unit * 255.0).astype(np.float32), mode="F")
    if size is not None:
        gray = gray.resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.clip(np.rint(np.asarray(gray)), 0, 255).astype(np.uint8)
    return np.repeat(pixels[..., None], 3, axis=-1)


def _read_dicom(path: Path) -> np.ndarray:
    """A single-frame grayscale DICOM file as float64 in [0, 1]: stored values through the
    modality rescale (slope, intercept), then the file's first VOI window (DICOM PS3.3
    C.11.2.1.2.1, linear), else its own min..max; MONOCHROME1 inverted."""
    try:
        import pydicom
    except ImportError as exc:
        raise DataError(
            f"{path}: reading DICOM needs pydicom: pip install 'qvit-hw[dicom]'"
        ) from exc
    try:
        ds = pydicom.dcmread(path)
        x = np.asarray(ds.pixel_array, dtype=np.float64)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
        if frames != 1 or x.ndim != 2 or not photometric.startswith("MONOCHROME"):
            raise ValueError(
                f"{frames} frames of {photometric} {x.shape}: only single-frame grayscale "
                "DICOM is read"
            )
        x = x * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
        center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
        if center is not None and width is not None and width >= 1:
            unit = np.clip((x - (center - 0.5)) / max(width - 1, 1) + 0.5, 0.0, 1.0)
        else:
            low, high = float(x.min()), float(x.max())
            unit = (x - low) / (high - low) if high > low else np.zeros_like(x)
        return 1.0 - unit if photometric == "MONOCHROME1" else unit
    except DataError:
        raise
    except Exception as exc:  # pydicom raises many kinds for a broken or foreign file
        raise DataError(f"{path} is not a readable DICOM image ({one_line(exc)})") from exc


def _first(value: Any) -> float | None:
    """A DICOM value that may be multi-valued: its first number (None if absent)."""
    if value is None or value == "":
        return None
    if isinstance(value, str | bytes) or not hasattr(value, "__len__"):
        return float(value)
    return float(value[0]) if len(value) else None


# --- digits -------------------------------------------------------------------------------


def _load_digits(split: str, size: int) -> ImageSet:
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = digits.target.astype(np.int64)
    index = split_indices(labels, split)
    x = torch.from_numpy(digits.images[index]).float()[:, None] / 16.0  # (N, 1, 8, 8) in [0, 1]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    gray = (x.clamp(0, 1) * 255).round().to(torch.uint8)[:, 0].numpy()  # (N, S, S)
    classes = tuple(str(i) for i in range(10))
    return ImageSet(
        DIGITS, split, _as_rgb(gray, size, DIGITS), labels[index], "multi-class", classes,
        fingerprint="sklearn:load_digits",
    )  # fmt: skip


def split_indices(
    labels: np.ndarray, split: str, fractions: Sequence[float] = SPLIT_FRACTIONS
) -> np.ndarray:
    """Indices of ``split`` in a fixed per-class 70/10/20 split (same answer on every call)."""
    rng = np.random.default_rng(SPLIT_SEED)
    bounds = np.cumsum(fractions)[:2]
    part = SPLITS.index(split)
    chosen = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        cuts = np.round(bounds * len(members)).astype(int)
        chosen.append(np.split(members, cuts)[part])
    return np.sort(np.concatenate(chosen))


# --- listing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    source: str
    task: str
    classes: int | None  # None: one per sub-folder
    samples: str  # "train/val/test" counts, or where the images come from


def dataset_infos() -> list[DatasetInfo]:
    """One row per known data set, for ``qvit-hw datasets``."""
    rows = []
    for flag in MEDMNIST:
        info = _info(flag)
        n = info["n_samples"]
        rows.append(
            DatasetInfo(
                flag,
                "medmnist",
                info["task"],
                len(info["label"]),
                f"{n['train']}/{n['val']}/{n['test']}",
            )
        )
    rows.append(
        DatasetInfo(
            FOLDER, "image folder", "from its folders", None, "your folder (--dataset PATH)"
        )
    )
    rows.append(DatasetInfo("oasis", "image folder", "multi-class", 4, "OASIS (--data-root)"))
    from sklearn.datasets import load_digits

    target = load_digits().target
    counts = "/".join(str(len(split_indices(target, s))) for s in SPLITS)
    rows.append(DatasetInfo(DIGITS, "scikit-learn", "multi-class", 10, f"{counts} (offline)"))
    return rows
