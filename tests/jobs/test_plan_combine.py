"""plan and combine on their own: no backend, results written by hand."""

import numpy as np
import pytest

from qvit_hw.backends.base import JobResult, PubResult
from qvit_hw.circuit import chain
from qvit_hw.jobs.combine import combine
from qvit_hw.jobs.plan import QNNCall, Template, plan
from qvit_hw.transpile import circuit_key, compile_qnn, get_target, logical_qnn

SPEC = chain(4)


def calls(rows: int = 10, qnns: int = 2, seed: int = 0) -> list[QNNCall]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-np.pi, np.pi, (rows, 4))
    x[-2:] = x[:2]  # two duplicate rows
    w = rng.uniform(-np.pi, np.pi, SPEC.weight_shape)
    return [QNNCall(f"q{i}", SPEC, w + i, x) for i in range(qnns)]


def template(compiled) -> Template:
    return Template(compiled, circuit_key(compiled.circuit))


def fake_results(p) -> list[JobResult]:
    """Each execution's <Z> of clbit j := execution index + j / 100 (easy to trace back)."""
    out = []
    for job in p.jobs:
        pub = job.pubs[0]
        executions = job.start + np.arange(pub.rows)[:, None]
        z = executions + np.arange(pub.circuit.num_clbits)[None, :] / 100
        out.append(JobResult((PubResult(z.astype(float), 0),)))
    return out


def test_plan_dedups_binds_and_splits_into_hashed_jobs():
    logical = template(logical_qnn(SPEC))
    p = plan(calls(), lambda spec: logical, backend="statevector", shots=100, job_size=7)
    assert (p.rows, p.unique_rows, p.executions) == (20, 16, 16)
    assert [j.executions for j in p.jobs] == [7, 7, 2] and p.templates == (logical.compiled,)
    assert [s.start for s in p.slots] == [0, 8] and all(s.unique == 8 for s in p.slots)
    again = plan(calls(), lambda spec: logical, backend="statevector", shots=100, job_size=7)
    assert [j.payload for j in again.jobs] == [j.payload for j in p.jobs]  # stable hashes
    other = plan(calls(), lambda spec: logical, backend="statevector", shots=200, job_size=7)
    assert not {j.payload for j in other.jobs} & {j.payload for j in p.jobs}
    # the bound values are the call's angles and weights in the circuit's parameter order
    values = p.jobs[0].pubs[0].values[0]
    c = calls()[0]
    first = np.unique(c.angles, axis=0)[0]
    np.testing.assert_array_equal(values[logical.compiled.x_index[0]], first)
    np.testing.assert_array_equal(values[logical.compiled.w_index], c.weights.reshape(-1))


def test_combine_scatters_unique_rows_back_and_duplicates_share_estimates():
    logical = template(logical_qnn(SPEC))
    cs = calls()
    p = plan(cs, lambda spec: logical, backend="statevector", shots=100, job_size=7)
    q0, q1 = combine(p, fake_results(p))
    for call, est, slot in zip(cs, (q0, q1), p.slots, strict=True):
        expected = slot.start + slot.inverse  # the row's execution (k = 1)
        np.testing.assert_array_equal(est.z[:, 0], expected)
        np.testing.assert_allclose(est.z[:, 3] - est.z[:, 0], 0.03)
        np.testing.assert_array_equal(est.z[-2:], est.z[:2])  # duplicates: one estimate
        np.testing.assert_array_equal(est.qubits, np.tile(np.arange(4), (len(call.angles), 1)))
        np.testing.assert_array_equal(est.stderr, 0.0)  # exact results


def test_combine_unpacks_packed_copies_onto_their_physical_qubits():
    packed = template(compile_qnn(SPEC, get_target("ibm_brisbane", live=False), max_copies=3))
    cs = calls(rows=10, qnns=1)
    p = plan(cs, lambda spec: packed, backend="fake_brisbane", shots=100, job_size=None)
    assert p.executions == 3  # 8 unique rows / 3 copies
    (est,) = combine(p, fake_results(p))
    u = cs[0].angles.shape[0] - 2
    execution, copy = np.arange(u) // 3, np.arange(u) % 3
    unique_z = execution[:, None] + (copy[:, None] * 4 + np.arange(4)) / 100  # clbit c*n + i
    inverse = p.slots[0].inverse
    np.testing.assert_allclose(est.z, unique_z[inverse])
    placements = np.asarray(packed.compiled.placements)
    np.testing.assert_array_equal(est.qubits, placements[copy][inverse])


class Scale:
    """A correction: z -> a z + b, stderr -> |a| stderr, recorded."""

    def __init__(self, a: float, b: float) -> None:
        self.a, self.b, self.seen = a, b, []

    def correct(self, z, stderr, qubits):
        self.seen.append(qubits.copy())
        return self.a * z + self.b, abs(self.a) * stderr


def test_corrections_apply_in_order_and_leave_the_raw_estimates():
    logical = template(logical_qnn(SPEC))
    p = plan(calls(), lambda spec: logical, backend="shots", shots=100, job_size=None)
    results = [JobResult((PubResult(np.full((16, 4), 0.5), 100),))]
    first, second = Scale(2.0, 0.0), Scale(1.0, -0.25)
    (est, _) = combine(p, results, [[first, second]])
    np.testing.assert_allclose(est.z, 2.0 * 0.5 - 0.25)  # scale first, then shift
    np.testing.assert_allclose(est.z_raw, 0.5)
    np.testing.assert_allclose(est.stderr, 2.0 * est.stderr_raw)
    np.testing.assert_allclose(est.stderr_raw, np.sqrt((1 - 0.25) / 100))
    assert len(first.seen) == 2 and first.seen[0].shape == (8, 4)  # per call, unique rows


def test_a_call_is_checked_where_it_is_made():
    with pytest.raises(ValueError, match=r"angles: expected shape \(rows >= 1, 4\)"):
        QNNCall("q", SPEC, np.zeros(SPEC.weight_shape), np.zeros((3, 5)))
