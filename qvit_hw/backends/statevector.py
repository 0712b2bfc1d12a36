"""`statevector`: exact <Z> of every measured bit, no shot noise (the default backend)."""

from __future__ import annotations

from .base import LocalBackend, Pub, PubResult
from .simulate import exact_z


class StatevectorBackend(LocalBackend):
    """Exact expectation values from a statevector per row; estimates have stderr 0."""

    def __init__(self) -> None:
        super().__init__("statevector")

    def _run(self, pub: Pub) -> PubResult:
        return PubResult(exact_z(pub.circuit, pub.values), 0)
