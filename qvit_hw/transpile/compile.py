"""Transpile a QNN once per target, packed k times, and bind token rows with numpy.

`compile_qnn(spec, target)` chooses k disjoint placements (`layout`, `packing`), transpiles
one measured copy of the QNN into each placement's own small sub-target with qiskit's
preset pass manager (parameters unbound; each copy is confined to its own qubits, so no
gate, SWAPs included, can link two copies), and composes the copies into one ISA circuit
over the whole chip. Inputs are per copy (ParameterVector ``x{c}``), the weights ``w`` are
shared, so one compiled template serves every QNN of a layer and every token:
`CompiledQNN.parameter_values` turns (rows, n) angles into parameter rows by fancy
indexing. Measurement: copy c, logical qubit i -> clbit c*n + i, also after routing,
because the measurements are part of the circuit the transpiler maps.

Specs whose pairs all fit on couplers (chains, trees on most chips) get exact placements
and no SWAPs; other pair lists (cycles on heavy-hex, triangles anywhere) get a connected
n-qubit region per copy, and the transpiler lays out and routes inside it.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from itertools import permutations
from typing import TYPE_CHECKING, Any

import numpy as np

from ..circuit import QNNSpec, parameter_columns, qiskit_circuit
from ..devices import DeviceTarget, get_target
from ..errors import TranspileError
from .layout import UNUSABLE_ERROR, Candidates, Chip, embeddings, regions
from .packing import PACKINGS, pack, with_tiling

if TYPE_CHECKING:
    from qiskit import QuantumCircuit
    from qiskit.transpiler import Target

OPTIMIZATION_LEVEL = 1  # level 2/3 give no shallower circuits for these parametric QNNs


@dataclass(frozen=True)
class CompiledQNN:
    """One QNN spec transpiled for one target, k copies packed, parameters unbound."""

    spec: QNNSpec
    target_name: str
    circuit: QuantumCircuit  # ISA circuit over the device's physical qubits
    copies: int  # k
    placements: tuple[tuple[int, ...], ...]  # (k, n): physical qubit of logical i, best first
    x_index: np.ndarray  # (k, n): position in list(circuit.parameters) of input i of copy c
    w_index: np.ndarray  # (2P,): positions of the shared weights w_0..w_{2P-1}
    swaps: int  # per copy (the best placement's)
    depth: int
    two_qubit_gates: int
    est_success: float  # of the best placement; nan if the target has no calibration
    transpile_seconds: float

    def parameter_values(self, angles: Any, weights: Any) -> np.ndarray:
        """angles (rows, n), weights (P, 2) -> (ceil(rows / k), circuit.num_parameters).

        Row r goes to execution r // k, copy r % k; unused copies of the last execution
        repeat its last row.
        """
        n, k = self.spec.n_qubits, self.copies
        angles = _as_float_array(angles, "angles")
        weights = _as_float_array(weights, "weights")
        if angles.ndim != 2 or angles.shape[1] != n:
            raise ValueError(f"angles: expected shape (rows, {n}), got {angles.shape}")
        if weights.size != 2 * self.spec.n_pairs:
            raise ValueError(
                f"weights: expected shape {self.spec.weight_shape}, got {weights.shape}"
            )
        executions = -(-len(angles) // k)
        pad = executions * k - len(angles)
        if pad:
            angles = np.concatenate([angles, np.repeat(angles[-1:], pad, axis=0)])
        values = np.empty((executions, self.circuit.num_parameters))
        values[:, self.x_index.reshape(-1)] = angles.reshape(executions, k * n)
        values[:, self.w_index] = weights.reshape(-1)
        return values

    def copy_circuit(self, copy: int) -> QuantumCircuit:
        """Copy ``copy`` alone: qubit i is ``placements[copy][i]``'s, clbits 0..n-1."""
        from qiskit import QuantumCircuit

        n = self.spec.n_qubits
        local = {q: i for i, q in enumerate(self.placements[copy])}
        qubit_index = {bit: i for i, bit in enumerate(self.circuit.qubits)}
        clbit_index = {bit: i for i, bit in enumerate(self.circuit.clbits)}
        out = QuantumCircuit(n, n, name=f"{self.circuit.name}_copy{copy}")
        for inst in self.circuit.data:
            qargs = [qubit_index[q] for q in inst.qubits]
            inside = [q in local for q in qargs]
            if not any(inside):
                continue
            if not all(inside):
                raise TranspileError(f"{inst.operation.name} on {qargs} spans two copies")
            clbits = [clbit_index[c] - copy * n for c in inst.clbits]
            out.append(inst.operation, [local[q] for q in qargs], clbits)
        return out


