"""Backends: one protocol (`base`), local simulators, fake devices and a fault-injecting mock.

``get_backend(name)`` builds one by name; ``backend_infos()`` lists them.
"""

from .base import Backend, BackendTarget, JobResult, JobStatus, Pub, PubResult
from .registry import DEFAULT_BACKEND, BackendInfo, backend_infos, get_backend, parse_name

__all__ = [
    "DEFAULT_BACKEND",
    "Backend",
    "BackendInfo",
    "BackendTarget",
    "JobResult",
    "JobStatus",
    "Pub",
    "PubResult",
    "backend_infos",
    "get_backend",
    "parse_name",
]
