"""Shot estimates of <Z_i> and their standard errors, and unpacking of packed executions.

From shots: <Z_i> = mean(1 - 2 b_i) and stderr = sqrt((1 - <Z_i>^2) / shots), the standard
error of a mean of +-1 outcomes. From an exact backend (``shots == 0``): stderr 0.
"""

from __future__ import annotations

import numpy as np

from ..backends.base import PubResult


def standard_error(z: np.ndarray, shots: int) -> np.ndarray:
    """Standard error of <Z> estimated from ``shots`` shots (0 shots: exact, 0)."""
    if shots == 0:
        return np.zeros_like(z)
    return np.sqrt(np.clip(1.0 - z * z, 0.0, None) / shots)


def estimate(result: PubResult) -> tuple[np.ndarray, np.ndarray]:
    """<Z> per execution and clbit, with its standard error: 2 x (executions, clbits)."""
    return result.z, standard_error(result.z, result.shots)


def unpack(per_clbit: np.ndarray, copies: int, n: int, rows: int) -> np.ndarray:
    """(executions, clbits) -> (rows, n): row r is execution r // k, clbits (r % k) n + i."""
    executions = per_clbit.shape[0]
    return per_clbit[:, : copies * n].reshape(executions * copies, n)[:rows]
