"""What a run will cost before it is paid for: `qvit-hw run --dry-run`.

`preview` plans the whole run exactly as `run_bundle` would (the same runner, templates,
dedup, packing and job limits; calibration jobs included) and submits nothing: each
batch's QNN rows are planned, then the exact simulator stands in for their results so
the model goes on to the next batch. For an adaptive run (``--shots auto``) it plans the
first round (every row at ``initial_shots``) and the ceiling (every row at
``max_shots_per_row``). QPU seconds come from `cost` (None where the device gives no
durations).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..model import exact_executor
from .plan import QNNCall
from .runner import QNNRunner, jobs_of

if TYPE_CHECKING:
    from .plan import PlannedJob
    from .run import RunOptions


@dataclass
class Tally:
    """Jobs, executions, shots and estimated QPU seconds of a set of planned jobs."""

    jobs: int = 0
    executions: int = 0
    shots: int = 0
    qpu_seconds: float | None = 0.0

    def add(self, jobs: list[PlannedJob], runner: QNNRunner) -> None:
        for job in jobs:
            shots, seconds = runner.scheduler.job_cost(job)
            self.merge(Tally(1, job.executions, shots, seconds))

    def merge(self, other: Tally) -> None:
        """Add ``other``'s counts (QPU seconds stay None once either has none)."""
        self.jobs += other.jobs
        self.executions += other.executions
        self.shots += other.shots
        if self.qpu_seconds is None or other.qpu_seconds is None:
            self.qpu_seconds = None
        else:
            self.qpu_seconds += other.qpu_seconds

    def scaled(self, factor: float) -> Tally:
        """The same jobs with ``factor`` times the shots (and QPU seconds)."""
        seconds = None if self.qpu_seconds is None else self.qpu_seconds * factor
        return Tally(self.jobs, self.executions, round(self.shots * factor), seconds)


@dataclass
class Preview:
    """A planned run: data rows, calibration and (adaptive) the ceiling."""

    backend: str
    images: int
    rows: int = 0
    unique_rows: int = 0
    data: Tally = field(default_factory=Tally)  # every row at the run's (first-round) shots
    calibration: Tally = field(default_factory=Tally)
    ceiling: Tally | None = None  # adaptive: every row at --max-shots-per-row
    expected: Tally | None = None  # adaptive: from a simulated sample (`expected_adaptive`)
    expected_from: str = ""  # what `expected` rests on
    priced_on: str = ""  # the device data the plan used, where it is not the live device's

    @property
    def total(self) -> Tally:
        t = Tally()
        for part in (self.data, self.calibration):
            t.merge(part)
        return t

    def table(self) -> list[tuple[str, str]]:
        """Rows for a printed table (what `qvit-hw run --dry-run` shows)."""

        def seconds(t: Tally) -> str:
            return "n/a (no durations)" if t.qpu_seconds is None else f"{t.qpu_seconds:,.1f}"

        total = self.total
        first = "data (first round)" if self.ceiling is not None else "data"
        rows = [
            ("images / rows / unique rows",
             f"{self.images} / {self.rows:,} / {self.unique_rows:,}")
            if self.images else ("rows / unique rows", f"{self.rows:,} / {self.unique_rows:,}"),
            (f"{first}: jobs / executions / shots",
             f"{self.data.jobs} / {self.data.executions:,} / {self.data.shots:,}"),
            ("calibration: jobs / executions / shots",
             f"{self.calibration.jobs} / {self.calibration.executions:,} / "
             f"{self.calibration.shots:,}"),
            ("total: jobs / executions / shots",
             f"{total.jobs} / {total.executions:,} / {total.shots:,}"),
            ("estimated QPU seconds (a lower bound)", seconds(total)),
            ("shots per image (the device's shots / images)",
             f"{total.shots / max(1, self.images):,.0f}"),
        ]  # fmt: skip
        if not self.images:  # characterize: its cost is per device, not per image
            rows.pop()
        if self.priced_on:
            rows.insert(0, ("priced on", self.priced_on))
        if self.expected is not None:
            e = self.expected
            rows.append(
                (f"expected ({self.expected_from}): jobs / shots / QPU s",
                 f"{e.jobs} / {e.shots + self.calibration.shots:,} / {seconds(e)}")
            )  # fmt: skip
        if self.ceiling is not None:
            rows.append(
                ("ceiling (every row at --max-shots-per-row): shots / QPU s",
                 f"{self.ceiling.shots + self.calibration.shots:,} / {seconds(self.ceiling)}")
            )  # fmt: skip
        return rows

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {**asdict(self), "total": asdict(self.total)}


