"""`pennylane:<device>`: the QNN's PennyLane rendering on any PennyLane device.

``pennylane:default.qubit``, ``pennylane:qiskit.aer``, ``pennylane:qiskit.remote``, ... The
backend has no device target, so the scheduler hands it the logical QNN circuit; the
backend reads the spec and the x / w columns off it and evaluates each group of rows that
share weights as one broadcast batch (`pennylane_worker.evaluate`). Options:

- ``shots=S``: sample S shots per row (bits reduced by `PubResult.from_bits`); without it
  the device's analytic <Z> (exact, stderr 0);
- ``python=PATH``: run the device in another interpreter, e.g. the pennylane-rigetti venv
  (``make venv-pennylane-rigetti``), through `pennylane_worker` as a JSON-lines process;
- any other option goes to ``qml.device`` (numbers are converted: ``?seed=3``).

``pennylane:qiskit.remote?backend=ibm_fez&shots=1000`` reaches IBM Quantum with the
credentials of ``ibm_<device>`` (pennylane-qiskit submits each circuit itself). Example of
a worker: ``pennylane:rigetti.numpy_wavefunction?python=.venv-pennylane-rigetti/bin/python``.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..circuit import QNNSpec, parameter_columns, qiskit_circuit
from ..errors import CredentialsError, PermanentBackendError
from .base import CircuitCache, LocalBackend, Pub, PubResult
from .options import BackendOptions

if TYPE_CHECKING:
    from qiskit import QuantumCircuit

WORKER = Path(__file__).with_name("pennylane_worker.py")


class Worker:
    """`pennylane_worker` running under another interpreter, one JSON line each way."""

    def __init__(self, python: str) -> None:
        path = Path(python).expanduser()
        if not path.is_file():
            raise CredentialsError(
                f"pennylane: python={python}: no interpreter there; for pennylane-rigetti "
                "build one with `make venv-pennylane-rigetti`"
            )
        self.python = str(path)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by _stop)
        self._proc = subprocess.Popen(
            # run_path keeps this folder (with its pennylane.py) off the worker's sys.path
            [
                self.python,
                "-c",
                f"import runpy; runpy.run_path({str(WORKER)!r}, run_name='__main__')",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._finalizer = weakref.finalize(self, _stop, self._proc, self._stderr)
        hello = self.request({"hello": True})
        self.pennylane = hello["pennylane"]

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one request and return its reply (PermanentBackendError if it failed)."""
        stdin, stdout = self._proc.stdin, self._proc.stdout
        try:
            stdin.write(json.dumps(message) + "\n")  # type: ignore[union-attr]
            stdin.flush()  # type: ignore[union-attr]
            line = stdout.readline()  # type: ignore[union-attr]
        except OSError:
            line = ""
        if not line:
            raise PermanentBackendError(
                f"pennylane: the worker under {self.python} stopped: {self._last_error()}"
            )
        reply = json.loads(line)
        if not reply.get("ok"):
            raise PermanentBackendError(f"pennylane ({self.python}): {reply.get('error')}")
        return reply

    def close(self) -> None:
        self._finalizer()

    def _last_error(self) -> str:
        self._proc.wait(timeout=5)
        self._stderr.seek(0)
        lines = [s for s in self._stderr.read().decode(errors="replace").splitlines() if s]
        return lines[-1] if lines else f"exit status {self._proc.returncode}"


def _stop(proc: subprocess.Popen, stderr: Any) -> None:
    if proc.stdin is not None and not proc.stdin.closed:
        proc.stdin.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    stderr.close()


