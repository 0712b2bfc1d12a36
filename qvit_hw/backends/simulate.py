"""Exact simulation of small measured circuits, vectorised over parameter rows (numpy).

The ideal backends (`statevector`, `shots`) evaluate every row of a pub at once: one
statevector per row, all rows advanced together gate by gate, so a 4-qubit QNN costs a
few microseconds per row (Aer binds and runs each row as its own experiment, about a
hundred times slower here). A circuit is first split into *components*, the groups of
qubits linked by multi-qubit gates, and each is simulated on its own: a packed circuit
holds k independent copies, and k x n qubits would not fit in one statevector.

Parametrised gates take their angles from linear parameter expressions (what circuits
built from ``qiskit_circuit`` and the transpiler hold), evaluated for all rows with one
matrix product; any other gate is bound row by row through its own ``to_matrix``.
Measurements must be final; reset and classical control are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import PermanentBackendError
from .base import SAMPLE_ROWS, SAMPLE_SHOTS, CircuitCache, outcome_bits

if TYPE_CHECKING:
    from qiskit import QuantumCircuit

SKIPPED = frozenset({"barrier", "delay", "id"})
CHUNK_AMPLITUDES = 1 << 22  # rows x 2^m amplitudes per chunk (64 MiB of complex128)


@dataclass(frozen=True)
class Angle:
    """A gate parameter as a function of the parameter rows."""

    expr: Any  # a number or a ParameterExpression
    params: tuple[Any, ...]  # the Parameters it depends on
    cols: np.ndarray  # their columns in the parameter rows
    const: float  # linear form: const + values[:, cols] @ coefs
    coefs: np.ndarray | None  # None: not linear, evaluated row by row

    @classmethod
    def of(cls, expr: Any, index: dict[Any, int]) -> Angle:
        from qiskit.circuit import ParameterExpression

        if not isinstance(expr, ParameterExpression) or not expr.parameters:
            return cls(expr, (), np.empty(0, dtype=np.int64), float(expr), np.empty(0))
        params = tuple(sorted(expr.parameters, key=index.__getitem__))
        cols = np.array([index[p] for p in params], dtype=np.int64)
        grads = [expr.gradient(p) for p in params]
        if any(isinstance(g, ParameterExpression) and g.parameters for g in grads):
            return cls(expr, params, cols, float("nan"), None)
        const = float(expr.bind(dict.fromkeys(params, 0.0)).numeric().real)
        return cls(expr, params, cols, const, np.array([complex(g).real for g in grads]))

    def evaluate(self, values: np.ndarray) -> np.ndarray:
        """values (rows, P) -> (rows,)."""
        if self.coefs is not None:
            return np.broadcast_to(self.const + values[:, self.cols] @ self.coefs, len(values))
        return np.array(
            [
                float(self.expr.bind(dict(zip(self.params, row, strict=True))).numeric().real)
                for row in values[:, self.cols]
            ]
        )


@dataclass(frozen=True)
class Gate:
    """One gate of a component: local qubits, the qiskit gate and its parameters."""

    qubits: tuple[int, ...]  # local indices into Component.qubits, qiskit qarg order
    operation: Any  # the qiskit Gate
    angles: tuple[Angle, ...]


@dataclass(frozen=True)
class Component:
    """Qubits linked by multi-qubit gates, the gates on them and their measurements."""

    qubits: tuple[int, ...]  # circuit qubit indices; local axis j <-> qubits[j]
    gates: tuple[Gate, ...]
    measured: tuple[tuple[int, int], ...]  # (local qubit, clbit), in circuit order


def components(circuit: QuantumCircuit) -> list[Component]:
    """Split a measured circuit into independent components (only measured ones kept)."""
    index = {p: i for i, p in enumerate(circuit.parameters)}
    parent = list(range(circuit.num_qubits))

    def find(q: int) -> int:
        while parent[q] != q:
            parent[q] = parent[parent[q]]
            q = parent[q]
        return q

    ops: list[tuple[str, tuple[int, ...], tuple[int, ...], Any]] = []
    measured_qubits: set[int] = set()
    for inst in circuit.data:
        op = inst.operation
        qargs = tuple(circuit.find_bit(q).index for q in inst.qubits)
        cargs = tuple(circuit.find_bit(c).index for c in inst.clbits)
        if op.name in SKIPPED:
            continue
        if measured_qubits.intersection(qargs):
            raise PermanentBackendError(
                f"simulator: {op.name} on qubits {qargs} follows a measurement; only final "
                "measurements, one per qubit, are supported"
            )
        if op.name == "measure":
            measured_qubits.add(qargs[0])
        elif not hasattr(op, "to_matrix"):  # reset, control flow, initialize, ...
            raise PermanentBackendError(f"simulator: {op.name} is not supported")
        for q in qargs[1:]:
            parent[find(q)] = find(qargs[0])
        ops.append((op.name, qargs, cargs, op))

    groups: dict[int, list[int]] = {}
    for _, qargs, _, _ in ops:
        for q in qargs:
            members = groups.setdefault(find(q), [])
            if q not in members:
                members.append(q)
    out = []
    for root, members in groups.items():
        qubits = tuple(sorted(members))
        local = {q: j for j, q in enumerate(qubits)}
        gates, measured = [], []
        for name, qargs, cargs, op in ops:
            if find(qargs[0]) != root:
                continue
            if name == "measure":
                measured.append((local[qargs[0]], cargs[0]))
            else:
                angles = tuple(Angle.of(p, index) for p in op.params)
                gates.append(Gate(tuple(local[q] for q in qargs), op, angles))
        if measured:
            out.append(Component(qubits, tuple(gates), tuple(measured)))
    return out


def probabilities(component: Component, values: np.ndarray) -> np.ndarray:
    """Outcome probabilities of the measured qubits: values (rows, P) -> (rows, 2^k).

    Outcome index bit j (least significant first) is the j-th entry of ``measured``.
    """
    m = len(component.qubits)
    rows = len(values)
    chunk = max(1, CHUNK_AMPLITUDES >> m)
    parts = [_chunk_probabilities(component, values[a : a + chunk]) for a in range(0, rows, chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, 2 ** len(component.measured)))


def _chunk_probabilities(component: Component, values: np.ndarray) -> np.ndarray:
    m, rows = len(component.qubits), len(values)
    state = np.zeros((rows, 2**m), dtype=np.complex128)
    state[:, 0] = 1.0
    state = state.reshape((rows,) + (2,) * m)  # axis 1 + j: local qubit j
    for gate in component.gates:
        state = _apply(state, _matrices(gate, values), gate.qubits)
    probs = np.abs(state) ** 2  # (rows, 2, ..., 2)
    measured = [j for j, _ in component.measured]
    probs = probs.sum(axis=tuple(1 + j for j in range(m) if j not in measured))
    kept = sorted(measured)  # the remaining axes, in qubit order
    # outcome index: measured[0] least significant, so it becomes the last axis
    axes = [1 + kept.index(j) for j in reversed(measured)]
    return np.transpose(probs, [0, *axes]).reshape(rows, 2 ** len(measured))


def _matrices(gate: Gate, values: np.ndarray) -> np.ndarray:
    """The gate's matrix (2^g, 2^g), or one per row (rows, 2^g, 2^g)."""
    op = gate.operation
    if not gate.angles:
        return np.asarray(op.to_matrix(), dtype=np.complex128)
    theta = [angle.evaluate(values) for angle in gate.angles]  # each (rows,)
    formula = _FORMULAS.get(op.name)
    if formula is not None and formula[0] == len(theta):
        return formula[1](*theta)
    out = []
    for params in zip(*theta, strict=True):  # any other gate: bound row by row
        bound = op.copy()
        bound.params = [float(p) for p in params]
        out.append(np.asarray(bound.to_matrix(), dtype=np.complex128))
    return np.stack(out)


