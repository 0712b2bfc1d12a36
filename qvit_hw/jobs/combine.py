"""Combine: job results -> <Z> and standard errors per row of every call (pure).

    results in plan order -> per template, its executions' <Z> and stderr (`estimate`)
      -> each call's unique rows unpacked from the packed copies (`unpack`), with the
         physical qubits each value was read from
      -> corrections applied in order (readout mitigation, ...), each a `Correction`
         fitted beforehand from calibration rows of the same template
      -> scattered back to every row of the call (duplicates share their estimate)

The last step of mitiq's construct -> execute -> combine; nothing here talks to a backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..backends.base import JobResult
from .estimate import estimate, unpack
from .plan import Plan, Slot


class Correction(Protocol):
    """One error-mitigation step: estimates in, corrected estimates out (same shapes)."""

    def correct(
        self, z: np.ndarray, stderr: np.ndarray, qubits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """z, stderr (rows, n) read from physical ``qubits`` (rows, n) -> corrected pair,
        unclipped (`combine` clips what it reports to [-1, 1])."""
        ...


@dataclass(frozen=True)
class RowEstimates:
    """Estimates for every row of one call (raw = before any correction)."""

    z: np.ndarray  # (rows, n)
    stderr: np.ndarray  # (rows, n)
    z_raw: np.ndarray  # (rows, n)
    stderr_raw: np.ndarray  # (rows, n)
    qubits: np.ndarray  # (rows, n) int: the physical qubit each value was read from
    # raw outcome histograms of a sample of rows (where the backend kept shots, else None):
    sampled: np.ndarray | None = None  # (S,) int: row indices into this call's rows
    counts: np.ndarray | None = None  # (S, 2^n) int64: shots per outcome, bit i = qubit i
    # (z, stderr) after each correction in turn (the last equals z, stderr); () without any
    stages: tuple[tuple[np.ndarray, np.ndarray], ...] = ()
    shots: np.ndarray | None = None  # (rows,) int: shots behind each row (0: exact)
    # z before clipping to [-1, 1] (the corrections are affine per qubit: a fit over many
    # rows must see their unclipped values to stay unbiased); None: equal to z
    z_linear: np.ndarray | None = None  # (rows, n)
    # zne: the corrected estimate at each noise scale before extrapolation; None without
    scaled: np.ndarray | None = None  # (rows, K, n)


def combine(
    p: Plan,
    results: Sequence[JobResult],
    corrections: Sequence[Sequence[Correction]] = (),
) -> list[RowEstimates]:
    """Estimates for every row of every call of ``p``, in call order.

    ``results`` are the jobs' results in ``p.jobs`` order; ``corrections[t]`` are applied,
    in order, to the rows of template ``t`` (none where the sequence is shorter).
    """
    per_template: list[list[tuple[int, JobResult]]] = [[] for _ in p.templates]
    for job, result in zip(p.jobs, results, strict=True):
        per_template[job.template].append((job.start, result))
    z_all, se_all, shots_all = [], [], []
    samples: list[dict[int, np.ndarray]] = []  # per template: execution -> bits
    for parts in per_template:
        parts = sorted(parts, key=lambda x: x[0])
        pairs = [estimate(result.pubs[0]) for _, result in parts]
        z_all.append(np.concatenate([z for z, _ in pairs]))  # (E, clbits)
        se_all.append(np.concatenate([s for _, s in pairs]))
        shots_all.append(
            np.concatenate([np.full(r.pubs[0].rows, r.pubs[0].shots) for _, r in parts])
        )  # (E,)
        samples.append(_sampled_executions(parts))
    out = []
    for slot in p.slots:
        t = p.templates[slot.template]
        k, n = t.copies, t.spec.n_qubits
        stop = slot.start + -(-slot.unique // k)
        z = unpack(z_all[slot.template][slot.start : stop], k, n, slot.unique)  # (U, n)
        se = unpack(se_all[slot.template][slot.start : stop], k, n, slot.unique)
        qubits = np.asarray(t.placements)[np.arange(slot.unique) % k]  # (U, n)
        shots = shots_all[slot.template][slot.start + np.arange(slot.unique) // k]  # (U,)
        z_c, se_c = z, se
        inv = slot.inverse
        stages = []
        for correction in corrections[slot.template] if slot.template < len(corrections) else ():
            z_c, se_c = correction.correct(z_c, se_c, qubits)
            stages.append((np.clip(z_c[inv], -1.0, 1.0), se_c[inv]))
        sampled, counts = _copy_histograms(samples[slot.template], slot, k, n)
        out.append(
            RowEstimates(
                np.clip(z_c[inv], -1.0, 1.0) if stages else z_c[inv],
                se_c[inv],
                z[inv],
                se[inv],
                qubits[inv],
                sampled,
                counts,
                tuple(stages),
                shots[inv],
                z_c[inv],
            )
        )
    return out


def _sampled_executions(parts: Sequence[tuple[int, JobResult]]) -> dict[int, np.ndarray]:
    """Raw shots the backend kept, by execution index in the template's rows:
    {execution: (shots', clbits) bits}."""
    out = {}
    for start, result in parts:
        bits = result.pubs[0].sample_bits()
        if bits is not None:
            out.update({start + r: bits[r] for r in range(len(bits))})
    return out


def _copy_histograms(
    samples: dict[int, np.ndarray], slot: Slot, k: int, n: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Outcome histograms of the call's rows served by sampled executions: each packed
    copy's n bits on their own. Returns (rows (S,), counts (S, 2^n)), or Nones."""
    stop = slot.start + -(-slot.unique // k)
    executions = sorted(e for e in samples if slot.start <= e < stop)
    if not executions:
        return None, None
    first = np.empty(slot.unique, dtype=np.int64)  # unique row -> its first call row
    first[slot.inverse[::-1]] = np.arange(len(slot.inverse))[::-1]
    weights = 1 << np.arange(n)
    rows, counts = [], []
    for e in executions:
        for c in range(k):
            u = (e - slot.start) * k + c
            if u >= slot.unique:
                break
            outcome = samples[e][:, c * n : (c + 1) * n].astype(np.int64) @ weights  # (shots',)
            rows.append(first[u])
            counts.append(np.bincount(outcome, minlength=2**n))
    return np.array(rows, dtype=np.int64), np.stack(counts)
