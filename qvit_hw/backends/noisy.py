"""Exact noisy simulation of one packed copy, vectorised over parameter rows (numpy).

Aer runs each independent copy of a packed ISA circuit as one experiment per row (a few
hundred rows per second; ``fake_<device>?engine=aer``). This module computes the same
outcome distribution exactly, for all rows at once, from the same Aer `NoiseModel`; it is
the default engine of ``fake_<device>`` (`fake.FakeDeviceBackend`):

- `NoisyTemplate.build(circuit, noise_model)` compiles once per (copy, noise model): the
  copy's active qubits become m local qubits (m = 4..8 for a QNN), every instruction
  gets the channel Aer would apply to it, read from the noise model's own `QuantumError`
  and `ReadoutError` objects, fixed gates and their errors are fused into channels on at
  most `MAX_FUSED_QUBITS` qubits, and parametrised Pauli rotations (``rz(theta)`` in
  IBM's ISA) stay as per-row rotations.
- `NoisyTemplate.probabilities(values)` evolves the state of every row in the Pauli
  basis (the Pauli transfer matrix picture: rho = 2^-m sum_P r_P P with real r_P =
  Tr(P rho), so every channel is a real 4^g x 4^g matrix and ``rz(theta)`` a rotation of
  the (X, Y) components), in chunks of rows, and returns exact outcome probabilities
  (rows, 2^clbits) with the readout errors applied; outcome index = sum_j b_j 2^j, b_j
  the value of clbit j. A qubit joins the joint state only at its first multi-qubit
  gate and keeps only its I, Z components after its last one (see `_plan`), so a chain
  of 8 needs 1,024 reals per row instead of 4^8.
- `sample_counts(probs, shots, rng)` draws shots from them: counts of ones per clbit and
  the raw shots of the first `SAMPLE_ROWS` rows, as `fake_<device>` returns them.
- `error_ptm(error)`: the PTM of a `QuantumError`, composed from its circuits (Paulis,
  unitaries, ``kraus``, ``reset``) rather than through ``to_quantumchannel`` (which costs
  about 25 ms per device error: seconds per packed circuit), cached per error object.

Aer's noise semantics, as implemented by qiskit-aer 0.17 (``src/noise/noise_model.hpp``,
``NoiseModel::sample_local_quantum_noise`` / ``sample_readout_noise`` /
``load_from_json``; the Python `NoiseModel` is passed to it through ``to_dict``), and
checked against Aer itself in ``tests/backends/test_noisy.py``:

- errors are looked up by the instruction's *label* if it has one, else its name
  (``aer_compiler._assemble_op`` passes ``label if label else name``; the C++ lookup
  uses ``op.string_params[0]`` for gates), and the exact qubit tuple in qarg order;
- a local error (``_local_quantum_errors[label][qubits]``) replaces the all-qubit
  error (``_default_quantum_errors[label]``, stored under the empty qubit key of the same
  table) for those qubits; they are never both applied;
- a quantum error is applied after its gate, except an error attached to ``measure``,
  which ``load_from_json`` marks ``set_errors_before()``: it acts before the measurement;
- readout errors act on the recorded bit after the measurement: the local error of
  ``(qubit,)`` if any, else the all-qubit one. Qiskit circuits measure one qubit per
  instruction, so a readout error defined on a tuple of several qubits never matches
  (Aer looks up the key of the measure's own qubits) and is ignored, as by Aer;
- this version of the Python `NoiseModel` has no non-local errors any more; relaxation
  during ``delay`` comes from a custom noise pass, which this engine does not run (a
  circuit with delays is refused when the model has such passes).

Aer drops error terms of probability below 1e-10 (``QuantumError::threshold_``); this
engine keeps them, so on device models the two agree to about 1e-9, not 1e-15.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import SAMPLE_ROWS, SAMPLE_SHOTS, outcome_bits
from .simulate import Angle, Gate, _matrices

if TYPE_CHECKING:
    from qiskit import QuantumCircuit

MAX_QUBITS = 10  # 4^m reals per row: m = 10 is 8 MiB per row
MAX_FUSED_QUBITS = 2  # fixed channels are fused into blocks on at most this many qubits
CHUNK_BYTES = 16 << 20  # one state buffer (rows x largest state, float64); two are live
MAX_CHUNK_ROWS = 4096
IGNORED = frozenset({"barrier"})
TOLERANCE = 1e-10  # PTMs of physical channels are real; rotations recognised to this


# --- Pauli transfer matrices --------------------------------------------------------------
#
# A g-qubit matrix in qiskit's convention (qarg k is bit k of the matrix index) has the
# PTM R[P, Q] = 2^-g Tr(P E(Q)), with Pauli index sum_k p_k 4^k (p_k in I, X, Y, Z of
# qarg k), so that r'_P = sum_Q R[P, Q] r_Q for r_P = Tr(P rho).

_PAULI = np.array(
    [[[1, 0], [0, 1]], [[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]],
    dtype=np.complex128,
)


@cache
def _paulis(g: int) -> np.ndarray:
    """(4^g, 2^g, 2^g): Pauli string sum_k p_k 4^k = P_{p_{g-1}} x ... x P_{p_0}."""
    out = np.ones((1, 1, 1), dtype=np.complex128)
    for k in range(g):
        d = 2**k
        out = np.einsum("aij,bkl->abikjl", _PAULI, out).reshape(4 ** (k + 1), 2 * d, 2 * d)
    out.flags.writeable = False
    return out


def _real(matrix: np.ndarray, what: str) -> np.ndarray:
    if np.abs(matrix.imag).max(initial=0.0) > 1e-9:
        raise ValueError(f"{what}: the Pauli transfer matrix is not real (not a channel?)")
    return np.ascontiguousarray(matrix.real)


def unitary_ptm(u: np.ndarray) -> np.ndarray:
    """PTM of rho -> U rho U^dagger (qiskit qubit order)."""
    d = u.shape[0]
    p = _paulis(d.bit_length() - 1)
    conj = u @ p @ u.conj().T  # U Q U^dagger for every Q
    return _real(np.einsum("pab,qba->pq", p, conj) / d, "unitary")


def kraus_ptm(kraus: Any) -> np.ndarray:
    """PTM of rho -> sum_K K rho K^dagger (qiskit qubit order)."""
    ops = np.asarray(kraus, dtype=np.complex128)  # (K, d, d)
    d = ops.shape[-1]
    p = _paulis(d.bit_length() - 1)
    conj = np.einsum("kab,qbc,kdc->qad", ops, p, ops.conj())  # sum_K K Q K^dagger
    return _real(np.einsum("pab,qba->pq", p, conj) / d, "kraus")


# reset to |0>: r_I' = r_I (the trace) and r_Z' = r_I; X and Y are lost
_RESET_PTM = np.array([[1.0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
_RESET_PTM.flags.writeable = False


def _instruction_ptm(op: Any) -> np.ndarray | None:
    """PTM of one instruction of a `QuantumError`'s circuits (qiskit order over its qargs),
    or None for a kind this does not know (the caller then asks qiskit for the channel)."""
    from qiskit.circuit import ParameterExpression

    name = op.name
    if name == "reset" and op.num_qubits == 1:
        return _RESET_PTM
    if name == "kraus":
        return kraus_ptm(op.params)
    params = getattr(op, "params", [])
    if any(isinstance(v, ParameterExpression) for v in params) or not hasattr(op, "to_matrix"):
        return None
    try:
        matrix = np.asarray(op.to_matrix(), dtype=np.complex128)
    except Exception:  # no matrix after all (e.g. an opaque instruction)
        return None
    return unitary_ptm(matrix)


_PLACED: dict[tuple[Any, ...], np.ndarray] = {}  # fixed gates: (kind, qargs, g) -> PTM


def _placed_ptm(op: Any, qargs: tuple[int, ...], order: tuple[int, ...]) -> np.ndarray | None:
    """`_instruction_ptm` on ``qargs`` of an error's g qubits (block ``order``): gates
    given by their name and scalar parameters (Paulis, resets) are cached."""
    params = getattr(op, "params", [])
    key = None
    if op.name != "kraus" and all(isinstance(v, int | float | complex | str) for v in params):
        key = (type(op), op.name, tuple(params), qargs, order)
        hit = _PLACED.get(key)
        if hit is not None:
            return hit
    local = _instruction_ptm(op)
    if local is None:
        return None
    out = _expand(local, tuple(reversed(qargs)), order)
    if key is not None and len(_PLACED) < 4096:
        out.flags.writeable = False
        _PLACED[key] = out
    return out


_ERROR_PTMS: dict[int, tuple[Any, np.ndarray]] = {}  # id(error) -> (error, PTM)
_ERROR_PTMS_SIZE = 16384


def error_ptm(error: Any) -> np.ndarray:
    """PTM of a qiskit_aer `QuantumError` (qiskit order over its qubits), cached by the
    error object's identity: sum_i p_i PTM(circuit_i), each circuit's instructions
    composed in order (Pauli gates, unitaries, ``kraus``, ``reset``); anything else goes
    through ``error.to_quantumchannel()`` (the same channel, tens of times slower)."""
    hit = _ERROR_PTMS.get(id(error))
    if hit is not None and hit[0] is error:
        return hit[1]
    g = int(error.num_qubits)
    total: np.ndarray | None = np.zeros((4**g, 4**g))
    order = tuple(reversed(range(g)))  # block order of qiskit's order over 0..g-1
    for circuit, prob in zip(error.circuits, error.probabilities, strict=True):
        ptm = np.eye(4**g)
        for inst in circuit.data:
            if inst.operation.name in IGNORED:
                continue
            qargs = tuple(circuit.find_bit(q).index for q in inst.qubits)
            local = _placed_ptm(inst.operation, qargs, order)
            if local is None:
                total = None
                break
            ptm = local @ ptm
        if total is None:
            break
        total += float(prob) * ptm
    if total is None:
        total = superop_ptm(np.asarray(error.to_quantumchannel().data))
    total.flags.writeable = False
    if len(_ERROR_PTMS) >= _ERROR_PTMS_SIZE:
        _ERROR_PTMS.pop(next(iter(_ERROR_PTMS)))
    _ERROR_PTMS[id(error)] = (error, total)
    return total


def superop_ptm(superop: np.ndarray) -> np.ndarray:
    """PTM of a qiskit `SuperOp` matrix (column-stacking: vec(rho)[i + d j] = rho[i, j])."""
    d = round(float(np.sqrt(superop.shape[0])))
    p = _paulis(d.bit_length() - 1)
    n = len(p)
    images = superop @ p.transpose(0, 2, 1).reshape(n, d * d).T  # column q: vec(E(Q))
    # Tr(P E(Q)) = sum_ab P[a, b] E(Q)[b, a] and E(Q)[b, a] = vec(E(Q))[b + d a]
    return _real(p.reshape(n, d * d) @ images / d, "channel")


def _rows_ptm(matrices: np.ndarray) -> np.ndarray:
    """Per-row PTMs of per-row unitaries (rows, d, d) -> (rows, 4^g, 4^g)."""
    d = matrices.shape[-1]
    p = _paulis(d.bit_length() - 1)
    conj = matrices[:, None] @ p[None] @ matrices.conj().transpose(0, 2, 1)[:, None]
    return np.einsum("pab,rqba->rpq", p, conj).real / d


@cache
def _rotation_plane(name: str, cls: type) -> tuple[int, int] | None:
    """(i, j) if the one-parameter 1-qubit gate's PTM is the rotation x_i' = c x_i - s x_j,
    x_j' = s x_i + c x_j by its angle (rz, p, u1: (X, Y); rx: (Y, Z); ry: (Z, X)), else None."""

    def ptm(theta: float) -> np.ndarray:
        return unitary_ptm(np.asarray(cls(theta).to_matrix(), dtype=np.complex128))

    try:
        r0, r90, r180 = ptm(0.0), ptm(np.pi / 2), ptm(np.pi)
    except Exception:  # not constructible from one angle
        return None
    base, cos, sin = (r0 + r180) / 2, (r0 - r180) / 2, r90 - (r0 + r180) / 2
    plane = [k for k in range(4) if abs(cos[k, k]) > 0.5]
    if len(plane) != 2:
        return None
    i, j = plane
    if sin[j, i] < 0:
        i, j = j, i
    expect_cos = np.zeros((4, 4))
    expect_cos[i, i] = expect_cos[j, j] = 1.0
    expect_sin = np.zeros((4, 4))
    expect_sin[j, i], expect_sin[i, j] = 1.0, -1.0
    theta = 0.7318
    if not (
        np.allclose(base, np.eye(4) - expect_cos, atol=TOLERANCE)
        and np.allclose(cos, expect_cos, atol=TOLERANCE)
        and np.allclose(sin, expect_sin, atol=TOLERANCE)
        and np.allclose(
            ptm(theta),
            base + np.cos(theta) * cos + np.sin(theta) * sin,
            atol=TOLERANCE,
        )
    ):
        return None
    return i, j


