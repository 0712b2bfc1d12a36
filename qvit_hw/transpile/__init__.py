"""Layout choice, packing, transpile-once-and-bind, reports.

layout.py    candidate placements (exact embeddings, or regions to route in), scores
packing.py   k disjoint placements per execution (square lattices tiled exactly), bound
compile.py   compile_qnn -> CompiledQNN (one ISA template, parameter rows by numpy);
             template_for: the template a backend's target runs (logical without a device)
native.py    native Quil of a compiled QNN (Rigetti)
report.py    per-target transpile report (JSON, Quil files)
"""

from ..devices import DeviceTarget, get_target, names
from .compile import CompiledQNN, check_isa, circuit_key, compile_qnn, logical_qnn, template_for
from .packing import bound, packing_factor

__all__ = [
    "CompiledQNN",
    "DeviceTarget",
    "bound",
    "check_isa",
    "circuit_key",
    "compile_qnn",
    "get_target",
    "logical_qnn",
    "names",
    "packing_factor",
    "template_for",
]
