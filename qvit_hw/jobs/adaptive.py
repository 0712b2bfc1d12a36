"""Adaptive shots: spend shots on the rows whose noise could still change a diagnosis.

A batch's QNN rows first run at ``initial_shots``. Then, round after round:

    flip probability   per image, the probability that exact <Z> would give another class
                       than its estimates do: linearised through the model's classical
                       rest (`linearised`) where that is far from the threshold, else the
                       share of seeded Monte Carlo draws of its rows' <Z> (normal around
                       the estimates, their standard errors, each row's qubits correlated
                       as its circuit's outcomes are: `row_correlations`) that predict
                       another class (`flip_probability`); the QNN rows of a layer do not
                       depend on each other, so this is one batched forward
    stop               images below ``STOP`` x (1 - ``target_agreement``), and ties the
                       ceiling cannot settle: rows at ``max_shots_per_row`` hold all but
                       `REDUCIBLE` of the margin's variance (`spent_out`)
    allocate           for the rest, Neyman allocation on the linearised margin (logit of
                       the predicted class minus the runner-up's): the margin's variance
                       sum_r g_r' C_r g_r / s_r (g: its gradient in row r's values, C: their
                       per-shot covariance, s: shots) is brought to (margin / z)^2 (z: the
                       normal quantile of the target) with the fewest shots by s_r
                       proportional to sqrt(g_r' C_r g_r) (`allocate`), at most ``growth``
                       times a row's shots per round, rounded up to the ladder
                       initial x 2^(k/2) (so rows share shot counts and pack together);
                       rows equal across images are one row to the device and get the
                       most any of them wants (`share_duplicates`)
    run                the extra shots of every row, grouped by count, as one set of jobs;
                       each row's rounds pooled by shots (`pool`)

Every decision is a function of the results and the seed, so a resumed run plans the same
rounds and the journal returns every finished job without paying again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.special import ndtr

from .combine import RowEstimates
from .config import AdaptiveConfig
from .plan import QNNCall

if TYPE_CHECKING:
    from .executor import LayerCall, SchedulerExecutor

DRAW_CHUNK = 64  # Monte Carlo draws per forward (memory: draws x B x heads x T^2 floats)
CLOSEST = 3  # classes after the predicted one that the linearised flip probability sums
STOP = 1.0  # an image stops once its flip probability is below STOP x (1 - target)
TRUST = 4  # the linearised probability decides where it is this factor above the threshold
FAR = 1000  # ... or this factor below it (near a tie its sigma can be 5x off)
REDUCIBLE = 0.2  # an image gives up when more shots could remove no more of its variance


@dataclass
class AdaptiveBatch:
    """What the rounds of one batch did (per image) and how."""

    flip: np.ndarray  # (B,) flip probability after the last round
    shots: np.ndarray  # (B,) shots spent on the image's rows (every round)
    rounds: list[dict[str, float]] = field(default_factory=list)  # per round
    preds: list[np.ndarray] = field(default_factory=list)  # (B,) prediction after each round


# z (M, b, T, Q, n) of images (b,) of the batch -> their logits (M, b, C)
Logits = Callable[[torch.Tensor, np.ndarray], torch.Tensor]


def quadratic(v: np.ndarray, corr: np.ndarray | None) -> np.ndarray:
    """sum over a row's qubits of v_i corr_ij v_j: v (..., n), corr (..., n, n) or None (the
    identity) -> (...). With v = gradient x stderr, a row's share of a margin's variance."""
    if corr is None:
        return (v**2).sum(-1)
    return np.einsum("...i,...ij,...j->...", v, corr, v)


def linearised(
    logits_of: Logits,
    z: np.ndarray,
    stderr: np.ndarray,
    images: np.ndarray,
    corr: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The model linearised at ``z`` (b, T, Q, n) of ``images`` (b,): per image its
    prediction, the flip probability sum_c Phi(-m_c / sigma_c) over the `CLOSEST` other
    classes c (m_c: logit margin, sigma_c: its stderr from the gradient, ``stderr`` and
    the correlations ``corr`` (b, T, Q, n, n) of a row's qubits, None: independent), and
    the margin to the runner-up with its gradient (b, T, Q, n).
    Returns (pred, p_lin, margin, grad)."""
    b = len(z)
    zt = torch.from_numpy(z).requires_grad_(True)
    with torch.enable_grad():
        logits = logits_of(zt[None], images)[0]  # (b, C)
        k = min(CLOSEST + 1, logits.shape[1])
        top = logits.detach().topk(k, dim=-1).indices  # (b, k): pred, runner-up, ...
        picked = logits.gather(1, top)  # (b, k)
        margins_t = picked[:, :1] - picked[:, 1:]  # (b, k - 1)
        eye = torch.eye(k - 1, dtype=margins_t.dtype)[:, None, :].expand(k - 1, b, k - 1)
        (grads,) = torch.autograd.grad(margins_t, zt, grad_outputs=eye, is_grads_batched=True)
    grad_all = grads.numpy().swapaxes(0, 1)  # (b, k - 1, T, Q, n)
    margins = margins_t.detach().numpy()  # (b, k - 1)
    per_row = quadratic(grad_all * stderr[:, None], None if corr is None else corr[:, None])
    sigma = np.sqrt(np.maximum(per_row.reshape(b, k - 1, -1).sum(-1), 0.0))  # (b, k - 1)
    ratio = -margins / np.where(sigma > 0, sigma, 1.0)
    p_lin = np.minimum(1.0, np.where(sigma > 0, ndtr(ratio), 0.0).sum(-1))  # Phi(-m / sigma)
    return top[:, 0].numpy(), p_lin, margins[:, 0], grad_all[:, 0]


