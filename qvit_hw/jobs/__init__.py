"""Jobs: the batched scheduler between a model's QNN layers and a backend.

scheduler.py   QNNCall -> dedup, bind, pack, split into jobs -> submit/poll -> estimates
retry.py       transient errors retried with tenacity (backoff, jitter, caps)
journal.py     sqlite journal of every job, so --resume never pays twice
estimate.py    <Z> and its standard error from shots; unpacking packed executions
mitigation.py  readout mitigation by per-qubit confusion inversion
executor.py    the scheduler as a model's QNN executor, recording every row
run.py         `qvit-hw run`: a bundle's inference on a backend, with its outputs
"""

from .executor import SchedulerExecutor
from .journal import Journal
from .retry import Retry
from .scheduler import QNNCall, RowEstimates, Scheduler

__all__ = ["Journal", "QNNCall", "Retry", "RowEstimates", "Scheduler", "SchedulerExecutor"]