def preview(options: RunOptions, backend: Any = None, loaded: Any = None) -> Preview:
    """Plan ``options``' run without submitting anything (``backend`` and ``loaded``, the
    model, images and normalisation, where the caller has them already)."""
    from ..data import to_tensor
    from .inputs import load_inputs
    from .limits import check_limits

    priced_on = ""
    if backend is None:
        backend, priced_on = _backend_or_snapshot(options.backend)
    check_limits(options, backend)  # what the run would refuse, the dry run refuses too
    model, data, norm = load_inputs(options) if loaded is None else loaded
    runner = QNNRunner(backend, options.scheduler, mitigation=options.mitigate)
    adaptive = options.adaptive
    shots = None if adaptive is None else adaptive.initial_shots
    result = Preview(backend.name, len(data), ceiling=None if adaptive is None else Tally(),
                     priced_on=priced_on)  # fmt: skip
    specs: list[Any] = []

    def planning(spec: Any, weights: torch.Tensor, angles: torch.Tensor, names: Any = ()):
        b, t, n = angles.shape
        x = angles.detach().to("cpu", torch.float64).reshape(b * t, n).numpy()
        w = weights.detach().to("cpu", torch.float64).numpy()
        calls = [QNNCall(f"qnn{i}", spec, w[i], x) for i in range(len(w))]
        # zne: every row again with its gates folded, each dealt over the twirl draws
        per_scale = runner.data_plans(calls, shots)
        result.rows += sum(p.rows for *_, p in per_scale[0])
        result.unique_rows += sum(p.unique_rows for *_, p in per_scale[0])
        result.data.add(jobs_of(per_scale), runner)
        if result.ceiling is not None:  # planned at what one job may take, then scaled
            top, target = adaptive.max_shots_per_row, backend.target
            fit = min(top, *(v for v in (target.max_shots, target.max_executions) if v))
            ceiling = Tally()
            ceiling.add(list(runner.plan(calls, fit).jobs), runner)
            result.ceiling.merge(ceiling.scaled(top / fit))
        if spec not in specs:
            specs.append(spec)
        return exact_executor(spec, weights, angles, names)

    with torch.no_grad(), model.executor(planning):
        for a in range(0, len(data), options.batch_size):
            model(to_tensor(np.asarray(data.images[a : a + options.batch_size]), norm))
    for spec in specs:
        for _, jobs in runner.calibration_plan(spec):
            result.calibration.add(jobs, runner)
    if adaptive is not None and result.rows:
        result.expected, result.expected_from = expected_adaptive(
            options, (model, data, norm), result, backend
        )
    return result


EXPECTED_SAMPLE = 16  # images an adaptive dry run simulates for its expected figure


def expected_adaptive(
    options: RunOptions, loaded: Any, plan: Preview, backend: Any
) -> tuple[Tally, str]:
    """An adaptive run's expected cost: its rounds simulated on up to `EXPECTED_SAMPLE`
    images (`ImageSet.subset`) with ideal sampling (backend ``shots``, seed 0: shot noise
    alone, so hardware noise needs more), scaled to the plan: shots and shot seconds by
    the sample's rows' shots over the first round's, jobs by its mean rounds per batch,
    each job with the device's per-job overhead."""
    from ..backends import get_backend
    from .cost import job_overhead
    from .executor import SchedulerExecutor
    from .infer import _infer

    model, data, norm = loaded
    adaptive = options.adaptive
    sample = data.subset(min(len(data), EXPECTED_SAMPLE))
    runner = QNNRunner(get_backend("shots?seed=0"), options.scheduler)
    inferred = _infer(
        model, sample, norm, SchedulerExecutor(runner), options.batch_size, None, 0, adaptive
    )
    spent = float(np.concatenate(inferred.shots).mean())  # row shots per image, all rounds
    first = plan.rows / plan.images * adaptive.initial_shots  # the same, first round only
    factor = spent / first
    batches = max(1, len({r["batch"] for r in inferred.rounds}))
    rounds = len(inferred.rounds) / batches
    jobs = max(plan.data.jobs, round(plan.data.jobs * rounds))
    seconds = None
    if plan.data.qpu_seconds is not None:
        overhead = job_overhead(backend)
        shot_seconds = plan.data.qpu_seconds - plan.data.jobs * overhead
        seconds = shot_seconds * factor + jobs * overhead + (plan.calibration.qpu_seconds or 0)
    executions = round(plan.data.executions * rounds)
    tally = Tally(jobs, executions, round(plan.data.shots * factor), seconds)
    return tally, f"ideal shot noise on {len(sample)} images, {rounds:.1f} rounds"


def _backend_or_snapshot(name: str) -> tuple[Any, str]:
    """The backend ``name`` names, or, for a live IBM device without credentials, its offline
    snapshot (``?local=1``: the same plan and cost code) with a line saying so."""
    from ..backends import get_backend, parse_name
    from ..errors import CredentialsError

    try:
        return get_backend(name), ""
    except CredentialsError:
        base, query = parse_name(name)
        if not base.startswith("ibm_") or query.get("local") not in (None, "0"):
            raise
        stand_in = get_backend(base, **{**query, "local": "1"})
        device = stand_in.target.device
        source = device.source.split(", ", 1)[-1] if device is not None else "its snapshot"
        return stand_in, f"{base}'s offline snapshot ({source}): no IBM credentials here"