def compile_qnn(
    spec: QNNSpec,
    target: DeviceTarget | str,
    *,
    max_copies: int | None = None,
    seed: int = 0,
    optimization_level: int = OPTIMIZATION_LEVEL,
    packing: str = "best",
) -> CompiledQNN:
    """Transpile ``spec`` once for ``target``: k disjoint copies (``packing``: "best" or
    "max", see `packing.pack`), parameters unbound."""
    if not isinstance(spec, QNNSpec):
        raise TypeError(f"spec must be a QNNSpec, got {type(spec).__name__}")
    dt = get_target(target) if isinstance(target, str) else target
    start = time.perf_counter()
    candidates = placement_candidates(dt, spec)
    if not len(candidates):
        raise TranspileError(
            f"a {spec.n_qubits}-qubit QNN does not fit on {dt.name}: no connected region of "
            f"{spec.n_qubits} working qubits"
        )
    chosen = candidates.placements[pack(candidates, max_copies, packing)]  # (k, n)
    template = measured_circuit(spec)
    copies = _transpile_copies(template, dt, chosen, candidates.routed, seed, optimization_level)
    circuit = _assemble(dt, spec, copies)
    check_isa(circuit, dt)
    params = list(circuit.parameters)
    try:
        columns = [parameter_columns(params, spec, f"x{c}") for c in range(len(copies))]
    except ValueError as exc:
        raise TranspileError(f"transpiling dropped {exc} on {dt.name}") from exc
    best = copies[0]
    return CompiledQNN(
        spec=spec,
        target_name=dt.name,
        circuit=circuit,
        copies=len(copies),
        placements=tuple(c.placement for c in copies),
        x_index=np.stack([x for x, _ in columns]),
        w_index=columns[0][1],
        swaps=best.swaps,
        depth=best.circuit.depth(),
        two_qubit_gates=sum(1 for i in best.circuit.data if i.operation.num_qubits == 2),
        est_success=success_probability(best.circuit, dt, best.region),
        transpile_seconds=time.perf_counter() - start,
    )


def logical_qnn(spec: QNNSpec) -> CompiledQNN:
    """The logical circuit as a one-copy template (ideal simulators have no device)."""
    circuit = qiskit_circuit(spec, measure=True)  # clbit i reads qubit i
    circuit.name = f"qnn{spec.n_qubits}_logical"
    x_index, w_index = parameter_columns(list(circuit.parameters), spec)
    return CompiledQNN(
        spec=spec,
        target_name="logical",
        circuit=circuit,
        copies=1,
        placements=(tuple(range(spec.n_qubits)),),
        x_index=x_index[None],
        w_index=w_index,
        swaps=0,
        depth=circuit.depth(),
        two_qubit_gates=spec.n_pairs,
        est_success=float("nan"),
        transpile_seconds=0.0,
    )


def template_for(
    spec: QNNSpec,
    device: DeviceTarget | None,
    *,
    max_copies: int | None = None,
    seed: int = 0,
    packing: str = "best",
) -> CompiledQNN:
    """The template a backend runs ``spec`` as: packed and transpiled for its device, or the
    logical circuit where the backend has none (an ideal simulator)."""
    if device is None:
        return logical_qnn(spec)
    return compile_qnn(spec, device, max_copies=max_copies, seed=seed, packing=packing)


def placement_candidates(dt: DeviceTarget, spec: QNNSpec) -> Candidates:
    """Zero-SWAP embeddings of ``spec`` on ``dt`` (with the lattice's exact tiling where one
    is known, `packing.with_tiling`), or connected regions to route in."""
    chip = Chip.of(dt)
    candidates = embeddings(chip, spec)
    return with_tiling(chip, spec, candidates) if len(candidates) else regions(chip, spec)


def copies_by_packing(dt: DeviceTarget, spec: QNNSpec) -> dict[str, int]:
    """k of every packing strategy for ``spec`` on ``dt`` (no transpiling)."""
    candidates = placement_candidates(dt, spec)
    return {p: len(pack(candidates, packing=p)) for p in PACKINGS}


