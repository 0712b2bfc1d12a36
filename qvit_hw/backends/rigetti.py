"""`rigetti_<qpu>` (QCS) and `rigetti_qvm` (local qvm): pyquil 4, compiled once, run per row.

Design: the scheduler hands this backend the same pubs as any other (a parametrised,
measured Qiskit circuit and parameter rows). `quil_program` writes the circuit as Quil
with one ``DECLARE p REAL[P]`` region holding the circuit's parameters (in
``circuit.parameters`` order) and every angle as its affine expression in ``p`` (what
the transpiler produces), measured into ``ro``. Each template is compiled once by quilc
(``QuantumComputer.compile``, cached per circuit and shot count); each row is one memory
map ``{"p": row}`` of one ``execute_with_memory_map_batch`` call, and each row's bits are
reduced by `PubResult.from_bits`.

- ``rigetti_<qpu>`` (``rigetti_ankaa_3``, ``rigetti_cepheus_1_108q``): the scheduler
  transpiles and packs for the device target (`qvit_hw.devices.get_target`: the live ISA
  with QCS credentials), so the Quil already holds natives on physical qubits; quilc runs
  with ``PRAGMA INITIAL_REWIRING "NAIVE"`` to keep that placement. Needs QCS credentials
  (``~/.qcs`` or ``QCS_SETTINGS_FILE_PATH`` / ``QCS_SECRETS_FILE_PATH``) and ``quilc -S``.
- ``rigetti_qvm``: the logical QNN (no device target) on ``<n>q-qvm``; needs ``qvm -S``
  (port 5000) and ``quilc -S`` (port 5555) on this machine, checked by a TCP connect
  before anything else so their absence fails in well under a second.

pyquil has no non-blocking status: a job is DONE once its executions are queued, and
``result`` waits for their data. Its job handles live in this process: after a restart
``status`` says UNKNOWN and the scheduler submits unfinished jobs again (finished ones
come from the journal).
"""

from __future__ import annotations

import math
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CredentialsError, PermanentBackendError, TransientBackendError, one_line
from .base import BackendTarget, CircuitCache, JobResult, JobStatus, Pub, PubResult, RemoteBackend
from .options import BackendOptions
from .simulate import Angle

if TYPE_CHECKING:
    from qiskit import QuantumCircuit

QVM_PORT, QUILC_PORT = 5000, 5555
CONNECT_TIMEOUT = 0.25  # seconds per port
SKIPPED = frozenset({"barrier", "delay", "id"})
_TRANSIENT_WORDS = ("connect", "timed out", "timeout", "unavailable", "temporar", "503", "502")


def quil_program(circuit: QuantumCircuit, values: np.ndarray | None = None) -> Any:
    """A pyquil ``Program`` of a measured circuit (qubit i of the circuit is Quil qubit i).

    Without ``values`` the parameters are ``DECLARE p REAL[P]`` memory; with ``values``
    (P,) every angle is a number (for simulators without memory maps, such as PyQVM).
    Barriers are dropped, but the inverse gates a zne fold inserts between two barriers
    labelled "zne", and a twirled gate with its Paulis between two labelled "twirl", go in
    a ``PRAGMA PRESERVE_BLOCK``, which quilc leaves as written (one block where a twirl
    sits inside a fold: quilc does not nest them).
    """
    from pyquil import Program
    from pyquil.gates import CNOT, CZ, ISWAP, MEASURE, RX, RY, RZ
    from pyquil.quilbase import Pragma

    from ..mitigation.twirl import TWIRL_LABEL
    from ..mitigation.zne import FOLD_LABEL

    index = {p: i for i, p in enumerate(circuit.parameters)}
    prog = Program()
    memory = prog.declare("p", "REAL", len(index)) if values is None and index else None
    ro = prog.declare("ro", "BIT", circuit.num_clbits)
    rotations = {"rx": RX, "ry": RY, "rz": RZ}
    fixed = {"sx": math.pi / 2, "sxdg": -math.pi / 2, "x": math.pi}
    two_qubit = {"cx": CNOT, "cz": CZ, "iswap": ISWAP}
    inside: set[str] = set()  # open blocks: a zne fold's G^-1, a twirled gate
    for inst in circuit.data:
        name = inst.operation.name
        qargs = [circuit.find_bit(q).index for q in inst.qubits]
        label = inst.operation.label
        if name == "barrier" and label in (FOLD_LABEL, TWIRL_LABEL):
            # quilc would cancel G G^-1 G back to G, and merge a twirl's Paulis away:
            # its preserve blocks keep both
            was = bool(inside)
            inside.symmetric_difference_update({label})
            if was != bool(inside):
                prog += Pragma("PRESERVE_BLOCK" if inside else "END_PRESERVE_BLOCK")
            continue
        if name in SKIPPED:
            continue
        if name in rotations:
            angle = _angle(Angle.of(inst.operation.params[0], index), memory, values)
            prog += rotations[name](angle, qargs[0])
        elif name in fixed:
            prog += RX(fixed[name], qargs[0])  # equal up to a global phase
        elif name in two_qubit:
            prog += two_qubit[name](*qargs)
        elif name == "measure":
            prog += MEASURE(qargs[0], ro[circuit.find_bit(inst.clbits[0]).index])
        else:
            raise PermanentBackendError(f"rigetti: no Quil gate for {name!r}")
    return prog


