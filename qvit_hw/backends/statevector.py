"""`statevector`: exact <Z> of every measured bit, no shot noise (the default backend)."""

from __future__ import annotations

from collections.abc import Sequence

from .base import BackendTarget, JobResult, JobStatus, LocalJobs, Pub, PubResult
from .simulate import exact_z


class StatevectorBackend:
    """Exact expectation values from a statevector per row; estimates have stderr 0."""

    def __init__(self) -> None:
        self.name = "statevector"
        self._target = BackendTarget(self.name)
        self._jobs = LocalJobs(self.name)

    @property
    def target(self) -> BackendTarget:
        return self._target

    def submit(self, pubs: Sequence[Pub]) -> str:
        self._target.check_job(pubs)
        return self._jobs.add([PubResult(exact_z(pub.circuit, pub.values), 0) for pub in pubs])

    def status(self, job_id: str) -> JobStatus:
        return self._jobs.status(job_id)

    def result(self, job_id: str) -> JobResult:
        return self._jobs.result(job_id)

    def readout_errors(self) -> dict[int, tuple[float, float]]:
        return {}
