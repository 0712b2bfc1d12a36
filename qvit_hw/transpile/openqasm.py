"""Compiled circuits as files other tools run: QPY, OpenQASM 3 (qiskit's and Amazon
Braket's dialect) and the parameter order that binds them.

A compiled template's parameters are, in ``circuit.parameters`` order (qiskit sorts them
by name), the shared weights ``w[0..2P-1]`` and each copy's inputs ``x{c}[0..n-1]``;
`parameter_order` says which is which, so a user binds a token row without qvit-hw:
``values[inputs[c][i]] = angle i of the row copy c serves``, ``values[weights[j]] =
w_j`` (``w_2p`` is a, ``w_2p+1`` b of pair p, the bundle's weights flattened).

Braket's dialect (`braket_qasm`): Braket's simulators read OpenQASM 3 without
``include "stdgates.inc"`` (they know their gates by name) and call CNOT ``cnot``; its
QPUs run a circuit on the physical qubits it names (``$17``) when the gates sit in a
``#pragma braket verbatim`` box, which is how packed copies keep their placements.
``sx`` is written ``rx(pi/2)`` and ``x`` ``rx(pi)`` (Rigetti's natives; equal up to a
global phase). Parameters become ``input float`` names (``x0[1]`` -> ``x0_1``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CircuitError
from ..files import write_atomic, write_json

if TYPE_CHECKING:
    from qiskit import QuantumCircuit

    from .compile import CompiledQNN

DIALECTS = ("qiskit", "braket")
# qiskit gate name -> (Braket's name, fixed angle written before the circuit's own)
_BRAKET_GATES: dict[str, tuple[str, str | None]] = {
    "rz": ("rz", None),
    "rx": ("rx", None),
    "ry": ("ry", None),
    "cx": ("cnot", None),
    "cz": ("cz", None),
    "iswap": ("iswap", None),
    "h": ("h", None),
    "sx": ("rx", "pi/2"),
    "x": ("rx", "pi"),
    "id": ("i", None),
}


def braket_name(name: str) -> str:
    """A qiskit parameter name as an OpenQASM identifier: ``x0[1]`` -> ``x0_1``."""
    out = re.sub(r"\[(\d+)\]", r"_\1", name)
    out = re.sub(r"\W", "_", out)
    return out if re.match(r"[A-Za-z_]", out) else f"p_{out}"


def _angle(value: Any, names: dict[Any, str]) -> str:
    """A gate angle: a float, or a parameter expression in Braket's input names."""
    from qiskit.circuit import ParameterExpression

    if isinstance(value, ParameterExpression):
        if not value.parameters:
            return repr(float(value))
        from qiskit.circuit import Parameter

        renamed = value.subs({p: Parameter(names[p]) for p in value.parameters})
        return str(renamed).replace("**", "^")
    return repr(float(value))


