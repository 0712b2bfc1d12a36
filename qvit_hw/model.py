"""QViT and its classical twin ViT (the paper's architecture; DESIGN.md "The model").

Both share everything but the query/key/value projections: in the QViT each head's
query, key and value are QNNs on the whole n-dim token, in the ViT they are
Linear(n, n). A QNN layer calls an *executor* ``(spec, weights, angles, names) -> <Z>``;
the exact torch simulator is the default, and hardware execution swaps the executor
(`QViT.executor`) without touching the model code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .circuit import QNNSpec, chain_pairs, expectations_per_qnn

Executor = Callable[[QNNSpec, Tensor, Tensor, Sequence[str]], Tensor]
"""(spec, weights (Q, P, 2), angles (B, T, n), names[Q]) -> <Z> (B, T, Q, n)."""

ROLES = ("q", "k", "v")
PATCH_SIZES = {28: 2, 224: 16}  # 14 x 14 = 196 tokens at both sizes


def exact_executor(
    spec: QNNSpec, weights: Tensor, angles: Tensor, names: Sequence[str] = ()
) -> Tensor:
    """Exact, differentiable <Z> of Q QNNs on every token: (B, T, n) -> (B, T, Q, n)."""
    return expectations_per_qnn(spec, angles, weights)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored in checkpoints and bundles."""

    model: Literal["qvit", "vit"] = "qvit"
    image_size: int = 28
    n_qubits: int = 4
    heads: int = 2
    num_classes: int = 2
    pairs: tuple[tuple[int, int], ...] | None = None  # None: the chain
    in_channels: int = 3
    mlp_ratio: int = 4
    patch_size: int = field(default=0)  # 0: 2 for 28x28, 16 for 224x224

    def __post_init__(self) -> None:
        if self.model not in ("qvit", "vit"):
            raise ValueError(f"model must be 'qvit' or 'vit', got {self.model!r}")
        if self.patch_size == 0:
            if self.image_size not in PATCH_SIZES:
                raise ValueError(
                    f"image_size must be one of {sorted(PATCH_SIZES)} unless patch_size is "
                    f"given, got {self.image_size}"
                )
            object.__setattr__(self, "patch_size", PATCH_SIZES[self.image_size])
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        for name in ("heads", "num_classes", "in_channels", "mlp_ratio"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        pairs = chain_pairs(self.n_qubits) if self.pairs is None else self.pairs
        object.__setattr__(self, "pairs", tuple(tuple(map(int, p)) for p in pairs))
        self.spec  # validates n_qubits and pairs  # noqa: B018

    @property
    def spec(self) -> QNNSpec:
        return QNNSpec(self.n_qubits, self.pairs)

    @property
    def n_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["pairs"] = [list(p) for p in self.pairs]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = dict(data)
        data["pairs"] = tuple(tuple(p) for p in data["pairs"])
        return cls(**data)


class QNNLayer(nn.Module):
    """The paper's QNN as a trainable torch layer: angles (..., n) -> <Z> (..., n).

    ``QNNLayer(qvit_hw.chain(4))`` holds the QNN's two angles per pair as one trainable
    ``weight`` (P, 2); ``qnns=Q`` holds Q QNNs of one spec (weight (Q, P, 2)) and returns
    (..., Q, n). <Z> comes from the exact, differentiable torch simulator unless
    ``executor`` (``(spec, weights (Q, P, 2), angles (B, T, n), names) -> (B, T, Q, n)``)
    says otherwise, e.g. a hardware scheduler; `VisionTransformer.executor` swaps it for
    every layer of a model. Weights start uniform in [-pi, pi).
    """

    def __init__(
        self,
        spec: QNNSpec | int,
        qnns: int | None = None,
        *,
        names: Sequence[str] | None = None,
        executor: Executor | None = None,
    ) -> None:
        super().__init__()
        # an int n: the chain on n qubits
        if not isinstance(spec, QNNSpec) and (isinstance(spec, bool) or not isinstance(spec, int)):
            raise TypeError(
                f"spec: expected a QNNSpec or a qubit count (int), got {type(spec).__name__}"
            )
        self.spec = spec if isinstance(spec, QNNSpec) else QNNSpec(spec, chain_pairs(spec))
        count = 1 if qnns is None else qnns
        if isinstance(count, bool) or not isinstance(count, int):
            raise TypeError(f"qnns: expected an int, got {type(count).__name__}")
        if count < 1:
            raise ValueError(f"qnns must be >= 1, got {qnns}")
        self.single = qnns is None
        self.names = tuple(names) if names is not None else tuple(f"qnn{i}" for i in range(count))
        if len(self.names) != count:
            raise ValueError(f"names: expected {count}, got {len(self.names)}")
        shape = self.spec.weight_shape if self.single else (count, *self.spec.weight_shape)
        self.weight = nn.Parameter(torch.empty(shape))
        nn.init.uniform_(self.weight, -math.pi, math.pi)
        self.executor: Executor = exact_executor if executor is None else executor

    def qnn_outputs(self, x: Tensor) -> Tensor:
        """<Z> of every QNN on every token: (B, T, n) -> (B, T, Q, n)."""
        weights = self.weight[None] if self.single else self.weight
        # The simulator computes in float32 (or float64) whatever an autocast around the
        # model says (train --precision bf16 / 16-mixed): half-precision angles would cost
        # the QNN its accuracy.
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        with torch.autocast(x.device.type, enabled=False):
            return self.executor(self.spec, weights.to(x.dtype), x, self.names)

    def forward(self, x: Tensor) -> Tensor:
        n = self.spec.n_qubits
        if not isinstance(x, Tensor):
            raise TypeError(f"QNNLayer: expected a torch.Tensor of angles, got {type(x).__name__}")
        if x.dtype.is_complex or x.dtype == torch.bool:
            raise TypeError(f"QNNLayer: expected real angles, got dtype {x.dtype}")
        if x.ndim < 1 or x.shape[-1:] != (n,):
            raise ValueError(f"QNNLayer: expected angles (..., {n}), got {tuple(x.shape)}")
        lead = x.shape[:-1]
        tokens = x if x.ndim == 3 else x.reshape(-1, 1, n)  # executors take (B, T, n)
        z = self.qnn_outputs(tokens).reshape(*lead, len(self.names), n)
        return z[..., 0, :] if self.single else z

    def extra_repr(self) -> str:
        pairs = ",".join(f"{p}-{q}" for p, q in self.spec.pairs)
        return f"n_qubits={self.spec.n_qubits}, pairs={pairs}, qnns={len(self.names)}"


class QuantumProjection(QNNLayer):
    """Q, K and V of every head as QNNs: (B, T, n) -> 3 x (B, H, T, n).

    A `QNNLayer` of H * 3 QNNs (QNN index h * 3 + role), so its weight keeps the name and
    shape (H * 3, P, 2) that checkpoints and bundles store.
    """

    def __init__(self, spec: QNNSpec, heads: int) -> None:
        names = tuple(f"head{h}.{r}" for h in range(heads) for r in ROLES)
        super().__init__(spec, heads * 3, names=names)
        self.heads = heads

    def forward(self, x: Tensor) -> Tensor:
        return _split_heads(self.qnn_outputs(x), self.heads)  # (B, T, H*3, n) in


class LinearProjection(nn.Module):
    """The ViT's Q, K and V: one Linear(n, n) per head and role, fused."""

    def __init__(self, n: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.linear = nn.Linear(n, heads * 3 * n)

    def forward(self, x: Tensor) -> Tensor:
        b, t, n = x.shape
        return _split_heads(self.linear(x).view(b, t, self.heads * 3, n), self.heads)


def _split_heads(z: Tensor, heads: int) -> Tensor:
    """(B, T, H*3, n) -> (3, B, H, T, n)."""
    b, t, _, n = z.shape
    return z.view(b, t, heads, 3, n).permute(3, 0, 2, 1, 4)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        n = cfg.n_qubits
        self.qkv = (
            QuantumProjection(cfg.spec, cfg.heads)
            if cfg.model == "qvit"
            else LinearProjection(n, cfg.heads)
        )
        self.merge = nn.Linear(cfg.heads * n, n)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv(x)  # (B, H, T, n) each
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, T, n)
        return self.merge(out.transpose(1, 2).flatten(2))  # (B, T, n)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        n = cfg.n_qubits
        self.norm1, self.norm2 = nn.LayerNorm(n), nn.LayerNorm(n)
        self.attn = Attention(cfg)
        self.mlp = nn.Sequential(
            nn.Linear(n, cfg.mlp_ratio * n), nn.GELU(), nn.Linear(cfg.mlp_ratio * n, n)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """Patch embedding + positional embedding, one encoder block, LayerNorm, mean pooling,
    ReLU, head.

    The final LayerNorm before pooling is the reference QViT's (Comajoan Cara et al., the
    paper's [2]); without it the pooled n-vector often starts with every entry negative, the
    ReLU passes nothing and training stalls at chance.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        n = cfg.n_qubits
        self.patch = nn.Conv2d(cfg.in_channels, n, cfg.patch_size, stride=cfg.patch_size)
        self.pos = nn.Parameter(torch.zeros(1, cfg.n_tokens, n))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.block = Block(cfg)
        self.norm = nn.LayerNorm(n)
        self.head = nn.Linear(n, cfg.num_classes)

    def tokens(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, T, n)."""
        cfg = self.config
        if images.ndim != 4 or tuple(images.shape[1:]) != (
            cfg.in_channels,
            cfg.image_size,
            cfg.image_size,
        ):
            raise ValueError(
                f"images: expected (B, {cfg.in_channels}, {cfg.image_size}, {cfg.image_size}),"
                f" got {tuple(images.shape)}"
            )
        return self.patch(images).flatten(2).transpose(1, 2) + self.pos

    def features(self, images: Tensor) -> Tensor:
        """The post-ReLU n-vector ("penultimate logits") that distillation aligns: (B, n)."""
        return F.relu(self.norm(self.block(self.tokens(images))).mean(dim=1))  # (B, n)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))  # (B, classes)

    def quantum_layers(self) -> list[QuantumProjection]:
        return [m for m in self.modules() if isinstance(m, QuantumProjection)]

    @contextmanager
    def executor(self, fn: Executor) -> Iterator[None]:
        """Run every QNN layer through ``fn`` inside the block (e.g. a hardware scheduler)."""
        layers = self.quantum_layers()
        old = [layer.executor for layer in layers]
        for layer in layers:
            layer.executor = fn
        try:
            yield
        finally:
            for layer, prev in zip(layers, old, strict=True):
                layer.executor = prev


def QViT(**kwargs: Any) -> VisionTransformer:
    """A QViT: ``QViT(image_size=28, n_qubits=4, heads=2, num_classes=2)``."""
    return VisionTransformer(ModelConfig(model="qvit", **kwargs))


def ViT(**kwargs: Any) -> VisionTransformer:
    """The classical baseline with Linear Q/K/V and otherwise identical layers."""
    return VisionTransformer(ModelConfig(model="vit", **kwargs))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def qnns_of(model: VisionTransformer) -> list[tuple[str, QNNSpec, Any]]:
    """(name as a run records it, spec, weights (P, 2)) of every QNN of the model's (one)
    QNN layer, read by running the model once on a blank image with a recording executor."""
    from .errors import RunError

    found: list[tuple[str, QNNSpec, Any]] = []

    def record(spec: QNNSpec, weights: torch.Tensor, angles: torch.Tensor, names=()):
        layer = len({n.split(".")[0] for n, _, _ in found})
        w = weights.detach().to(torch.float64).numpy()
        names = list(names) or [f"qnn{i}" for i in range(len(w))]
        found.extend((f"block{layer}.{name}", spec, w[i]) for i, name in enumerate(names))
        b, t, _ = angles.shape
        return torch.zeros(b, t, len(w), spec.n_qubits, dtype=angles.dtype)

    size = model.config.image_size
    with torch.no_grad(), model.executor(record):
        model(torch.zeros(1, 3, size, size))
    if len({n.split(".")[0] for n, _, _ in found}) != 1:
        raise RunError("characterize needs a model with one QNN layer")
    return found
