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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from ..backends.base import JobResult
from .estimate import estimate, unpack
from .plan import Plan, QNNCall, Slot


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


def split_rows(calls: Sequence[QNNCall], k: int) -> list[list[QNNCall]]:
    """Each call's rows dealt over ``k`` draws (row i to draw i mod k): per draw, the
    calls that have rows there, in call order (`merge_rows` puts them back)."""
    return [[replace(c, angles=c.angles[r::k]) for c in calls if len(c.angles) > r]
            for r in range(k)]  # fmt: skip


def merge_rows(
    calls: Sequence[QNNCall], parts: Sequence[Sequence[RowEstimates]], k: int
) -> list[RowEstimates]:
    """The estimates of `split_rows`'s draws (``parts[r]``: its calls' estimates) -> every
    call's rows in their own order."""
    out = []
    for i, call in enumerate(calls):
        rows = len(call.angles)
        mine = [(r, part[i]) for r, part in enumerate(parts) if rows > r]
        first = mine[0][1]

        def weave(get: Callable[[RowEstimates], np.ndarray], mine=mine, rows=rows) -> np.ndarray:
            return _weave([(r, get(e)) for r, e in mine], rows, k)

        sampled = counts = None
        have = [(r, e) for r, e in mine if e.sampled is not None]
        if have:
            ids = np.concatenate([e.sampled * k + r for r, e in have])
            order = np.argsort(ids, kind="stable")
            sampled, counts = ids[order], np.concatenate([e.counts for _, e in have])[order]
        linear = any(e.z_linear is not None for _, e in mine)
        out.append(
            RowEstimates(
                z=weave(lambda e: e.z),
                stderr=weave(lambda e: e.stderr),
                z_raw=weave(lambda e: e.z_raw),
                stderr_raw=weave(lambda e: e.stderr_raw),
                qubits=weave(lambda e: e.qubits),
                sampled=sampled,
                counts=counts,
                stages=tuple(
                    (weave(lambda e, j=j: e.stages[j][0]), weave(lambda e, j=j: e.stages[j][1]))
                    for j in range(len(first.stages))
                ),
                shots=None if first.shots is None else weave(lambda e: e.shots),
                z_linear=weave(lambda e: e.z if e.z_linear is None else e.z_linear)
                if linear
                else None,
                scaled=None if first.scaled is None else weave(lambda e: e.scaled),
            )
        )
    return out


def _weave(parts: list[tuple[int, np.ndarray]], rows: int, k: int) -> np.ndarray:
    """Arrays of rows r, r + k, r + 2k, ... -> one array of ``rows`` rows."""
    first = parts[0][1]
    woven = np.empty((rows, *first.shape[1:]), dtype=first.dtype)
    for r, a in parts:
        woven[r::k] = a
    return woven