def braket_qasm(circuit: QuantumCircuit, *, physical: bool = True, exact: bool = False) -> str:
    """``circuit`` (qiskit, measured, parameters unbound) in Braket's OpenQASM 3 dialect.

    ``physical``: the circuit's qubit indices are a device's physical qubits: the gates
    go in a verbatim box on ``$q`` (only the qubits the circuit touches are named), so
    neither compiler nor rewiring moves them; otherwise ``qubit[n] q`` and plain gates.
    ``exact``: no measurements; a ``#pragma braket result expectation z(...)`` per
    classical bit instead (Braket's simulators with ``shots=0``), in clbit order.
    Parameters are ``input float`` (`braket_name`); bind them with a Program's ``inputs``.
    """
    qubit = {bit: i for i, bit in enumerate(circuit.qubits)}
    clbit = {bit: i for i, bit in enumerate(circuit.clbits)}
    names = {p: braket_name(p.name) for p in circuit.parameters}
    if len(set(names.values())) != len(names):
        raise CircuitError("parameter names collide once written as OpenQASM identifiers")

    def ref(q: Any) -> str:
        return f"${qubit[q]}" if physical else f"q[{qubit[q]}]"

    gates: list[str] = []
    measured: dict[int, str] = {}  # clbit -> qubit reference
    for inst in circuit.data:
        op = inst.operation
        if op.name == "barrier":
            continue
        if op.name == "measure":
            measured[clbit[inst.clbits[0]]] = ref(inst.qubits[0])
            continue
        if measured and any(ref(q) in measured.values() for q in inst.qubits):
            raise CircuitError(f"{op.name} after a measurement: Braket runs no mid-circuit ones")
        if op.name not in _BRAKET_GATES:
            raise CircuitError(
                f"gate {op.name!r} has no Braket counterpart here "
                f"(known: {', '.join(sorted(_BRAKET_GATES))})"
            )
        braket, fixed = _BRAKET_GATES[op.name]
        angles = [fixed] if fixed else [_angle(v, names) for v in op.params]
        args = f"({', '.join(angles)})" if angles else ""
        gates.append(f"{braket}{args} {', '.join(ref(q) for q in inst.qubits)};")
    if sorted(measured) != list(range(circuit.num_clbits)):
        raise CircuitError("every classical bit must be measured exactly once")
    lines = ["OPENQASM 3.0;"]
    lines += [f"input float {names[p]};" for p in circuit.parameters]
    if not physical:
        lines.append(f"qubit[{circuit.num_qubits}] q;")
    if not exact:
        lines.append(f"bit[{circuit.num_clbits}] b;")
    if physical:
        lines += ["#pragma braket verbatim", "box {", *(f"  {g}" for g in gates), "}"]
    else:
        lines += gates
    if exact:
        lines += [f"#pragma braket result expectation z({measured[c]})" for c in sorted(measured)]
    else:
        lines += [f"b[{c}] = measure {measured[c]};" for c in sorted(measured)]
    return "\n".join(lines) + "\n"


def parameter_order(compiled: CompiledQNN, *, dialect: str = "qiskit") -> dict[str, Any]:
    """How to bind ``compiled.circuit``: its parameters in order (qiskit's names and the
    OpenQASM file's), and the position of every copy's input and of every weight."""
    from qiskit import qasm3

    params = list(compiled.circuit.parameters)
    if dialect == "braket":
        qasm_names = [braket_name(p.name) for p in params]
    else:  # qiskit's exporter renames x0[1] to _x0_1_: read its choice back from the text
        declared = re.findall(r"^input float\[64\] (\w+);", qasm3.dumps(compiled.circuit), re.M)
        qasm_names = declared if len(declared) == len(params) else [p.name for p in params]
    n = compiled.spec.n_qubits
    return {
        "parameters": [p.name for p in params],
        "qasm_parameters": qasm_names,
        "inputs": compiled.x_index.tolist(),  # [copy][logical qubit] -> parameter position
        "weights": compiled.w_index.tolist(),  # [j] -> position of w_j (pair j // 2)
        "placements": [list(p) for p in compiled.placements],  # [copy][i] -> physical qubit
        "clbits": f"copy c, logical qubit i -> clbit c * {n} + i",
        "copies": compiled.copies,
        "n_qubits": n,
    }


def write_compiled(
    compiled: CompiledQNN,
    out: str | os.PathLike[str],
    stem: str,
    *,
    dialect: str = "qiskit",
    weights: dict[str, list[float]] | None = None,
) -> dict[str, str]:
    """Write ``out/<stem>.qpy``, ``out/<stem>.qasm`` (OpenQASM 3 in ``dialect``) and
    ``out/<stem>.json`` (`parameter_order`, plus ``weights``: each QNN's flattened weights,
    which this template serves); returns the three paths by kind."""
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {', '.join(DIALECTS)}, got {dialect!r}")
    import io

    from qiskit import qasm3, qpy

    out = Path(out)
    buffer = io.BytesIO()
    qpy.dump(compiled.circuit, buffer)
    text = (
        braket_qasm(compiled.circuit, physical=True)
        if dialect == "braket"
        else qasm3.dumps(compiled.circuit)
    )
    order = parameter_order(compiled, dialect=dialect)
    order.update(target=compiled.target_name, dialect=dialect, qnn_weights=weights or {})
    paths = {kind: out / f"{stem}.{kind}" for kind in ("qpy", "qasm", "json")}
    write_atomic(paths["qpy"], buffer.getvalue())
    write_atomic(paths["qasm"], text)
    write_json(paths["json"], order)
    return {kind: str(path) for kind, path in paths.items()}
