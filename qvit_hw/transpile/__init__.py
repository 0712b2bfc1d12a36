"""Targets (IBM, Rigetti), layout choice, packing, transpile-once-and-bind, reports.

targets.py   DeviceTarget and get_target: fake-backend and JSON snapshots, live devices
layout.py    candidate placements (exact embeddings, or regions to route in), scores
packing.py   k disjoint placements per execution
compile.py   compile_qnn -> CompiledQNN (one ISA template, parameter rows by numpy)
native.py    native Quil of a compiled QNN (Rigetti)
report.py    per-target transpile report (JSON, Quil files)
"""

from .compile import CompiledQNN, check_isa, compile_qnn
from .packing import packing_factor
from .targets import TARGETS, DeviceTarget, get_target

__all__ = [
    "TARGETS",
    "CompiledQNN",
    "DeviceTarget",
    "check_isa",
    "compile_qnn",
    "get_target",
    "packing_factor",
]
