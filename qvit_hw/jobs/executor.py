"""The model's QNN executor backed by the scheduler, recording every row it evaluates.

``with model.executor(SchedulerExecutor(scheduler)): model(images)`` runs the same model
code with every QNN layer's <Z> estimated on the scheduler's backend. Each call sends the
layer's Q QNNs on all B x T tokens as one batch of `QNNCall`s (the scheduler dedups and
packs them), and records per row: layer, QNN, image, token, angles, the exact <Z>
(float64, `qvit_hw.circuit.expectations`), the estimate and its standard error (raw and
mitigated) and the physical qubits read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..circuit import QNNSpec, expectations
from .scheduler import QNNCall, Scheduler

ROW_FIELDS = (
    "layer",  # (R,) int: index of the QNN layer in the model (call order within a forward)
    "qnn",  # (R,) int: index into `names`
    "image",  # (R,) int: image index in the evaluated split
    "token",  # (R,) int
    "angles",  # (R, n) float64: the token's angles (the QNN's inputs)
    "exact",  # (R, n) float64: exact <Z>
    "estimate",  # (R, n) float64: <Z> used by the model (mitigated if mitigation is on)
    "stderr",  # (R, n) float64
    "estimate_raw",  # (R, n) float64: before readout mitigation
    "stderr_raw",  # (R, n) float64
    "qubits",  # (R, n) int: physical qubit of each value
)


@dataclass
class _Batch:
    image_ids: np.ndarray  # (B,)
    layer: int = 0


class SchedulerExecutor:
    """Executor ``(spec, weights (Q,P,2), angles (B,T,n), names) -> <Z> (B,T,Q,n)``."""

    def __init__(self, scheduler: Scheduler, *, record: bool = True) -> None:
        self.scheduler = scheduler
        self.record = record
        self.names: list[str] = []
        self._rows: list[dict[str, np.ndarray]] = []
        self._batch: _Batch | None = None
        self.label = ""

    def begin_batch(self, image_ids: Sequence[int] | np.ndarray, label: str = "") -> None:
        """Name the images of the next forward pass (rows are recorded under these ids)."""
        self._batch = _Batch(np.asarray(image_ids, dtype=np.int64))
        self.label = label

    def __call__(
        self, spec: QNNSpec, weights: Tensor, angles: Tensor, names: Sequence[str] = ()
    ) -> Tensor:
        b, t, n = angles.shape
        q = weights.shape[0]
        names = list(names) or [f"qnn{i}" for i in range(q)]
        batch = self._batch if self._batch is not None else _Batch(np.arange(b))
        if len(batch.image_ids) != b:
            raise ValueError(f"begin_batch named {len(batch.image_ids)} images, the batch has {b}")
        layer = batch.layer
        batch.layer += 1
        x = angles.detach().to("cpu", torch.float64).reshape(b * t, n).numpy()  # (B*T, n)
        w = weights.detach().to("cpu", torch.float64).numpy()  # (Q, P, 2)
        qualified = [f"block{layer}.{name}" for name in names]
        calls = [QNNCall(qualified[i], spec, w[i], x) for i in range(q)]
        estimates = self.scheduler.run(calls, f"{self.label} layer {layer}".strip())
        z = np.stack([e.z for e in estimates], axis=1)  # (B*T, Q, n)
        if self.record:
            exact = expectations(spec, torch.from_numpy(x)[:, None, :], torch.from_numpy(w))
            self._record(layer, qualified, batch.image_ids, t, x, exact.numpy(), estimates)
        return torch.from_numpy(z.reshape(b, t, q, n)).to(angles.dtype)

    def _record(
        self,
        layer: int,
        names: list[str],
        image_ids: np.ndarray,
        tokens: int,
        x: np.ndarray,
        exact: np.ndarray,  # (B*T, Q, n)
        estimates: Sequence,
    ) -> None:
        rows = len(x)
        for i, (name, est) in enumerate(zip(names, estimates, strict=True)):
            if name not in self.names:
                self.names.append(name)
            self._rows.append(
                {
                    "layer": np.full(rows, layer),
                    "qnn": np.full(rows, self.names.index(name)),
                    "image": np.repeat(image_ids, tokens),
                    "token": np.tile(np.arange(tokens), len(image_ids)),
                    "angles": x,
                    "exact": exact[:, i],
                    "estimate": est.z,
                    "stderr": est.stderr,
                    "estimate_raw": est.z_raw,
                    "stderr_raw": est.stderr_raw,
                    "qubits": est.qubits,
                }
            )

    def rows(self) -> dict[str, np.ndarray]:
        """Every recorded row, as arrays named by `ROW_FIELDS` (plus ``names``)."""
        if not self._rows:
            raise ValueError("no rows recorded yet")
        out = {f: np.concatenate([r[f] for r in self._rows]) for f in ROW_FIELDS}
        out["names"] = np.array(self.names)
        return out
