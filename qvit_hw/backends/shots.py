"""`shots`: ideal sampling, seeded; the shot noise of hardware without its gate errors."""

from __future__ import annotations

import numpy as np

from .base import BackendTarget, LocalBackend, Pub, PubResult, pub_seed
from .simulate import sample_shots

MAX_SHOTS = 10**9  # numpy's hypergeometric draw of the kept raw shots takes no more


class ShotsBackend(LocalBackend):
    """Samples ``shots`` outcomes per row from the exact distribution.

    The generator of each pub is seeded from ``seed`` and the pub's content, so equal pubs
    give equal counts in any order, across resubmissions and processes.
    """

    def __init__(self, *, seed: int = 0) -> None:
        super().__init__("shots", BackendTarget("shots", max_shots=MAX_SHOTS))
        self.seed = int(seed)

    def _result_options(self) -> dict[str, object]:
        return {"seed": self.seed}

    def _run(self, pub: Pub) -> PubResult:
        rng = np.random.default_rng(pub_seed(self.seed, pub))
        ones, samples = sample_shots(pub.circuit, pub.values, pub.shots, rng)
        return PubResult.from_ones(ones, pub.shots, samples)