def circuit_key(circuit: QuantumCircuit) -> str:
    """sha256 of a circuit's OpenQASM 3 text: equal circuits, equal keys, across processes."""
    from qiskit import qasm3

    return hashlib.sha256(qasm3.dumps(circuit).encode()).hexdigest()


def measured_circuit(spec: QNNSpec) -> QuantumCircuit:
    """The QNN with logical qubit i measured into clbit i of register ``c``."""
    from qiskit import ClassicalRegister

    qc = qiskit_circuit(spec)
    qc.add_register(ClassicalRegister(spec.n_qubits, "c"))
    qc.measure(range(spec.n_qubits), range(spec.n_qubits))
    return qc


@dataclass(frozen=True)
class _Copy:
    circuit: QuantumCircuit  # over the region's qubits (local index j = region[j])
    region: tuple[int, ...]
    placement: tuple[int, ...]  # physical qubit of logical i at the start
    swaps: int


def _transpile_copies(
    template: QuantumCircuit,
    dt: DeviceTarget,
    regions: np.ndarray,
    routed: bool,
    seed: int,
    level: int,
) -> list[_Copy]:
    """Transpile ``template`` into each region's sub-target; regions of the same shape (same
    local gates and coupler directions) reuse one result. Unrouted copies of every distinct
    shape go through the transpiler together, side by side, in a single run (building a
    preset pass manager costs more than running it on a few more qubits)."""
    shape_of: list[tuple[Any, ...]] = []
    reps: dict[tuple[Any, ...], tuple[int, ...]] = {}
    all_regions = [tuple(map(int, r)) for r in regions]
    for region in all_regions:
        sub = restrict_target(dt.target, region)
        shape = tuple(sorted((name, tuple(sorted(sub[name]))) for name in sub.operation_names))
        shape_of.append(shape)
        reps.setdefault(shape, region)
    done = None if routed else _transpile_side_by_side(template, dt, reps, seed, level)
    if done is None:
        done = {
            shape: _transpile(template, restrict_target(dt.target, region), routed, seed, level)
            for shape, region in reps.items()
        }
    copies = []
    for region, shape in zip(all_regions, shape_of, strict=True):
        out, layout, swaps = done[shape]
        copies.append(_Copy(out, region, tuple(region[j] for j in layout), swaps))
    return copies


