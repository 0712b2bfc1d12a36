"""Evaluate qvit-hw QNNs on a PennyLane device; also a JSON-lines worker for another Python.

It imports only the standard library, numpy and PennyLane (never qvit_hw), so it runs
under any interpreter that has PennyLane and a plugin, e.g. the pennylane-rigetti venv:
``.venv-pennylane-rigetti/bin/python pennylane_worker.py``. One request per stdin line,
one reply per stdout line:

    {"hello": true}                                  -> {"ok": true, "pennylane": "0.41.1", ...}
    {"check": true, "device": D, "options": {...}}   -> {"ok": true} once the device loads
    {"device": D, "options": {...}, "shots": null | S, "n_qubits": n, "pairs": [[p, q], ...],
     "weights": [[a, b], ...], "angles": [[x_0, ..., x_{n-1}], ...]}
        -> {"ok": true, "z": [[<Z_0>, ...], ...]}         shots null: exact, (rows, n)
        -> {"ok": true, "samples": [[s, ...], ...]}      (rows, S): qubit i is bit i of s
    any failure                                      -> {"ok": false, "error": "Type: text"}

The circuit is the QNN of qvit_hw.circuit: RY(x_i) on every qubit, then per pair (p, q)
RY(a) on p, RY(b) on q, CNOT(p -> q); the rows go to the device as one broadcast batch.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import pennylane as qml

_DEVICES: dict[tuple[Any, ...], Any] = {}


def device(name: str, wires: int, shots: int | None, options: dict[str, Any]) -> Any:
    """The PennyLane device (cached); shots go to the device on PennyLane < 0.42."""
    key = (name, wires, shots, json.dumps(options, sort_keys=True, default=repr))
    if key not in _DEVICES:
        kwargs = dict(options)
        if shots is not None and not hasattr(qml, "set_shots"):
            kwargs["shots"] = shots
        _DEVICES[key] = qml.device(name, wires=wires, **kwargs)
    return _DEVICES[key]


def qnode(dev: Any, n: int, pairs: list[list[int]], shots: int | None) -> Any:
    def circuit(inputs: Any, weights: Any) -> Any:
        for i in range(n):
            qml.RY(inputs[..., i], wires=i)
        for k, (p, q) in enumerate(pairs):
            qml.RY(weights[k][0], wires=p)
            qml.RY(weights[k][1], wires=q)
            qml.CNOT(wires=[p, q])
        if shots is None:
            return [qml.expval(qml.PauliZ(i)) for i in range(n)]
        return qml.sample(wires=list(range(n)))

    node = qml.QNode(circuit, dev)
    if shots is not None and hasattr(qml, "set_shots"):
        node = qml.set_shots(node, shots=shots)
    return node


def evaluate(request: dict[str, Any]) -> dict[str, Any]:
    """One QNN with one weight set on many angle rows (see the module docstring)."""
    n, pairs, shots = int(request["n_qubits"]), request["pairs"], request.get("shots")
    weights = np.asarray(request["weights"], dtype=np.float64)  # (P, 2)
    angles = np.asarray(request["angles"], dtype=np.float64)  # (rows, n)
    dev = device(request["device"], n, shots, request.get("options") or {})
    out = qnode(dev, n, pairs, shots)(angles, weights)
    if shots is None:
        z = np.stack([np.asarray(v, dtype=np.float64).reshape(-1) for v in out], axis=-1)
        return {"z": z.tolist()}  # (rows, n)
    bits = np.asarray(out).reshape(len(angles), int(shots), n).astype(np.int64)
    return {"samples": (bits @ (1 << np.arange(n))).tolist()}  # (rows, shots)


def handle(request: dict[str, Any]) -> dict[str, Any]:
    """A reply for one request; errors become ``{"ok": false, "error": ...}``."""
    try:
        if request.get("hello"):
            return {"ok": True, "pennylane": qml.version(), "python": sys.version.split()[0]}
        if request.get("check"):
            device(request["device"], 2, None, request.get("options") or {})
            return {"ok": True}
        return {"ok": True, **evaluate(request)}
    except Exception as exc:  # every failure goes back as one line
        return {"ok": False, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}


def main() -> None:
    replies = sys.stdout
    sys.stdout = sys.stderr  # whatever a plugin prints must not corrupt the replies
    for line in sys.stdin:
        if line.strip():
            replies.write(json.dumps(handle(json.loads(line))) + "\n")
            replies.flush()


if __name__ == "__main__":
    main()