class PennyLaneBackend(LocalBackend):
    """A PennyLane device, in this process or in a `Worker`."""

    def __init__(
        self,
        device: str,
        *,
        shots: int | None = None,
        options: dict[str, Any] | None = None,
        python: str | None = None,
    ) -> None:
        if shots is not None and (isinstance(shots, bool) or int(shots) < 1):
            raise ValueError(f"pennylane: shots must be a whole number >= 1, got {shots!r}")
        super().__init__(f"pennylane:{device}")
        self.device = device
        self.shots = None if shots is None else int(shots)
        self.options = dict(options or {})
        self.worker = Worker(python) if python else None
        self._layouts: CircuitCache[_Layout] = CircuitCache()
        try:
            self._call({"check": True, "device": device, "options": self.options})
        except PermanentBackendError as exc:
            if self.worker is None and device.startswith("rigetti."):
                raise PermanentBackendError(
                    f"{exc}; pennylane-rigetti needs its own interpreter: `make "
                    "venv-pennylane-rigetti`, then add ?python=.venv-pennylane-rigetti/bin/python"
                ) from exc
            raise

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()

    def _run(self, pub: Pub) -> PubResult:
        layout = self._layout(pub.circuit)
        n = layout.spec.n_qubits
        angles = pub.values[:, layout.x_cols]  # (rows, n)
        weights = pub.values[:, layout.w_cols]  # (rows, 2P): one QNN's weights per row
        groups, inverse = np.unique(weights, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        z = np.empty((pub.rows, n))
        bits = np.empty((pub.rows, self.shots or 0, n), dtype=np.uint8)
        for g, flat in enumerate(groups):
            rows = np.flatnonzero(inverse == g)
            reply = self._call(
                {
                    "device": self.device,
                    "options": self.options,
                    "shots": self.shots,
                    "n_qubits": n,
                    "pairs": [list(p) for p in layout.spec.pairs],
                    "weights": flat.reshape(-1, 2).tolist(),
                    "angles": angles[rows].tolist(),
                }
            )
            if self.shots is None:
                z[rows] = np.asarray(reply["z"], dtype=np.float64)
            else:
                samples = np.asarray(reply["samples"], dtype=np.int64)  # (rows, shots)
                bits[rows] = (samples[..., None] >> np.arange(n)) & 1
        return PubResult(z, 0) if self.shots is None else PubResult.from_bits(bits)

    def _call(self, message: dict[str, Any]) -> dict[str, Any]:
        if self.worker is not None:
            return self.worker.request(message)
        from . import pennylane_worker

        reply = pennylane_worker.handle(message)
        if not reply["ok"]:
            raise PermanentBackendError(f"{self.name}: {reply['error']}")
        return reply

    def _result_options(self) -> dict[str, Any]:
        python = None if self.worker is None else self.worker.python
        return {"shots": self.shots, "options": self.options, "python": python}

    def _layout(self, circuit: QuantumCircuit) -> _Layout:
        return self._layouts.get(circuit, logical_layout)


@dataclass(frozen=True)
class _Layout:
    """A logical QNN circuit's spec and the value columns of its inputs and weights."""

    spec: QNNSpec
    x_cols: np.ndarray  # (n,)
    w_cols: np.ndarray  # (2P,)


def logical_layout(circuit: QuantumCircuit) -> _Layout:
    """The QNN spec of a logical circuit from `qiskit_circuit(spec, measure=True)` and the
    value columns of its inputs x[i] and weights w[j]; anything else is refused."""

    def shape(qc: QuantumCircuit) -> list[tuple[str, tuple[int, ...], tuple[str, ...]]]:
        return [
            (
                inst.operation.name,
                tuple(qc.find_bit(q).index for q in inst.qubits),
                tuple(str(p) for p in inst.operation.params),
            )
            for inst in qc.data
        ]

    ops = shape(circuit)
    pairs = tuple(qargs for name, qargs, _ in ops if name == "cx")
    try:
        spec = QNNSpec(circuit.num_qubits, pairs)
        same = ops == shape(qiskit_circuit(spec, measure=True))
    except (TypeError, ValueError):
        same = False
    if not same:
        raise PermanentBackendError(
            f"pennylane: {circuit.name!r} is not a logical qvit-hw QNN circuit; PennyLane "
            "backends run the QNN's own rendering"
        )
    return _Layout(spec, *parameter_columns(list(circuit.parameters), spec))


def open_pennylane(name: str, options: BackendOptions) -> PennyLaneBackend:
    """``pennylane:<device>?shots=S&python=PATH&<device option>=...`` from `get_backend`."""
    device = name.removeprefix("pennylane:")
    if not device:
        raise ValueError("backend pennylane:<device>: name a device, e.g. pennylane:default.qubit")
    shots = options.int("shots", None, minimum=1)
    python = options.str("python")
    values = {k: _value(v) for k, v in options.rest().items()}
    if device == "qiskit.remote":  # pennylane-qiskit wants the IBM backend object
        values["backend"] = _ibm_device(values.get("backend"), python)
    return PennyLaneBackend(
        device,
        shots=shots,
        options=values,
        python=python,
    )


def _ibm_device(name: Any, python: Any) -> Any:
    """``pennylane:qiskit.remote?backend=ibm_fez``: the live device, through `ibm.connect`."""
    from ..devices.ibm import connect, live_device

    if not isinstance(name, str) or not name.startswith("ibm_"):
        raise ValueError("pennylane:qiskit.remote needs ?backend=ibm_<device>, e.g. ibm_fez")
    if python is not None:
        raise ValueError("pennylane:qiskit.remote runs in this process; drop python=")
    return live_device(connect(name), name)


def _value(text: Any) -> Any:
    """Query-string values as numbers or booleans where they read as such."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text