def _apply(state: np.ndarray, matrix: np.ndarray, qubits: tuple[int, ...]) -> np.ndarray:
    """Multiply the gate into the state; qiskit's qarg 0 is the matrix's lowest bit."""
    g = len(qubits)
    axes = [1 + q for q in reversed(qubits)]  # matrix bit order: qarg g-1 most significant
    moved = np.moveaxis(state, axes, range(1, g + 1))
    shape = moved.shape
    flat = moved.reshape(shape[0], 2**g, -1)  # (rows, 2^g, rest)
    out = (matrix @ flat).reshape(shape)
    return np.moveaxis(out, range(1, g + 1), axes)


def _outcome_bits(k: int) -> np.ndarray:
    """(2^k, k): bit j of outcome index s, least significant first."""
    return (np.arange(2**k)[:, None] >> np.arange(k)) & 1


def marginal_z(probs: np.ndarray) -> np.ndarray:
    """<Z> of each outcome bit: probs (rows, 2^k) -> (rows, k)."""
    k = int(np.log2(probs.shape[1]))
    return probs @ (1.0 - 2.0 * _outcome_bits(k))


def ones_from_counts(counts: np.ndarray) -> np.ndarray:
    """Shots reading 1 per outcome bit: counts (rows, 2^k) -> (rows, k)."""
    k = int(np.log2(counts.shape[1]))
    return counts @ _outcome_bits(k)


# --- vectorised matrices of common parametrised gates (qiskit's definitions) -------------


