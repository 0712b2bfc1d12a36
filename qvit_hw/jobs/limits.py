"""What a run may submit, checked before anything is paid: shots against the backend's
limits, budgets against what the backend can estimate (shared by `run` and `--dry-run`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import RunError
from ..mitigation import parse_mitigation

if TYPE_CHECKING:
    from .run import RunOptions


def check_limits(options: RunOptions, backend: Any) -> None:
    """Every job the run can submit fits ``backend``'s limits, and every budget can be
    checked on it; a one-line error with advice that works otherwise (nothing is paid).

    Checked: the shots of a uniform run; of an adaptive run, its first round, its largest
    round (`AdaptiveConfig.round_shots`) and its calibration jobs (``scheduler.shots``,
    where a mitigation calibrates); --max-qpu-seconds needs a backend with QPU-time
    estimates (`cost.gives_estimates`)."""
    from ..errors import JobTooLargeError
    from .cost import gives_estimates

    target, adaptive = backend.target, options.adaptive
    if options.scheduler.max_qpu_seconds is not None and not gives_estimates(backend):
        raise RunError(
            f"--max-qpu-seconds: {backend.name} gives no QPU-time estimate (its device has "
            "no instruction durations); use --max-total-shots"
        )
    calibrates = any(m in ("readout", "learned") for m in parse_mitigation(options.mitigate))
    if adaptive is None:
        checks = [(options.scheduler.shots, "pass --shots {limit} or fewer")]
    else:
        ceiling = None if target.max_shots is None else adaptive.ceiling_for(target.max_shots)
        fix = (
            f"pass --max-shots-per-row {ceiling} or fewer (allowed on --resume too)"
            if ceiling is not None
            else "pass --initial-shots {limit} or fewer"
        )
        checks = [
            (adaptive.initial_shots, "pass --initial-shots {limit} or fewer"),
            (adaptive.round_shots(), f"a round of --shots auto adds up to {{shots}}; {fix}"),
        ]
        if calibrates:
            checks.append(
                (options.scheduler.shots, "calibration jobs take {shots} shots under --shots "
                 "auto: choose --mitigate none or readout-props on this backend")
            )  # fmt: skip
    if options.scheduler.readout_shots is not None and calibrates:
        checks.append((options.scheduler.readout_shots, "pass --readout-shots {limit} or fewer"))
    for shots, advice in checks:
        try:
            target.job_capacity(shots)
        except JobTooLargeError as exc:
            limit = target.max_shots if target.max_shots is not None else target.max_executions
            raise JobTooLargeError(
                f"{exc}: {advice.format(shots=f'{shots:,}', limit=limit)}; nothing was submitted"
            ) from exc