def _angle(angle: Angle, memory: Any, values: np.ndarray | None) -> Any:
    if angle.coefs is None:
        raise PermanentBackendError(f"rigetti: angle {angle.expr} is not affine in the inputs")
    if values is not None:
        return float(angle.const + values[angle.cols] @ angle.coefs)
    terms = [
        memory[int(col)] if coef == 1.0 else float(coef) * memory[int(col)]
        for col, coef in zip(angle.cols, angle.coefs, strict=True)
    ]
    if not terms:
        return angle.const
    out: Any = terms[0] if angle.const == 0.0 else angle.const + terms[0]
    for term in terms[1:]:
        out = out + term
    return out


@dataclass
class _Job:
    pubs: list[Pub]
    qcs: list[Any]  # the QuantumComputer of each pub
    handles: list[list[Any]]  # per pub, one execute handle per row


class RigettiBackend(RemoteBackend):
    """Runs pubs through pyquil: ``qc_for(num_qubits)`` gives the ``QuantumComputer``."""

    def __init__(
        self,
        name: str,
        target: BackendTarget,
        qc_for: Callable[[int], Any],
        *,
        naive_rewiring: bool = False,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(name, target)
        self.options = dict(options or {})  # what the results depend on (e.g. qvm noise)
        self._qc_for = qc_for
        self.naive_rewiring = naive_rewiring
        self._qcs: dict[int, Any] = {}
        self._compiled: CircuitCache[Any] = CircuitCache()
        self._jobs: dict[str, _Job] = {}
        self.compiles = 0  # quilc calls made (one per template and shot count)

    @property
    def paid(self) -> bool:
        return self.name != "rigetti_qvm"  # a QCS QPU

    def _result_options(self) -> dict[str, Any]:
        return self.options

    def _submit(self, pubs: Sequence[Pub]) -> str:
        job = _Job(list(pubs), [], [])
        for pub in pubs:
            qc, executable = self._executable(pub.circuit, pub.shots)
            maps = [{"p": row.tolist()} if row.size else {} for row in pub.values]
            try:
                handles = qc.qam.execute_with_memory_map_batch(executable, maps)
            except Exception as exc:
                raise _classify(exc, f"{self.name}: execute") from exc
            job.qcs.append(qc)
            job.handles.append(list(handles))
        job_id = f"{self.name}-{uuid.uuid4().hex[:12]}"
        self._jobs[job_id] = job
        return job_id

    def status(self, job_id: str) -> JobStatus:
        return JobStatus.DONE if job_id in self._jobs else JobStatus.UNKNOWN

    def result(self, job_id: str) -> JobResult:
        job = self._jobs.get(job_id)
        if job is None:
            raise PermanentBackendError(f"{self.name}: no job {job_id!r} in this process")
        out = []
        for pub, qc, handles in zip(job.pubs, job.qcs, job.handles, strict=True):
            try:
                rows = [qc.qam.get_result(h).get_register_map()["ro"] for h in handles]
            except Exception as exc:
                raise _classify(exc, f"{self.name}: result of {job_id}") from exc
            bits = np.stack([np.asarray(r, dtype=np.uint8) for r in rows])  # (rows, shots, clbits)
            if bits.shape[1:] != (pub.shots, pub.circuit.num_clbits):
                raise PermanentBackendError(
                    f"{self.name}: job {job_id} returned bits of shape {bits.shape[1:]}, "
                    f"expected {(pub.shots, pub.circuit.num_clbits)}"
                )
            out.append(PubResult.from_bits(bits))
        return JobResult(tuple(out))

    def _executable(self, circuit: QuantumCircuit, shots: int) -> tuple[Any, Any]:
        """The QuantumComputer for ``circuit`` and its compiled executable (cached)."""
        width = circuit.num_qubits
        if width not in self._qcs:
            try:
                self._qcs[width] = self._qc_for(width)
            except Exception as exc:
                raise _classify(exc, f"{self.name}: connecting") from exc
        qc = self._qcs[width]

        def compile_once(circuit: QuantumCircuit) -> Any:
            from pyquil import Program

            prog = Program('PRAGMA INITIAL_REWIRING "NAIVE"') if self.naive_rewiring else Program()
            prog += quil_program(circuit)
            prog.wrap_in_numshots_loop(shots)
            try:
                executable = qc.compile(prog)
            except Exception as exc:
                raise _classify(exc, f"{self.name}: quilc") from exc
            self.compiles += 1
            return executable

        return qc, self._compiled.get(circuit, compile_once, shots)


def _classify(exc: BaseException, what: str) -> Exception:
    """pyquil / qcs-sdk errors: network and service hiccups are transient, the rest not."""
    text = one_line(exc)
    blob = f"{type(exc).__name__} {text}".lower()
    if isinstance(exc, ConnectionError | TimeoutError) or any(w in blob for w in _TRANSIENT_WORDS):
        return TransientBackendError(f"{what}: {text}")
    return PermanentBackendError(f"{what}: {text}")


def servers_missing(ports: Sequence[int], host: str = "127.0.0.1") -> list[int]:
    """The ports among ``ports`` where nothing accepts a TCP connection."""
    missing = []
    for port in ports:
        try:
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
                pass
        except OSError:
            missing.append(port)
    return missing


def open_rigetti(name: str, options: BackendOptions) -> RigettiBackend:
    """``rigetti_qvm`` (option ``noise=0|1``) or ``rigetti_<qpu>`` from `get_backend`."""
    if name == "rigetti_qvm":
        noisy = options.bool("noise", False)
        options.done()
        missing = servers_missing((QVM_PORT, QUILC_PORT))
        if missing:
            what = {QVM_PORT: "qvm -S (port 5000)", QUILC_PORT: "quilc -S (port 5555)"}
            raise CredentialsError(
                f"rigetti_qvm needs the local servers qvm -S and quilc -S; not running: "
                f"{', '.join(what[p] for p in missing)}; start them with `make rigetti-servers` "
                "(Rigetti's Forest SDK binaries), or use --backend shots for ideal sampling"
            )
        from pyquil import get_qc

        return RigettiBackend(
            name,
            BackendTarget(name),
            lambda n: get_qc(f"{n}q-qvm", noisy=noisy),
            options={"noise": noisy},
        )
    options.done()
    return _open_qpu(name)


def _open_qpu(name: str) -> RigettiBackend:
    from ..devices import get_target, rigetti
    from ..errors import BackendNotFoundError

    if name not in rigetti.RIGETTI_SNAPSHOTS:
        from ..devices.catalog import suggestions

        raise BackendNotFoundError(
            name, suggestions(name, [*rigetti.RIGETTI_SNAPSHOTS, "rigetti_qvm"])
        )
    try:
        client = rigetti.qcs_client()  # no network: reads ~/.qcs or the QCS_*_FILE_PATH files
    except CredentialsError as exc:
        raise CredentialsError(f"{name}: {exc}; for a local run use --backend rigetti_qvm") from exc
    if servers_missing((QUILC_PORT,)):
        raise CredentialsError(
            f"{name} needs quilc -S on port 5555 to compile for the QPU; start it with "
            "`make rigetti-servers` (Rigetti's Forest SDK binaries)"
        )
    qpu_id = rigetti.quantum_processor_id(name)

    def qc_for(_: int) -> Any:
        from pyquil import get_qc

        return get_qc(qpu_id, client_configuration=client)

    return RigettiBackend(name, BackendTarget(name, get_target(name, live=True)), qc_for,
                          naive_rewiring=True)  # fmt: skip
