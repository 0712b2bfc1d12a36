"""Jobs: the batched scheduler between a model's QNN layers and a backend.

construct -> execute -> combine, as in mitiq:

config.py      SchedulerConfig, RetryConfig: the layer's settings, validated once
plan.py        QNNCall -> dedup, bind, pack, split into hashed jobs (pure)
scheduler.py   the loop that spends QPU time: submit, poll, result, journal, interrupts
combine.py     results -> <Z> and stderr per row, corrections applied in order (pure;
               the corrections themselves live in qvit_hw.mitigation)
runner.py      QNNRunner: plan -> execute -> combine, templates and corrections kept
retry.py       transient errors retried with tenacity (backoff, jitter, caps)
journal.py     sqlite journal of every job, so --resume never pays twice
estimate.py    <Z> and its standard error from shots; unpacking packed executions
executor.py    the runner as a model's QNN executor, recording every row
run.py         `qvit-hw run`: a bundle's inference on a backend, with its outputs
"""

from .combine import RowEstimates, combine
from .config import RetryConfig, SchedulerConfig
from .executor import SchedulerExecutor
from .journal import Journal
from .plan import Plan, PlannedJob, QNNCall, plan
from .retry import Retry
from .runner import QNNRunner
from .scheduler import Scheduler

__all__ = [
    "Journal",
    "Plan",
    "PlannedJob",
    "QNNCall",
    "QNNRunner",
    "Retry",
    "RetryConfig",
    "RowEstimates",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerExecutor",
    "combine",
    "plan",
]
