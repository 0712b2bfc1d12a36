"""Native Quil of a compiled QNN: Rigetti's gates on the chip's own qubit numbers.

The transpiled copy is written back in Quil natives (rz -> RZ, sx -> RX(pi/2), x -> RX(pi),
sxdg -> RX(-pi/2), iswap -> ISWAP, cz -> CZ), built with pyquil, with the token inputs as
``DECLARE x REAL[n]`` memory and the weights bound as numbers. Every angle the transpiler
produces is affine in the inputs (c + sum_i a_i x_i), so it becomes a Quil expression in
``x[i]`` without loss; anything else is refused.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import TranspileError
from .compile import CompiledQNN


def native_quil(compiled: CompiledQNN, weights: Any, *, copy: int = 0) -> str:
    """Quil for copy ``copy`` of ``compiled`` with ``weights`` (P, 2) bound, inputs ``x``."""
    from pyquil import Program
    from pyquil.gates import CZ, ISWAP, MEASURE, RX, RZ

    n = compiled.spec.n_qubits
    if not 0 <= copy < compiled.copies:
        raise ValueError(f"copy must be in 0..{compiled.copies - 1}, got {copy}")
    flat = np.asarray(getattr(weights, "detach", lambda: weights)(), dtype=np.float64).reshape(-1)
    if flat.size != 2 * compiled.spec.n_pairs:
        raise ValueError(f"weights: expected shape {compiled.spec.weight_shape}, got {flat.shape}")
    params = list(compiled.circuit.parameters)
    bound = {params[i]: float(v) for i, v in zip(compiled.w_index, flat, strict=True)}
    inputs = {params[i]: k for k, i in enumerate(compiled.x_index[copy])}

    prog = Program()
    x = prog.declare("x", "REAL", n)
    ro = prog.declare("ro", "BIT", n)
    fixed = {"sx": math.pi / 2, "x": math.pi, "sxdg": -math.pi / 2}
    two_qubit = {"iswap": ISWAP, "cz": CZ}
    qubits = set(compiled.placements[copy])
    qubit_index = {bit: i for i, bit in enumerate(compiled.circuit.qubits)}
    clbit_index = {bit: i for i, bit in enumerate(compiled.circuit.clbits)}
    for inst in compiled.circuit.data:
        qargs = [qubit_index[q] for q in inst.qubits]
        name = inst.operation.name
        if not set(qargs) <= qubits or name in ("barrier", "delay", "id"):
            continue
        if name == "rz":
            prog += RZ(_angle(inst.operation.params[0], bound, inputs, x), qargs[0])
        elif name in fixed:
            prog += RX(fixed[name], qargs[0])
        elif name in two_qubit:
            prog += two_qubit[name](*qargs)
        elif name == "measure":
            prog += MEASURE(qargs[0], ro[clbit_index[inst.clbits[0]] - copy * n])
        else:
            raise TranspileError(f"no Quil native for {name!r} (target {compiled.target_name})")
    return prog.out()


def _angle(value: Any, bound: dict, inputs: dict, x: Any) -> Any:
    """A qiskit angle as a float or an affine Quil expression in ``x[i]``."""
    from qiskit.circuit import ParameterExpression

    if not isinstance(value, ParameterExpression):
        return float(value)
    expr = value.bind({p: bound[p] for p in value.parameters if p in bound})
    free = sorted(expr.parameters, key=lambda p: inputs[p])
    if not free:
        return float(expr)
    out: Any = float(expr.bind(dict.fromkeys(free, 0.0)))
    for p in free:
        slope = expr.gradient(p)
        if isinstance(slope, ParameterExpression) and slope.parameters:
            raise TranspileError(f"angle {value} is not affine in the inputs")
        out = out + float(slope) * x[inputs[p]]
    return out
