"""Pauli twirling of the compiled circuit's 2-qubit gates (randomized compiling), so that
zero-noise extrapolation folds noise that scales.

Gate folding multiplies a gate's error only where that error commutes with the gate: in
G (G^-1 G) the error after G^-1 reaches the output conjugated by G. A Pauli channel stays a
Pauli channel under a Clifford G, but relaxation (T1, T2: not unital, not Pauli) does not,
so on `fake_brisbane` the folded circuits amplify it along the wrong axes and
extrapolation leaves a bias that no order of Richardson removes (bench/RESULTS.md: <Z>
MAE 0.0024 after Richardson (1, 3) or (1, 3, 5) on the device's noise without readout
errors; 0.00003 with its depolarizing part alone).

Twirling replaces each 2-qubit Clifford gate G by P' G P, with P a uniformly random Pauli
on G's qubits and P' = G P G^dagger, the same unitary up to a global phase. Averaged over
the draws, every gate's error becomes its Pauli-twirled channel (Wallman & Emerson 2016),
which folding scales. `twirl_gates` draws one such circuit per seed; the runner spreads a
run's rows over ``twirls`` of them (row i on draw i mod twirls, at every noise scale), and
the run-level Fourier fit, which pools every row of a placement, averages the draws. The
Paulis are written in the device's gates (X, or RX(pi); Z as RZ(pi), virtual on IBM),
between barriers so no later pass merges them into G.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from qiskit import QuantumCircuit

    from ..transpile import CompiledQNN

TWIRL_LABEL = "twirl"


def _clifford_2q(op: Any) -> Any:
    """The Clifford of a 2-qubit gate, or None (a gate twirling leaves alone)."""
    from qiskit.quantum_info import Clifford

    if op.num_qubits != 2 or op.name in ("barrier", "measure") or op.is_parameterized():
        return None
    try:
        return Clifford(op)
    except Exception:  # not a Clifford (e.g. an arbitrary-angle XX): left untwirled
        return None


def _pauli_ops(x: bool, z: bool, basis: Sequence[str] | None) -> list[Any]:
    """X^x Z^z (Z applied first) in the device's gates, up to a global phase."""
    from qiskit.circuit.library import RXGate, RZGate, XGate, ZGate

    ops: list[Any] = []
    if z:
        ops.append(ZGate() if basis is None else RZGate(np.pi))
    if x:
        if basis is None or "x" in basis:
            ops.append(XGate())
        elif "rx" in basis:
            ops.append(RXGate(np.pi))
        else:
            from ..errors import TranspileError

            raise TranspileError(f"cannot twirl: the device's gates {list(basis)} have no X")
    return ops


def twirl_gates(
    circuit: QuantumCircuit, basis: Sequence[str] | None, draw: int, seed: int = 0
) -> QuantumCircuit:
    """``circuit`` with every 2-qubit Clifford gate G replaced by P' G P (P a random
    Pauli, the ``draw``-th of ``seed``'s, P' = G P G^dagger): the same unitary up to a
    global phase, the same gates otherwise, its errors twirled over many draws."""
    from qiskit.quantum_info import Pauli

    rng = np.random.default_rng([seed, draw, 0x7717])
    out = circuit.copy_empty_like(name=f"{circuit.name}_tw{draw}")
    cliffords: dict[tuple[Any, ...], Any] = {}  # by name and angles: rzz(pi/2) is not rzz(0.3)
    for inst in circuit.data:
        op = inst.operation
        kind = (op.name, *op.params)
        if kind not in cliffords:
            cliffords[kind] = _clifford_2q(op)
        clifford = cliffords[kind]
        if clifford is None:
            out.append(op, inst.qubits, inst.clbits)
            continue
        z, x = rng.integers(0, 2, size=(2, 2)).astype(bool)  # (qubit 0, 1) of G
        after = Pauli((z, x)).evolve(clifford, frame="s")  # G P G^dagger, up to a sign
        out.barrier(*inst.qubits, label=TWIRL_LABEL)
        for k, q in enumerate(inst.qubits):
            for p in _pauli_ops(x[k], z[k], basis):
                out.append(p, [q])
        out.append(op, inst.qubits)
        for k, q in enumerate(inst.qubits):
            for p in _pauli_ops(after.x[k], after.z[k], basis):
                out.append(p, [q])
        out.barrier(*inst.qubits, label=TWIRL_LABEL)
    return out


def twirl_compiled(
    compiled: CompiledQNN, basis: Sequence[str] | None, draw: int, seed: int = 0
) -> CompiledQNN:
    """A compiled template with its 2-qubit gates twirled by ``draw``: the same copies,
    placements, parameters and 2-qubit gates."""
    from .zne import IGNORED

    twirled = twirl_gates(compiled.circuit, basis, draw, seed)
    return replace(
        compiled,
        circuit=twirled,
        depth=twirled.depth(lambda inst: inst.operation.name not in IGNORED),
    )
