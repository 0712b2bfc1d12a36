"""Devices as qiskit `Target`s, with the calibration numbers that layout choice reads.

Five names are known (`TARGETS`):

- IBM, from qiskit-ibm-runtime's fake backends (offline snapshots of real calibrations):
  ``ibm_brisbane`` (Eagle r3 heavy-hex, 127 qubits, ECR; the device was retired on
  2025-11-03 but stays the reference heavy-hex snapshot), ``ibm_torino`` (Heron r1, 133
  qubits, CZ) and ``ibm_fez`` (Heron r2, 156 qubits, CZ). With ``QISKIT_IBM_TOKEN`` set
  (and ``QISKIT_IBM_INSTANCE`` / ``QISKIT_IBM_CHANNEL`` where needed) the live backend's
  target replaces the snapshot.
- Rigetti, from the JSON snapshots in ``data/`` (topology from Rigetti's public
  descriptions; their ``source``, ``date`` and ``assumptions`` fields say exactly what is
  assumed): ``rigetti_ankaa_3`` and ``rigetti_cepheus_1_108q``. With QCS credentials
  (``~/.qcs`` or ``QCS_SETTINGS_FILE_PATH`` / ``QCS_SECRETS_FILE_PATH``) the live ISA is
  read through qcs-sdk instead.

Rigetti natives in qiskit terms: RZ(theta) -> ``rz``; RX(pi/2) -> ``sx`` and RX(pi) ->
``x`` (equal up to a global phase; RX(-pi/2) exists on the device but rz + sx suffice);
ISWAP -> ``iswap`` (`iSwapGate`) on Ankaa, CZ -> ``cz`` on Cepheus. `quil.native_quil`
maps them back.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import metadata, resources
from typing import TYPE_CHECKING, Any

from ..errors import CredentialsError, TranspileError

if TYPE_CHECKING:
    from qiskit.transpiler import Target

IBM_SNAPSHOTS = {"ibm_brisbane": "FakeBrisbane", "ibm_torino": "FakeTorino", "ibm_fez": "FakeFez"}
RIGETTI_SNAPSHOTS = {
    "rigetti_ankaa_3": "rigetti_ankaa_3.json",
    "rigetti_cepheus_1_108q": "rigetti_cepheus_1_108q.json",
}
TARGETS = (*IBM_SNAPSHOTS, *RIGETTI_SNAPSHOTS)
RETIRED = {"ibm_brisbane": "2025-11-03"}
NON_GATES = frozenset(
    {
        "measure",
        "reset",
        "delay",
        "barrier",
        "id",
        "if_else",
        "for_loop",
        "switch_case",
        "while_loop",
        "box",
    }
)
# Rigetti 2-qubit natives: qiskit name and the ISA characteristic holding their fidelity
RIGETTI_2Q = {"ISWAP": ("iswap", "fISWAP"), "CZ": ("cz", "fCZ")}


@dataclass(frozen=True)
class DeviceTarget:
    """A device: its qiskit Target plus the numbers layout choice and reports read."""

    name: str
    target: Target
    num_qubits: int
    edges: tuple[tuple[int, int], ...]  # undirected coupling pairs (p < q)
    basis_gates: tuple[str, ...]
    readout_error: dict[int, float]  # may be empty if unknown
    two_qubit_error: dict[tuple[int, int], float]  # undirected key (p < q); may be empty
    source: str  # where the numbers come from, and their date

    @property
    def two_qubit_gate(self) -> str:
        gates = self.target.operation_from_name
        return next(g for g in self.basis_gates if gates(g).num_qubits == 2)

    @property
    def has_calibration(self) -> bool:
        return bool(self.readout_error or self.two_qubit_error)


def get_target(name: str, *, live: bool | None = None) -> DeviceTarget:
    """The device called ``name``; unknown names raise TranspileError with a did-you-mean.

    ``live=None`` reads the live device where credentials are configured and the snapshot
    otherwise (no network attempt without credentials); ``True`` insists on the live
    device (CredentialsError without credentials); ``False`` always gives the snapshot.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key not in TARGETS:
        close = difflib.get_close_matches(key, TARGETS, n=2, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise TranspileError(f"unknown target {name!r}{hint} (known: {', '.join(TARGETS)})")
    if live is None:
        live = _has_credentials(key)
    return _load(key, live)


@cache
def _load(name: str, live: bool) -> DeviceTarget:
    if name in IBM_SNAPSHOTS:
        return _ibm_live(name) if live else _ibm_snapshot(name)
    return _rigetti_live(name) if live else rigetti_snapshot(name)


def _has_credentials(name: str) -> bool:
    if name in IBM_SNAPSHOTS:
        return bool(os.environ.get("QISKIT_IBM_TOKEN"))
    try:
        _qcs_client()
    except CredentialsError:
        return False
    return True


def from_qiskit_target(name: str, target: Target, source: str) -> DeviceTarget:
    """Read edges, basis and calibration errors off a qiskit Target."""
    basis = tuple(sorted(op for op in target.operation_names if op not in NON_GATES))
    two_qubit: dict[tuple[int, int], float] = {}
    edges: set[tuple[int, int]] = set()
    for op in basis:
        if target.operation_from_name(op).num_qubits != 2:
            continue
        for qargs, props in target[op].items():
            key = (min(qargs), max(qargs))
            edges.add(key)
            if props is not None and props.error is not None:  # min over directions
                two_qubit[key] = min(props.error, two_qubit.get(key, float("inf")))
    readout = {}
    if "measure" in target.operation_names:
        for qargs, props in target["measure"].items():
            if qargs is not None and props is not None and props.error is not None:
                readout[qargs[0]] = float(props.error)
    return DeviceTarget(
        name=name,
        target=target,
        num_qubits=target.num_qubits,
        edges=tuple(sorted(edges)),
        basis_gates=basis,
        readout_error=readout,
        two_qubit_error={k: float(v) for k, v in sorted(two_qubit.items())},
        source=source,
    )


# --- IBM ----------------------------------------------------------------------------------


def _ibm_snapshot(name: str) -> DeviceTarget:
    from qiskit_ibm_runtime import fake_provider

    backend = getattr(fake_provider, IBM_SNAPSHOTS[name])()
    props = backend.properties()
    when = props.last_update_date.date().isoformat() if props is not None else "unknown date"
    version = metadata.version("qiskit-ibm-runtime")
    source = f"snapshot: qiskit-ibm-runtime {version} {IBM_SNAPSHOTS[name]}, calibration of {when}"
    if name in RETIRED:
        source += f" (device retired {RETIRED[name]}; kept as the reference snapshot)"
    return from_qiskit_target(name, backend.target, source)


def _ibm_live(name: str) -> DeviceTarget:
    token = os.environ.get("QISKIT_IBM_TOKEN")
    if not token:
        raise CredentialsError(
            f"{name}: the live target needs IBM Quantum credentials; set QISKIT_IBM_TOKEN "
            "(and QISKIT_IBM_INSTANCE), or use the snapshot"
        )
    from qiskit_ibm_runtime import QiskitRuntimeService

    channel = os.environ.get("QISKIT_IBM_CHANNEL", "ibm_quantum_platform")
    kwargs = {"token": token, "channel": channel}
    if os.environ.get("QISKIT_IBM_INSTANCE"):
        kwargs["instance"] = os.environ["QISKIT_IBM_INSTANCE"]
    try:
        backend = QiskitRuntimeService(**kwargs).backend(name)
        target = backend.target
    except Exception as exc:  # the runtime client raises many unrelated types
        raise TranspileError(
            f"{name}: could not read the live target ({_first_line(exc)}); use the offline "
            "snapshot with --snapshot (live=False) or unset QISKIT_IBM_TOKEN"
        ) from exc
    return from_qiskit_target(name, target, f"live: IBM Quantum {name}, read {date.today()}")


# --- Rigetti ------------------------------------------------------------------------------


def rigetti_snapshot(name: str) -> DeviceTarget:
    """Build the Target of a Rigetti device from its JSON snapshot in ``data/``."""
    data = json.loads(
        resources.files(__package__).joinpath("data", RIGETTI_SNAPSHOTS[name]).read_text()
    )
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


def _qcs_client() -> Any:
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
            f"no QCS credentials ({_first_line(exc)}); run `qcs auth login` or set "
            "QCS_SETTINGS_FILE_PATH and QCS_SECRETS_FILE_PATH, or use the snapshot"
        ) from exc
    return client


def _rigetti_live(name: str) -> DeviceTarget:
    from qcs_sdk.qpu.isa import get_instruction_set_architecture

    qpu_id = json.loads(
        resources.files(__package__).joinpath("data", RIGETTI_SNAPSHOTS[name]).read_text()
    )["quantum_processor_id"]
    client = _qcs_client()
    try:
        isa = get_instruction_set_architecture(qpu_id, client)
    except Exception as exc:  # GetISAError and transport errors
        raise TranspileError(
            f"{name}: could not read the live ISA of {qpu_id} ({_first_line(exc)}); use the "
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
