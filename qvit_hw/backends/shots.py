"""`shots`: ideal sampling, seeded; the shot noise of hardware without its gate errors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import BackendTarget, JobResult, JobStatus, LocalJobs, Pub, PubResult, pub_seed
from .simulate import sample_shots


class ShotsBackend:
    """Samples ``shots`` outcomes per row from the exact distribution.

    The generator of each pub is seeded from ``seed`` and the pub's content, so equal pubs
    give equal counts in any order, across resubmissions and processes.
    """

    def __init__(self, *, seed: int = 0) -> None:
        self.name = "shots"
        self.seed = int(seed)
        self._target = BackendTarget(self.name)
        self._jobs = LocalJobs(self.name)

    @property
    def target(self) -> BackendTarget:
        return self._target

    def submit(self, pubs: Sequence[Pub]) -> str:
        self._target.check_job(pubs)
        return self._jobs.add([self._sample(pub) for pub in pubs])

    def _sample(self, pub: Pub) -> PubResult:
        rng = np.random.default_rng(pub_seed(self.seed, pub))
        ones, samples = sample_shots(pub.circuit, pub.values, pub.shots, rng)
        return PubResult.from_ones(ones, pub.shots, samples)

    def status(self, job_id: str) -> JobStatus:
        return self._jobs.status(job_id)

    def result(self, job_id: str) -> JobResult:
        return self._jobs.result(job_id)

    def readout_errors(self) -> dict[int, tuple[float, float]]:
        return {}