def _rotation_ptm(plane: tuple[int, int], theta: float) -> np.ndarray:
    i, j = plane
    out = np.eye(4)
    out[i, i] = out[j, j] = np.cos(theta)
    out[j, i], out[i, j] = np.sin(theta), -np.sin(theta)
    return out


# --- blocks: a matrix on an ordered tuple of local qubits ----------------------------------
#
# A block's matrix index is the C-order index over its qubits: qubits[0] is the most
# significant base-4 digit (the reverse of qiskit's qarg order).


def _permute(matrix: np.ndarray, qubits: tuple[int, ...], order: tuple[int, ...]) -> np.ndarray:
    """The block's matrix over the same qubits listed in ``order``."""
    g = len(qubits)
    if qubits == order:
        return matrix
    axes = [qubits.index(q) for q in order]
    tensor = matrix.reshape((4,) * (2 * g)).transpose(axes + [g + a for a in axes])
    return np.ascontiguousarray(tensor.reshape(4**g, 4**g))


def _expand(matrix: np.ndarray, qubits: tuple[int, ...], target: tuple[int, ...]) -> np.ndarray:
    """The block's matrix on the superset ``target`` (identity on the other qubits)."""
    rest = tuple(q for q in target if q not in qubits)
    full = np.kron(matrix, np.eye(4 ** len(rest))) if rest else matrix
    return _permute(full, qubits + rest, target)