def flip_probability(
    logits_of: Logits,
    z: np.ndarray,
    stderr: np.ndarray,
    draws: int,
    rng: np.random.Generator,
    threshold: float,
    images: np.ndarray | None = None,
    corr: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per image of ``images`` (default: all), the probability that exact values would give
    another class than ``z`` (b, T, Q, n) does, with exact ~ N(z, stderr) clipped to
    [-1, 1], a row's qubits correlated by ``corr`` (b, T, Q, n, n; None: independent).
    Images whose linearised probability is far above ``threshold`` (`TRUST` times it) or
    far below it (1 / `FAR` of it) keep that; the rest get the share of ``draws`` seeded
    Monte Carlo draws whose prediction differs. Returns (flip, pred, margin, grad)
    (`linearised`)."""
    images = np.arange(len(z)) if images is None else images
    pred, flip, margin, grad = linearised(logits_of, z, stderr, images, corr)
    unsure = np.flatnonzero((flip >= threshold / FAR) & (flip <= threshold * TRUST))
    if len(unsure):
        flips = np.zeros(len(unsure))
        root = None if corr is None else _root(corr[unsure])  # corr = root root^T
        with torch.no_grad():
            for a in range(0, draws, DRAW_CHUNK):
                m = min(DRAW_CHUNK, draws - a)
                noise = rng.standard_normal((m, len(unsure), *z.shape[1:]))
                if root is not None:
                    noise = np.einsum("utqij,mutqj->mutqi", root, noise)
                drawn = np.clip(z[unsure] + noise * stderr[unsure], -1.0, 1.0)
                other = logits_of(torch.from_numpy(drawn), images[unsure]).argmax(-1).numpy()
                flips += (other != pred[unsure]).sum(axis=0)  # (u,)
        flip[unsure] = flips / draws
    return flip, pred, margin, grad


def _root(corr: np.ndarray) -> np.ndarray:
    """A square root L of each correlation matrix (..., n, n), L L^T = corr (eigenvalues
    clipped at 0), to draw correlated normal noise L e."""
    w, v = np.linalg.eigh(corr)
    return v * np.sqrt(np.clip(w, 0.0, None))[..., None, :]


def allocate(
    grad: np.ndarray,
    stderr: np.ndarray,
    shots: np.ndarray,
    margin: np.ndarray,
    active: np.ndarray,
    config: AdaptiveConfig,
    corr: np.ndarray | None = None,
) -> np.ndarray:
    """New cumulative shots per row (B, T, Q) for the ``active`` images (B,), on the ladder.

    grad, stderr (B, T, Q, n); shots (B, T, Q) so far; margin (B,); corr (B, T, Q, n, n)
    of a row's qubits (None: independent).
    """
    z_q = NormalDist().inv_cdf(config.target_agreement)
    one_shot = grad * stderr * np.sqrt(shots[..., None])  # (B, T, Q, n): per shot
    weight = np.sqrt(np.maximum(quadratic(one_shot, corr), 0.0))  # (B, T, Q)
    total = weight.reshape(len(weight), -1).sum(-1)  # (B,)
    spent = shots.reshape(len(shots), -1).sum(-1)  # (B,)
    # the image's shots that bring the margin's stderr to margin / z (Neyman), at least
    # double and at most `growth` times what it has (the linearisation is local)
    needed = total**2 * (z_q / np.maximum(np.abs(margin), 1e-9)) ** 2
    budget = np.clip(needed, np.sqrt(2) * spent, config.growth * spent)  # (B,)
    share = weight / np.where(total > 0, total, 1.0)[:, None, None]
    wanted = np.minimum(share * budget[:, None, None], shots * config.growth)
    ladder = config.ladder
    level = np.searchsorted(ladder, np.minimum(wanted, ladder[-1]), side="left")
    new = np.maximum(ladder[np.minimum(level, len(ladder) - 1)], shots)
    return np.where(active[:, None, None], new, shots)


def pool(parts: Sequence[RowEstimates]) -> RowEstimates:
    """One call's rows from several rounds, pooled by their shots: z = sum s_i z_i / sum s_i
    and stderr = sqrt(sum s_i^2 se_i^2) / sum s_i (raw, each stage and final alike). Rows a
    round did not run have 0 shots there. Qubits and histograms are the first round's."""
    first = parts[0]
    if len(parts) == 1:
        return first
    s = np.stack([p.shots for p in parts]).astype(np.float64)  # (K, rows)
    total = s.sum(axis=0)
    w = s / np.where(total > 0, total, 1.0)  # (K, rows)

    def mix(zs: list[np.ndarray], ses: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        z = sum(wi[:, None] * zi for wi, zi in zip(w, zs, strict=True))
        var = sum((wi**2)[:, None] * si**2 for wi, si in zip(w, ses, strict=True))
        return z, np.sqrt(var)

    z, se = mix([p.z for p in parts], [p.stderr for p in parts])
    z_raw, se_raw = mix([p.z_raw for p in parts], [p.stderr_raw for p in parts])
    stages = tuple(
        mix([p.stages[k][0] for p in parts], [p.stages[k][1] for p in parts])
        for k in range(len(first.stages))
    )
    return replace(
        first, z=z, stderr=se, z_raw=z_raw, stderr_raw=se_raw, stages=stages,
        shots=total.astype(np.int64),
    )  # fmt: skip


def _spread(est: RowEstimates | None, rows: np.ndarray, like: RowEstimates) -> RowEstimates:
    """A round's estimates of ``rows`` of a call (None: it ran none) spread to every row
    of ``like``, with 0 shots, and so no weight in `pool`, where it did not run."""

    def spread(a: np.ndarray | None, shape: np.ndarray) -> np.ndarray:
        out = np.zeros(shape.shape, dtype=shape.dtype)
        if a is not None:
            out[rows] = a
        return out

    def get(name: str) -> np.ndarray | None:
        return None if est is None else getattr(est, name)

    stages = tuple(
        (spread(None if est is None else est.stages[k][0], z),
         spread(None if est is None else est.stages[k][1], s))
        for k, (z, s) in enumerate(like.stages)
    )  # fmt: skip
    return RowEstimates(
        *(spread(get(f), getattr(like, f)) for f in ("z", "stderr", "z_raw", "stderr_raw")),
        spread(get("qubits"), like.qubits), None, None, stages,
        spread(get("shots"), like.shots),  # type: ignore[arg-type]
    )  # fmt: skip


def share_duplicates(shots: np.ndarray, same: np.ndarray) -> np.ndarray:
    """Shots per row (B, T, Q) where rows (images x tokens) ``same`` (B*T,) with one id are
    one row to the device: each gets the most any of them has."""
    b, t, q = shots.shape
    most = np.zeros((same.max() + 1, q), dtype=shots.dtype)
    np.maximum.at(most, same, shots.reshape(b * t, q))
    return most[same].reshape(b, t, q)


def spent_out(
    grad: np.ndarray, stderr: np.ndarray, shots: np.ndarray, corr: np.ndarray, ceiling: int
) -> np.ndarray:
    """Per image (B,), whether its rows at ``ceiling`` hold all but `REDUCIBLE` of its
    margin's variance, so that more shots on the others could shrink its stderr by 11 % at
    most: a tie the ceiling cannot settle, given up.
    grad, stderr (B, T, Q, n); shots (B, T, Q); corr (B, T, Q, n, n)."""
    var = np.maximum(quadratic(grad * stderr, corr), 0.0)  # (B, T, Q): each row's share
    b = len(var)
    total = var.reshape(b, -1).sum(-1)
    open_ = np.where(shots < ceiling, var, 0.0).reshape(b, -1).sum(-1)
    at_ceiling = (shots >= ceiling).reshape(b, -1).all(-1)
    return at_ceiling | ((total > 0) & (open_ <= REDUCIBLE * total))


def row_correlations(call: LayerCall, images: int) -> np.ndarray:
    """The ideal circuit's correlations of each row's qubits, (B, T, Q, n, n): the shots of
    a row are one set of bitstrings, and its n estimates vary together (the margin's
    variance is about 1.5x the independent sum on the demo bundle). Devices return no
    per-row correlations, so a noisy device's are taken to be its ideal circuit's."""
    from ..circuit import z_correlations

    with torch.no_grad():
        corr = z_correlations(
            call.spec, torch.from_numpy(call.angles), torch.from_numpy(call.weights)
        )  # (B*T, Q, n, n)
    n = call.spec.n_qubits
    return corr.numpy().reshape(images, call.tokens, len(call.estimates), n, n)


def refine(
    executor: SchedulerExecutor, logits_of: Logits, config: AdaptiveConfig, batch_seed: int
) -> AdaptiveBatch:
    """Run the rounds for the executor's current batch (its one QNN layer ran at
    ``initial_shots``); replaces the layer's estimates by the pooled ones in place."""
    calls = executor.batch
    if len(calls) != 1:
        raise ValueError(f"--shots auto needs a model with one QNN layer, not {len(calls)}")
    call: LayerCall = calls[0]
    b = len(call.angles) // call.tokens  # images in the batch
    t, q, n = call.tokens, len(call.estimates), call.spec.n_qubits
    rounds: list[list[RowEstimates]] = [call.estimates]  # per round, per QNN
    rng = np.random.default_rng([config.seed, batch_seed])
    out = AdaptiveBatch(np.zeros(b), np.zeros(b, dtype=np.int64))
    corr = row_correlations(call, b)  # (B, T, Q, n, n)
    # rows with equal angles (a blank patch in several images) are one row to the device:
    # they get the most any of them wants, and so stay one execution with one estimate
    _, same = np.unique(call.angles, axis=0, return_inverse=True)
    same = same.reshape(-1)
    active = np.ones(b, dtype=bool)
    touched = np.zeros(b, dtype=bool)  # stopped images whose shared rows got more shots
    for number in range(1, 64):
        z = call.z.reshape(b, t, q, n)
        se = np.stack([e.stderr for e in call.estimates], axis=1).reshape(b, t, q, n)
        shots = np.stack([e.shots for e in call.estimates], axis=1).reshape(b, t, q)
        threshold = STOP * (1 - config.target_agreement)
        live = np.flatnonzero(active | touched)  # the others keep their estimates
        flip, pred, margin, grad = (
            np.zeros(b), out.preds[-1].copy() if out.preds else np.zeros(b, np.int64),
            np.zeros(b), np.zeros_like(z),
        )  # fmt: skip
        flip[~active] = out.flip[~active]
        flip[live], pred[live], margin[live], grad[live] = flip_probability(
            logits_of, z[live], se[live], config.draws, rng, threshold, live, corr[live]
        )
        out.flip, out.shots, out.preds = flip, shots.reshape(b, -1).sum(-1), [*out.preds, pred]
        given_up = spent_out(grad, se, shots, corr, config.max_shots_per_row)
        active &= (flip >= threshold) & ~given_up
        out.rounds.append(
            {"round": number, "shots": int(shots.sum()), "active_images": int(active.sum())}
        )
        if not active.any():
            break
        new = allocate(grad, se, shots, margin, active, config, corr)  # (B, T, Q)
        active &= (new > shots).reshape(b, -1).any(-1)  # nothing left to add: stop
        if not active.any():
            break
        new = share_duplicates(new, same)
        touched = ~active & (new > shots).reshape(b, -1).any(-1)
        extra = (new - shots).reshape(b * t, q)
        groups, where = [], []
        for d in np.unique(extra[extra > 0]):
            picks = [np.flatnonzero(extra[:, i] == d) for i in range(q)]
            chosen = [i for i in range(q) if len(picks[i])]
            groups.append(
                ([QNNCall(call.names[i], call.spec, call.weights[i], call.angles[picks[i]])
                  for i in chosen], int(d))
            )  # fmt: skip
            where.append([(i, picks[i]) for i in chosen])
        results = executor.runner.run_groups(groups, f"{executor.label} round {number + 1}")
        for placed, group in zip(where, results, strict=True):
            ran = {i: (est, rows) for (i, rows), est in zip(placed, group, strict=True)}
            rounds.append(
                [_spread(*ran.get(i, (None, np.arange(0))), like) for i, like in
                 enumerate(call.estimates)]
            )  # fmt: skip
        call.estimates = [pool([r[i] for r in rounds]) for i in range(q)]
    return out
