"""Learned mitigation: affine maps per physical qubit, fitted on rows whose exact <Z> is known.

Every QNN here has at most 16 qubits, so the exact answer of any row is cheap to compute:
this is the setting of learning-based mitigation (Clifford data regression, Czarnik et al.
2021) without its near-Clifford restriction. For each template, `LearnedMitigation` plans
calibration rows with seeded random angles and weights (``context.learned_rows`` of them,
several weight sets), which go through the same plan, packing, placements, scheduler and
journal as the data rows, so each physical qubit of each packed copy gets its own points.
The corrections before it (readout) are applied to them first; then, per physical qubit q,
the forward model

    measured = a_q exact + b_q + noise          (ordinary least squares over its rows)

is fitted, shrunk across qubits (`shrink`: exactly the identity when the fits are
consistent with it, as on an ideal device, otherwise pulled toward the qubits' mean by
how much their spread exceeds their errors) and inverted on the data rows:
z = (measured - b_q) / a_q (`combine` clips what it reports to [-1, 1]).
The standard error carries the row's own shot noise, the fit's uncertainty (delta method
with the fitted covariance of a_q, b_q) and the excess scatter of the calibration rows
beyond their shot noise (what an affine map per qubit cannot explain), so z-scores of
the corrected values against the exact ones stay near 1.

mitiq's ``cdr`` does the same regression through its own executor and observable types,
one expectation value at a time, with near-Clifford training circuits; here the training
rows are ordinary rows of the packed template (exactly simulable, no Clifford restriction)
and thousands of values are fitted at once per qubit, so the regression is ten lines of
numpy rather than an adapter around mitiq's circuit loop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..backends.base import JobResult, identity_key
from ..circuit import expectations
from ..errors import BackendError
from ..jobs.combine import Correction, RowEstimates, combine
from ..jobs.plan import Plan, PlannedJob, QNNCall, Template, plan

if TYPE_CHECKING:
    from . import CalibrationContext

WEIGHT_SETS = 8  # random weight draws among the calibration rows
MIN_SLOPE = 0.2  # a qubit whose <Z> shrinks more than this cannot be inverted usefully
IDENTITY_P = 1e-3  # fits this consistent with the identity are taken as the identity


@dataclass(frozen=True)
class LearnedCalibration:
    """Per physical qubit: measured = a exact + b, the fit's covariance and excess scatter."""

    qubits: np.ndarray  # (Q,) physical qubits
    a: np.ndarray  # (Q,) slopes
    b: np.ndarray  # (Q,) offsets
    cov: np.ndarray  # (Q, 2, 2) covariance of (a, b)
    excess: np.ndarray  # (Q,) variance of the residuals beyond their shot noise
    rows: int  # calibration rows the fit used (over every qubit's copy)
    p_value: float = 0.0  # of "every qubit is the identity"; above IDENTITY_P it was applied

    def correct(
        self, z: np.ndarray, stderr: np.ndarray, qubits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """z, stderr (rows, n) read on physical ``qubits`` -> corrected z and stderr."""
        index = np.full(int(max(qubits.max(), self.qubits.max())) + 1, -1)
        index[self.qubits] = np.arange(len(self.qubits))
        i = index[qubits]  # (rows, n)
        if (i < 0).any():
            missing = sorted(set(qubits[i < 0].tolist()))
            raise BackendError(f"learned mitigation has no calibration for qubits {missing}")
        a, b, excess = self.a[i], self.b[i], self.excess[i]
        var_a, var_b, cov_ab = self.cov[i, 0, 0], self.cov[i, 1, 1], self.cov[i, 0, 1]
        d = z - b
        corrected = d / a
        # delta method: d/da = -(m - b) / a^2, d/db = -1 / a
        fit_var = (d * d * var_a) / a**4 + var_b / a**2 + 2 * d * cov_ab / a**3
        var = (stderr**2 + excess) / a**2 + fit_var
        return corrected, np.sqrt(np.clip(var, 0.0, None))

    def to_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "p_identity": self.p_value,
            "qubits": {
                str(int(q)): {"a": float(a), "b": float(b), "excess": float(e)}
                for q, a, b, e in zip(self.qubits, self.a, self.b, self.excess, strict=True)
            },
        }


