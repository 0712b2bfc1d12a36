"""Transpile report: every QNN of a bundle on one target, as JSON, the compiled circuits
(QPY, OpenQASM 3, parameter order) and Quil for Rigetti.

QNNs that share a spec (all of a layer) share one compiled template, so each spec is
transpiled once; rows differ in name, weights and, for Rigetti, their Quil file. Each
template is written to ``compiled/<target>/spec<i>.{qpy,qasm,json}`` (`openqasm`), so a
user's own code can run it: ``qiskit.qpy.load`` + SamplerV2, or the OpenQASM 3 in
qiskit's or Amazon Braket's dialect.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..circuit import QNNSpec
from ..devices import DeviceTarget, get_target
from ..files import write_atomic, write_json
from .compile import OPTIMIZATION_LEVEL, CompiledQNN, compile_qnn, copies_by_packing
from .openqasm import DIALECTS, write_compiled
from .packing import bound


@dataclass(frozen=True)
class QNNRow:
    """One line of the report (numbers per copy, of the best placement)."""

    qnn: str
    n_qubits: int
    depth: int
    two_qubit_gates: int
    swaps: int
    layout: list[int]
    est_success: float | None  # None: the target has no calibration numbers
    copies: int
    copies_by_packing: dict[str, int]  # k of every packing strategy ("best", "max")
    bound: int  # what no packing can pass: usable qubits // n
    transpile_seconds: float
    quil: str | None  # relative path of the native Quil file (Rigetti targets)
    compiled: str  # relative path of its template, without suffix (.qpy, .qasm, .json)


def transpile_report(
    qnns: Sequence[Any],
    target: DeviceTarget | str,
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    packing: str = "best",
    dialect: str = "qiskit",
) -> dict[str, Any]:
    """Compile each distinct spec of ``qnns`` (items with ``name``, ``spec``, ``weights``)
    for ``target`` and write ``out/transpile_<target>.json``, ``out/compiled/<target>/``
    (QPY, OpenQASM 3 in ``dialect``: qiskit or braket, parameter order) and, for Rigetti,
    ``out/quil/*.quil``."""
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {', '.join(DIALECTS)}, got {dialect!r}")
    dt = get_target(target) if isinstance(target, str) else target
    out = Path(out)
    compiled: dict[QNNSpec, CompiledQNN] = {}
    for q in qnns:
        if q.spec not in compiled:
            compiled[q.spec] = compile_qnn(q.spec, dt, seed=seed, packing=packing)
    ks = {spec: copies_by_packing(dt, spec) for spec in compiled}
    bounds = {spec: bound(dt, spec.n_qubits) for spec in compiled}
    stems = {spec: f"compiled/{dt.name}/spec{i}" for i, spec in enumerate(compiled)}
    for spec, c in compiled.items():
        weights = {q.name: _flat(q.weights) for q in qnns if q.spec == spec}
        folder, stem = stems[spec].rsplit("/", 1)
        write_compiled(c, out / folder, stem, dialect=dialect, weights=weights)
    rows = []
    for q in qnns:
        c = compiled[q.spec]
        quil_path = None
        if dt.name.startswith("rigetti_"):
            from .native import native_quil

            quil_path = f"quil/{q.name}.quil"
            write_atomic(out / quil_path, native_quil(c, q.weights))
        rows.append(
            QNNRow(
                qnn=q.name,
                n_qubits=q.spec.n_qubits,
                depth=c.depth,
                two_qubit_gates=c.two_qubit_gates,
                swaps=c.swaps,
                layout=list(c.placements[0]),
                est_success=None if math.isnan(c.est_success) else c.est_success,
                copies=c.copies,
                copies_by_packing=ks[q.spec],
                bound=bounds[q.spec],
                transpile_seconds=c.transpile_seconds,
                quil=quil_path,
                compiled=stems[q.spec],
            )
        )
    report = {
        "target": dt.name,
        "source": dt.source,
        "num_qubits": dt.num_qubits,
        "basis_gates": list(dt.basis_gates),
        "optimization_level": OPTIMIZATION_LEVEL,
        "packing": packing,
        "dialect": dialect,
        "specs": [
            {
                "spec": spec.to_dict(),
                "copies": c.copies,
                "bound": bounds[spec],
                "placements": [list(p) for p in c.placements],
                "transpile_seconds": c.transpile_seconds,
                "compiled": stems[spec],
                "qnns": [q.name for q in qnns if q.spec == spec],
            }
            for spec, c in compiled.items()
        ],
        "qnns": [asdict(r) for r in rows],
    }
    write_json(out / f"transpile_{dt.name}.json", report)
    return report


def _flat(weights: Any) -> list[float]:
    import numpy as np

    value = weights.detach().cpu().numpy() if hasattr(weights, "detach") else weights
    return [float(v) for v in np.asarray(value, dtype=np.float64).reshape(-1)]
