"""The distillation teacher: TinyViT-5M (timm ``tiny_vit_5m_224``) in plain torch.

timm cannot be imported beside this torch build (it imports torchvision), so the model is
ported here with timm's module structure and state_dict key names: a timm checkpoint (for
example ``model.safetensors`` of the Hugging Face repo
``timm/tiny_vit_5m_224.dist_in22k_ft_in1k``) loads into `TinyVit` with ``strict=True``.
tests/test_teacher.py checks the port against timm's own model, output for output.

`Teacher` is the paper's teacher (section 3): TinyViT whose classifier is replaced by
Linear(320 -> n_qubits), ReLU, Linear(n_qubits -> classes). It takes the student's inputs
(data-normalised, 28x28 or 224x224), resizes them to 224x224 and re-normalises them with
ImageNet statistics, so teacher and student read the same batches.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import DEFAULT_NORMALIZATION, Normalization
from .errors import CheckpointError

ARCH = "tiny_vit_5m_224"
HF_REPO = "timm/tiny_vit_5m_224.dist_in22k_ft_in1k"
HF_FILE = "model.safetensors"
INPUT_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# tiny_vit_5m_224 (timm): the only variant the paper uses.
EMBED_DIMS = (64, 128, 160, 320)
DEPTHS = (2, 2, 6, 2)
NUM_HEADS = (2, 4, 5, 10)
WINDOW_SIZES = (7, 7, 14, 7)


class ConvNorm(nn.Sequential):
    """Conv2d without bias, then BatchNorm2d (keys ``conv``, ``bn``)."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        ks: int = 1,
        stride: int = 1,
        pad: int = 0,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, ks, stride, pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.constant_(self.bn.bias, 0)


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 convolutions: (B, 3, 224, 224) -> (B, C0, 56, 56)."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.conv1 = ConvNorm(in_chs, out_chs // 2, 3, 2, 1)
        self.act = nn.GELU()
        self.conv2 = ConvNorm(out_chs // 2, out_chs, 3, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.act(self.conv1(x)))


class MBConv(nn.Module):
    """Inverted residual block of the convolutional first stage."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        mid = int(dim * expand_ratio)
        self.conv1 = ConvNorm(dim, mid, ks=1)
        self.act1 = nn.GELU()
        self.conv2 = ConvNorm(mid, mid, ks=3, stride=1, pad=1, groups=mid)
        self.act2 = nn.GELU()
        self.conv3 = ConvNorm(mid, dim, ks=1, bn_weight_init=0.0)
        self.act3 = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv3(self.act2(self.conv2(self.act1(self.conv1(x)))))
        return self.act3(y + x)


class PatchMerging(nn.Module):
    """Halve the resolution between stages: (B, C, H, W) -> (B, C', H/2, W/2)."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv1 = ConvNorm(dim, out_dim, 1, 1, 0)
        self.act1 = nn.GELU()
        self.conv2 = ConvNorm(out_dim, out_dim, 3, 2, 1, groups=out_dim)
        self.act2 = nn.GELU()
        self.conv3 = ConvNorm(out_dim, out_dim, 1, 1, 0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(self.act2(self.conv2(self.act1(self.conv1(x)))))


class ConvLayer(nn.Module):
    def __init__(self, dim: int, depth: int, expand_ratio: float = 4.0) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(MBConv(dim, expand_ratio) for _ in range(depth)))

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x)


class NormMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class Attention(nn.Module):
    """Windowed multi-head attention with a learned bias per head and relative offset."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, resolution: int) -> None:
        super().__init__()
        self.num_heads, self.key_dim, self.val_dim = num_heads, key_dim, key_dim
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, num_heads * 3 * key_dim)
        self.proj = nn.Linear(num_heads * key_dim, dim)
        points = list(itertools.product(range(resolution), range(resolution)))
        offsets: dict[tuple[int, int], int] = {}
        idxs = [
            offsets.setdefault((abs(p[0] - q[0]), abs(p[1] - q[1])), len(offsets))
            for p in points
            for q in points
        ]
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        n = len(points)
        idx = torch.tensor(idxs, dtype=torch.long).view(n, n)
        self.register_buffer("attention_bias_idxs", idx, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        bias = self.attention_biases[:, self.attention_bias_idxs]  # (heads, N, N)
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, -1)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.val_dim], dim=3)
        q, k, v = (t.permute(0, 2, 1, 3) for t in (q, k, v))  # (B, heads, N, d)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(x.transpose(1, 2).reshape(b, n, -1))


class TinyVitBlock(nn.Module):
    """Window attention, depthwise 3x3 conv, MLP; on (B, H, W, C)."""

    def __init__(self, dim: int, num_heads: int, window_size: int, mlp_ratio: float) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not a multiple of num_heads {num_heads}")
        self.window_size = window_size
        self.attn = Attention(dim, dim // num_heads, num_heads, window_size)
        self.mlp = NormMlp(dim, int(dim * mlp_ratio))
        self.local_conv = ConvNorm(dim, dim, ks=3, stride=1, pad=1, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        ws = self.window_size
        shortcut = x
        if h == ws and w == ws:
            x = self.attn(x.reshape(b, h * w, c)).view(b, h, w, c)
        else:
            pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
            if pad_b or pad_r:
                x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
            ph, pw = h + pad_b, w + pad_r
            nh, nw = ph // ws, pw // ws
            windows = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
            x = self.attn(windows).view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
            if pad_b or pad_r:
                x = x[:, :h, :w].contiguous()
        x = shortcut + x
        x = self.local_conv(x.permute(0, 3, 1, 2))  # (B, C, H, W)
        x = x.reshape(b, c, h * w).transpose(1, 2)  # (B, L, C)
        x = x + self.mlp(x)
        return x.view(b, h, w, c)


class TinyVitStage(nn.Module):
    def __init__(
        self, dim: int, out_dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float
    ) -> None:
        super().__init__()
        self.downsample = PatchMerging(dim, out_dim)
        self.blocks = nn.Sequential(
            *(TinyVitBlock(out_dim, num_heads, window_size, mlp_ratio) for _ in range(depth))
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.downsample(x).permute(0, 2, 3, 1)  # BCHW -> BHWC
        return self.blocks(x).permute(0, 3, 1, 2)  # BHWC -> BCHW


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of (B, C, H, W)."""

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(
            x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps
        )
        return x.permute(0, 3, 1, 2)


class ClassifierHead(nn.Module):
    """timm's NormMlpClassifierHead as TinyViT uses it: avg pool, LayerNorm2d, fc."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.norm = LayerNorm2d(in_features, eps=1e-5)
        self.fc: nn.Module = nn.Linear(in_features, num_classes) if num_classes else nn.Identity()

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.norm(x.mean((2, 3), keepdim=True)).flatten(1)  # (B, C)
        return x if pre_logits else self.fc(x)


class TinyVit(nn.Module):
    """TinyViT with timm's key names; the defaults are ``tiny_vit_5m_224``."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        embed_dims: tuple[int, ...] = EMBED_DIMS,
        depths: tuple[int, ...] = DEPTHS,
        num_heads: tuple[int, ...] = NUM_HEADS,
        window_sizes: tuple[int, ...] = WINDOW_SIZES,
        mlp_ratio: float = 4.0,
        init: bool = True,
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        self.stages = nn.Sequential(ConvLayer(embed_dims[0], depths[0]))
        for i in range(1, len(depths)):
            self.stages.append(
                TinyVitStage(
                    embed_dims[i - 1],
                    embed_dims[i],
                    depths[i],
                    num_heads[i],
                    window_sizes[i],
                    mlp_ratio,
                )
            )
        self.num_features = embed_dims[-1]
        self.head = ClassifierHead(self.num_features, num_classes)
        if not init:  # weights are about to be loaded: skip the slow truncated normals
            return
        for m in self.modules():  # timm's init: only Linear layers are re-initialised
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.stages(self.patch_embed(x))  # (B, 320, 7, 7)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))


def tiny_vit_5m_224(num_classes: int = 1000, init: bool = True) -> TinyVit:
    """timm's ``tiny_vit_5m_224`` (drop path 0); ``init=False`` when weights will be loaded."""
    return TinyVit(num_classes=num_classes, init=init)


class KDHead(nn.Module):
    """The paper's replacement classifier: Linear(-> n), ReLU, Linear(n -> classes)."""

    def __init__(self, in_features: int, n_qubits: int, num_classes: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_features, n_qubits)
        self.act = nn.ReLU()
        self.out = nn.Linear(n_qubits, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.act(self.proj(x))  # (B, n)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x))


class Teacher(nn.Module):
    """TinyViT-5M with the KD head, fed the student's (data-normalised) images."""

    def __init__(
        self,
        n_qubits: int,
        num_classes: int,
        norm: Normalization = DEFAULT_NORMALIZATION,
        backbone: TinyVit | None = None,
        init: bool = True,
    ) -> None:
        super().__init__()
        self.n_qubits, self.num_classes, self.norm = n_qubits, num_classes, norm
        self.backbone = backbone if backbone is not None else tiny_vit_5m_224(0, init=init)
        self.backbone.head.fc = KDHead(self.backbone.num_features, n_qubits, num_classes)
        # x_imagenet = x_data * scale + shift: undo the data normalisation, apply ImageNet's
        data_mean, data_std = torch.tensor(norm.mean), torch.tensor(norm.std)
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.register_buffer("scale", (data_std / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((data_mean - mean) / std).view(1, 3, 1, 1), persistent=False)

    @property
    def kd_head(self) -> KDHead:
        return self.backbone.head.fc

    @property
    def last_linear(self) -> nn.Linear:
        """Linear(n -> classes): copied into the student after KD pre-training."""
        return self.kd_head.out

    def config(self) -> dict[str, object]:
        return {
            "arch": ARCH,
            "n_qubits": self.n_qubits,
            "num_classes": self.num_classes,
            "normalization": self.norm.to_dict(),
        }

    @classmethod
    def from_config(cls, data: dict[str, object]) -> Teacher:
        """An empty teacher of this config, ready for ``load_state_dict``."""
        if data.get("arch") != ARCH:
            raise CheckpointError(f"teacher architecture {data.get('arch')!r} is not {ARCH}")
        norm = Normalization.from_dict(data["normalization"])
        n, classes = int(data["n_qubits"]), int(data["num_classes"])
        return cls(n, classes, norm, init=False)

    def prepare(self, images: Tensor) -> Tensor:
        """Student inputs (B, 3, S, S) -> teacher inputs (B, 3, 224, 224), ImageNet-normalised."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected (B, 3, S, S), got {tuple(images.shape)}")
        x = images * self.scale + self.shift
        if x.shape[-1] != INPUT_SIZE or x.shape[-2] != INPUT_SIZE:
            x = F.interpolate(
                x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False
            )
        return x

    def features(self, images: Tensor) -> Tensor:
        """The post-ReLU n-vector the student learns to match: (B, n)."""
        pooled = self.backbone.head(
            self.backbone.forward_features(self.prepare(images)), pre_logits=True
        )  # (B, 320)
        return self.kd_head.features(pooled)

    def forward(self, images: Tensor) -> Tensor:
        return self.kd_head.out(self.features(images))  # (B, classes)


def load_timm_weights(path: str | Path) -> TinyVit:
    """A `TinyVit` holding a timm ``tiny_vit_5m_224`` checkpoint (.safetensors, .pth, .bin).

    The classifier width is read from the file (1000 for in1k, 21841 for in22k).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"teacher weights {path} not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors and torch raise several types for a bad file
        raise CheckpointError(f"teacher weights {path} do not load ({exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    state = {k: v for k, v in state.items() if not k.endswith("attention_bias_idxs")}
    fc = state.get("head.fc.weight")
    model = tiny_vit_5m_224(0 if fc is None else int(fc.shape[0]), init=False)
    result = model.load_state_dict(state, strict=False)
    bad = [*result.missing_keys, *result.unexpected_keys]
    if bad:
        raise CheckpointError(
            f"{path} is not a timm {ARCH} checkpoint ({len(result.missing_keys)} missing and "
            f"{len(result.unexpected_keys)} unexpected keys, e.g. {bad[0]!r})"
        )
    return model


def download_pretrained() -> Path:
    """Fetch timm's ImageNet weights for tiny_vit_5m_224 from the Hugging Face Hub."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(HF_REPO, HF_FILE))
    except Exception as exc:  # offline, DNS, HTTP and cache errors all end the same way
        raise CheckpointError(
            f"could not download {HF_REPO}/{HF_FILE} from the Hugging Face Hub "
            f"({type(exc).__name__}); download it elsewhere and pass --teacher-weights PATH"
        ) from exc
