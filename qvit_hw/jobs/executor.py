"""The model's QNN executor backed by the scheduler, recording every row it evaluates.

``with model.executor(SchedulerExecutor(runner)): model(images)`` runs the same model
code with every QNN layer's <Z> estimated on the runner's backend. Each call sends the
layer's Q QNNs on all B x T tokens as one batch of `QNNCall`s (the plan dedups and
packs them), and records per row: layer, QNN, image, token, angles, the exact <Z>
(float64, `qvit_hw.circuit.expectations`), the estimate and its standard error (raw and
mitigated) and the physical qubits read. Where the backend kept raw shots of some rows
(sampling backends), it also records those rows' outcome histograms beside the exact
outcome distribution (`histograms`), for Hellinger fidelities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..circuit import QNNSpec, expectations, product_state, unitary
from .combine import RowEstimates
from .plan import QNNCall
from .runner import QNNRunner


class StageUnavailable(Exception):
    """A correction stage cannot be replayed without new jobs."""


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
    "shots",  # (R,) int: shots behind the row's estimate (0: exact; adaptive: every round's)
    "estimate_linear",  # (R, n) float64: estimate before clipping to [-1, 1]
)


@dataclass
class LayerCall:
    """One QNN layer of one batch: its inputs and the estimates it was given."""

    layer: int
    spec: QNNSpec
    names: list[str]  # qualified QNN names, "block<layer>.<name>"
    weights: np.ndarray  # (Q, P, 2) float64
    angles: np.ndarray  # (B*T, n) float64
    tokens: int
    estimates: list[RowEstimates]  # one per QNN, rows (B*T, n)

    @property
    def z(self) -> np.ndarray:
        return np.stack([e.z for e in self.estimates], axis=1)  # (B*T, Q, n)


@dataclass
class _Batch:
    image_ids: np.ndarray  # (B,)
    layer: int = 0
    calls: list[LayerCall] = field(default_factory=list)  # per layer, for `replay`
    recorded: bool = False


class SchedulerExecutor:
    """Executor ``(spec, weights (Q,P,2), angles (B,T,n), names) -> <Z> (B,T,Q,n)``.

    Rows of a batch are recorded by `end_batch`, so a caller may refine a layer's
    estimates first (adaptive shots replace `LayerCall.estimates` with pooled ones).
    """

    def __init__(self, runner: QNNRunner, *, record: bool = True) -> None:
        self.runner = runner
        self.record = record
        self.shots: int | None = None  # per circuit for the next calls (None: the runner's)
        self.names: list[str] = []
        self._rows: list[dict[str, np.ndarray]] = []
        self._hists: list[dict[str, np.ndarray]] = []
        self._stages: list[tuple[np.ndarray | None, np.ndarray | None]] = []
        self._recorded = 0  # rows recorded so far
        self._batch: _Batch | None = None
        self.label = ""

    @property
    def batch(self) -> list[LayerCall]:
        """The current batch's layer calls (empty before any)."""
        return [] if self._batch is None else self._batch.calls

    def begin_batch(self, image_ids: Sequence[int] | np.ndarray, label: str = "") -> None:
        """Name the images of the next forward pass (rows are recorded under these ids)."""
        self.end_batch()
        self._batch = _Batch(np.asarray(image_ids, dtype=np.int64))
        self.label = label

    def end_batch(self) -> None:
        """Record the current batch's rows (once; `begin_batch` and `rows` call it too)."""
        batch = self._batch
        if batch is None or batch.recorded or not self.record:
            return
        batch.recorded = True
        for call in batch.calls:
            self._record_stages(call.estimates)
            exact = expectations(
                call.spec, torch.from_numpy(call.angles)[:, None, :], torch.from_numpy(call.weights)
            )  # (B*T, Q, n)
            self._record_histograms(call.spec, call.weights, call.angles, call.estimates)
            self._record(call, batch.image_ids, exact.numpy())

    def __call__(
        self, spec: QNNSpec, weights: Tensor, angles: Tensor, names: Sequence[str] = ()
    ) -> Tensor:
        b, t, n = angles.shape
        q = weights.shape[0]
        names = list(names) or [f"qnn{i}" for i in range(q)]
        if self._batch is None or self._batch.recorded:
            self._batch = _Batch(np.arange(b))
        batch = self._batch
        if len(batch.image_ids) != b:
            raise ValueError(f"begin_batch named {len(batch.image_ids)} images, the batch has {b}")
        layer = batch.layer
        batch.layer += 1
        x = angles.detach().to("cpu", torch.float64).reshape(b * t, n).numpy()  # (B*T, n)
        w = weights.detach().to("cpu", torch.float64).numpy()  # (Q, P, 2)
        qualified = [f"block{layer}.{name}" for name in names]
        calls = [QNNCall(qualified[i], spec, w[i], x) for i in range(q)]
        estimates = self.runner.run(calls, f"{self.label} layer {layer}".strip(), self.shots)
        call = LayerCall(layer, spec, qualified, w, x, t, estimates)
        batch.calls.append(call)
        return torch.from_numpy(call.z.reshape(b, t, q, n)).to(angles.dtype)

    def replay(self, stage: int) -> Callable[..., Tensor]:
        """An executor giving the last batch's estimates as they were after correction
        ``stage`` (-1: raw, before any; 0 ..: after the first, ...), without new jobs: the
        model's classical layers on each stage's estimates, for the report's side-by-side
        agreement. Raises StageUnavailable where a layer's angles differ from the recorded
        ones (a deeper model whose later layers saw other estimates)."""
        batch = self._batch
        if batch is None:
            raise ValueError("replay needs a batch run first")
        layers = iter(batch.calls)

        def execute(spec: QNNSpec, weights: Tensor, angles: Tensor, names: Sequence[str] = ()):
            b, t, n = angles.shape
            call = next(layers)
            x, estimates = call.angles, call.estimates
            here = angles.detach().to("cpu", torch.float64).reshape(b * t, n).numpy()
            if not np.array_equal(here, x):
                raise StageUnavailable("a later layer's angles differ from the recorded ones")
            pick = [e.z_raw if stage < 0 else e.stages[stage][0] for e in estimates]
            z = np.stack(pick, axis=1).reshape(b, t, len(estimates), n)
            return torch.from_numpy(z).to(angles.dtype)

        return execute

    def _record_stages(self, estimates: Sequence[RowEstimates]) -> None:
        for est in estimates:
            self._stages.append(
                (np.stack([z for z, _ in est.stages], axis=1) if est.stages else None,
                 np.stack([s for _, s in est.stages], axis=1) if est.stages else None)
            )  # fmt: skip

    def stages(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Every recorded row after each correction: z and stderr (R, S, n), rows in the
        order of `rows`; None without corrections."""
        self.end_batch()
        if not self._stages or self._stages[0][0] is None:
            return None
        return (
            np.concatenate([z for z, _ in self._stages]),
            np.concatenate([s for _, s in self._stages]),
        )

    def _record(self, call: LayerCall, image_ids: np.ndarray, exact: np.ndarray) -> None:
        rows = len(call.angles)
        for i, (name, est) in enumerate(zip(call.names, call.estimates, strict=True)):
            if name not in self.names:
                self.names.append(name)
            self._rows.append(
                {
                    "layer": np.full(rows, call.layer),
                    "qnn": np.full(rows, self.names.index(name)),
                    "image": np.repeat(image_ids, call.tokens),
                    "token": np.tile(np.arange(call.tokens), len(image_ids)),
                    "angles": call.angles,
                    "exact": exact[:, i],
                    "estimate": est.z,
                    "stderr": est.stderr,
                    "estimate_raw": est.z_raw,
                    "stderr_raw": est.stderr_raw,
                    "qubits": est.qubits,
                    "shots": est.shots if est.shots is not None else np.zeros(rows, np.int64),
                    "estimate_linear": est.z if est.z_linear is None else est.z_linear,
                    **({} if est.scaled is None else {"estimate_scales": est.scaled}),
                }
            )
        self._recorded += rows * len(call.names)

    def _record_histograms(
        self, spec: QNNSpec, w: np.ndarray, x: np.ndarray, estimates: Sequence
    ) -> None:
        """Keep sampled rows' histograms (ids as `rows` will number them) and exact
        distributions; call before `_record` of the same rows."""
        rows = len(x)
        for i, est in enumerate(estimates):
            if est.sampled is None:
                continue
            self._hists.append(
                {
                    "row": self._recorded + i * rows + est.sampled,
                    "counts": est.counts,
                    "exact": exact_distribution(spec, w[i], x[est.sampled]),
                }
            )

    def histograms(self) -> dict[str, np.ndarray] | None:
        """Sampled rows: ``row`` (S,) ids into `rows`, measured ``counts`` (S, 2^n) and the
        ``exact`` outcome distribution (S, 2^n), bit i of an outcome = qubit i (None if the
        backend kept no shots)."""
        self.end_batch()
        if not self._hists:
            return None
        return {k: np.concatenate([h[k] for h in self._hists]) for k in ("row", "counts", "exact")}

    def rows(self) -> dict[str, np.ndarray]:
        """Every recorded row, as arrays named by `ROW_FIELDS` (plus ``names``)."""
        self.end_batch()
        if not self._rows:
            raise ValueError("no rows recorded yet")
        out = {f: np.concatenate([r[f] for r in self._rows]) for f in ROW_FIELDS}
        if all("estimate_scales" in r for r in self._rows):  # zne: (R, K, n)
            out["estimate_scales"] = np.concatenate([r["estimate_scales"] for r in self._rows])
        out["names"] = np.array(self.names)
        return out


def exact_distribution(spec: QNNSpec, weights: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Exact outcome probabilities of a QNN: weights (P, 2), angles (S, n) -> (S, 2^n),
    outcome index sum_i b_i 2^i (bit i = qubit i, as the scheduler's histograms)."""
    n = spec.n_qubits
    u = unitary(spec, torch.from_numpy(np.asarray(weights, dtype=np.float64)))  # (D, D)
    psi = product_state(torch.from_numpy(np.asarray(angles, dtype=np.float64))) @ u.T  # (S, D)
    probs = (psi * psi).numpy()  # index: qubit 0 most significant
    reverse = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1) @ (1 << np.arange(n)[::-1])
    return probs[:, reverse]