# --- the compiled program ------------------------------------------------------------------


@dataclass(eq=False)
class _Fixed:
    qubits: tuple[int, ...]  # local qubits, block order
    matrix: np.ndarray  # (4^g, 4^g) real


@dataclass(eq=False)
class _Rot:
    qubit: int
    plane: tuple[int, int]
    const: float
    coefs: np.ndarray  # (P,) linear coefficients over the parameter rows
    nonlinear: list[Angle] = field(default_factory=list)  # summed, evaluated row by row

    @property
    def constant(self) -> bool:
        return not self.nonlinear and not np.any(self.coefs)


@dataclass(eq=False)
class _PerRow:
    qubits: tuple[int, ...]  # local qubits, qiskit qarg order
    gate: Gate  # simulate.Gate over local qubits; matrices per row via simulate._matrices


def _quantum_error(noise_model: Any, label: str, qubits: tuple[int, ...]) -> Any:
    """The QuantumError Aer applies with instruction ``label`` on ``qubits``, or None: the
    local error for exactly these qubits, else the all-qubit error of the label."""
    local = noise_model._local_quantum_errors.get(label)
    if local is not None and qubits in local:
        return local[qubits]
    return noise_model._default_quantum_errors.get(label)


def _readout_error(noise_model: Any, qubit: int) -> np.ndarray | None:
    """Aer's confusion matrix P[true, recorded] for a one-qubit measure of ``qubit``."""
    error = noise_model._local_readout_errors.get((qubit,), noise_model._default_readout_error)
    if error is None:
        return None
    return np.asarray(error.probabilities, dtype=np.float64)