def _transpile_side_by_side(
    template: QuantumCircuit,
    dt: DeviceTarget,
    reps: dict[tuple[Any, ...], tuple[int, ...]],
    seed: int,
    level: int,
) -> dict[tuple[Any, ...], tuple[QuantumCircuit, tuple[int, ...], int]] | None:
    """One transpiler run over one copy per shape, each on its own region; split back into
    per-copy circuits over local indices. None if the transpiler moved or joined copies."""
    from qiskit import QuantumCircuit

    n, m = template.num_qubits, len(reps)
    if any(len(region) != n for region in reps.values()):
        return None
    union = tuple(q for region in reps.values() for q in region)
    wide = QuantumCircuit(m * n, m * n)
    for i in range(m):
        block = range(i * n, (i + 1) * n)
        wide.compose(template, qubits=block, clbits=block, inplace=True)
    out, layout, swaps = _transpile(wide, restrict_target(dt.target, union), False, seed, level)
    if swaps or layout != tuple(range(m * n)):
        return None
    parts = [QuantumCircuit(n, n, name=template.name) for _ in range(m)]
    for inst in out.data:
        qs = [out.find_bit(q).index for q in inst.qubits]
        cs = [out.find_bit(c).index for c in inst.clbits]
        owners = {q // n for q in qs} | {c // n for c in cs}
        if len(owners) != 1:  # an instruction across copies: fall back to one run per shape
            return None
        part = parts[owners.pop()]
        part.append(
            inst.operation, [part.qubits[q % n] for q in qs], [part.clbits[c % n] for c in cs]
        )
    return {shape: (parts[i], tuple(range(n)), 0) for i, shape in enumerate(reps)}


def _transpile(
    template: QuantumCircuit, target: Target, routed: bool, seed: int, level: int
) -> tuple[QuantumCircuit, tuple[int, ...], int]:
    """(ISA circuit, local initial layout of logical 0..n-1, SWAPs the router added)."""
    from qiskit.transpiler import generate_preset_pass_manager

    n = template.num_qubits
    pm = generate_preset_pass_manager(
        optimization_level=level,
        target=target,
        initial_layout=None if routed else list(range(n)),
        seed_transpiler=seed,
    )
    swaps = 0

    def count_swaps(dag: Any, **_: Any) -> None:  # swaps live between routing and translation
        nonlocal swaps
        swaps = max(swaps, dag.count_ops().get("swap", 0))

    out = pm.run(template, callback=count_swaps)
    layout = out.layout.initial_index_layout(filter_ancillas=True) if out.layout else range(n)
    return out, tuple(layout[:n]), swaps


def restrict_target(target: Target, qubits: tuple[int, ...]) -> Target:
    """The part of ``target`` on ``qubits``, renumbered 0..m-1 (broken couplers left out)."""
    from qiskit.transpiler import Target

    index = {q: i for i, q in enumerate(qubits)}
    sub = Target(num_qubits=len(qubits), dt=target.dt)
    for name in target.operation_names:
        op = target.operation_from_name(name)
        entries = target[name]
        if isinstance(op, type) or None in entries:  # control flow, global ops: not needed
            continue
        if op.num_qubits == 1:
            wanted: list[tuple[int, ...]] = [(q,) for q in qubits]
        else:
            wanted = list(permutations(qubits, op.num_qubits))
        props = {}
        for qargs in wanted:
            if qargs not in entries:
                continue
            p = entries[qargs]
            if len(qargs) == 2 and p is not None and (p.error or 0.0) >= UNUSABLE_ERROR:
                continue
            props[tuple(index[q] for q in qargs)] = p
        if props:
            sub.add_instruction(op, props, name=name)
    return sub


def _assemble(dt: DeviceTarget, spec: QNNSpec, copies: list[_Copy]) -> QuantumCircuit:
    """Compose the copies onto the chip; copy c's inputs become ParameterVector ``x{c}``."""
    from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
    from qiskit.circuit import ParameterVector

    n = spec.n_qubits
    circuit = QuantumCircuit(
        QuantumRegister(dt.num_qubits, "q"),
        ClassicalRegister(len(copies) * n, "c"),
        name=f"qnn{n}x{len(copies)}_{dt.name}",
    )
    for c, cp in enumerate(copies):
        x = ParameterVector(f"x{c}", n)
        old = list(cp.circuit.parameters)
        try:
            cols, _ = parameter_columns(old, spec)
        except ValueError as exc:
            raise TranspileError(f"transpiling dropped {exc} on {dt.name}") from exc
        renamed = cp.circuit.assign_parameters({old[j]: x[i] for i, j in enumerate(cols)})
        circuit.compose(renamed, qubits=cp.region, clbits=range(c * n, (c + 1) * n), inplace=True)
    return circuit


def check_isa(circuit: QuantumCircuit, dt: DeviceTarget) -> None:
    """Raise TranspileError unless every operation is native and 2-qubit gates sit on edges."""
    edges = set(dt.edges)
    index = {bit: i for i, bit in enumerate(circuit.qubits)}
    for inst in circuit.data:
        name = inst.operation.name
        qargs = tuple(index[q] for q in inst.qubits)
        if name == "barrier":
            continue
        if not dt.target.instruction_supported(name, qargs):
            raise TranspileError(f"{name} on qubits {qargs} is not native on {dt.name}")
        if len(qargs) == 2 and (min(qargs), max(qargs)) not in edges:
            raise TranspileError(f"{name} on qubits {qargs} is not on a coupler of {dt.name}")


def success_probability(
    circuit: QuantumCircuit, dt: DeviceTarget, region: tuple[int, ...]
) -> float:
    """Product of (1 - error) over the copy's operations (gates and readout), from calibration.

    ``circuit`` is a transpiled copy over ``region`` (local qubit j = physical region[j]).
    nan when the target has no calibration numbers.
    """
    if not dt.has_calibration:
        return math.nan
    prob = 1.0
    for inst in circuit.data:
        qargs = tuple(region[circuit.find_bit(q).index] for q in inst.qubits)
        name = inst.operation.name
        if name == "barrier":
            continue
        props = dt.target[name].get(qargs)
        if props is not None and props.error is not None:
            prob *= 1.0 - props.error
    return prob


def _as_float_array(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensors
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of numbers, got {type(value).__name__}") from exc
