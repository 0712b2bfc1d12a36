"""Construct: QNN calls -> deduplicated, bound, packed parameter rows -> hashed jobs (pure).

    QNNCall (QNN, weights (P, 2), token angles (rows, n)), one per QNN of a layer
      -> unique rows per QNN                 np.unique(axis=0): same angles, same weights
      -> bound, packed parameter rows        CompiledQNN.parameter_values; one template per
                                             spec (transpiled once per target, k copies)
      -> jobs within the backend's limits    each with the payload hash the journal keys
                                             it by

`plan` touches no backend: give it the templates and the job size and it returns every
job's pubs and where each call's rows sit in them, so `combine` can scatter results back.
The first step of mitiq's construct -> execute -> combine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..backends.base import Pub
from ..circuit import QNNSpec
from .journal import payload_hash

if TYPE_CHECKING:
    from ..transpile import CompiledQNN


@dataclass(frozen=True)
class QNNCall:
    """One QNN evaluated on many token rows."""

    name: str
    spec: QNNSpec
    weights: np.ndarray  # (P, 2) float64
    angles: np.ndarray  # (rows, n) float64

    def __post_init__(self) -> None:
        weights = np.asarray(self.weights, dtype=np.float64)
        angles = np.asarray(self.angles, dtype=np.float64)
        if weights.shape != self.spec.weight_shape:
            raise ValueError(
                f"weights: expected shape {self.spec.weight_shape}, got {weights.shape}"
            )
        if angles.ndim != 2 or angles.shape[1] != self.spec.n_qubits or not len(angles):
            raise ValueError(
                f"angles: expected shape (rows >= 1, {self.spec.n_qubits}), got {angles.shape}"
            )
        for name, value in (("weights", weights), ("angles", angles)):
            if not np.isfinite(value).all():  # before any job is planned, let alone paid
                raise ValueError(f"{name} of {self.name}: must be finite, got NaN or infinity")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "angles", angles)


@dataclass(frozen=True)
class Template:
    """A compiled QNN and the key of its circuit (what payload hashes cover)."""

    compiled: CompiledQNN
    key: str


@dataclass(frozen=True)
class PlannedJob:
    """One job's pubs and where their executions sit in their template's rows."""

    payload: str
    pubs: tuple[Pub, ...]
    template: int  # index into Plan.templates (-1: a calibration job)
    start: int  # first execution in the template's concatenated rows

    @property
    def executions(self) -> int:
        return sum(p.rows for p in self.pubs)


def planned_job(
    backend: str, pubs: Sequence[Pub], keys: Sequence[str], template: int = -1, start: int = 0
) -> PlannedJob:
    """A job of ``pubs`` keyed by its payload hash (``keys``: each pub's circuit key)."""
    return PlannedJob(payload_hash(backend, pubs, keys), tuple(pubs), template, start)


@dataclass(frozen=True)
class Slot:
    """Where one call's rows went: its template, first execution and row -> unique row."""

    template: int
    start: int  # first execution of this call in its template's rows
    inverse: np.ndarray  # (rows,): row -> unique row
    unique: int


@dataclass(frozen=True)
class Plan:
    """What `plan` builds: templates, jobs and how to scatter results back to calls."""

    templates: tuple[CompiledQNN, ...]
    slots: tuple[Slot, ...]
    jobs: tuple[PlannedJob, ...]
    rows: int
    unique_rows: int

    @property
    def executions(self) -> int:
        return sum(j.executions for j in self.jobs)


def plan(
    calls: Sequence[QNNCall],
    template_of: Callable[[QNNSpec], Template],
    *,
    backend: str,
    shots: int,
    job_size: int | None,
) -> Plan:
    """Dedup, bind and pack every call, and split the executions into hashed jobs.

    ``template_of(spec)`` gives the compiled template of a spec (cached by the caller);
    ``job_size`` caps executions per job (None: one job per template); ``backend`` is the
    name payload hashes carry.
    """
    specs: list[QNNSpec] = []
    templates: list[Template] = []
    parts: list[list[np.ndarray]] = []
    slots = []
    unique_rows = 0
    for call in calls:
        if call.spec not in specs:
            specs.append(call.spec)
            templates.append(template_of(call.spec))
            parts.append([])
        g = specs.index(call.spec)
        unique, inverse = np.unique(call.angles, axis=0, return_inverse=True)
        values = templates[g].compiled.parameter_values(unique, call.weights)  # (E, params)
        start = sum(len(v) for v in parts[g])
        parts[g].append(values)
        slots.append(Slot(g, start, inverse.reshape(-1), len(unique)))
        unique_rows += len(unique)
    jobs = []
    for g, template in enumerate(templates):
        values = np.concatenate(parts[g]) if len(parts[g]) > 1 else parts[g][0]
        step = job_size or len(values)
        for a in range(0, len(values), step):
            pub = Pub(template.compiled.circuit, values[a : a + step], shots)
            jobs.append(planned_job(backend, [pub], [template.key], g, a))
    return Plan(
        tuple(t.compiled for t in templates),
        tuple(slots),
        tuple(jobs),
        rows=sum(len(c.angles) for c in calls),
        unique_rows=unique_rows,
    )
