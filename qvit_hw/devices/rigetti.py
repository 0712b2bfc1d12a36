"""Rigetti devices: JSON snapshots in ``data/``, the QCS client, the live ISA.

The snapshots' ``source``, ``date`` and ``assumptions`` fields say exactly what is assumed
(topology from Rigetti's public descriptions; no per-qubit numbers are invented). With
QCS credentials (``~/.qcs`` or ``QCS_SETTINGS_FILE_PATH`` / ``QCS_SECRETS_FILE_PATH``) the
live ISA is read through qcs-sdk instead.

Rigetti natives in qiskit terms: RZ(theta) -> ``rz``; RX(pi/2) -> ``sx`` and RX(pi) ->
``x`` (equal up to a global phase; RX(-pi/2) exists on the device but rz + sx suffice);
ISWAP -> ``iswap`` (`iSwapGate`) on Ankaa, CZ -> ``cz`` on Cepheus. `transpile.native`
maps them back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import date
from importlib import resources
from typing import TYPE_CHECKING, Any

from ..errors import CredentialsError, TranspileError, one_line
from .target import DeviceTarget, from_qiskit_target

if TYPE_CHECKING:
    from qiskit.transpiler import Target

RIGETTI_SNAPSHOTS = {
    "rigetti_ankaa_3": "rigetti_ankaa_3.json",
    "rigetti_cepheus_1_108q": "rigetti_cepheus_1_108q.json",
}
# Rigetti 2-qubit natives: qiskit name and the ISA characteristic holding their fidelity
RIGETTI_2Q = {"ISWAP": ("iswap", "fISWAP"), "CZ": ("cz", "fCZ")}


def snapshot_data(name: str) -> dict[str, Any]:
    """The JSON snapshot of ``name`` (topology, source, date, assumptions, QPU id)."""
    return json.loads(
        resources.files(__package__).joinpath("data", RIGETTI_SNAPSHOTS[name]).read_text()
    )


def quantum_processor_id(name: str) -> str:
    """QCS's id of the device (``rigetti_ankaa_3`` -> ``Ankaa-3``)."""
    return snapshot_data(name)["quantum_processor_id"]


def snapshot(name: str) -> DeviceTarget:
    """Build the Target of a Rigetti device from its JSON snapshot in ``data/``."""
    data = snapshot_data(name)
    readout = {int(q): float(e) for q, e in data["readout_error"].items()}
    two_qubit = {_edge_key(k): float(e) for k, e in data["two_qubit_error"].items()}
    target = _rigetti_target(
        data["num_qubits"],
        range(data["num_qubits"]),
        [tuple(e) for e in data["edges"]],
        data["two_qubit_gate"],
        readout,
        {},
        two_qubit,
    )
    source = f"snapshot: {data['source']} (written {data['date']})"
    return from_qiskit_target(name, target, source)


def _edge_key(text: str) -> tuple[int, int]:
    p, q = (int(v) for v in text.split("-"))
    return (min(p, q), max(p, q))


def _rigetti_target(
    num_qubits: int,
    qubits: Iterable[int],
    edges: Iterable[tuple[int, int]],
    two_qubit_gate: str,
    readout: Mapping[int, float],
    one_qubit: Mapping[int, float],
    two_qubit: Mapping[tuple[int, int], float],
) -> Target:
    """qiskit Target for Rigetti natives: rz, sx (RX(pi/2)), x (RX(pi)), iswap or cz."""
    from qiskit.circuit import Measure, Parameter
    from qiskit.circuit.library import CZGate, RZGate, SXGate, XGate, iSwapGate
    from qiskit.transpiler import InstructionProperties, Target

    gates = {"iswap": iSwapGate(), "cz": CZGate()}
    if two_qubit_gate not in gates:
        raise TranspileError(f"unsupported Rigetti 2-qubit gate {two_qubit_gate!r}")
    qubits = sorted(qubits)

    def props(error: float | None) -> InstructionProperties:
        return InstructionProperties(error=error)

    target = Target(num_qubits=num_qubits)
    target.add_instruction(RZGate(Parameter("theta")), {(q,): props(0.0) for q in qubits})
    for gate in (SXGate(), XGate()):
        target.add_instruction(gate, {(q,): props(one_qubit.get(q)) for q in qubits})
    target.add_instruction(Measure(), {(q,): props(readout.get(q)) for q in qubits})
    pairs = {}
    for p, q in edges:
        error = two_qubit.get((min(p, q), max(p, q)))
        pairs[(p, q)] = props(error)
        pairs[(q, p)] = props(error)
    target.add_instruction(gates[two_qubit_gate], pairs)
    return target


