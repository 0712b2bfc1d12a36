"""The fast noisy engine vs Aer on one packed copy of fake_brisbane (n = 4 and n = 8).

Workload: copy 0 of a chain QNN compiled for ibm_brisbane, random parameter rows, 1,000
shots per row. *Aer*: the way ``fake_<device>`` runs a copy: ``AerSimulator.from_backend
(FakeBrisbane())``, one ``run`` with ``parameter_binds`` over all rows. A call has a fixed
cost (Aer converts the whole 127-qubit noise model on every run), so Aer is timed at two
row counts: *per call* = rows / seconds of the larger call, *marginal* = the slope between
the two. *Engine*: `NoisyTemplate.probabilities` + `sample_counts` with the same noise
model object (the template, built once per copy and model, is timed apart). Medians of
repeats; the machine is shared, so the numbers are indications. Also: the largest
|<Z_i>(Aer) - <Z_i>(engine)| over rows and qubits in units of the shot standard error.

Not part of ``make bench`` (bench/run.py); run ``python -m bench.noisy_engine``.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from qvit_hw.backends.fake import _split
from qvit_hw.backends.noisy import NoisyTemplate, sample_counts
from qvit_hw.circuit import chain
from qvit_hw.transpile import compile_qnn

SHOTS = 1000
DEVICE = "ibm_brisbane"
AER_ROWS = {4: (40, 240), 8: (10, 60)}  # two call sizes per n
ENGINE_ROWS = {4: 20_000, 8: 4_000}
REPEATS = 3


def _aer_run(simulator: Any, circuit: Any, values: np.ndarray) -> Any:
    binds = [dict(zip(circuit.parameters, values.T, strict=True))]
    return simulator.run([circuit], parameter_binds=binds, shots=SHOTS, seed_simulator=1).result()


def _aer_z(result: Any, rows: int, width: int) -> np.ndarray:
    z = np.zeros((rows, width))
    for row in range(rows):
        counts = result.results[row].data.counts
        outcomes = np.array([int(k, 16) for k in counts])
        shots = np.array(list(counts.values()))
        ones = shots @ ((outcomes[:, None] >> np.arange(width)) & 1)
        z[row] = 1 - 2 * ones / SHOTS
    return z


def _timed(fn: Any, *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def bench_one(n: int, simulator: Any, noise_model: Any) -> dict[str, float]:
    compiled = compile_qnn(chain(n), DEVICE, max_copies=2)
    circuit = _split(compiled.circuit)[0].circuit
    rng = np.random.default_rng(n)
    small, large = AER_ROWS[n]
    aer_values = rng.uniform(-np.pi, np.pi, (large, circuit.num_parameters))
    _aer_run(simulator, circuit, aer_values[:2])  # warm up
    t_small = statistics.median(
        _timed(_aer_run, simulator, circuit, aer_values[:small])[0] for _ in range(REPEATS)
    )
    t_large, result = _timed(_aer_run, simulator, circuit, aer_values)
    t_large = min(t_large, _timed(_aer_run, simulator, circuit, aer_values)[0])

    build, template = _timed(NoisyTemplate.build, circuit, noise_model)
    rows = ENGINE_ROWS[n]
    values = rng.uniform(-np.pi, np.pi, (rows, circuit.num_parameters))

    def engine(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return sample_counts(template.probabilities(v), SHOTS, np.random.default_rng(0))

    engine(values[:10])
    t_engine = statistics.median(_timed(engine, values)[0] for _ in range(REPEATS))
    t_probs = statistics.median(_timed(template.probabilities, values)[0] for _ in range(REPEATS))

    z_aer = _aer_z(result, large, n)
    probs = template.probabilities(aer_values)
    z_engine = probs @ (1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1))
    stderr = np.sqrt(np.clip(1 - z_engine**2, 1e-12, None) / SHOTS)
    aer_marginal = (large - small) / max(t_large - t_small, 1e-9)
    return {
        "n": n,
        "aer_rows_per_s": large / t_large,
        "aer_marginal_rows_per_s": aer_marginal,
        "aer_call_overhead_s": max(t_large - large / aer_marginal, 0.0),
        "engine_rows_per_s": rows / t_engine,
        "engine_probability_rows_per_s": rows / t_probs,
        "speedup": (rows / t_engine) / (large / t_large),
        "speedup_marginal": (rows / t_engine) / aer_marginal,
        "template_build_s": build,
        "chunk_rows": template.chunk_rows,
        "chunk_mib": template.chunk_bytes / 2**20,
        "max_z_deviation_in_stderr": float(np.max(np.abs(z_aer - z_engine) / stderr)),
    }


def main() -> dict[str, Any]:
    from qiskit_aer import AerSimulator
    from qiskit_ibm_runtime.fake_provider import FakeBrisbane

    simulator = AerSimulator.from_backend(FakeBrisbane())  # as fake_brisbane builds it
    noise_model = simulator.options.noise_model
    results = {f"n{n}": bench_one(n, simulator, noise_model) for n in (4, 8)}
    print(f"noisy engine vs Aer, fake_brisbane, one copy, {SHOTS} shots per row")
    header = (
        "n",
        "Aer rows/s",
        "Aer marginal",
        "engine rows/s",
        "probs only",
        "speed-up",
        "vs marginal",
        "chunk MiB",
        "max dev/se",
    )
    print(" | ".join(f"{h:>13}" for h in header))
    for r in results.values():
        cells = (
            f"{r['n']}",
            f"{r['aer_rows_per_s']:,.0f}",
            f"{r['aer_marginal_rows_per_s']:,.0f}",
            f"{r['engine_rows_per_s']:,.0f}",
            f"{r['engine_probability_rows_per_s']:,.0f}",
            f"{r['speedup']:,.0f}x",
            f"{r['speedup_marginal']:,.0f}x",
            f"{r['chunk_mib']:.1f}",
            f"{r['max_z_deviation_in_stderr']:.2f}",
        )
        print(" | ".join(f"{c:>13}" for c in cells))
    return results


if __name__ == "__main__":
    main()
