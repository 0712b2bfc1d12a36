"""The run-level pass: after every batch's jobs, fit each QNN's device function over all
rows of the run (`mitigation.fourier`), then predict again from the fitted values.

    rows (every batch, row-level corrected, unclipped)  ->  fit_run  ->  fitted <Z> and
    standard errors per row  ->  the model's classical layers on them, batch by batch
    (the layer inputs are the recorded angles; no job is submitted)  ->  logits, and per
    image the share of seeded coefficient draws (`DRAWS`, shared by every image, so the
    images' errors vary together as the fit's do) whose prediction differs; an image whose
    margin is `SURE` times an upper bound of its standard error away from a tie (every
    error taken as fully correlated) skips the draws with probability 0

Pure given the recorded rows: a resumed run, whose journal returns the same results,
fits and predicts the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import RunError
from ..mitigation.fourier import FourierFit, exact_coefficients, fit_run
from .adaptive import linearised

if TYPE_CHECKING:
    from ..circuit import QNNSpec
    from .executor import SchedulerExecutor

DRAWS = 256  # coefficient draws behind each image's flip probability
DRAW_CHUNK = 32  # draws per forward pass (memory: chunk x batch x heads x tokens^2)
SURE = 8.0  # images whose margin is this many (upper-bound) standard errors away skip draws
SEED = 0x5EED  # the draws' seed: part of what makes a run reproducible


@dataclass
class Refit:
    """The fit and what it changed: per row (rows.npz order) and per batch."""

    fit: FourierFit
    z: np.ndarray  # (R, n) fitted values of every recorded row
    stderr: np.ndarray  # (R, n)
    logits: list[torch.Tensor]  # (B, C) per batch, from the fitted values
    flip: list[np.ndarray]  # (B,) per batch: share of draws predicting another class
    weights: dict[str, np.ndarray]  # QNN name -> its weights (P, 2)

    def arrays(self) -> dict[str, np.ndarray]:
        """fourier.npz: per QNN, output i and placement group ("all" when pooled), the
        fitted coefficients ``coef|name|i|group`` and their standard errors ``se|...``, and
        the ideal circuit's ``exact|name|i``; ``cone|name|i`` the output's light cone (the
        terms' order is `mitigation.fourier.features`')."""
        out = {}
        for name, outputs in self.fit.outputs.items():
            exact = exact_coefficients(self.fit.spec[name], self.weights[name])
            for i, o in enumerate(outputs):
                out[f"exact|{name}|{i}"] = exact[i]
                out[f"cone|{name}|{i}"] = np.array(o.cone)
                for key, g in o.groups.items():
                    group = ",".join(map(str, key)) or "all"
                    out[f"coef|{name}|{i}|{group}"] = g.coef
                    out[f"se|{name}|{i}|{group}"] = g.coef_stderr()
        return out


# images x (B, ...) of one batch -> z (M, b, T, Q, n) of images (b,) -> logits (M, b, C)
LogitsOf = Callable[[torch.Tensor, np.ndarray], torch.Tensor]


def refit(
    executor: SchedulerExecutor,
    specs: dict[str, tuple[QNNSpec, np.ndarray]],
    batches: list[tuple[np.ndarray, LogitsOf]],
    draws: int = DRAWS,
    seed: int = SEED,
    fit: FourierFit | None = None,
) -> Refit:
    """Fit every QNN over the executor's recorded rows and predict each batch again.

    ``batches``: per batch, its image ids and the model's logits as a function of its one
    QNN layer's values (`infer._logits_of`); ``specs``: QNN name -> (spec, weights); ``fit``:
    a fit made before (a characterization's, for `surrogate:`) instead of fitting these rows."""
    rows = executor.rows()
    names = [str(n) for n in rows["names"]]
    if (rows["layer"] != 0).any():
        raise RunError(
            "--mitigate fourier needs a model with one QNN layer (its fit replaces the "
            "layer's values after every batch); run this model without fourier"
        )
    if fit is None:
        linear = {**rows, "estimate": rows["estimate_linear"]}
        runner = executor.runner
        offsets = {k: runner.readout_offsets(s) for k, (s, _) in specs.items()}
        fit = fit_run({k: s for k, (s, _) in specs.items()}, linear, names, readout=offsets,
                      pool="zne" in runner.mitigation)  # fmt: skip
    z, se = np.empty_like(rows["estimate"]), np.empty_like(rows["stderr"])
    order = []  # per QNN: its rows sorted by (image, token)
    for q, name in enumerate(names):
        mine = np.flatnonzero(rows["qnn"] == q)
        mine = mine[np.lexsort((rows["token"][mine], rows["image"][mine]))]
        z[mine], se[mine] = fit.evaluate(name, rows["angles"][mine], rows["qubits"][mine])
        order.append(mine)
    tokens = int(rows["token"].max()) + 1
    n = z.shape[1]
    out = Refit(fit, np.clip(z, -1.0, 1.0), se, [], [], {k: w for k, (_, w) in specs.items()})
    for images, logits_of in batches:
        b = len(images)
        pick = [idx[np.isin(rows["image"][idx], images)] for idx in order]  # per QNN
        values = np.stack([out.z[i] for i in pick], axis=1).reshape(b, tokens, len(names), n)
        spread = np.stack([se[i] for i in pick], axis=1).reshape(values.shape)
        pred, _, margin, grad = linearised(logits_of, values, spread, np.arange(b))
        # the margin's stderr is at most sum |grad| x stderr (every error fully correlated):
        # images this bound puts `SURE` standard errors from a tie keep flip probability 0
        bound = (np.abs(grad) * spread).reshape(b, -1).sum(axis=1)
        unsure = np.flatnonzero(np.abs(margin) < SURE * bound)
        with torch.no_grad():
            logits = logits_of(torch.from_numpy(values)[None], np.arange(b))[0].double()
        flip = np.zeros(b)
        if len(unsure):
            rows_of = [i.reshape(b, tokens)[unsure].reshape(-1) for i in pick]
            other = np.zeros(len(unsure))
            for a in range(0, draws, DRAW_CHUNK):
                part = slice(a, min(a + DRAW_CHUNK, draws))
                drawn = np.stack(
                    [
                        fit.draws(name, rows["angles"][i], rows["qubits"][i], draws, seed, part)
                        for name, i in zip(names, rows_of, strict=True)
                    ],
                    axis=2,
                )  # (m, u*T, Q, n)
                drawn = np.clip(drawn, -1.0, 1.0).reshape(-1, len(unsure), tokens, len(names), n)
                with torch.no_grad():
                    moved = logits_of(torch.from_numpy(drawn), unsure).argmax(-1).numpy()
                other += (moved != pred[unsure]).sum(axis=0)
            flip[unsure] = other / draws
        out.logits.append(logits)
        out.flip.append(flip)
    return out
