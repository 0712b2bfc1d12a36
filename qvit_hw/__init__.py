"""qvit-hw: deploy quantum vision transformers (QViTs) on quantum hardware and simulators."""

from .circuit import QNNSpec, chain, expectations, tree
from .export import load_bundle
from .model import ModelConfig, QViT, VisionTransformer, ViT

__version__ = "0.1.0"

__all__ = [
    "ModelConfig",
    "QNNSpec",
    "QViT",
    "ViT",
    "VisionTransformer",
    "__version__",
    "chain",
    "expectations",
    "load_bundle",
    "tree",
]
