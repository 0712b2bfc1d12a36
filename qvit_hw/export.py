"""Export bundles: trained weights as artefacts that hardware toolchains accept.

A bundle is a directory::

    weights.safetensors    the model's state dict
    manifest.json          format + version, model config, every QNN (name, layer, head,
                           role, spec and pair list, its QASM file), data set,
                           normalisation, metrics, package versions, sha256 of every file
    qasm/<qnn>.qasm        OpenQASM 3 per QNN: token inputs ``input float[64] x_i``,
                           trained weights bound
    qasm2/<qnn>/tNNN.qasm  (on request) fully bound OpenQASM 2 for the first N tokens of
    qasm2/tokens.json      one image, with those tokens' angles and exact <Z> per QNN

QNNs are named ``block{b}.head{h}.{q|k|v}`` (`qnns`). ``load_bundle(path)`` returns
``Bundle(model, manifest)`` (a named tuple: ``model, manifest = load_bundle(path)`` works
too) after checking the format version, that the manifest itself is unchanged
(``manifest_sha256``: the sha256 of its canonical JSON without that field, see
`manifest_digest`), that its fields have the types and values export writes, that every
listed file is a plain path inside the bundle, present and unchanged (sha256), and that
the QNN list is the model's. Anything else is one `BundleError` line.

A bundle is written to a temporary directory and renamed into place when complete, so a
crash never leaves a bundle that looks whole. Its files get the user's umask (as any file
the user creates). ``overwrite`` replaces only a folder that holds a bundle and what
`qvit-hw transpile` adds to one (``transpile_<target>.json``, ``quil/``,
``compiled/<target>/``), never a folder of other files.

Format versions: 2 added ``manifest_sha256``; a version 1 bundle is refused with a
request to export it again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .circuit import QNNSpec, expectations, qasm2, qasm3
from .errors import BundleError, DataError, one_line
from .files import check_out_dir, dumps_json, to_json
from .model import ModelConfig, VisionTransformer, count_parameters

FORMAT, FORMAT_VERSION = "qvit-hw/bundle", 2
WEIGHTS, MANIFEST, QASM_DIR, TOKENS_DIR = "weights.safetensors", "manifest.json", "qasm", "qasm2"
DIGEST = "manifest_sha256"
QNN_NAME = re.compile(r"block\d+\.head\d+\.[qkv]")
# every file a bundle may list: plain names in the bundle's own folders, nothing else
BUNDLE_FILE = re.compile(
    r"weights\.safetensors"
    r"|qasm/block\d+\.head\d+\.[qkv]\.qasm"
    r"|qasm2/tokens\.json"
    r"|qasm2/block\d+\.head\d+\.[qkv]/t\d{3,}\.qasm"
)
# what `overwrite` may delete: a bundle, and what `qvit-hw transpile` writes into one
REPLACEABLE = re.compile(
    rf"{re.escape(MANIFEST)}|{BUNDLE_FILE.pattern}|transpile_[A-Za-z0-9_.-]+\.json"
    r"|quil/[A-Za-z0-9_.-]+\.quil"
    r"|compiled/[A-Za-z0-9_.-]+/spec\d+\.(qpy|qasm|json)"
)
REPLACEABLE_DIRS = {QASM_DIR, TOKENS_DIR, "quil", "compiled"}
PACKAGES = ("qvit-hw", "torch", "qiskit", "qiskit-ibm-runtime", "pyquil", "pennylane", "numpy")


class Bundle(NamedTuple):
    """A loaded bundle: the rebuilt model (eval mode) and its manifest."""

    model: VisionTransformer
    manifest: dict[str, Any]


@dataclass(frozen=True)
class QNN:
    """One QNN of a model: where it sits and its weights (P, 2)."""

    name: str  # "block0.head1.k"
    layer: str  # module path of its QuantumProjection, e.g. "block.attn.qkv"
    block: int
    head: int
    role: str  # "q", "k" or "v"
    index: int  # row of the layer's weight tensor
    spec: QNNSpec
    weights: Tensor  # (P, 2), detached

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "layer": self.layer,
            "block": self.block,
            "head": self.head,
            "role": self.role,
            "index": self.index,
            "spec": self.spec.to_dict(),
            "qasm": f"{QASM_DIR}/{self.name}.qasm",
        }


def qnns(model: VisionTransformer) -> list[QNN]:
    """Every QNN of ``model`` in layer order (empty for a ViT)."""
    paths = {id(m): name for name, m in model.named_modules()}
    out = []
    for b, layer in enumerate(model.quantum_layers()):
        for index, local in enumerate(layer.names):  # "head{h}.{role}"
            head, role = local.split(".")
            out.append(
                QNN(
                    name=f"block{b}.{local}",
                    layer=paths[id(layer)],
                    block=b,
                    head=int(head.removeprefix("head")),
                    role=role,
                    index=index,
                    spec=layer.spec,
                    weights=layer.weight[index].detach().clone(),
                )
            )
    return out


def token_angles(model: VisionTransformer, images: Tensor) -> Tensor:
    """The LayerNorm'ed tokens entering the QNN layer: (B, C, S, S) -> (B, T, n)."""
    with torch.no_grad():
        return model.block.norm1(model.tokens(images))


