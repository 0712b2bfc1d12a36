"""`surrogate:DIR`: a device measured once by `qvit-hw characterize`, evaluated offline.

The characterization holds every QNN's function on its device, per placement (or pooled
where the placements agreed), as measured grid cells. This backend runs on the same
device target and packing as the characterization, so the scheduler puts every row on
the placement a direct run would; for each packed copy of each execution it returns the
fitted <Z> (as exact values: no shots are taken, no job leaves the machine). The run
then gives every row the fit's standard error and draws the coefficients for its flip
probabilities (`jobs.refit`), as for `--mitigate fourier`.

A bundle whose QNN weights differ from the characterized ones is refused in one line
(`check_model`), and so is ``?device=NAME`` naming another device than the measured one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PermanentBackendError
from ..mitigation.fourier import load_fit
from .base import BackendTarget, LocalBackend, Pub, PubResult

SURROGATE_FILE = "surrogate.npz"
CHARACTERIZATION_FILE = "characterization.json"


def read_characterization(folder: str | Path) -> dict[str, Any]:
    """characterization.json of ``folder``, checked against its surrogate.npz."""
    folder = Path(folder)
    record, data = folder / CHARACTERIZATION_FILE, folder / SURROGATE_FILE
    if not record.is_file() or not data.is_file():
        raise PermanentBackendError(
            f"surrogate:{folder}: no characterization there (run `qvit-hw characterize "
            f"BUNDLE --backend B --out {folder}` first)"
        )
    try:
        out = json.loads(record.read_text())
    except (OSError, ValueError) as exc:
        raise PermanentBackendError(f"surrogate:{folder}: {record} is unreadable") from exc
    if hashlib.sha256(data.read_bytes()).hexdigest() != out.get("surrogate_sha256"):
        raise PermanentBackendError(
            f"surrogate:{folder}: {SURROGATE_FILE} was changed after it was measured"
        )
    return out


class SurrogateBackend(LocalBackend):
    """Fitted values of a characterization (see the module docstring)."""

    def __init__(self, folder: str | Path, record: dict[str, Any], device: Any) -> None:
        """``record``: `read_characterization`'s; ``device``: the measured backend's
        `DeviceTarget` (None for an ideal simulator)."""
        folder = Path(folder)
        self.record = record
        with np.load(folder / SURROGATE_FILE) as arrays:
            self.fit, self.weights = load_fit(arrays)
        super().__init__(f"surrogate:{folder}", BackendTarget(f"surrogate:{folder}", device))
        self.folder = folder
        self.packing = self.record["packing"]
        self._by_weights = {_key(w): name for name, w in self.weights.items()}
        self._layouts: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    @property
    def identity(self) -> dict[str, Any]:
        return {
            "name": "surrogate",
            "device": self.record["device"],
            "measured": self.record["measured"],
            "surrogate_sha256": self.record["surrogate_sha256"],
        }

    def check_model(self, qnns: list[tuple[str, Any, np.ndarray]]) -> None:
        """Refuse a model whose QNNs are not the characterized ones (names and weights)."""
        for name, _, w in qnns:
            stored = self.weights.get(name)
            if stored is None or stored.shape != w.shape or not np.allclose(stored, w, atol=1e-12):
                raise PermanentBackendError(
                    f"{self.name} was measured for another bundle ({name}'s weights differ): "
                    f"characterize this bundle on {self.record['device']} first"
                )

    def _run(self, pub: Pub) -> PubResult:
        x_index, w_index, placements = self._layout(pub)
        k, n = x_index.shape
        values = np.asarray(pub.values, dtype=np.float64)
        z = np.empty((len(values), k * n))
        weights, inverse = np.unique(values[:, w_index], axis=0, return_inverse=True)
        for g, row in enumerate(weights):  # the executions of one QNN at a time
            name = self._by_weights.get(_key(row))
            if name is None:
                raise PermanentBackendError(f"{self.name}: a QNN it did not measure was sent")
            rows = np.flatnonzero(inverse.reshape(-1) == g)
            for c in range(k):
                angles = values[rows][:, x_index[c]]
                qubits = np.broadcast_to(placements[c], angles.shape)
                z[rows, c * n : (c + 1) * n] = self.fit.evaluate(name, angles, qubits)[0]
        return PubResult(np.clip(z, -1.0, 1.0), 0)

    def _layout(self, pub: Pub) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """From the packed circuit: each copy's input columns (k, n), the weight columns
        (2P,) and each copy's physical qubits (k, n), read off ParameterVectors x{c} / w
        and the measurements (copy c's qubit i is read into clbit c n + i)."""
        circuit = pub.circuit
        if circuit.name not in self._layouts:
            params = list(circuit.parameters)
            xs: dict[int, dict[int, int]] = {}
            ws: dict[int, int] = {}
            for pos, p in enumerate(params):
                vec = p.vector.name
                if vec == "w":
                    ws[p.index] = pos
                elif vec.startswith("x"):
                    xs.setdefault(int(vec[1:] or 0), {})[p.index] = pos
            k, n = len(xs), len(next(iter(xs.values())))
            x_index = np.array([[xs[c][i] for i in range(n)] for c in range(k)])
            w_index = np.array([ws[j] for j in range(len(ws))])
            qubit_of = {
                circuit.find_bit(inst.clbits[0]).index: circuit.find_bit(inst.qubits[0]).index
                for inst in circuit.data
                if inst.operation.name == "measure"
            }
            placements = np.array([[qubit_of[c * n + i] for i in range(n)] for c in range(k)])
            self._layouts[circuit.name] = (x_index, w_index, placements)
        return self._layouts[circuit.name]


def _key(weights: np.ndarray) -> bytes:
    return np.round(np.asarray(weights, dtype=np.float64).reshape(-1), 9).tobytes()
