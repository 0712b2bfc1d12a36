"""Zero-noise extrapolation: fold the compiled circuit's 2-qubit gates, then extrapolate
every row's estimates at the noise scales back to scale 0.

Folding (`fold_gates`): in the ISA circuit every 2-qubit gate G becomes
G (G^-1 G)^((lambda - 1) / 2), each inserted pair between barriers on G's qubits so no
later pass cancels it; G^-1 is written in the device's own gates (ECR and CZ are their own
inverses; iSWAP^-1 = (RZ(pi) x RZ(pi)) iSWAP, the RZs virtual on hardware), so a folded
template has lambda times the 2-qubit gates of the original and the same 1-qubit gates,
parameters, layout and measurements. The unitary is unchanged: only the noise scales.
``fold="all"`` (the run's default) folds the 1-qubit gates too (SX^-1 = RZ(pi) SX RZ(pi);
RZ is a frame change and is not folded), which also scales their errors and the circuit's
duration: on fake_brisbane it left less bias than folding the 2-qubit gates alone
(bench/RESULTS.md). A scale that
is not an odd whole number (1.5, 2) folds every gate its whole part of times and a seeded
subset once more, as mitiq's ``fold_gates_at_random``; the extrapolation then uses the scale
each template reached (`noise_scale`: its folded gates over the original's), not the one
asked for.

Extrapolation (`extrapolate`), per row and qubit, from estimates z_k with standard errors
s_k at scales lambda_k:
    richardson   z_0 = sum_k c_k z_k, c_k = prod_{j != k} lambda_j / (lambda_j - lambda_k)
                 (the polynomial through every point; (1, 3): 1.5 z_1 - 0.5 z_3)
    linear       weighted least squares z = a + b lambda, z_0 = a
    exponential  z = A exp(-b lambda) fitted on log |z| (same sign, each beyond 2 stderr;
                 elsewhere the row falls back to linear)
with standard errors propagated from the s_k (linear in the z_k, or the delta method).
Its variance cost (richardson (1, 5), the default: 1.6x; (1, 3): 2.5x) is what the
run-level Fourier fit absorbs.

Folding scales only errors that commute with the gate folded; relaxation does not, so the
runner deals the rows over Pauli-twirled templates (`twirl`, ``--zne-twirls``), whose
averaged errors are Pauli channels that folding does scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from qiskit import QuantumCircuit

    from ..transpile import CompiledQNN

EXTRAPOLATIONS = ("richardson", "linear", "exponential")
FOLDS = ("two", "all")  # which gates fold: the 2-qubit ones, or every noisy gate
IGNORED = frozenset({"barrier", "measure", "delay", "reset"})
VIRTUAL = frozenset({"rz", "id", "delay"})  # frame changes: no noise to scale
FOLD_LABEL = "zne"  # the barriers around each inserted G^-1 (Quil keeps them as a block)


@dataclass(frozen=True)
class ZNEConfig:
    """Noise scales (the first 1, each >= 1; odd whole numbers fold every gate, others a
    seeded subset too) and how to extrapolate."""

    scales: tuple[float, ...] = (1, 5)
    extrapolation: str = "richardson"
    fold: str = "all"

    def __post_init__(self) -> None:
        scales = tuple(self.scales)
        bad = [s for s in scales if isinstance(s, bool) or not isinstance(s, int | float)
               or not np.isfinite(s) or s < 1]  # fmt: skip
        if bad or len(scales) < 2 or scales[0] != 1 or len(set(scales)) != len(scales):
            raise ValueError(
                f"--zne-scales must be 1 and at least one more number >= 1, each once "
                f"(e.g. 1,3 or 1,2,3), got {','.join(map(str, scales))}"
            )
        if self.extrapolation not in EXTRAPOLATIONS:
            raise ValueError(
                f"--zne-extrapolation must be one of {', '.join(EXTRAPOLATIONS)}, "
                f"got {self.extrapolation!r}"
            )
        if self.fold not in FOLDS:
            raise ValueError(f"--zne-fold must be one of {', '.join(FOLDS)}, got {self.fold!r}")
        # whole scales stay ints, so a run's identity reads 1,3 as it always has
        scales = tuple(int(s) if float(s).is_integer() else float(s) for s in scales)
        object.__setattr__(self, "scales", scales)

    @classmethod
    def parse(cls, scales: str, extrapolation: str, fold: str = "all") -> ZNEConfig:
        try:
            values = tuple(float(s) for s in scales.split(",") if s.strip())
        except ValueError:
            raise ValueError(f"--zne-scales must be numbers >= 1, got {scales!r}") from None
        return cls(values, extrapolation.strip().lower(), fold.strip().lower())


def inverse_ops(op: Any, basis: Sequence[str] | None) -> list[tuple[Any, tuple[int, ...]]]:
    """G^-1 of a gate as (operation, qubit positions) in the device's gates."""
    from qiskit.circuit.library import RZGate, SXGate, iSwapGate

    inverse = op.inverse()
    if inverse.name == op.name or basis is None or inverse.name in basis:
        return [(inverse, tuple(range(op.num_qubits)))]
    if op.name == "sx":  # SX^-1 = RZ(pi) SX RZ(pi) up to a global phase (Z X Z = -X)
        return [(RZGate(np.pi), (0,)), (SXGate(), (0,)), (RZGate(np.pi), (0,))]
    if op.name == "iswap":  # iSWAP^3 = iSWAP^-1, and iSWAP^2 = Z x Z
        return [(iSwapGate(), (0, 1)), (RZGate(np.pi), (0,)), (RZGate(np.pi), (1,))]
    from ..errors import TranspileError

    raise TranspileError(f"cannot fold {op.name}: its inverse {inverse.name} is not a device gate")


