"""QNN calls on a backend: plan -> execute -> combine, with templates and corrections kept.

`QNNRunner.run(calls)` is what a model's QNN layer needs: it plans the calls (`plan`:
templates transpiled once per spec for the backend's device, rows deduplicated, bound,
packed and split into jobs), has the `Scheduler` execute the jobs, fits each mitigation
of the run once per template from its calibration jobs (run through the same scheduler
and journal), and combines the results into estimates (`combine`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..backends.base import Backend, identity_key
from ..circuit import QNNSpec
from ..mitigation import CalibrationContext, Mitigation, mitigations, parse_mitigation
from .combine import Correction, RowEstimates, combine, merge_rows, split_rows
from .config import SchedulerConfig
from .plan import Plan, PlannedJob, QNNCall, Template, plan
from .scheduler import Scheduler, SchedulerStats

# per noise scale, per twirl draw: (the draw or None, its share of the calls, their plan)
Dealt = list[list[tuple[int | None, list[QNNCall], Plan]]]


def jobs_of(dealt: Dealt) -> list[PlannedJob]:
    """Every job of every scale's and draw's plan, in the order `QNNRunner` combines them."""
    return [j for draws in dealt for *_, p in draws for j in p.jobs]


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
        self._templates: dict[tuple[QNNSpec, float], Template] = {}
        self._corrections: dict[tuple[QNNSpec, float], list[Correction]] = {}
        self._after: dict[QNNSpec, list[Correction]] = {}  # corrections after zne
        self._achieved: dict[QNNSpec, tuple[float, ...]] = {}

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

    @property
    def scales(self) -> tuple[float, ...]:
        """The noise scales every row runs at (1 alone without zne)."""
        return self.config.zne_scales if "zne" in self.mitigation else (1,)

    @property
    def _basis(self) -> tuple[str, ...] | None:
        """The device's gates, which folds and twirls are written in (None: no device)."""
        device = self.backend.target.device
        return None if device is None else device.basis_gates

    @property
    def twirls(self) -> int:
        """Pauli-twirl draws the rows spread over (`mitigation.twirl`; zne only, 0: none)."""
        return self.config.zne_twirls if "zne" in self.mitigation else 0

    def template(self, spec: QNNSpec, scale: float = 1, draw: int | None = None) -> Template:
        """The compiled template of ``spec`` on this backend (at noise ``scale``: its
        gates folded, `mitigation.zne`; twirl ``draw``: its 2-qubit gates Pauli-twirled,
        `mitigation.twirl`) and its circuit key (cached)."""
        key = (spec, scale) if draw is None else (spec, scale, draw)
        if key not in self._templates:
            from ..transpile import circuit_key, template_for

            if draw is not None:
                from ..mitigation.twirl import twirl_compiled

                base = self.template(spec, scale).compiled
                compiled = twirl_compiled(base, self._basis, draw, seed=self.config.seed)
            elif scale == 1:
                compiled = template_for(
                    spec,
                    self.backend.target.device,
                    max_copies=self.config.max_copies,
                    seed=self.config.seed,
                    packing=self.packing,
                )
            else:
                from ..mitigation.zne import fold_compiled

                compiled = fold_compiled(
                    self.template(spec).compiled,
                    scale,
                    self._basis,
                    self.config.zne_fold,
                    seed=self.config.seed,
                )
            self._templates[key] = Template(compiled, circuit_key(compiled.circuit))
            if draw is None:  # a draw has its scale's copies and gates: no stats of its own
                self.stats.templates[compiled.circuit.name] = {
                    "copies": compiled.copies,
                    "placements": [list(p) for p in compiled.placements],
                    "depth": compiled.depth,
                    "two_qubit_gates": compiled.two_qubit_gates,
                    "swaps": compiled.swaps,
                }
        return self._templates[key]

    def plan(
        self,
        calls: Sequence[QNNCall],
        shots: int | None = None,
        scale: float = 1,
        draw: int | None = None,
    ) -> Plan:
        """The plan of ``calls`` at ``shots`` per circuit (None: the configured shots) on
        the templates of noise ``scale`` (and twirl ``draw``)."""
        shots = self.config.shots if shots is None else shots
        return plan(
            calls,
            lambda spec: self.template(spec, scale, draw),
            backend=identity_key(self.backend),
            shots=shots,
            job_size=self.scheduler.job_size_for(shots),
        )

    def data_plans(self, calls: Sequence[QNNCall], shots: int | None = None) -> Dealt:
        """What `run` submits for ``calls``: per noise scale, per twirl draw, (the draw, its
        share of the calls' rows, their plan); without twirls one entry, draw None."""
        return self._dealt(calls, lambda part, s, r: self.plan(part, shots, s, r))

    def _dealt(self, calls: Sequence[QNNCall], plan_at: Callable[..., Plan]) -> Dealt:
        """Per noise scale, per twirl draw: (draw, its share of the rows, ``plan_at(share,
        scale, draw)``)."""
        if not self.twirls:
            return [[(None, list(calls), plan_at(calls, s, None))] for s in self.scales]
        parts = split_rows(calls, self.twirls)
        return [[(r, part, plan_at(part, s, r)) for r, part in enumerate(parts) if part]
                for s in self.scales]  # fmt: skip

    def _estimates(
        self, calls: Sequence[QNNCall], dealt: Dealt, results: Sequence[Any]
    ) -> list[list[RowEstimates]]:
        """Per noise scale, every call's rows from its draws' job results (in plan order),
        each template's corrections applied."""
        out, start = [], 0
        for s, draws in zip(self.scales, dealt, strict=True):
            parts = []
            for _, part, p in draws:
                mine, start = results[start : start + len(p.jobs)], start + len(p.jobs)
                specs = list(dict.fromkeys(c.spec for c in part))  # template order of `plan`
                parts.append(combine(p, mine, [self.corrections(sp, s) for sp in specs]))
            out.append(parts[0] if draws[0][0] is None else merge_rows(calls, parts, self.twirls))
        return out

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
        scales = self.scales
        plans = [self.data_plans(calls, shots) for calls, shots in groups]
        jobs = [jobs_of(dealt) for dealt in plans]
        results = self.scheduler.execute([j for group in jobs for j in group], description)
        out, start = [], 0
        for (calls, _), dealt, group in zip(groups, plans, jobs, strict=True):
            estimates = self._estimates(calls, dealt, results[start : start + len(group)])
            start += len(group)
            self.stats.calls += len(calls)
            self.stats.rows += sum(p.rows for *_, p in dealt[0])
            self.stats.unique_rows += sum(p.unique_rows for *_, p in dealt[0])
            if len(scales) == 1:
                out.append(estimates[0])
            else:
                pairs = zip(calls, self._extrapolated(calls, estimates), strict=True)
                out.append([self._after_zne(c.spec, e) for c, e in pairs])
        return out

    def _row_level(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``--mitigate``'s names applied to each noise scale's rows, and those applied to
        the extrapolated rows (after zne; none without it)."""
        names = self.mitigation
        if "zne" not in names:
            return names, ()
        i = names.index("zne")
        return names[:i], names[i + 1 :]

    def _after_zne(self, spec: QNNSpec, e: RowEstimates) -> RowEstimates:
        """A call's extrapolated rows with the corrections after zne applied, each a stage."""
        for c in self.after_zne(spec):
            e = self._corrected(c, e)
        return e

    def achieved_scales(self, spec: QNNSpec) -> tuple[float, ...]:
        """The noise scale each of ``spec``'s templates reaches (`zne.noise_scale`): the
        asked-for ones for odd whole scales, within one fold of them for the others."""
        from ..mitigation.zne import noise_scale

        if spec not in self._achieved:
            base = self.template(spec).compiled.circuit
            self._achieved[spec] = tuple(
                noise_scale(base, self.template(spec, s).compiled.circuit, self.config.zne_fold)
                for s in self.scales
            )
        return self._achieved[spec]

    def _extrapolated(
        self, calls: Sequence[QNNCall], per_scale: list[list[RowEstimates]]
    ) -> list[RowEstimates]:
        """Each call's rows at every noise scale (corrected) -> extrapolated to zero noise
        from the scales its templates reached; raw values, histograms and qubits are scale
        1's, shots every scale's."""
        from dataclasses import replace

        import numpy as np

        from ..mitigation.zne import extrapolate

        out = []
        for call, *parts in zip(calls, *per_scale, strict=True):
            z = np.stack([e.z if e.z_linear is None else e.z_linear for e in parts])
            se = np.stack([e.stderr for e in parts])
            scales = self.achieved_scales(call.spec)
            z0, se0 = extrapolate(z, se, scales, self.config.zne_extrapolation)
            first = parts[0]
            shots = None if first.shots is None else sum(e.shots for e in parts)
            clipped = np.clip(z0, -1.0, 1.0)
            out.append(
                replace(
                    first,
                    scaled=z.transpose(1, 0, 2),
                    z=clipped,
                    stderr=se0,
                    z_linear=z0,
                    shots=shots,
                    stages=(*first.stages, (clipped, se0)),
                )
            )
        return out

    def corrections(self, spec: QNNSpec, scale: float = 1) -> list[Correction]:
        """The run's corrections for ``spec``'s rows at noise ``scale`` (those before zne),
        fitted on first use, in order: each on calibration estimates that the ones before
        it have corrected. Readout is fitted once, at scale 1, and shared by every scale
        (folding changes the gates, not the measurement); learned is fitted per scale, on
        that scale's template."""
        key = (spec, scale)
        if key not in self._corrections:
            template, fitted = self.template(spec, scale), list[Correction]()
            shared = self.corrections(spec) if scale != 1 else None
            for i, (m, jobs) in enumerate(self._steps(spec, scale)):
                if jobs is None:  # readout at a folded scale: scale 1's
                    fitted.append(shared[i])  # type: ignore[index]
                    continue
                results = self._calibrate(m.name, jobs)
                fitted.append(m.fit(template, results, self.calibration_context(), fitted))
            self._corrections[key] = fitted
        return self._corrections[key]

    def after_zne(self, spec: QNNSpec) -> list[Correction]:
        """The corrections applied to ``spec``'s extrapolated rows (``zne,learned``): learned's
        calibration rows run at every scale, are corrected and extrapolated like the data,
        and the affine maps are fitted on the extrapolated values against exact."""
        if spec not in self._after:
            fitted = list[Correction]()
            for m, calls, dealt in self._after_plans(spec):
                results = self._calibrate(f"{m.name} (every scale)", jobs_of(dealt))
                extrapolated = self._extrapolated(calls, self._estimates(calls, dealt, results))
                for c in fitted:  # an earlier correction after zne (none today: one learned)
                    extrapolated = [self._corrected(c, e) for e in extrapolated]
                fitted.append(m.fit_estimates(calls, extrapolated))
            self._after[spec] = fitted
        return self._after[spec]

    @staticmethod
    def _corrected(c: Correction, e: RowEstimates) -> RowEstimates:
        """Rows with one more correction applied to their unclipped values, as a stage."""
        from dataclasses import replace

        z, se = c.correct(e.z_linear if e.z_linear is not None else e.z, e.stderr, e.qubits)
        clipped = z.clip(-1.0, 1.0)
        return replace(e, z=clipped, stderr=se, z_linear=z, stages=(*e.stages, (clipped, se)))

    def _calibrate(self, what: str, jobs: list[PlannedJob]) -> list[Any]:
        results = self.scheduler.execute(jobs, f"{what} calibration") if jobs else []
        self.stats.calibration_jobs += len(jobs)
        self.stats.calibration_executions += sum(j.executions for j in jobs)
        return results

    @property
    def readout_shots(self) -> int:
        """Each readout calibration circuit's shots: --readout-shots, else --shots, but at
        least `FIT_READOUT_SHOTS` (within the backend's limit) where a run-level fit follows:
        the fit takes each row's shot noise down to ~0.001, and the calibration's error,
        shared by every row read on the qubit, would otherwise be the larger (two circuits
        per template, so it costs little)."""
        if self.config.readout_shots is not None:
            return self.config.readout_shots
        if "fourier" not in self.mitigation:
            return self.config.shots
        from ..mitigation.readout import FIT_READOUT_SHOTS

        limit = self.backend.target.max_shots or FIT_READOUT_SHOTS
        return max(self.config.shots, min(FIT_READOUT_SHOTS, limit))

    def calibration_context(self) -> CalibrationContext:
        return CalibrationContext(
            self.backend,
            self.config.shots,
            self.job_size,
            self.config.calibration_rows,
            self.readout_shots,
        )

    def _steps(
        self, spec: QNNSpec, scale: float = 1
    ) -> list[tuple[Mitigation, list[PlannedJob] | None]]:
        """The mitigations before zne with their calibration jobs at ``scale`` (None: the
        correction is scale 1's)."""
        before, _ = self._row_level()
        if not mitigations(before):  # no calibration context: under --shots auto the
            return []  # configured shots need not fit the backend
        template, context = self.template(spec, scale), self.calibration_context()
        own = (lambda m: True) if scale == 1 else (lambda m: m.name == "learned")
        return [(m, m.calibration_jobs(template, context) if own(m) else None)
                for m in mitigations(before)]  # fmt: skip

    def _after_plans(self, spec: QNNSpec) -> list[tuple[Any, list[QNNCall], Dealt]]:
        """The mitigations after zne with their calibration rows (seeded from scale 1's
        template) and those rows' plans on every scale's templates (dealt over the twirl
        draws, like the data)."""
        _, after = self._row_level()
        if not mitigations(after):
            return []
        context = self.calibration_context()
        steps = []
        for m in mitigations(after):
            calls = m.calls(self.template(spec), context.learned_rows)
            dealt = self._dealt(
                calls, lambda part, s, r, m=m: m.plan_on(self.template(spec, s, r), part, context)
            )
            steps.append((m, calls, dealt))
        return steps

    def calibration_plan(self, spec: QNNSpec) -> list[tuple[Mitigation, list[PlannedJob]]]:
        """Every calibration of the run for ``spec``, with its jobs (pure): each mitigation
        before zne at scale 1 (learned at every scale too), then those after zne."""
        if not mitigations(self.mitigation):  # no calibration: its shots need not fit the
            return []  # backend (--shots auto)
        steps = [(m, jobs) for s in self.scales for m, jobs in self._steps(spec, s)
                 if jobs is not None]  # fmt: skip
        after = [(m, jobs_of(dealt)) for m, _, dealt in self._after_plans(spec)]
        return steps + after

    def fitted(self) -> dict[str, dict[str, Any]]:
        """The fitted corrections so far: template circuit name -> mitigation name ("learned
        at scale 3" for a folded template's, "learned after zne") -> the correction
        (ReadoutCalibration, LearnedCalibration)."""
        before, after = self._row_level()
        out: dict[str, dict[str, Any]] = {}
        for (spec, scale), fitted in self._corrections.items():
            entry = out.setdefault(self._templates[(spec, 1)].compiled.circuit.name, {})
            for m, c in zip(mitigations(before), fitted, strict=True):
                if scale == 1:
                    entry[m.name] = c
                elif m.name == "learned":
                    entry[f"{m.name} at scale {scale}"] = c
        for spec, fitted in self._after.items():
            entry = out.setdefault(self._templates[(spec, 1)].compiled.circuit.name, {})
            for m, c in zip(mitigations(after), fitted, strict=True):
                entry[f"{m.name} after zne"] = c
        return out

    def readout_offsets(self, spec: QNNSpec) -> dict[int, tuple[float, float]]:
        """The readout calibration's own error on ``spec``'s rows, per physical qubit
        (`ReadoutCalibration.offset_variances`), for a run-level fit to carry: empty without
        a measured readout calibration, and where learned follows readout (its affine maps,
        fitted on calibration rows corrected with the same rates, absorb their error)."""
        names = self.mitigation
        if "readout" not in names or "learned" in names[names.index("readout") :]:
            return {}
        calibration = self.calibrations().get(self.template(spec).compiled.circuit.name)
        return {} if calibration is None else calibration.offset_variances()

    def calibrations(self) -> dict[str, ReadoutCalibration]:
        """The readout calibrations made so far, by template circuit name."""
        from ..mitigation.readout import ReadoutCalibration

        return {
            name: c
            for name, by_kind in self.fitted().items()
            for c in by_kind.values()
            if isinstance(c, ReadoutCalibration)
        }
