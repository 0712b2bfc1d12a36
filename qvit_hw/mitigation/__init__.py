"""Error mitigation: corrections fitted from calibration rows, applied in `combine`.

Two kinds, one small protocol each:

row level   each row's estimate corrected on its own, in `--mitigate`'s order; an object
            with ``calibration_jobs(template, context)`` (pure: the jobs that calibrate it,
            run through the same scheduler, placements and journal as the data) and
            ``fit(template, results, context, before)`` -> a `Correction` for that
            template's rows, fitted on calibration estimates that the corrections
            ``before`` it have already corrected:
              readout.py   confusion inversion per physical qubit (calibration circuits or
                           the backend's reported errors)
              learned.py   affine maps per physical qubit fitted on rows whose exact <Z>
                           the simulator gives
run level   applied after every row-level correction, over every row of the run:
              fourier.py   each QNN's device function (a trigonometric polynomial in its
                           token angles) fitted over the whole run; every row gets the
                           fitted value and the fit's standard error
scaled      between the two: zne.py runs every row again with its gates folded
            (noise scales 1, 3, ...) and extrapolates each row's corrected estimates to
            zero noise; twirl.py Pauli-twirls the 2-qubit gates of the templates the rows
            are dealt over, so that folding scales relaxation too

`parse_mitigation` reads `--mitigate`; `mitigations` builds the row-level objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..backends.base import Backend, JobResult
    from ..jobs.combine import Correction
    from ..jobs.plan import PlannedJob, Template

ROW_LEVEL = ("readout", "readout-props", "learned")
SCALED = ("zne",)  # rows run again at higher noise and extrapolated (zne.py)
RUN_LEVEL = ("fourier",)
MODES = ("none", *ROW_LEVEL, *SCALED, *RUN_LEVEL)


def parse_mitigation(text: str | Sequence[str]) -> tuple[str, ...]:
    """``--mitigate``: "none", one name or names separated by commas -> the names, in order."""
    names = text.split(",") if isinstance(text, str) else list(text)
    names = [n.strip().lower() for n in names if n.strip()]
    if names == ["none"] or not names:
        return ()
    bad = [n for n in names if n not in MODES or n == "none"]
    if bad or len(set(names)) != len(names) or {"readout", "readout-props"} <= set(names):
        raise ValueError(
            f"--mitigate must be one of {', '.join(MODES)}, or several separated by commas "
            f"(applied in order, e.g. readout,learned), got {text!r}"
        )
    if "zne" in names:
        after = names[names.index("zne") + 1 :]
        if any(n in ("readout", "readout-props") for n in after):
            raise ValueError(
                "--mitigate: readout corrects each noise scale's estimates before zne "
                f"extrapolates them, so it comes first (readout,zne), got {text!r}"
            )
    return tuple(names)


@dataclass(frozen=True)
class CalibrationContext:
    """What calibration jobs are planned for: the backend, the shots and the job size."""

    backend: Backend
    shots: int
    job_size: int | None
    learned_rows: int = 0  # calibration rows per template for learned mitigation
    readout_shots: int | None = None  # readout calibration circuits' shots (None: shots)


class Mitigation(Protocol):
    """How one correction is calibrated and fitted for a template."""

    name: str

    def calibration_jobs(
        self, template: Template, context: CalibrationContext
    ) -> list[PlannedJob]: ...

    def fit(
        self,
        template: Template,
        results: Sequence[JobResult],
        context: CalibrationContext,
        before: Sequence[Correction],
    ) -> Correction: ...


def mitigations(names: Sequence[str]) -> list[Mitigation]:
    """The row-level mitigation objects of `parse_mitigation`'s names, in order (run-level
    ones, such as fourier, are applied by the run after every batch)."""
    from .learned import LearnedMitigation
    from .readout import ReadoutMitigation

    return [
        LearnedMitigation() if name == "learned" else ReadoutMitigation(name == "readout-props")
        for name in names
        if name in ROW_LEVEL
    ]
