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
too) after checking the format version, that every listed file is present, and that no
file changed since export (sha256). A bundle is written to a temporary directory and
renamed into place when complete, so a crash never leaves a bundle that looks whole.
"""

from __future__ import annotations

import hashlib
import json
import os
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
from .errors import BundleError, DataError
from .files import dumps_json
from .model import ModelConfig, VisionTransformer, count_parameters

FORMAT, FORMAT_VERSION = "qvit-hw/bundle", 1
WEIGHTS, MANIFEST, QASM_DIR, TOKENS_DIR = "weights.safetensors", "manifest.json", "qasm", "qasm2"
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
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"{out} already exists; choose another --out or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        from safetensors.torch import save_file

        save_file(_state(model), tmp / WEIGHTS, metadata={"format": FORMAT})
        entries = qnns(model)
        (tmp / QASM_DIR).mkdir()
        for q in entries:
            (tmp / QASM_DIR / f"{q.name}.qasm").write_text(qasm3(q.spec, q.weights))
        tokens = None
        if per_token:
            tokens = _write_tokens(model, entries, image, per_token, tmp, image_label)  # type: ignore[arg-type]
        manifest = _manifest(model, entries, dict(info or {}), tokens)
        manifest["files"] = {
            str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        (tmp / MANIFEST).write_text(dumps_json(manifest))
        _replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Rebuild the model of a bundle; BundleError if incomplete, edited or foreign."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    manifest = read_manifest(path)
    for rel, digest in manifest["files"].items():
        if not (path / rel).is_file():
            raise BundleError(f"bundle {path} is missing {rel}")
        if _sha256(path / rel) != digest:
            raise BundleError(f"{rel} was modified after export (sha256 mismatch)")
    try:
        config = ModelConfig.from_dict(manifest["model"]["config"])
        model = VisionTransformer(config)
        model.load_state_dict(load_file(path / WEIGHTS))
    except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError) as exc:
        raise BundleError(f"bundle {path}: weights do not fit its model config ({exc})") from exc
    listed = [QNNSpec.from_dict(q["spec"]) for q in manifest["qnns"]]
    if any(spec != config.spec for spec in listed):
        raise BundleError(f"bundle {path}: manifest QNN specs disagree with the model config")
    return Bundle(model.eval(), manifest)


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a bundle directory, after checking its format and version."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"bundle {path} not found (expected a directory from `qvit-hw export`)")
    if not (path / MANIFEST).is_file():
        raise BundleError(f"bundle {path} is missing {MANIFEST}")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path / MANIFEST} is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path} is not a qvit-hw bundle (no format {FORMAT!r} in {MANIFEST})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"bundle {path} has format version {version}; this qvit-hw reads version "
            f"{FORMAT_VERSION}: export it again with this version"
        )
    return manifest


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
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(new, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
