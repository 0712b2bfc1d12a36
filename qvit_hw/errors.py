"""Every error qvit-hw raises on purpose, under one root.

    QvitHwError                     root: `except QvitHwError` catches all of ours
    ├── DataError                   missing data file, wrong image size or layout
    ├── CheckpointError             training checkpoint or teacher weights missing, corrupt, foreign
    ├── BundleError                 export bundle missing a file, edited, other format version
    ├── CircuitError                QASM / Quil that does not parse or does not match a spec
    ├── TranspileError              unknown target, circuit that does not fit a chip
    ├── BackendError                anything at the backend edge
    │   ├── BackendNotFoundError    unknown backend name (carries did-you-mean suggestions)
    │   ├── CredentialsError        missing credentials or local servers
    │   ├── TransientBackendError   retried by the scheduler (network, rate limit, 5xx)
    │   └── PermanentBackendError   stops the run with a clear message
    │       └── JobTooLargeError    a job beyond the backend's limits
    ├── RunError                    a run directory that cannot be used as asked
    │   └── JournalError            a journal that is missing, empty, damaged or foreign
    └── RunInterrupted              Ctrl-C or a timeout; the journal is kept for --resume
        └── BudgetExhausted         the next job would pass --max-total-shots / --max-qpu-seconds

Bad arguments to functions are ValueError / TypeError naming the argument, as usual in
Python. SDK exceptions are converted at the backend edge with ``raise ... from exc``.
"""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (whitespace collapsed), or its type's name."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class QvitHwError(Exception):
    """Root of every error qvit-hw raises on purpose."""


class DataError(QvitHwError):
    """A data set file is missing or holds images of the wrong size or layout."""


class CheckpointError(QvitHwError):
    """A training checkpoint or teacher weights file is missing, corrupt, or does not fit."""


class BundleError(QvitHwError):
    """An export bundle is incomplete, edited, or from another format version."""


class CircuitError(QvitHwError):
    """A circuit text (QASM, Quil) does not parse or does not match its spec."""


class TranspileError(QvitHwError):
    """A circuit cannot be mapped onto a target."""


class BackendError(QvitHwError):
    """Raised at the backend edge."""


class BackendNotFoundError(BackendError):
    """No backend has the given name."""

    def __init__(self, name: str, suggestions: list[str] | None = None) -> None:
        self.name = name
        self.suggestions = suggestions or []
        hint = f"; did you mean {' or '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown backend {name!r}{hint} (`qvit-hw backends` lists them)")


class CredentialsError(BackendError):
    """A hardware backend lacks credentials or a local server it needs."""


class TransientBackendError(BackendError):
    """A failure worth retrying: network, rate limit, service busy."""


class PermanentBackendError(BackendError):
    """A failure that retrying cannot fix: the run stops."""


class JobTooLargeError(PermanentBackendError):
    """A job exceeds the backend's limits on circuits or shots."""


class RunInterrupted(QvitHwError):
    """A run was interrupted; finished jobs are in the journal for --resume."""


class BudgetExhausted(RunInterrupted):
    """The next job would exceed the run's budget; --resume with a larger one continues."""


class RunError(QvitHwError):
    """A run directory cannot be used as asked (locked, another run, changed settings)."""


class JournalError(RunError):
    """A run's journal is missing, empty, damaged or from another version."""