def export_bundle(
    model: VisionTransformer,
    out: str | os.PathLike[str],
    *,
    info: Mapping[str, Any] | None = None,
    per_token: int = 0,
    image: Tensor | None = None,
    image_label: str = "",
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as a bundle directory ``out``; returns its path.

    ``info`` is what `train.load_checkpoint` returns beside the model (data set,
    normalisation, metrics, ...). ``per_token`` > 0 also writes bound OpenQASM 2 files for
    the first ``per_token`` tokens of ``image`` (1, C, S, S), a normalised model input;
    ``image_label`` says where it came from.
    """
    if not isinstance(model, VisionTransformer):
        raise TypeError(f"model must be a VisionTransformer, got {type(model).__name__}")
    out = Path(out)
    if per_token < 0:
        raise ValueError(f"per_token must be >= 0, got {per_token}")
    if per_token and image is None:
        raise ValueError("per_token needs an image")
    if per_token > model.config.n_tokens:
        raise ValueError(
            f"per_token: the model has {model.config.n_tokens} tokens, got {per_token}"
        )
    check_out_dir(out)  # ValueError naming --out: a file, a path under a file, read-only
    if out.exists() and any(out.iterdir()):
        foreign = _not_a_bundle(out)
        if foreign:
            raise BundleError(
                f"--out: {out} exists and is not a bundle ({foreign}); choose another --out "
                "(--overwrite replaces only a bundle from `qvit-hw export`)"
            )
        if not overwrite:
            raise BundleError(f"{out} already exists; choose another --out or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _unused(out, "partial")
    tmp.mkdir()  # with the user's umask, as every file below
    try:
        from safetensors.torch import save

        # bytes, not save_file: save_file creates the file 0600 whatever the umask
        (tmp / WEIGHTS).write_bytes(save(_state(model), metadata={"format": FORMAT}))
        entries = qnns(model)
        (tmp / QASM_DIR).mkdir()
        for q in entries:
            (tmp / QASM_DIR / f"{q.name}.qasm").write_text(qasm3(q.spec, q.weights))
        tokens = None
        if per_token:
            tokens = _write_tokens(model, entries, image, per_token, tmp, image_label)  # type: ignore[arg-type]
        manifest = _manifest(model, entries, dict(info or {}), tokens)
        manifest["files"] = {
            p.relative_to(tmp).as_posix(): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        manifest = to_json(manifest)  # what json.loads gives back, so the digest matches
        manifest[DIGEST] = manifest_digest(manifest)
        (tmp / MANIFEST).write_text(dumps_json(manifest))
        _replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Rebuild the model of a bundle; BundleError (one line) if incomplete, edited, foreign
    or malformed."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    manifest = read_manifest(path)
    files = _check_fields(manifest, path)
    root = path.resolve()
    weights = b""
    for rel, digest in files.items():
        file = path / rel
        if not file.is_file():
            raise BundleError(f"bundle {path} is missing {rel}")
        if not file.resolve().is_relative_to(root):
            raise BundleError(f"bundle {path}: {rel} is a link to a file outside the bundle")
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise BundleError(f"bundle {path}: cannot read {rel} ({one_line(exc)})") from exc
        if hashlib.sha256(data).hexdigest() != digest:
            raise BundleError(f"{rel} was modified after export (sha256 mismatch)")
        if rel == WEIGHTS:
            weights = data  # loaded from the bytes that were checked
    try:
        config = ModelConfig.from_dict(manifest["model"]["config"])
        state = load(weights)
        with torch.device("meta"):  # shapes first, without memory: a config may be huge
            wanted = {k: v.shape for k, v in VisionTransformer(config).state_dict().items()}
        for key in sorted(wanted.keys() | state.keys()):
            if key not in wanted or key not in state or wanted[key] != state[key].shape:
                has = tuple(state[key].shape) if key in state else "no tensor"
                raise ValueError(
                    f"{key}: {WEIGHTS} has {has}, the config needs "
                    f"{tuple(wanted[key]) if key in wanted else 'none'}"
                )
        model = VisionTransformer(config)
        model.load_state_dict(state)
    except (
        KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError, OverflowError,
        SafetensorError,
    ) as exc:  # fmt: skip
        raise BundleError(
            f"bundle {path}: weights do not fit its model config ({one_line(exc)})"
        ) from exc
    entries = qnns(model)
    if manifest["qnns"] != [q.to_dict() for q in entries]:
        raise BundleError(f"bundle {path}: manifest QNN specs disagree with the model config")
    expected = _expected_files(entries, manifest.get("per_token"))
    if set(files) != expected:
        odd = sorted(set(files) ^ expected)[0]
        what = "lists" if odd in files else "does not list"
        raise BundleError(f"bundle {path}: its manifest {what} {odd}, unlike what export writes")
    return Bundle(model.eval(), manifest)


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a bundle directory, after checking its format, its version and that
    it was not edited since export (its ``manifest_sha256``)."""
    path = Path(path)
    if path.is_file() and path.suffix == ".pt":
        raise BundleError(
            f"{path} is a training checkpoint, not a bundle: export it first "
            f"(qvit-hw export {path} --out BUNDLE) and give the bundle's folder"
        )
    if path.is_file():
        raise BundleError(f"{path} is a file, not a bundle (a folder from `qvit-hw export`)")
    if not path.is_dir():
        raise BundleError(f"bundle {path} not found (expected a directory from `qvit-hw export`)")
    if not (path / MANIFEST).is_file():
        raise BundleError(f"bundle {path} is missing {MANIFEST}")
    try:
        manifest = json.loads((path / MANIFEST).read_bytes(), parse_constant=_no_constant)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(f"{path / MANIFEST} is not valid JSON ({one_line(exc)})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path} is not a qvit-hw bundle (no format {FORMAT!r} in {MANIFEST})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise BundleError(
            f"bundle {path} has format version {version!r}; this qvit-hw reads version "
            f"{FORMAT_VERSION}: export it again with this version (`qvit-hw export`)"
        )
    digest = manifest.get(DIGEST)
    if not isinstance(digest, str):
        raise BundleError(
            f"bundle {path}: {MANIFEST} has no {DIGEST}; export it again (`qvit-hw export`)"
        )
    try:
        actual = manifest_digest(manifest)
    except (TypeError, ValueError) as exc:  # only what json.loads gives can be hashed
        raise BundleError(f"{path / MANIFEST} is not valid JSON ({one_line(exc)})") from exc
    if actual != digest:
        raise BundleError(
            f"{MANIFEST} was modified after export ({DIGEST} mismatch): export the bundle "
            "again instead of editing it"
        )
    return manifest


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 of a manifest's canonical JSON (sorted keys, no spaces), without
    ``manifest_sha256`` itself: the digest export stores and `read_manifest` checks."""
    body = {k: v for k, v in manifest.items() if k != DIGEST}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def read_image(
    spec: str, model: VisionTransformer, info: Mapping[str, Any], data_root: str | None = None
) -> tuple[np.ndarray, str]:
    """One RGB uint8 image (S, S, 3) from a file (.npy or a picture) or a test-split index.

    An index picks an image of the checkpoint's data set (test split); a file must already
    be S x S, the model's input size.
    """
    from .data import load_split, read_image_file

    size = model.config.image_size
    path = Path(spec)
    if path.is_file():
        array = read_image_file(path)  # as stored: a file must already be S x S
        if array.dtype != np.uint8 or array.shape != (size, size, 3):
            raise DataError(
                f"{path} holds a {array.dtype} image of shape {array.shape}; the model takes "
                f"uint8 ({size}, {size}, 3) (or ({size}, {size}) grayscale)"
            )
        return array, str(path)
    try:
        index = int(spec)
    except ValueError:
        raise DataError(f"--image {spec!r} is neither a file nor an image index") from None
    dataset = (info.get("dataset") or {}).get("name")
    if not dataset:
        raise DataError("the checkpoint names no data set; give --image as a file")
    data = load_split(dataset, "test", size, data_root)
    if not 0 <= index < len(data):
        raise DataError(f"--image {index}: the {dataset} test split has {len(data)} images")
    return data.images[index], f"{dataset} test image {index}"


# --- internals ----------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_fields(manifest: dict[str, Any], path: Path) -> dict[str, str]:
    """The fields `load_bundle` and `qvit-hw run` read, checked for the types and values
    export writes; returns ``files``. (The digest already refuses an edited manifest: this
    catches a hand-made or foreign one.)"""

    def bad(what: str) -> BundleError:
        return BundleError(f"bundle {path}: {MANIFEST} {what}; export the bundle again")

    for key, kind in (("files", dict), ("qnns", list), ("model", dict)):
        if key not in manifest:
            raise bad(f"has no {key!r}")
        if not isinstance(manifest[key], kind):
            raise bad(f"has {key!r} of type {type(manifest[key]).__name__}, not {kind.__name__}")
    files = manifest["files"]
    if WEIGHTS not in files:
        raise bad(f"does not list {WEIGHTS}")
    for rel, digest in files.items():
        if not BUNDLE_FILE.fullmatch(rel):
            raise bad(
                f"lists {rel!r}, which is not a file of a bundle (plain names in the bundle, "
                f"{QASM_DIR}/ or {TOKENS_DIR}/ only)"
            )
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise bad(f"has no sha256 for {rel}")
    for q in manifest["qnns"]:
        name = q.get("name") if isinstance(q, dict) else None
        if not isinstance(name, str) or not QNN_NAME.fullmatch(name):
            raise bad(f"has a QNN named {name!r} (expected block<b>.head<h>.<q|k|v>)")
    if not isinstance(manifest["model"].get("config"), dict):
        raise bad("has no model config")
    for key in ("dataset", "normalization", "per_token"):
        if not isinstance(manifest.get(key), dict | None):
            raise bad(f"has {key!r} of type {type(manifest.get(key)).__name__}, not an object")
    name = (manifest.get("dataset") or {}).get("name")
    if not isinstance(name, str | None):
        raise bad(f"has a data set name {name!r}")
    if manifest.get("normalization") is not None:
        _check_normalization(manifest["normalization"], bad)
    tokens = manifest.get("per_token")
    if tokens is not None and (
        type(tokens.get("tokens")) is not int
        or tokens["tokens"] < 1
        or tokens.get("dir") != TOKENS_DIR
        or not isinstance(tokens.get("image"), str)
    ):
        raise bad("has a malformed 'per_token'")
    return files


def _check_normalization(norm: dict[str, Any], bad: Any) -> None:
    from .data import Normalization

    try:
        n = Normalization.from_dict(norm)
        ok = len(n.mean) == len(n.std) == 3 and all(math.isfinite(v) for v in (*n.mean, *n.std))
        ok = ok and all(v > 0 for v in n.std)
    except (KeyError, TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise bad("has a malformed 'normalization' (expected 3 means and 3 positive stds)")


def _expected_files(entries: Sequence[QNN], tokens: dict[str, Any] | None) -> set[str]:
    """The files export writes for these QNNs (and per-token files)."""
    out = {WEIGHTS} | {f"{QASM_DIR}/{q.name}.qasm" for q in entries}
    if tokens is not None:
        out.add(f"{TOKENS_DIR}/tokens.json")
        out |= {
            f"{TOKENS_DIR}/{q.name}/t{t:03d}.qasm" for q in entries for t in range(tokens["tokens"])
        }
    return out


def _not_a_bundle(out: Path) -> str:
    """Why the folder ``out`` is not one `overwrite` may replace ("" if it is a bundle)."""
    try:
        manifest = json.loads((out / MANIFEST).read_bytes())
    except (OSError, ValueError, RecursionError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        if (out / MANIFEST).exists():
            return f"its {MANIFEST} is not a qvit-hw bundle's"
        return f"it has no {MANIFEST}"
    for folder, dirs, names in os.walk(out):  # links are not followed
        base = Path(folder)
        for name in sorted(dirs + names):
            p = base / name
            rel = p.relative_to(out).as_posix()
            if p.is_symlink():
                return f"it holds the link {rel}"
            if name in dirs:
                if rel not in REPLACEABLE_DIRS and not (
                    (base == out / TOKENS_DIR and QNN_NAME.fullmatch(name))
                    or base == out / "compiled"  # compiled/<target>/ of transpile
                ):
                    return f"it holds the folder {rel}"
            elif not REPLACEABLE.fullmatch(rel):
                return f"it holds {rel}"
    return ""


def _unused(out: Path, what: str) -> Path:
    """A new hidden name beside ``out`` (never an existing file or folder of the user's)."""
    while True:
        path = out.with_name(f".{out.name}.{what}-{os.getpid()}-{secrets.token_hex(4)}")
        if not path.exists():
            return path


def _state(model: VisionTransformer) -> dict[str, Tensor]:
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


def _write_tokens(
    model: VisionTransformer,
    entries: Sequence[QNN],
    image: Tensor,
    count: int,
    root: Path,
    label: str,
) -> dict[str, Any]:
    """Bound OpenQASM 2 for the first ``count`` tokens of ``image``, and tokens.json."""
    cfg = model.config
    if tuple(image.shape) != (1, cfg.in_channels, cfg.image_size, cfg.image_size):
        raise ValueError(
            f"image: expected shape (1, {cfg.in_channels}, {cfg.image_size}, {cfg.image_size}),"
            f" got {tuple(image.shape)}"
        )
    angles = token_angles(model, image)[0, :count].double()  # (N, n)
    expected = {}
    for q in entries:
        folder = root / TOKENS_DIR / q.name
        folder.mkdir(parents=True)
        for t in range(count):
            (folder / f"t{t:03d}.qasm").write_text(qasm2(q.spec, angles[t], q.weights))
        expected[q.name] = expectations(q.spec, angles, q.weights.double()).tolist()  # (N, n)
    doc = {"image": label, "tokens": count, "angles": angles.tolist(), "expected_z": expected}
    (root / TOKENS_DIR / "tokens.json").write_text(json.dumps(doc, indent=2) + "\n")
    return {"image": label, "tokens": count, "dir": TOKENS_DIR}


def _manifest(
    model: VisionTransformer, entries: Sequence[QNN], info: dict[str, Any], tokens: Any
) -> dict[str, Any]:
    metrics = info.get("metrics") or {}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {
            "arch": "vision-transformer",
            "config": model.config.to_dict(),
            "parameters": count_parameters(model),
        },
        "qnns": [q.to_dict() for q in entries],
        "dataset": info.get("dataset"),
        "normalization": info.get("normalization"),
        "metrics": {"best": metrics.get("best"), "test": metrics.get("test")},
        "training": {k: info.get(k) for k in ("stage", "epoch", "run")},
        "per_token": tokens,
        "packages": _versions(),
    }


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _replace_dir(new: Path, out: Path) -> None:
    """Move the finished bundle into place; an old one is removed only afterwards."""
    old = None
    if out.exists():
        old = _unused(out, "old")
        os.replace(out, old)
    os.replace(new, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
