"""The QNN circuit: one spec, exact torch simulators, and every rendering.

A QNN on n qubits encodes a token x in R^n with RY(x_i) on qubit i, then for each pair
(p, q) of its pair list, in order, applies RY(a) on p, RY(b) on q and CNOT(p -> q). Its
output is <Z_i> for every qubit. `QNNSpec` is the single source of truth: the torch
simulators, the Qiskit circuit, OpenQASM 2/3, Quil and the PennyLane QNode are all
rendered from it, and the tests check each against the exact simulators.

Weights of one QNN have shape (P, 2): ``weights[k] = (a_k, b_k)`` for pair k. Flattened,
they are the parameter vector ``w = (a_0, b_0, a_1, b_1, ...)`` of every rendering.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .errors import CircuitError, one_line

if TYPE_CHECKING:  # heavy SDK imports stay lazy
    from qiskit import QuantumCircuit

MIN_QUBITS, MAX_QUBITS = 2, 16


@dataclass(frozen=True)
class QNNSpec:
    """A QNN's qubit count and its ordered list of entangling pairs (control, target)."""

    n_qubits: int
    pairs: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        n = self.n_qubits
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n_qubits must be an int, got {type(n).__name__}")
        if not MIN_QUBITS <= n <= MAX_QUBITS:
            raise ValueError(f"n_qubits must be in {MIN_QUBITS}..{MAX_QUBITS}, got {n}")
        pairs = tuple(_pair(pair) for pair in self.pairs)
        object.__setattr__(self, "pairs", pairs)
        if not pairs:
            raise ValueError("pairs must not be empty")
        seen: set[tuple[int, int]] = set()
        for p, q in pairs:
            if not (0 <= p < n and 0 <= q < n):
                raise ValueError(f"pairs: ({p}, {q}) names a qubit outside 0..{n - 1}")
            if p == q:
                raise ValueError(f"pairs: ({p}, {q}) acts twice on qubit {p}")
            if (p, q) in seen:
                raise ValueError(f"pairs: ({p}, {q}) is repeated")
            seen.add((p, q))

    @property
    def n_pairs(self) -> int:
        return len(self.pairs)

    @property
    def weight_shape(self) -> tuple[int, int]:
        return (self.n_pairs, 2)

    @property
    def is_chain(self) -> bool:
        return self.pairs == chain_pairs(self.n_qubits)

    def to_dict(self) -> dict[str, Any]:
        return {"n_qubits": self.n_qubits, "pairs": [list(p) for p in self.pairs]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QNNSpec:
        return cls(int(data["n_qubits"]), tuple(tuple(p) for p in data["pairs"]))


def _pair(pair: Any) -> tuple[int, int]:
    """A pair of whole qubit indices (ints or numpy integers), else a TypeError naming it."""
    if (
        isinstance(pair, str | bytes)
        or not isinstance(pair, Sequence | np.ndarray)
        or len(pair) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in pair)
    ):
        raise TypeError(f"pairs: each pair must be two whole qubit indices, got {pair!r}")
    return int(pair[0]), int(pair[1])