@cache
def _blas_controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # threadpoolctl comes with scikit-learn; without it BLAS runs as is
        return None
    return ThreadpoolController()


def _one_blas_thread() -> Any:
    """The products here are small (4^g x 4^g with g <= 2) and many: threaded BLAS spends
    more time synchronising than computing (10-100x slower on a loaded 2-core machine)."""
    controller = _blas_controller()
    return nullcontext() if controller is None else controller.limit(limits=1, user_api="blas")


@dataclass(frozen=True)
class NoisyTemplate:
    """One measured copy and one noise model, compiled for `probabilities`."""

    qubits: tuple[int, ...]  # physical qubits; local qubit j <-> qubits[j]
    num_clbits: int  # outcome index over the circuit's clbits 0..num_clbits-1
    measured: tuple[tuple[int, int], ...]  # (physical qubit, clbit), by clbit
    num_parameters: int
    program: tuple[tuple[Any, ...], ...]  # steps, see `_plan`
    max_size: int  # largest state of the program, in reals per row
    rot_const: np.ndarray  # (n_rot,)
    rot_coefs: np.ndarray  # (P, n_rot)
    rot_nonlinear: tuple[tuple[int, Angle], ...]  # (rotation index, angle to add)
    readout: np.ndarray  # (2^num_clbits, final size): I/Z components -> probabilities

    # --- construction ----------------------------------------------------------------

    @classmethod
    def build(cls, circuit: QuantumCircuit, noise_model: Any) -> NoisyTemplate:
        """Compile ``circuit`` (one copy: final measurements, parameters unbound) with the
        channels ``noise_model`` (a qiskit_aer NoiseModel; None: ideal) attaches to it."""
        from qiskit.circuit import Delay, ParameterExpression
        from qiskit_aer.noise import NoiseModel
        from qiskit_aer.noise.errors.base_quantum_error import QuantumChannelInstruction

        noise_model = NoiseModel() if noise_model is None else noise_model
        qindex = {bit: i for i, bit in enumerate(circuit.qubits)}
        cindex = {bit: i for i, bit in enumerate(circuit.clbits)}
        pindex = {p: i for i, p in enumerate(circuit.parameters)}
        P = circuit.num_parameters

        # 1. instructions -> (kind, physical qubits, payload); measurements final
        raw: list[tuple[str, tuple[int, ...], Any]] = []
        measured: dict[int, int] = {}  # physical qubit -> clbit
        parent: dict[int, int] = {}

        def find(q: int) -> int:
            parent.setdefault(q, q)
            while parent[q] != q:
                parent[q] = parent[parent[q]]
                q = parent[q]
            return q

        for inst in circuit.data:
            op = inst.operation
            name = op.name
            if name in IGNORED:
                continue
            qargs = tuple(qindex[q] for q in inst.qubits)
            if measured.keys() & set(qargs):
                raise ValueError(
                    f"noisy simulation: {name} on qubits {qargs} follows a measurement; only "
                    "final measurements, one per qubit, are supported"
                )
            if getattr(op, "condition", None) is not None or (inst.clbits and name != "measure"):
                raise ValueError(f"noisy simulation: {name} uses classical bits")
            for q in qargs:
                find(q)
            for q in qargs[1:]:
                parent[find(q)] = find(qargs[0])
            if name == "measure":
                (clbit,) = (cindex[c] for c in inst.clbits)
                if clbit in measured.values():
                    raise ValueError(f"noisy simulation: clbit {clbit} is measured twice")
                measured[qargs[0]] = clbit
                raw.append(("measure", qargs, None))
            elif isinstance(op, QuantumChannelInstruction):  # an error placed in the circuit
                raw.append(("channel", qargs, op._quantum_error))
            elif isinstance(op, Delay) and noise_model._custom_noise_passes:
                raise ValueError(
                    "noisy simulation: delays get relaxation noise from the noise model's "
                    "custom passes, which this engine does not run"
                )
            elif hasattr(op, "to_matrix") or isinstance(op, Delay):
                raw.append(("gate", qargs, op))
            else:
                raise ValueError(f"noisy simulation: {name} is not supported")
        # qubits not linked to a measured one cannot change the outcome (channels are
        # trace preserving): dropped
        roots = {find(q) for q in measured}
        active = [q for q in dict.fromkeys(q for _, qs, _ in raw for q in qs) if find(q) in roots]
        if len(active) > MAX_QUBITS:
            raise ValueError(
                f"noisy simulation: {len(active)} linked qubits; at most {MAX_QUBITS} (split "
                "a packed circuit into its copies first)"
            )
        local = {q: j for j, q in enumerate(active)}

        # 2. the stream of channels on local qubits, error after its gate
        stream: list[Any] = []
        last: dict[int, int] = {}  # local qubit -> index in stream of its last op

        def emit(op: Any, qs: tuple[int, ...]) -> None:
            for q in qs:
                last[q] = len(stream)
            stream.append(op)

        def emit_error(error: Any, qs: tuple[int, ...]) -> None:
            if error is not None:
                emit(_Fixed(tuple(reversed(qs)), error_ptm(error)), qs)

        for kind, qargs, payload in raw:
            if qargs[0] not in local:
                continue
            qs = tuple(local[q] for q in qargs)
            if kind == "measure":  # its quantum error acts before it (set_errors_before)
                emit_error(_quantum_error(noise_model, "measure", qargs), qs)
                continue
            if kind == "channel":
                emit_error(payload, qs)
                continue
            op = payload
            error = _quantum_error(noise_model, op.label or op.name, qargs)
            params = list(getattr(op, "params", []))
            symbolic = any(isinstance(p, ParameterExpression) and p.parameters for p in params)
            plane = (
                _rotation_plane(op.name, type(op)) if len(qs) == 1 and len(params) == 1 else None
            )
            if isinstance(op, Delay):
                pass  # identity; an error the model attaches to "delay" follows
            elif plane is not None:  # rz, rx, ry, p: per-row (or constant) rotation
                angle = Angle.of(params[0], pindex)
                rot = _Rot(qs[0], plane, 0.0, np.zeros(P))
                if angle.coefs is None:
                    rot.nonlinear.append(angle)
                else:
                    rot.const = angle.const
                    rot.coefs[angle.cols] += angle.coefs
                prev = stream[last[qs[0]]] if qs[0] in last else None
                if isinstance(prev, _Rot) and prev.plane == plane:  # consecutive: angles add
                    prev.const += rot.const
                    prev.coefs += rot.coefs
                    prev.nonlinear += rot.nonlinear
                else:
                    emit(rot, qs)
            elif symbolic:
                emit(_PerRow(qs, Gate(qs, op, tuple(Angle.of(p, pindex) for p in params))), qs)
            else:
                matrix = np.asarray(op.to_matrix(), dtype=np.complex128)
                emit(_Fixed(tuple(reversed(qs)), unitary_ptm(matrix)), qs)
            emit_error(error, qs)

        # 3. constant rotations become fixed channels; fixed channels are fused
        ops: list[Any] = []
        for op in stream:
            if isinstance(op, _Rot) and op.constant:
                ops.append(_Fixed((op.qubit,), _rotation_ptm(op.plane, op.const)))
            else:
                ops.append(op)
        fused = _fuse(ops, MAX_FUSED_QUBITS)

        # 4. the order of the steps and the state's shape along them
        m = len(active)
        clbit_of = {local[q]: c for q, c in measured.items()}
        program, final, max_size = _plan(fused, m, set(clbit_of))
        rots = [step[-1] for step in program if step[0] in ("rot", "side_rot")]
        index_of = {id(r): k for k, r in enumerate(rots)}
        program = tuple(  # a rotation step refers to its angle by index
            (*step[:-1], index_of[id(step[-1])]) if step[0] in ("rot", "side_rot") else step
            for step in program
        )
        rot_const = np.array([r.const for r in rots], dtype=np.float64)
        rot_coefs = np.zeros((P, len(rots)))
        for k, r in enumerate(rots):
            rot_coefs[:, k] = r.coefs
        rot_nonlinear = tuple((k, a) for k, r in enumerate(rots) for a in r.nonlinear)

        # 5. measurement: the final state holds the (I, Z) components of the measured
        # qubits in ``final`` order (first: most significant) -> outcome probabilities
        joint = np.ones((1, 1))
        for q in final:
            t = np.array([[0.5, 0.5], [0.5, -0.5]])  # (I, Z) -> true outcome (0, 1)
            confusion = _readout_error(noise_model, active[q])  # P[true, recorded]
            joint = np.kron(joint, t if confusion is None else confusion.T @ t)
        index = np.zeros(len(joint), dtype=np.int64)
        for row in range(len(joint)):
            for k, q in enumerate(final):
                index[row] += ((row >> (len(final) - 1 - k)) & 1) << clbit_of[q]
        readout = np.zeros((2**circuit.num_clbits, len(joint)))
        readout[index] = joint
        return cls(
            qubits=tuple(active),
            num_clbits=circuit.num_clbits,
            measured=tuple(sorted(measured.items(), key=lambda qc: qc[1])),
            num_parameters=P,
            program=program,
            max_size=max_size,
            rot_const=rot_const,
            rot_coefs=rot_coefs,
            rot_nonlinear=rot_nonlinear,
            readout=readout,
        )

    # --- evaluation ------------------------------------------------------------------

    @property
    def num_qubits(self) -> int:
        return len(self.qubits)

    @property
    def chunk_rows(self) -> int:
        """Rows evaluated together: one state buffer of at most `CHUNK_BYTES`."""
        return int(max(1, min(MAX_CHUNK_ROWS, CHUNK_BYTES // (8 * self.max_size))))

    @property
    def chunk_bytes(self) -> int:
        """Working memory of one chunk: two state buffers, two rotation temporaries of a
        quarter state each, the qubits' own states before they join and the angles."""
        reals = 2.5 * self.max_size + 4 * self.num_qubits + 2 * len(self.rot_const)
        return int(8 * self.chunk_rows * reals)

    def probabilities(self, values: Any) -> np.ndarray:
        """Exact outcome probabilities with readout errors: values (rows, P) in
        ``circuit.parameters`` order -> (rows, 2^num_clbits), index sum_j b_j 2^j."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != self.num_parameters:
            raise ValueError(
                f"values: expected shape (rows, {self.num_parameters}), got {values.shape}"
            )
        rows = len(values)
        out = np.empty((rows, 2**self.num_clbits))
        chunk = min(self.chunk_rows, max(rows, 1))
        buffers = (np.empty(self.max_size * chunk), np.empty(self.max_size * chunk))
        temps = (np.empty(self.max_size // 4 * chunk), np.empty(self.max_size // 4 * chunk))
        with _one_blas_thread():
            for start in range(0, rows, chunk):
                part = values[start : start + chunk]
                out[start : start + len(part)] = self._chunk(part, buffers, temps)
        return out

    def _chunk(
        self,
        values: np.ndarray,
        buffers: tuple[np.ndarray, np.ndarray],
        temps: tuple[np.ndarray, np.ndarray],
    ) -> np.ndarray:
        rows = len(values)
        theta = self.rot_const + values @ self.rot_coefs  # (rows, n_rot)
        for k, angle in self.rot_nonlinear:
            theta[:, k] += angle.evaluate(values)
        theta = np.ascontiguousarray(theta.T)
        cos, sin = np.cos(theta), np.sin(theta)
        side = np.zeros((self.num_qubits, 4, rows))  # each qubit's state until it joins
        side[:, 0] = side[:, 3] = 1.0  # |0><0| = (I + Z) / 2: r_I = r_Z = 1
        cur, other = buffers
        cur[:rows] = 1.0  # the joint state of no qubit
        for step in self.program:
            kind, size = step[0], step[1]
            src = cur[: size * rows]
            if kind == "rot":  # in place: (x_i, x_j) of one qubit rotated by theta per row
                _, _, before, i, j, k = step
                view = src.reshape(before, 4, -1, rows)
                x, y = view[:, i], view[:, j]
                c, s = cos[k], sin[k]
                a = temps[0][: x.size].reshape(x.shape)
                b = temps[1][: x.size].reshape(x.shape)
                np.multiply(x, s, out=a)
                np.multiply(y, s, out=b)
                x *= c
                x -= b
                y *= c
                y += a
                continue
            if kind == "fixed":  # a block on adjacent axes: batched over the axes before
                _, _, matrix, before, dim = step
                dst = other[: size * rows]
                np.matmul(matrix, src.reshape(before, dim, -1), out=dst.reshape(before, dim, -1))
            elif kind == "front":  # move the block's axes to the front, then one product
                _, _, matrix, shape, axes, dim = step
                moved = other[: size * rows]
                np.copyto(
                    moved.reshape((*(shape[a] for a in axes), rows)),
                    src.reshape((*shape, rows)).transpose((*axes, len(shape))),
                )
                np.matmul(matrix, moved.reshape(dim, -1), out=src.reshape(dim, -1))
                continue
            elif kind == "enter":  # a qubit joins the joint state: a new axis
                _, _, q, comps, before = step
                dst = other[: size * len(comps) * rows]
                np.multiply(
                    side[q, list(comps)][None, :, None, :],
                    src.reshape(before, 1, -1, rows),
                    out=dst.reshape(before, len(comps), -1, rows),
                )
            elif kind == "finish":  # no more gates on a qubit: keep its I, Z (measured)
                _, _, before, comps = step
                dst = other[: size // 4 * len(comps) * rows]
                np.take(
                    src.reshape(before, 4, -1),
                    list(comps),
                    axis=1,
                    out=dst.reshape(before, len(comps), -1),
                )
            elif kind == "side_fixed":
                _, _, q, matrix = step
                side[q] = matrix @ side[q]
                continue
            elif kind == "side_rot":
                _, _, q, i, j, k = step
                x, y = side[q, i].copy(), side[q, j].copy()
                side[q, i] = cos[k] * x - sin[k] * y
                side[q, j] = sin[k] * x + cos[k] * y
                continue
            elif kind == "side_perrow":
                _, _, q, gate = step
                ptms = _rows_ptm(_matrices(gate, values))
                side[q] = np.einsum("rij,jr->ir", ptms, side[q])
                continue
            else:  # "perrow": a parametrised gate of another kind, one PTM per row
                _, _, gate, shape, axes, dim = step
                moved = other[: size * rows]
                np.copyto(
                    moved.reshape((*(shape[a] for a in axes), rows)),
                    src.reshape((*shape, rows)).transpose((*axes, len(shape))),
                )
                ptms = _rows_ptm(_matrices(gate, values))  # (rows, dim, dim)
                np.einsum(
                    "rij,jxr->ixr",
                    ptms,
                    moved.reshape(dim, -1, rows),
                    out=src.reshape(dim, -1, rows),
                )
                continue
            cur, other = other, cur
        final = cur[: self.readout.shape[1] * rows].reshape(-1, rows)
        return (self.readout @ final).T


def _fuse(ops: list[Any], limit: int) -> list[Any]:
    """Fuse fixed channels into blocks on at most ``limit`` qubits, each block kept
    before any later operation on its qubits (operations on other qubits commute)."""
    out: list[Any] = []
    pending: dict[int, _Fixed] = {}  # local qubit -> the open block on it

    def blocks_on(qubits: Iterable[int]) -> list[_Fixed]:
        return list({id(pending[q]): pending[q] for q in qubits if q in pending}.values())

    def flush(block: _Fixed) -> None:
        for q in block.qubits:
            del pending[q]
        out.append(block)

    for op in ops:
        if not isinstance(op, _Fixed):
            for block in blocks_on((op.qubit,) if isinstance(op, _Rot) else op.qubits):
                flush(block)
            out.append(op)
            continue
        touched = sorted(blocks_on(op.qubits), key=lambda b: len(b.qubits))
        while touched and len(set(op.qubits).union(*(b.qubits for b in touched))) > limit:
            flush(touched.pop())  # the largest first
        before = np.eye(1)
        before_qubits: tuple[int, ...] = ()
        for block in touched:  # disjoint open blocks: their tensor product comes first
            before = np.kron(before, block.matrix)
            before_qubits += block.qubits
            for q in block.qubits:
                del pending[q]
        qubits = op.qubits + tuple(q for q in before_qubits if q not in op.qubits)
        matrix = _expand(op.matrix, op.qubits, qubits)
        if touched:
            matrix = matrix @ _expand(before, before_qubits, qubits)
        block = _Fixed(qubits, matrix)
        if len(qubits) > limit:  # a gate wider than the limit stays on its own
            out.append(block)
            continue
        for q in qubits:
            pending[q] = block
    for block in blocks_on(list(pending)):
        flush(block)
    return out


def _op_qubits(op: Any) -> tuple[int, ...]:
    return (op.qubit,) if isinstance(op, _Rot) else op.qubits


def _plan(
    ops: list[Any], m: int, measured: set[int]
) -> tuple[tuple[tuple[Any, ...], ...], tuple[int, ...], int]:
    """Order the operations and lay out the state they act on.

    The joint state is an array (d_0, ..., d_{a-1}, rows) with one axis per qubit that has
    joined it. A qubit joins at its first multi-qubit operation (before that it is a
    product factor: one 4-vector per row, ``side``), as a new axis beside the gate's
    other qubit (or first); after its last
    operation only its I and Z components matter (the measurement reads nothing else),
    so its axis shrinks to 2 (to nothing if it is not measured). Among the operations
    whose predecessors are done, the one making fewer qubits join goes first (ties: the
    circuit's order), so a chain is swept with about 4 x 4 x 2^k reals per row rather
    than 4^m. Steps, each (kind, size of its input state per row, ...):

    ("side_fixed", 1, q, M), ("side_rot", 1, q, i, j, rot), ("side_perrow", 1, q, gate);
    ("enter", size, q, comps, before); ("finish", size, before, comps);
    ("rot", size, before, i, j, rot) on the axis after ``before`` reals;
    ("fixed", size, M, before, 4^g) on adjacent axes; ("front", size, M, shape, axes, 4^g)
    and ("perrow", size, gate, shape, axes, 4^g) after moving the axes to the front.

    Returns the steps, the measured qubits' order in the final state, and the largest
    state size (reals per row).
    """
    qubits_of = [_op_qubits(op) for op in ops]
    remaining = dict.fromkeys(range(m), 0)
    for qs in qubits_of:
        for q in qs:
            remaining[q] += 1
    axes: list[list[int]] = []  # [qubit, dim] of the joint state, first axis first
    steps: list[tuple[Any, ...]] = []
    size = max_size = 1

    def position(q: int) -> tuple[int, int]:
        """Axis of q and the number of reals per row before it."""
        before = 1
        for a, (p, d) in enumerate(axes):
            if p == q:
                return a, before
            before *= d
        raise AssertionError(q)

    def enter(q: int, comps: tuple[int, ...], at: int = 0) -> None:
        nonlocal size, max_size
        before = int(np.prod([d for _, d in axes[:at]]))
        steps.append(("enter", size, q, comps, before))
        axes.insert(at, [q, len(comps)])
        size *= len(comps)
        max_size = max(max_size, size)

    def finish(q: int) -> None:
        nonlocal size
        comps = (0, 3) if q in measured else (0,)
        if q not in joined:
            if q in measured:
                enter(q, comps)
            return
        a, before = position(q)
        steps.append(("finish", size, before, comps))
        size = size // 4 * len(comps)
        if len(comps) == 1:
            del axes[a]
        else:
            axes[a][1] = len(comps)

    def to_front(qs: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        shape = tuple(d for _, d in axes)
        order = [position(q)[0] for q in qs]
        order += [a for a in range(len(axes)) if a not in order]
        axes[:] = [axes[a] for a in order]
        return shape, tuple(order)

    joined: set[int] = set()
    for q in range(m):
        if remaining[q] == 0:
            finish(q)
    preds = []
    last: dict[int, int] = {}
    for n, qs in enumerate(qubits_of):
        preds.append({last[q] for q in qs if q in last})
        for q in qs:
            last[q] = n
    done: set[int] = set()
    todo = list(range(len(ops)))
    while todo:

        def growth(n: int) -> int:
            qs = qubits_of[n]
            return 0 if len(qs) == 1 else sum(q not in joined for q in qs)

        n = min((n for n in todo if preds[n] <= done), key=lambda n: (growth(n), n))
        todo.remove(n)
        done.add(n)
        op, qs = ops[n], qubits_of[n]
        if len(qs) == 1 and qs[0] not in joined:
            q = qs[0]
            if isinstance(op, _Rot):
                steps.append(("side_rot", 1, q, *op.plane, op))
            elif isinstance(op, _Fixed):
                steps.append(("side_fixed", 1, q, op.matrix))
            else:
                steps.append(("side_perrow", 1, q, op.gate))
        else:
            for q in qs:
                if q not in joined:  # next to a qubit of the gate that has joined
                    anchor = next((p for p in qs if p in joined), None)
                    enter(q, (0, 1, 2, 3), 0 if anchor is None else position(anchor)[0])
                    joined.add(q)
            if isinstance(op, _Rot):
                _, before = position(op.qubit)
                steps.append(("rot", size, before, *op.plane, op))
            elif isinstance(op, _Fixed):
                g = len(qs)
                pos = sorted(position(q)[0] for q in qs)
                if pos == list(range(pos[0], pos[0] + g)):
                    order = tuple(axes[a][0] for a in pos)
                    before = position(order[0])[1]
                    steps.append(("fixed", size, _permute(op.matrix, qs, order), before, 4**g))
                else:
                    shape, order = to_front(qs)
                    steps.append(("front", size, op.matrix, shape, order, 4**g))
            else:
                block = tuple(reversed(op.qubits))  # qiskit order -> block order
                shape, order = to_front(block)
                steps.append(("perrow", size, op.gate, shape, order, 4 ** len(block)))
        for q in qs:
            remaining[q] -= 1
            if remaining[q] == 0:
                finish(q)
    final = tuple(q for q, _ in axes)
    assert all(d == 2 for _, d in axes) and set(final) == measured
    return tuple(steps), final, max_size


# --- cached templates, probabilities and sampling ------------------------------------------

_CACHE: dict[tuple[int, int], tuple[Any, Any, NoisyTemplate]] = {}
_CACHE_SIZE = 64


def noisy_template(circuit: QuantumCircuit, noise_model: Any) -> NoisyTemplate:
    """`NoisyTemplate.build`, cached by the identity of the circuit and the noise model
    (build a new model rather than mutating one that has been used)."""
    key = (id(circuit), id(noise_model))
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is circuit and hit[1] is noise_model:
        return hit[2]
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    template = NoisyTemplate.build(circuit, noise_model)
    _CACHE[key] = (circuit, noise_model, template)
    return template


def noisy_probabilities(circuit: QuantumCircuit, noise_model: Any, values: Any) -> np.ndarray:
    """Exact outcome probabilities of one copy under ``noise_model``: (rows, 2^clbits)."""
    return noisy_template(circuit, noise_model).probabilities(values)


def sample_counts(
    probs: np.ndarray,
    shots: int,
    rng: np.random.Generator,
    *,
    sample_rows: int = SAMPLE_ROWS,
) -> tuple[np.ndarray, np.ndarray]:
    """Shots drawn from outcome probabilities (rows, 2^k): counts of ones per clbit
    (rows, k) int64, and the shots of the first ``sample_rows`` rows as bits
    (min(rows, sample_rows), min(shots, SAMPLE_SHOTS), k) uint8 (clbit j in column j)."""
    probs = np.clip(np.asarray(probs, dtype=np.float64), 0.0, None)
    probs /= probs.sum(axis=1, keepdims=True)
    k = int(probs.shape[1]).bit_length() - 1
    counts = rng.multinomial(int(shots), probs)  # (rows, 2^k), one multinomial per row
    table = (np.arange(2**k)[:, None] >> np.arange(k)) & 1
    ones = counts @ table
    rows = min(sample_rows, len(probs))
    samples = np.zeros((rows, min(int(shots), SAMPLE_SHOTS), k), dtype=np.uint8)
    outcomes = np.arange(2**k)
    for r in range(rows):
        samples[r] = outcome_bits(outcomes, counts[r], k, rng)
    return ones, samples
