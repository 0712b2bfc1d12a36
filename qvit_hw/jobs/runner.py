"""QNN calls on a backend: plan -> execute -> combine, with templates and corrections kept.

`QNNRunner.run(calls)` is what a model's QNN layer needs: it plans the calls (`plan`:
templates transpiled once per spec for the backend's device, rows deduplicated, bound,
packed and split into jobs), has the `Scheduler` execute the jobs, fits each mitigation
of the run once per template from its calibration jobs (run through the same scheduler
and journal), and combines the results into estimates (`combine`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..backends.base import Backend, identity_key
from ..circuit import QNNSpec
from ..mitigation import CalibrationContext, Mitigation, mitigations, parse_mitigation
from .combine import Correction, RowEstimates, combine
from .config import SchedulerConfig
from .plan import Plan, PlannedJob, QNNCall, Template, plan
from .scheduler import Scheduler, SchedulerStats

if TYPE_CHECKING:
    from ..mitigation.readout import ReadoutCalibration


class QNNRunner:
    """Runs QNN calls on one backend: the templates, the corrections and the scheduler."""

    def __init__(
        self,
        backend: Backend,
        config: SchedulerConfig | None = None,
        *,
        mitigation: str | Sequence[str] = "none",
        **loop: Any,
    ) -> None:
        """``loop``: the `Scheduler`'s keywords (journal, retry, clock, sleep, progress)."""
        self.config = config if config is not None else SchedulerConfig()
        self.mitigation = parse_mitigation(mitigation)
        self.scheduler = Scheduler(backend, self.config, **loop)
        self.backend = backend
        self._templates: dict[QNNSpec, Template] = {}
        self._corrections: dict[QNNSpec, list[Correction]] = {}

    @property
    def stats(self) -> SchedulerStats:
        return self.scheduler.stats

    @property
    def packing(self) -> str:
        """The packing strategy templates are compiled with ("auto" resolved)."""
        if self.config.packing != "auto":
            return self.config.packing
        return "max" if "learned" in self.mitigation else "best"

    @property
    def job_size(self) -> int | None:
        return self.scheduler.job_size

    def template(self, spec: QNNSpec) -> Template:
        """The compiled template of ``spec`` on this backend and its circuit key (cached)."""
        if spec not in self._templates:
            from ..transpile import circuit_key, template_for

            compiled = template_for(
                spec,
                self.backend.target.device,
                max_copies=self.config.max_copies,
                seed=self.config.seed,
                packing=self.packing,
            )
            self._templates[spec] = Template(compiled, circuit_key(compiled.circuit))
            self.stats.templates[compiled.circuit.name] = {
                "copies": compiled.copies,
                "placements": [list(p) for p in compiled.placements],
                "depth": compiled.depth,
                "two_qubit_gates": compiled.two_qubit_gates,
                "swaps": compiled.swaps,
            }
        return self._templates[spec]

    def plan(self, calls: Sequence[QNNCall], shots: int | None = None) -> Plan:
        """The plan of ``calls`` at ``shots`` per circuit (None: the configured shots)."""
        shots = self.config.shots if shots is None else shots
        return plan(
            calls,
            self.template,
            backend=identity_key(self.backend),
            shots=shots,
            job_size=self.scheduler.job_size_for(shots),
        )

    def run(
        self, calls: Sequence[QNNCall], description: str = "jobs", shots: int | None = None
    ) -> list[RowEstimates]:
        """Estimates for every row of every call, in call order."""
        return self.run_groups([(calls, shots)], description)[0]

    def run_groups(
        self,
        groups: Sequence[tuple[Sequence[QNNCall], int | None]],
        description: str = "jobs",
    ) -> list[list[RowEstimates]]:
        """Several sets of calls, each at its own shots, executed as one batch of jobs (so
        they are in flight together): per group, estimates for every row of every call."""
        plans = [self.plan(calls, shots) for calls, shots in groups]
        results = self.scheduler.execute([j for p in plans for j in p.jobs], description)
        out, start = [], 0
        for (calls, _), p in zip(groups, plans, strict=True):
            mine, start = results[start : start + len(p.jobs)], start + len(p.jobs)
            self.stats.calls += len(calls)
            self.stats.rows += p.rows
            self.stats.unique_rows += p.unique_rows
            specs = list(dict.fromkeys(call.spec for call in calls))  # template order of `plan`
            out.append(combine(p, mine, [self.corrections(spec) for spec in specs]))
        return out

    def corrections(self, spec: QNNSpec) -> list[Correction]:
        """The run's corrections for ``spec``'s template, fitted on first use, in order:
        each on calibration estimates that the ones before it have corrected."""
        if spec not in self._corrections:
            template, fitted = self.template(spec), list[Correction]()
            for m, jobs in self.calibration_plan(spec):
                context = self.calibration_context()
                results = self.scheduler.execute(jobs, f"{m.name} calibration") if jobs else []
                self.stats.calibration_jobs += len(jobs)
                self.stats.calibration_executions += sum(j.executions for j in jobs)
                fitted.append(m.fit(template, results, context, fitted))
            self._corrections[spec] = fitted
        return self._corrections[spec]

    def calibration_context(self) -> CalibrationContext:
        return CalibrationContext(
            self.backend, self.config.shots, self.job_size, self.config.calibration_rows
        )

    def calibration_plan(self, spec: QNNSpec) -> list[tuple[Mitigation, list[PlannedJob]]]:
        """Each mitigation of the run with the calibration jobs it needs for ``spec`` (pure)."""
        chosen = mitigations(self.mitigation)
        if not chosen:  # no calibration: its shots need not fit the backend (--shots auto)
            return []
        template, context = self.template(spec), self.calibration_context()
        return [(m, m.calibration_jobs(template, context)) for m in chosen]

    def fitted(self) -> dict[str, dict[str, Any]]:
        """The fitted corrections so far: template circuit name -> mitigation name -> the
        correction (ReadoutCalibration, LearnedCalibration)."""
        return {
            self._templates[spec].compiled.circuit.name: dict(
                zip([m.name for m in mitigations(self.mitigation)], fitted, strict=True)
            )
            for spec, fitted in self._corrections.items()
        }

    def calibrations(self) -> dict[str, ReadoutCalibration]:
        """The readout calibrations made so far, by template circuit name."""
        from ..mitigation.readout import ReadoutCalibration

        return {
            name: c
            for name, by_kind in self.fitted().items()
            for c in by_kind.values()
            if isinstance(c, ReadoutCalibration)
        }