def _qubits(n: Any) -> int:
    """A qubit count: an int (not a bool, not a float), else a TypeError naming ``n``."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected a whole number of qubits (int), got {type(n).__name__} {n!r}")
    return n


def chain_pairs(n: int) -> tuple[tuple[int, int], ...]:
    return tuple((i, i + 1) for i in range(_qubits(n) - 1))


def chain(n: int) -> QNNSpec:
    """The default spec: pairs (0,1), (1,2), ..., (n-2, n-1); a path on any chip."""
    return QNNSpec(n, chain_pairs(n))


def tree(n: int) -> QNNSpec:
    """A binary tree rooted at qubit 0 (pairs (parent, child), breadth first; degree <= 3)."""
    return QNNSpec(n, tuple(((i - 1) // 2, i) for i in range(1, _qubits(n))))


def pairs_from_string(text: str) -> tuple[tuple[int, int], ...]:
    """Parse a pair list given on a command line: ``"0-1,1-2,1-3"``."""
    try:
        return tuple(
            (int(p), int(q)) for p, q in (item.split("-") for item in text.split(",") if item)
        )
    except ValueError as exc:
        raise ValueError(f"pairs: expected 'p-q,p-q,...', got {text!r}") from exc


# --- exact torch simulators ---------------------------------------------------------------


def expectations(spec: QNNSpec, x: Tensor, weights: Tensor) -> Tensor:
    """Exact <Z_i> of the QNN: x (..., n) angles, weights (..., P, 2) -> (..., n).

    Leading dimensions broadcast, so x (B, T, 1, n) with weights (Q, P, 2) evaluates Q
    QNNs on every token at once: (B, T, Q, n). Differentiable in both arguments; the
    dtype follows the inputs (real floating tensors, promoted to the wider of the two).
    Angles must be finite: a TypeError or ValueError names the argument otherwise.
    """
    x, weights = _checked(spec, x, weights, finite=True)
    if spec.is_chain:
        return chain_expectations(x, weights)
    return statevector_expectations(spec, x, weights)


def expectations_per_qnn(spec: QNNSpec, x: Tensor, weights: Tensor) -> Tensor:
    """Q QNNs of one spec on every token: x (..., n), weights (Q, P, 2) -> (..., Q, n).

    What a QNN layer needs. The general path applies all Q unitaries with one matmul
    over the flattened tokens instead of broadcasting a (..., Q, D, D) batch. (Finiteness
    is not checked here: the model's hot path, where it would cost a device sync.)
    """
    x, weights = _checked(spec, x, weights)
    if weights.ndim != 3:
        raise ValueError(f"weights: expected (Q, P, 2), got {tuple(weights.shape)}")
    if spec.is_chain:
        return chain_expectations(x[..., None, :], weights)
    return statevector_per_qnn(spec, x, weights)


def statevector_per_qnn(spec: QNNSpec, x: Tensor, weights: Tensor) -> Tensor:
    """The general path of `expectations_per_qnn`, for any pair list (chains included)."""
    return _probabilities_per_qnn(spec, x, weights) @ z_signs(spec.n_qubits, x.dtype, x.device)


def _probabilities_per_qnn(spec: QNNSpec, x: Tensor, weights: Tensor) -> Tensor:
    """Outcome probabilities of Q QNNs on every token: x (..., n), weights (Q, P, 2) ->
    (..., Q, 2^n), one matmul over the flattened tokens."""
    q, dim = weights.shape[0], 2**spec.n_qubits
    u = unitary(spec, weights).reshape(q * dim, dim)  # (Q*D, D)
    psi = (product_state(x).reshape(-1, dim) @ u.T).reshape(*x.shape[:-1], q, dim)
    return psi * psi  # (..., Q, D)


def z_correlations(spec: QNNSpec, x: Tensor, weights: Tensor) -> Tensor:
    """Correlations of the qubits' Z outcomes of Q QNNs on every token, the ideal circuit's:
    x (..., n), weights (Q, P, 2) -> (..., Q, n, n), unit diagonal.

    corr_ij = (<Z_i Z_j> - <Z_i><Z_j>) / (sd_i sd_j): how the n estimates of one row (one
    set of shots) vary together. A qubit with (numerically) no variance is uncorrelated.
    """
    x, weights = _checked(spec, x, weights, finite=True)
    p = _probabilities_per_qnn(spec, x, weights)  # (..., Q, D)
    signs = z_signs(spec.n_qubits, x.dtype, x.device)  # (D, n)
    z = p @ signs  # (..., Q, n)
    cov = torch.einsum("...k,ki,kj->...ij", p, signs, signs) - z[..., :, None] * z[..., None, :]
    var = torch.diagonal(cov, dim1=-2, dim2=-1)  # (..., Q, n)
    sd = torch.sqrt(var.clamp(min=0))
    live = sd > 1e-6
    scale = torch.where(live, sd, torch.ones_like(sd))
    corr = cov / (scale[..., :, None] * scale[..., None, :])
    corr = torch.where(live[..., :, None] & live[..., None, :], corr, torch.zeros_like(corr))
    eye = torch.eye(spec.n_qubits, dtype=x.dtype, device=x.device)
    return (corr * (1 - eye) + eye).clamp(-1.0, 1.0)


def chain_expectations(x: Tensor, weights: Tensor) -> Tensor:
    """Closed form for chain specs, O(n) per token.

    <Z_0> = cos(x_0 + a_0); <Z_k> = cos(a_k) <Z_{k-1}> cos(x_k + b_{k-1})
    - sin(a_k) sin(x_k + b_{k-1}) for 1 <= k <= n-2; <Z_{n-1}> = <Z_{n-2}> cos(x_{n-1} +
    b_{n-2}). (Heisenberg picture: qubit k is still a product state when CNOT(k-1, k)
    reaches it, and nothing after RY(a_k) touches Z_k.)
    """
    n = x.shape[-1]
    a, b = weights[..., 0], weights[..., 1]  # (..., n-1) each
    phi = x[..., 1:] + b  # (..., n-1)
    cos_phi, sin_phi = torch.cos(phi), torch.sin(phi)
    cos_a, sin_a = torch.cos(a[..., 1:]), torch.sin(a[..., 1:])  # (..., n-2)
    z = torch.cos(x[..., 0] + a[..., 0])
    out = [z]
    for k in range(1, n - 1):
        z = cos_a[..., k - 1] * z * cos_phi[..., k - 1] - sin_a[..., k - 1] * sin_phi[..., k - 1]
        out.append(z)
    out.append(z * cos_phi[..., n - 2])
    return torch.stack(out, dim=-1)


def statevector_expectations(spec: QNNSpec, x: Tensor, weights: Tensor) -> Tensor:
    """Any pair list: the weight-only part fused into one real unitary per QNN.

    The encoding is a product state, so psi = U(w) kron_i RY(x_i)|0>, one matmul per token
    and no Python loop over tokens or gates at token scale.
    """
    u = unitary(spec, weights)  # (..., D, D), real
    psi0 = product_state(x)  # (..., D)
    psi = torch.einsum("...ed,...d->...e", u, psi0)  # (..., D)
    return (psi * psi) @ z_signs(spec.n_qubits, x.dtype, x.device)  # (..., n)


def product_state(x: Tensor) -> Tensor:
    """kron_i (cos(x_i/2), sin(x_i/2)): x (..., n) -> (..., 2^n); qubit 0 most significant."""
    half = x / 2
    amps = torch.stack((torch.cos(half), torch.sin(half)), dim=-1)  # (..., n, 2)
    state = amps[..., 0, :]
    for i in range(1, x.shape[-1]):
        state = (state[..., :, None] * amps[..., i, None, :]).flatten(-2)
    return state


def unitary(spec: QNNSpec, weights: Tensor) -> Tensor:
    """The real 2^n x 2^n matrix of the weight layers: weights (..., P, 2) -> (..., D, D)."""
    n, dim = spec.n_qubits, 2**spec.n_qubits
    batch = weights.shape[:-2]
    u = torch.eye(dim, dtype=weights.dtype, device=weights.device).expand(*batch, dim, dim)
    for k, (p, q) in enumerate(spec.pairs):
        u = _apply_ry(u, weights[..., k, 0], p, n)
        u = _apply_ry(u, weights[..., k, 1], q, n)
        u = u[..., _cnot_permutation(n, p, q), :]
    return u


def _apply_ry(u: Tensor, theta: Tensor, qubit: int, n: int) -> Tensor:
    """Left-multiply u (..., D, D) by RY(theta) on one qubit; theta has u's batch shape."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    ry = torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)  # (..., 2, 2)
    *batch, dim, _ = u.shape
    view = u.reshape(*batch, 2**qubit, 2, 2 ** (n - qubit - 1), dim)
    return torch.einsum("...ij,...ajbd->...aibd", ry, view).reshape(*batch, dim, dim)


@cache
def _cnot_permutation(n: int, control: int, target: int) -> Tensor:
    index = torch.arange(2**n)
    cbit, tbit = 1 << (n - 1 - control), 1 << (n - 1 - target)
    return torch.where(index & cbit != 0, index ^ tbit, index)


@cache
def z_signs(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(2^n, n) matrix of Z eigenvalues, +1 for bit 0 and -1 for bit 1 (qubit 0 first)."""
    bits = (torch.arange(2**n)[:, None] >> torch.arange(n - 1, -1, -1)) & 1
    return (1 - 2 * bits).to(dtype=dtype, device=device)


def _checked(
    spec: QNNSpec, x: Tensor, weights: Tensor, *, finite: bool = False
) -> tuple[Tensor, Tensor]:
    """The public simulators' inputs checked (a TypeError or ValueError naming the argument)
    and promoted to one real floating dtype: ``spec`` a QNNSpec, ``x`` (..., n) and
    ``weights`` (..., P, 2) real floating torch tensors, with ``finite`` finite angles."""
    if not isinstance(spec, QNNSpec):
        raise TypeError(f"spec: expected a QNNSpec (e.g. chain(4)), got {type(spec).__name__}")
    for name, value in (("x", x), ("weights", weights)):
        if not isinstance(value, Tensor):
            raise TypeError(
                f"{name}: expected a torch.Tensor, got {type(value).__module__}."
                f"{type(value).__name__} (torch.as_tensor converts it)"
            )
        if not value.dtype.is_floating_point:
            raise TypeError(f"{name}: expected real floating angles, got dtype {value.dtype}")
    if x.ndim < 1 or x.shape[-1] != spec.n_qubits:
        raise ValueError(
            f"x: last dimension must be n_qubits={spec.n_qubits}, got shape {tuple(x.shape)}"
        )
    if weights.ndim < 2 or tuple(weights.shape[-2:]) != spec.weight_shape:
        raise ValueError(
            f"weights: trailing shape must be {spec.weight_shape}, got {tuple(weights.shape)}"
        )
    if finite:
        for name, value in (("x", x), ("weights", weights)):
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"{name}: angles must be finite, got NaN or infinity")
    dtype = torch.promote_types(x.dtype, weights.dtype)
    return x.to(dtype), weights.to(dtype)


# --- renderings -------------------------------------------------------------------------


def qiskit_circuit(spec: QNNSpec, *, measure: bool = False) -> QuantumCircuit:
    """Qiskit circuit with ParameterVectors ``x`` (n inputs) and ``w`` (2P weights)."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector

    x = ParameterVector("x", spec.n_qubits)
    w = ParameterVector("w", 2 * spec.n_pairs)
    qc = QuantumCircuit(spec.n_qubits, name=f"qnn{spec.n_qubits}")
    for i in range(spec.n_qubits):
        qc.ry(x[i], i)
    for k, (p, q) in enumerate(spec.pairs):
        qc.ry(w[2 * k], p)
        qc.ry(w[2 * k + 1], q)
        qc.cx(p, q)
    if measure:
        qc.measure_all()
    return qc


def parameter_columns(
    parameters: Sequence[Any], spec: QNNSpec, inputs: str = "x"
) -> tuple[np.ndarray, np.ndarray]:
    """Where a QNN's inputs and weights sit in an ordered parameter list: positions of
    ``{inputs}[i]`` (n,) and of ``w[j]`` (2P,), the names `qiskit_circuit` gives them (a
    packed template names copy c's inputs ``x{c}[i]``). ValueError names one that is missing."""
    position = {p.name: i for i, p in enumerate(parameters)}
    names = [f"{inputs}[{i}]" for i in range(spec.n_qubits)]
    weights = [f"w[{j}]" for j in range(2 * spec.n_pairs)]
    missing = [name for name in (*names, *weights) if name not in position]
    if missing:
        raise ValueError(f"parameters: no {', '.join(missing[:3])} among them")
    return (
        np.array([position[name] for name in names], dtype=np.int64),
        np.array([position[name] for name in weights], dtype=np.int64),
    )


def bind_values(qc: QuantumCircuit, x: Sequence[float], weights: Sequence[float]) -> dict:
    """Parameter -> value map for a circuit from `qiskit_circuit` (weights flat or (P, 2))."""
    flat_w = [float(v) for v in torch.as_tensor(weights, dtype=torch.float64).reshape(-1)]
    by_name = {p.name: p for p in qc.parameters}
    values = {by_name[f"x[{i}]"]: float(v) for i, v in enumerate(x)}
    values.update({by_name[f"w[{j}]"]: v for j, v in enumerate(flat_w)})
    return values


def _angle(v: float) -> str:
    return format(float(v), ".17g")


def _gate_lines(spec: QNNSpec, x_names: Sequence[str], w_names: Sequence[str]) -> list[str]:
    lines = [f"ry({x_names[i]}) q[{i}];" for i in range(spec.n_qubits)]
    for k, (p, q) in enumerate(spec.pairs):
        lines += [
            f"ry({w_names[2 * k]}) q[{p}];",
            f"ry({w_names[2 * k + 1]}) q[{q}];",
            f"cx q[{p}], q[{q}];",
        ]
    return lines


def qasm3(spec: QNNSpec, weights: Tensor | Sequence[float] | None = None) -> str:
    """OpenQASM 3: inputs ``x_i`` always parameters; weights ``w_j`` bound if given."""
    n = spec.n_qubits
    x_names = [f"x_{i}" for i in range(n)]
    header = ["OPENQASM 3.0;", 'include "stdgates.inc";']
    header += [f"input float[64] {name};" for name in x_names]
    if weights is None:
        w_names = [f"w_{j}" for j in range(2 * spec.n_pairs)]
        header += [f"input float[64] {name};" for name in w_names]
    else:
        w_names = [_angle(v) for v in torch.as_tensor(weights, dtype=torch.float64).reshape(-1)]
        if len(w_names) != 2 * spec.n_pairs:
            raise ValueError(f"weights: expected {2 * spec.n_pairs} values, got {len(w_names)}")
    body = [f"qubit[{n}] q;", f"bit[{n}] c;", *_gate_lines(spec, x_names, w_names)]
    body.append("c = measure q;")
    return "\n".join(header + body) + "\n"


def qasm2(spec: QNNSpec, x: Sequence[float], weights: Tensor | Sequence[float]) -> str:
    """OpenQASM 2 with every angle bound (for tools that read only QASM 2)."""
    n = spec.n_qubits
    flat_w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{n}];", f"creg c[{n}];"]
    lines += _gate_lines(spec, [_angle(v) for v in x], [_angle(v) for v in flat_w])
    lines += [f"measure q[{i}] -> c[{i}];" for i in range(n)]
    return "\n".join(lines) + "\n"


def quil(spec: QNNSpec, weights: Tensor | Sequence[float] | None = None) -> str:
    """Quil text (built with pyquil): ``DECLARE x REAL[n]`` inputs, RY/CNOT, ``ro`` measured.

    Weights are ``DECLARE w REAL[2P]`` parameters unless given, then bound as numbers.
    """
    from pyquil import Program
    from pyquil.gates import CNOT, MEASURE, RY

    n = spec.n_qubits
    prog = Program()
    x = prog.declare("x", "REAL", n)
    if weights is None:
        w_ref = prog.declare("w", "REAL", 2 * spec.n_pairs)
        w: list[Any] = [w_ref[j] for j in range(2 * spec.n_pairs)]
    else:
        w = [float(v) for v in torch.as_tensor(weights, dtype=torch.float64).reshape(-1)]
        if len(w) != 2 * spec.n_pairs:
            raise ValueError(f"weights: expected {2 * spec.n_pairs} values, got {len(w)}")
    ro = prog.declare("ro", "BIT", n)
    for i in range(n):
        prog += RY(x[i], i)
    for k, (p, q) in enumerate(spec.pairs):
        prog += RY(w[2 * k], p)
        prog += RY(w[2 * k + 1], q)
        prog += CNOT(p, q)
    for i in range(n):
        prog += MEASURE(i, ro[i])
    return prog.out()


def load_qasm(text: str) -> QuantumCircuit:
    """Parse OpenQASM 2 or 3 text into a Qiskit circuit; a parse error is a CircuitError."""
    import qiskit.qasm2
    import qiskit.qasm3

    try:
        if text.lstrip().startswith("OPENQASM 2"):
            return qiskit.qasm2.loads(text)
        return qiskit.qasm3.loads(text)
    except Exception as exc:  # the parsers raise many unrelated types
        raise CircuitError(f"QASM does not parse: {one_line(exc)}") from exc


def pennylane_qnode(spec: QNNSpec, device: Any = None, **qnode_kwargs: Any) -> Any:
    """PennyLane QNode ``f(inputs, weights) -> [<Z_i>]`` (TorchLayer-compatible signature).

    ``inputs`` may carry a leading batch dimension (parameter broadcasting).
    """
    import pennylane as qml

    dev = device if device is not None else qml.device("default.qubit", wires=spec.n_qubits)
    qnode_kwargs.setdefault("interface", "torch")

    @qml.qnode(dev, **qnode_kwargs)
    def qnn(inputs, weights):
        for i in range(spec.n_qubits):
            qml.RY(inputs[..., i], wires=i)
        for k, (p, q) in enumerate(spec.pairs):
            qml.RY(weights[k, 0], wires=p)
            qml.RY(weights[k, 1], wires=q)
            qml.CNOT(wires=[p, q])
        return [qml.expval(qml.PauliZ(i)) for i in range(spec.n_qubits)]

    return qnn


def z_expectations_from_statevector(qc_bound: QuantumCircuit) -> list[float]:
    """<Z_i> per logical qubit of a bound circuit, from Qiskit's exact Statevector."""
    import numpy as np
    from qiskit.quantum_info import Statevector

    probs = Statevector(qc_bound.remove_final_measurements(inplace=False)).probabilities()
    bits = (np.arange(probs.size)[:, None] >> np.arange(qc_bound.num_qubits)) & 1  # little-endian
    return [float(v) for v in probs @ (1 - 2 * bits)]


def random_inputs(
    spec: QNNSpec, rows: int, *, seed: int = 0, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor]:
    """Random token angles (rows, n) in [-pi, pi] and weights (P, 2), for tests and demos."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(rows, spec.n_qubits, generator=g, dtype=dtype) * 2 - 1) * math.pi
    w = (torch.rand(*spec.weight_shape, generator=g, dtype=dtype) * 2 - 1) * math.pi
    return x, w