@dataclass(frozen=True)
class LearnedMitigation:
    """Fits a `LearnedCalibration` per template from seeded rows of known exact answer."""

    seed: int = 0
    name: str = "learned"

    def calls(self, template: Template, rows: int) -> list[QNNCall]:
        """The calibration rows: ``rows`` random token angles over `WEIGHT_SETS` random
        weight sets, seeded from the template (a resumed run plans the same jobs)."""
        spec = template.compiled.spec
        digest = hashlib.sha256(f"{self.seed}|{template.key}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        per_set = -(-rows // WEIGHT_SETS)
        return [
            QNNCall(
                f"learned{j}",
                spec,
                rng.uniform(-np.pi, np.pi, spec.weight_shape),
                rng.uniform(-np.pi, np.pi, (per_set, spec.n_qubits)),
            )
            for j in range(WEIGHT_SETS)
        ]

    def plan_on(
        self, template: Template, calls: list[QNNCall], context: CalibrationContext
    ) -> Plan:
        """The plan of calibration ``calls`` on ``template`` (zne,learned plans scale 1's rows
        on every scale's template)."""
        key = identity_key(context.backend)
        return plan(calls, lambda _: template, backend=key, shots=context.shots,
                    job_size=context.job_size)  # fmt: skip

    def calibration_jobs(self, template: Template, context: CalibrationContext) -> list[PlannedJob]:
        if context.learned_rows < 1:
            raise ValueError("--calibration-rows must be >= 1 for learned mitigation")
        calls = self.calls(template, context.learned_rows)
        return list(self.plan_on(template, calls, context).jobs)

    def fit(
        self,
        template: Template,
        results: Sequence[JobResult],
        context: CalibrationContext,
        before: Sequence[Correction] = (),
    ) -> LearnedCalibration:
        calls = self.calls(template, context.learned_rows)
        estimates = combine(self.plan_on(template, calls, context), results, [list(before)])
        return self.fit_estimates(calls, estimates, linear=False)

    def fit_estimates(
        self, calls: Sequence[QNNCall], estimates: Sequence[RowEstimates], linear: bool = True
    ) -> LearnedCalibration:
        """The affine maps from the calibration ``calls``' estimates (one per call).
        ``linear``: fit their unclipped values (extrapolated ones leave [-1, 1] often, and
        clipping them would bias the fit); the per-scale fit keeps the clipped ones it has
        always used."""
        spec = calls[0].spec
        exact = np.concatenate(
            [
                expectations(spec, torch.from_numpy(c.angles), torch.from_numpy(c.weights))
                .double()
                .numpy()
                for c in calls
            ]
        )  # (R, n)
        measured = np.concatenate(
            [e.z_linear if linear and e.z_linear is not None else e.z for e in estimates]
        )
        stderr = np.concatenate([e.stderr for e in estimates])
        qubits = np.concatenate([e.qubits for e in estimates])
        return fit_affine(qubits, exact, measured, stderr, rows=len(measured))


def fit_affine(
    qubits: np.ndarray, exact: np.ndarray, measured: np.ndarray, stderr: np.ndarray, rows: int
) -> LearnedCalibration:
    """Per physical qubit, OLS of measured on exact, then shrunk across qubits (below): slope,
    offset, their covariance and the residual variance beyond the rows' own shot noise.
    All arrays (R, n)."""
    qs = np.unique(qubits)
    theta = np.empty((len(qs), 2))  # (Q, 2) fitted (a, b)
    cov, excess = np.empty((len(qs), 2, 2)), np.empty(len(qs))
    for j, q in enumerate(qs):
        mask = qubits == q
        x, y, se = exact[mask], measured[mask], stderr[mask]
        if len(x) < 3 or np.ptp(x) == 0:
            raise BackendError(f"learned mitigation: too few calibration rows on qubit {q}")
        design = np.stack([x, np.ones_like(x)], axis=1)  # (m, 2)
        theta[j], *_ = np.linalg.lstsq(design, y, rcond=None)
        resid = y - design @ theta[j]
        s2 = float(resid @ resid) / (len(x) - 2)
        cov[j] = s2 * np.linalg.inv(design.T @ design)
        excess[j] = max(0.0, s2 - float(np.mean(se * se)))
    weak = qs[theta[:, 0] < MIN_SLOPE]
    if len(weak):
        raise BackendError(
            f"learned mitigation: qubits {sorted(weak.tolist())[:5]} keep less than "
            f"{MIN_SLOPE:.0%} of <Z>; too noisy to invert"
        )
    theta, cov, p_value = shrink(theta, cov)
    if p_value > IDENTITY_P:
        excess = np.zeros_like(excess)  # the residuals are shot noise: nothing to add
    return LearnedCalibration(qs, theta[:, 0], theta[:, 1], cov, excess, rows, p_value)


def shrink(theta: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Empirical-Bayes shrinkage of per-qubit fits (a, b) (Q, 2) with covariances (Q, 2, 2).

    First a chi-square test of "every qubit is the identity" (a = 1, b = 0): if the fits do
    not depart from it beyond their own errors (p > `IDENTITY_P`), the identity is returned
    exactly, so an ideal device's answers are left untouched instead of being moved by
    maps fitted to shot noise. Otherwise each fit is pulled toward the qubits' mean by
    S = P (P + C)^-1, with P the spread of the true maps across qubits (sample covariance
    of the fits minus their mean error covariance, clipped positive), i.e. the posterior
    mean under a normal prior fitted to the qubits themselves (James-Stein); its
    covariance is S C. A device whose qubits truly differ (P >> C) keeps its fits.
    Returns the shrunk (a, b), their covariances and the test's p-value.
    """
    from scipy.stats import chi2

    dev = theta - np.array([1.0, 0.0])  # (Q, 2)
    if (np.linalg.det(cov) <= 0).any():  # noise-free fits: nothing to shrink
        return theta, cov, 0.0
    stat = float(np.einsum("qi,qij,qj->", dev, np.linalg.inv(cov), dev))
    p_value = float(chi2.sf(stat, 2 * len(theta)))
    if p_value > IDENTITY_P:
        return np.tile([1.0, 0.0], (len(theta), 1)), np.zeros_like(cov), p_value
    if len(theta) < 3:  # too few qubits to tell their spread from noise
        return theta, cov, p_value
    mean = theta.mean(axis=0)
    vals, vecs = np.linalg.eigh(np.cov(theta.T) - cov.mean(axis=0))
    prior = (vecs * np.clip(vals, 0.0, None)) @ vecs.T  # (2, 2)
    gain = prior @ np.linalg.inv(prior + cov)  # (Q, 2, 2)
    shrunk = mean + np.einsum("qij,qj->qi", gain, theta - mean)
    return shrunk, gain @ cov, p_value