def _folds(op: Any, fold: str) -> bool:
    """Whether ``fold`` folds this gate (2-qubit gates; with "all" every noisy 1-qubit one)."""
    if op.name in IGNORED or op.name in VIRTUAL or op.num_qubits > 2:
        return False
    return op.num_qubits == 2 or fold == "all"


def fold_gates(
    circuit: QuantumCircuit,
    scale: float,
    basis: Sequence[str] | None,
    fold: str = "two",
    seed: int = 0,
) -> QuantumCircuit:
    """``circuit`` with every 2-qubit gate G (``fold="all"``: every gate that is not a
    virtual frame change) replaced by G (G^-1 G)^m: m = (scale - 1) / 2 for odd whole
    scales; otherwise every gate gets its whole part and a subset of the gates, drawn
    without replacement from ``seed`` and ``scale`` (mitiq's ``fold_gates_at_random``),
    one fold more, so the folded gates number ``scale`` times the original's to within
    one fold (`noise_scale` says exactly)."""
    if scale == 1:
        return circuit
    whole, part = divmod((scale - 1) / 2, 1)
    foldable = [i for i, inst in enumerate(circuit.data) if _folds(inst.operation, fold)]
    extra: set[int] = set()
    if part > 1e-12 and foldable:
        rng = np.random.default_rng([seed, round(scale * 1_000_000)])
        size = min(len(foldable), round(part * len(foldable)))
        extra = set(rng.choice(foldable, size=size, replace=False).tolist())
    out = circuit.copy_empty_like(name=f"{circuit.name}_zne{scale}")
    for i, inst in enumerate(circuit.data):
        out.append(inst.operation, inst.qubits, inst.clbits)
        times = int(whole) + (i in extra) if _folds(inst.operation, fold) else 0
        if not times:
            continue
        op = inst.operation
        inverse = inverse_ops(op, basis)
        for _ in range(times):
            out.barrier(*inst.qubits, label=FOLD_LABEL)
            for inv, positions in inverse:
                out.append(inv, [inst.qubits[p] for p in positions])
            out.barrier(*inst.qubits, label=FOLD_LABEL)
            out.append(op, inst.qubits)
    return out


def noise_scale(original: QuantumCircuit, folded: QuantumCircuit, fold: str = "two") -> float:
    """The scale a folded circuit reaches: its folded-kind gates over the original's."""

    def count(circuit: QuantumCircuit) -> int:
        return sum(_folds(inst.operation, fold) for inst in circuit.data)

    return count(folded) / count(original) if count(original) else 1.0


def fold_compiled(
    compiled: CompiledQNN,
    scale: float,
    basis: Sequence[str] | None,
    fold: str = "two",
    seed: int = 0,
) -> CompiledQNN:
    """A compiled template at noise scale ``scale``: the same copies, placements and
    parameter order (folding adds no parameter), about ``scale`` times the 2-qubit gates."""
    folded = fold_gates(compiled.circuit, scale, basis, fold, seed)
    if folded is compiled.circuit:
        return compiled
    return replace(
        compiled,
        circuit=folded,
        two_qubit_gates=round(compiled.two_qubit_gates * noise_scale(compiled.circuit, folded)),
        depth=folded.depth(lambda inst: inst.operation.name not in IGNORED),
    )


def richardson_coefficients(scales: Sequence[float]) -> np.ndarray:
    lam = np.asarray(scales, dtype=np.float64)
    return np.array(
        [np.prod([lj / (lj - lk) for j, lj in enumerate(lam) if j != k]) for k, lk in
         enumerate(lam)]
    )  # fmt: skip


def extrapolate(
    z: np.ndarray, stderr: np.ndarray, scales: Sequence[float], method: str
) -> tuple[np.ndarray, np.ndarray]:
    """z, stderr (K, ...) at ``scales`` (K,) -> the zero-noise estimate and its stderr (...)."""
    lam = np.asarray(scales, dtype=np.float64)
    shape = (-1,) + (1,) * (z.ndim - 1)
    if method == "richardson":
        c = richardson_coefficients(lam).reshape(shape)
        return (c * z).sum(axis=0), np.sqrt((c**2 * stderr**2).sum(axis=0))
    z0, se0 = _linear(z, stderr, lam)
    if method == "linear":
        return z0, se0
    if method != "exponential":
        raise ValueError(f"extrapolation must be one of {', '.join(EXTRAPOLATIONS)}")
    sign = np.sign(z[0])
    usable = (np.sign(z) == sign).all(axis=0) & (np.abs(z) > 2 * stderr).all(axis=0)
    safe = np.where(usable, np.abs(z), 1.0)
    rel = np.where(usable, stderr / safe, 1.0)  # stderr of log |z|
    a, se_a = _linear(np.log(safe), rel, lam)
    exp_z0 = sign * np.exp(a)
    return np.where(usable, exp_z0, z0), np.where(usable, np.abs(exp_z0) * se_a, se0)


def _linear(z: np.ndarray, stderr: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intercept of z = a + b lambda, weighted by 1 / stderr^2 (equal weights where a
    stderr is 0), and its stderr."""
    shape = (-1,) + (1,) * (z.ndim - 1)
    lam = lam.reshape(shape)
    exact = (stderr <= 0).any(axis=0)
    w = np.where(exact, 1.0, 1.0 / np.where(stderr > 0, stderr, 1.0) ** 2)
    s0, s1, s2 = w.sum(0), (w * lam).sum(0), (w * lam**2).sum(0)
    det = s0 * s2 - s1**2
    coef = (s2 - s1 * lam) / det  # weight of each z_k in the intercept, over w
    z0 = (w * coef * z).sum(axis=0)
    se0 = np.sqrt((w**2 * coef**2 * stderr**2).sum(axis=0))
    return z0, se0