def _rx(t: np.ndarray) -> np.ndarray:
    c, s = np.cos(t / 2), -1j * np.sin(t / 2)
    return np.stack([np.stack([c, s], -1), np.stack([s, c], -1)], -2)


def _ry(t: np.ndarray) -> np.ndarray:
    c, s = np.cos(t / 2), np.sin(t / 2)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2).astype(np.complex128)


def _rz(t: np.ndarray) -> np.ndarray:
    zero = np.zeros_like(t, dtype=np.complex128)
    a, b = np.exp(-0.5j * t), np.exp(0.5j * t)
    return np.stack([np.stack([a, zero], -1), np.stack([zero, b], -1)], -2)


def _phase(t: np.ndarray) -> np.ndarray:
    one, zero = np.ones_like(t, dtype=np.complex128), np.zeros_like(t, dtype=np.complex128)
    return np.stack([np.stack([one, zero], -1), np.stack([zero, np.exp(1j * t)], -1)], -2)


def _u(theta: np.ndarray, phi: np.ndarray, lam: np.ndarray) -> np.ndarray:
    c, s = np.cos(theta / 2), np.sin(theta / 2)
    return np.stack(
        [
            np.stack([c + 0j, -np.exp(1j * lam) * s], -1),
            np.stack([np.exp(1j * phi) * s, np.exp(1j * (phi + lam)) * c], -1),
        ],
        -2,
    )


def _u2(phi: np.ndarray, lam: np.ndarray) -> np.ndarray:
    return _u(np.full_like(phi, np.pi / 2), phi, lam)


def _r(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    c, s = np.cos(theta / 2), np.sin(theta / 2)
    return np.stack(
        [
            np.stack([c + 0j, -1j * np.exp(-1j * phi) * s], -1),
            np.stack([-1j * np.exp(1j * phi) * s, c + 0j], -1),
        ],
        -2,
    )


_FORMULAS: dict[str, tuple[int, Any]] = {
    "rx": (1, _rx),
    "ry": (1, _ry),
    "rz": (1, _rz),
    "p": (1, _phase),
    "u1": (1, _phase),
    "u": (3, _u),
    "u3": (3, _u),
    "u2": (2, _u2),
    "r": (2, _r),
}


# --- whole pubs ---------------------------------------------------------------------------

_COMPONENTS: CircuitCache[list[Component]] = CircuitCache()


def cached_components(circuit: QuantumCircuit) -> list[Component]:
    """`components` of a circuit, cached by identity (a template serves many jobs)."""
    return _COMPONENTS.get(circuit, components)


def exact_z(circuit: QuantumCircuit, values: np.ndarray) -> np.ndarray:
    """Exact <Z> of every clbit: values (rows, P) -> (rows, n_clbits); unmeasured: +1."""
    z = np.ones((len(values), circuit.num_clbits))
    for comp in cached_components(circuit):
        z[:, [c for _, c in comp.measured]] = marginal_z(probabilities(comp, values))
    return z


def sample_ones(
    circuit: QuantumCircuit, values: np.ndarray, shots: int, rng: np.random.Generator
) -> np.ndarray:
    """Shots reading 1 per clbit, sampled from the exact distribution: (rows, n_clbits).

    Each component's joint outcome distribution is sampled (multinomial over its 2^k
    outcomes), so bits of one component keep their correlations.
    """
    return sample_shots(circuit, values, shots, rng, sample_rows=0)[0]


def sample_shots(
    circuit: QuantumCircuit,
    values: np.ndarray,
    shots: int,
    rng: np.random.Generator,
    *,
    sample_rows: int = SAMPLE_ROWS,
) -> tuple[np.ndarray, np.ndarray | None]:
    """`sample_ones`, and the shots of the first ``sample_rows`` rows as bits
    (S, min(shots, SAMPLE_SHOTS), n_clbits) (None if ``sample_rows`` is 0)."""
    ones = np.zeros((len(values), circuit.num_clbits), dtype=np.int64)
    rows = min(sample_rows, len(values))
    samples = np.zeros((rows, min(shots, SAMPLE_SHOTS), circuit.num_clbits), dtype=np.uint8)
    for comp in cached_components(circuit):
        probs = np.clip(probabilities(comp, values), 0.0, None)
        probs /= probs.sum(axis=1, keepdims=True)
        counts = rng.multinomial(shots, probs)  # (rows, 2^k)
        clbits = [c for _, c in comp.measured]
        ones[:, clbits] = ones_from_counts(counts)
        outcomes = np.arange(counts.shape[1])
        for r in range(rows):
            samples[r][:, clbits] = outcome_bits(outcomes, counts[r], len(clbits), rng)
    return ones, samples if sample_rows > 0 else None