# --- QCS ----------------------------------------------------------------------------------


def qcs_client() -> Any:
    """QCS client with credentials, or CredentialsError (no network is touched)."""
    try:
        from qcs_sdk.client import QCSClient

        client = QCSClient.load()
        client.oauth_session  # raises without a refresh token  # noqa: B018
    except ImportError as exc:
        raise CredentialsError(
            "reading a live Rigetti ISA needs qcs-sdk: pip install 'qvit-hw[rigetti]'"
        ) from exc
    except Exception as exc:  # LoadClientError, ValueError: no settings or no token
        raise CredentialsError(
            f"no QCS credentials ({one_line(exc)}); run `qcs auth login` or set "
            "QCS_SETTINGS_FILE_PATH and QCS_SECRETS_FILE_PATH"
        ) from exc
    return client


def has_credentials() -> bool:
    """Whether QCS credentials are configured (no network)."""
    try:
        qcs_client()
    except CredentialsError:
        return False
    return True


def live_target(name: str) -> DeviceTarget:
    """The live ISA of ``name`` through qcs-sdk (needs QCS credentials)."""
    from qcs_sdk.qpu.isa import get_instruction_set_architecture

    qpu_id = quantum_processor_id(name)
    try:
        client = qcs_client()
    except CredentialsError as exc:
        raise CredentialsError(f"{exc}, or use the snapshot") from exc
    try:
        isa = get_instruction_set_architecture(qpu_id, client)
    except Exception as exc:  # GetISAError and transport errors
        raise TranspileError(
            f"{name}: could not read the live ISA of {qpu_id} ({one_line(exc)}); use the "
            "offline snapshot with --snapshot (live=False)"
        ) from exc
    return device_from_isa(name, isa, f"live: Rigetti QCS ISA of {qpu_id}, read {date.today()}")


def device_from_isa(name: str, isa: Any, source: str) -> DeviceTarget:
    """DeviceTarget from a qcs-sdk ``InstructionSetArchitecture`` (errors = 1 - fidelity)."""
    nodes = [node.node_id for node in isa.architecture.nodes]
    readout: dict[int, float] = {}
    one_qubit: dict[int, float] = {}
    found: dict[str, dict[tuple[int, int], float | None]] = {}
    live_1q: set[int] = set()
    for op in isa.instructions:
        for site in op.sites:
            error = _fidelity_error(site.characteristics, _characteristic(op.name))
            if op.name in RIGETTI_2Q:
                p, q = site.node_ids
                found.setdefault(RIGETTI_2Q[op.name][0], {})[(min(p, q), max(p, q))] = error
            elif op.name == "MEASURE" and error is not None:
                readout[site.node_ids[0]] = error
            elif op.name == "RX":
                live_1q.add(site.node_ids[0])
                if error is not None:
                    one_qubit[site.node_ids[0]] = error
    gate = next((g for g in ("iswap", "cz") if g in found), None)
    if gate is None:
        raise TranspileError(f"{name}: the ISA offers neither ISWAP nor CZ")
    two_qubit = {k: e for k, e in found[gate].items() if e is not None}
    target = _rigetti_target(
        max(nodes) + 1, live_1q or nodes, found[gate], gate, readout, one_qubit, two_qubit
    )
    return from_qiskit_target(name, target, source)


def _characteristic(op_name: str) -> str | None:
    if op_name in RIGETTI_2Q:
        return RIGETTI_2Q[op_name][1]
    return {"MEASURE": "fRO", "RX": "f1QRB"}.get(op_name)


def _fidelity_error(characteristics: Iterable[Any], wanted: str | None) -> float | None:
    for c in characteristics:
        if c.name == wanted:
            return max(0.0, 1.0 - float(c.value))
    return None
