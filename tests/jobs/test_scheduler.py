"""The scheduler end to end on local backends: dedup, packing, limits, retries, resume."""

import numpy as np
import pytest
import torch

from qvit_hw.backends import get_backend
from qvit_hw.backends.base import JobStatus
from qvit_hw.backends.mock import MockBackend
from qvit_hw.circuit import QNNSpec, chain, expectations, random_inputs, tree
from qvit_hw.errors import JobTooLargeError, JournalError, PermanentBackendError, RunInterrupted
from qvit_hw.jobs import QNNCall, QNNRunner, SchedulerConfig
from qvit_hw.jobs.journal import DONE, FAILED, SUBMITTED, Journal
from qvit_hw.jobs.retry import Retry
from qvit_hw.mitigation.readout import from_properties


class FakeTime:
    """Clock and sleep for tests: sleeping moves the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


RUNNER_ARGS = ("journal", "retry", "mitigation")


def scheduler(backend, time: FakeTime | None = None, **kwargs) -> QNNRunner:
    """A runner on ``backend`` with fake time; job-layer settings go to its SchedulerConfig."""
    time = time or FakeTime()
    runner_args = {k: kwargs.pop(k) for k in RUNNER_ARGS if k in kwargs}
    config = SchedulerConfig(poll_interval=1.0, **kwargs)
    return QNNRunner(backend, config, clock=time.clock, sleep=time.sleep, **runner_args)


def layer_calls(spec: QNNSpec, rows: int, qnns: int = 3, seed: int = 0) -> list[QNNCall]:
    """``qnns`` QNNs on the same token rows (the last 10% repeat earlier rows)."""
    x, w = random_inputs(spec, rows, seed=seed)
    x[-rows // 10 :] = x[: rows // 10]
    return [QNNCall(f"q{i}", spec, (w + 0.3 * i).numpy(), x.numpy()) for i in range(qnns)]


def exact(call: QNNCall) -> np.ndarray:
    return expectations(
        call.spec, torch.from_numpy(call.angles), torch.from_numpy(call.weights)
    ).numpy()


@pytest.mark.parametrize("spec", [chain(4), tree(5)])
def test_statevector_is_exact_and_runs_each_distinct_row_once(spec):
    calls = layer_calls(spec, 200)
    s = scheduler(get_backend("statevector"))
    out = s.run(calls)
    for call, est in zip(calls, out, strict=True):
        np.testing.assert_allclose(est.z, exact(call), atol=1e-12)
        np.testing.assert_array_equal(est.stderr, 0.0)
        np.testing.assert_array_equal(est.qubits, np.tile(np.arange(spec.n_qubits), (200, 1)))
    assert (s.stats.rows, s.stats.unique_rows, s.stats.executions) == (600, 540, 540)


def test_shot_estimates_fall_within_four_standard_errors():
    calls = layer_calls(chain(4), 1000)  # 3,000 rows, 12,000 values
    shots = 1000
    out = scheduler(get_backend("shots?seed=11"), shots=shots).run(calls)
    z = np.concatenate([e.z for e in out])
    stderr = np.concatenate([e.stderr for e in out])
    truth = np.concatenate([exact(c) for c in calls])
    sigma = np.sqrt((1 - truth**2) / shots)
    assert (np.abs(z - truth) <= 4 * sigma + 2 / shots).all()  # + one shot's step near +-1
    zscores = (z - truth) / sigma
    assert abs(zscores.mean()) < 0.05 and 0.95 < zscores.std() < 1.05
    within_two = (np.abs(z - truth) <= 2 * stderr).mean()  # the reported (plug-in) stderr
    assert 0.94 < within_two < 0.97  # ~95% for a normal estimate


def test_very_many_shots_converge_to_the_exact_values():
    calls = layer_calls(chain(4), 100, qnns=1)
    (est,) = scheduler(get_backend("shots"), shots=10**8).run(calls)
    np.testing.assert_allclose(est.z, exact(calls[0]), atol=5e-4)  # sigma <= 1e-4


def test_transient_failures_are_retried_counted_and_change_nothing():
    calls = layer_calls(chain(4), 300)
    clean = scheduler(get_backend("shots"), shots=500, job_size=40).run(calls)
    mock = get_backend("mock?inner=shots&transient=0.3&result_transient=0.3&seed=1")
    flaky = scheduler(mock, shots=500, job_size=40)
    out = flaky.run(calls)
    for a, b in zip(clean, out, strict=True):
        np.testing.assert_array_equal(a.z, b.z)
    failures = mock.calls["submit_failed"] + mock.calls["result_failed"]
    assert flaky.stats.jobs == 21 and failures > 10  # 810 executions / 40; 30% of ~2 x 21
    assert flaky.stats.retries == failures
    assert mock.submits == flaky.stats.submitted == 21  # a failed submit is not a job


def test_permanent_failure_stops_and_keeps_every_finished_job():
    calls = layer_calls(chain(4), 100, qnns=1)  # 90 distinct rows: 5 jobs of 20
    journal = Journal()
    failing = scheduler(get_backend("mock?fail=2"), journal=journal, job_size=20, max_in_flight=1)
    with pytest.raises(PermanentBackendError, match=r"job 3/5 \(20 executions\), id mock-00002-"):
        failing.run(calls)
    assert journal.counts() == {DONE: 2, FAILED: 1}
    retry_mock = get_backend("mock")  # the cause is gone: resume
    resumed = scheduler(retry_mock, journal=journal, job_size=20)
    (est,) = resumed.run(calls)
    np.testing.assert_allclose(est.z, exact(calls[0]), atol=1e-12)
    assert (resumed.stats.reused, retry_mock.submits) == (2, 3)  # finished jobs not re-paid


def test_a_hung_job_times_out_and_resume_reattaches_to_it(tmp_path):
    calls = layer_calls(chain(4), 100, qnns=1)
    journal, time = Journal(), FakeTime()
    state = str(tmp_path / "mock")
    hung = MockBackend(state=state, hang="1", latency="5", clock=time.clock)
    s = scheduler(hung, time, journal=journal, job_size=30, job_timeout=100.0)
    with pytest.raises(RunInterrupted, match=r"job 2/3 .* did not finish within 100 s .* --resume"):
        s.run(calls)
    before = {r.payload: r for r in journal.records()}
    assert sum(r.status == SUBMITTED for r in before.values()) >= 1
    back = MockBackend(state=state, latency="5", clock=time.clock)  # "another process"
    resumed = scheduler(back, time, journal=journal, job_size=30)
    (est,) = resumed.run(calls)
    np.testing.assert_allclose(est.z, exact(calls[0]), atol=1e-12)
    assert resumed.stats.reattached == sum(r.status == SUBMITTED for r in before.values())
    after = journal.records()
    assert all(r.submits == 1 for r in after)  # no job was submitted twice
    assert len(back.submitted()) == len(after) == 3
    for record in after:
        if record.payload in before:
            assert record.job_id == before[record.payload].job_id


def test_jobs_are_split_within_the_backends_limits():
    calls = layer_calls(chain(4), 50, qnns=2)
    s = scheduler(get_backend("mock?max_circuits=7"))
    plan = s.plan(calls)
    assert max(job.executions for job in plan.jobs) == 7 and plan.executions == 90
    out = s.run(calls)
    np.testing.assert_allclose(out[1].z, exact(calls[1]), atol=1e-12)
    ibm_like = scheduler(get_backend("mock?max_executions=5000&max_shots=2000"), shots=1000)
    assert ibm_like.job_size == 5  # 5,000 executions / 1,000 shots
    with pytest.raises(
        JobTooLargeError, match="4000 shots per circuit exceed mock's limit of 2000"
    ):
        _ = scheduler(get_backend("mock?max_shots=2000"), shots=4000).job_size  # asked when used


def test_a_job_the_backend_lost_is_submitted_again():
    calls = layer_calls(chain(4), 20, qnns=1)
    journal = Journal()
    first = scheduler(get_backend("statevector"), journal=journal)
    (job,) = first.plan(calls).jobs
    journal.submitted(job.payload, "statevector", "statevector-00000-0dead0", 18, 1000)
    (est,) = first.run(calls)  # that id belonged to a process that ended
    assert first.stats.resubmitted == 1 and journal.get(job.payload).submits == 2
    np.testing.assert_allclose(est.z, exact(calls[0]), atol=1e-12)


def test_a_job_lost_again_and_again_stops_after_the_retry_budget():
    class Forgetful(type(get_backend("statevector"))):
        """Accepts every job and then never knows it (e.g. a service failing it retryably)."""

        def status(self, job_id):
            return JobStatus.UNKNOWN

    backend = Forgetful()
    sched = scheduler(backend, retry=Retry(attempts=3, sleep=lambda s: None))
    with pytest.raises(PermanentBackendError, match=r"was lost by statevector 3 times"):
        sched.run(layer_calls(chain(4), 20, qnns=1))
    assert sched.stats.submitted == 3 and sched.stats.resubmitted == 2


def test_packed_copies_on_a_device_give_exact_values_without_noise():
    calls = layer_calls(chain(4), 50, qnns=1)
    s = scheduler(get_backend("fake_brisbane?noise=0"), shots=4000, max_copies=4)
    (est,) = s.run(calls)
    assert s.stats.executions == 12  # ceil(45 distinct rows / 4 copies)
    (template,) = s.stats.templates.values()
    assert template["copies"] == 4
    assert {tuple(q) for q in est.qubits} <= {tuple(p) for p in template["placements"]}
    truth = exact(calls[0])
    assert (np.abs(est.z - truth) <= 4 * np.sqrt((1 - truth**2) / 4000) + 2 / 4000).all()


def test_readout_mitigation_on_a_noisy_device():
    calls = layer_calls(chain(4), 80, qnns=1)
    backend = get_backend("fake_brisbane?seed=3")
    s = scheduler(backend, shots=4000, max_copies=8, mitigation="readout")
    (est,) = s.run(calls)
    (calibrated,) = s.calibrations().values()  # from calibration circuits, same backend
    assert set(calibrated.e0) == set(np.unique(est.qubits))
    reported = from_properties(backend.readout_errors(), est.qubits, backend.name)
    by_props, _ = reported.correct(est.z_raw, est.stderr_raw, est.qubits)
    truth = exact(calls[0])
    raw, mitigated = np.abs(est.z_raw - truth).mean(), np.abs(est.z - truth).mean()
    assert mitigated < 0.8 * raw and np.abs(by_props - truth).mean() < 0.8 * raw


def test_nan_angles_are_refused_before_any_job_is_planned(tmp_path):
    mock = get_backend(f"mock?state={tmp_path}")
    x, w = random_inputs(chain(4), 8)
    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match="angles of q0: must be finite, got NaN or infinity"):
        scheduler(mock).run([QNNCall("q0", chain(4), w.numpy(), x.numpy())])
    assert mock.submitted() == []


def test_an_intent_without_a_job_id_is_found_by_its_tag_not_paid_again(tmp_path):
    """The run stopped between the mock accepting a job and the journal recording its id."""
    calls = layer_calls(chain(4), 20, qnns=1)
    journal = Journal()
    first = scheduler(MockBackend(state=str(tmp_path)), journal=journal)
    (job,) = first.plan(calls).jobs
    journal.intent(job.payload, "mock", job.executions, 1000)
    job_id = first.backend.submit(job.pubs, tag=job.payload)  # paid; its id never journaled
    again = scheduler(MockBackend(state=str(tmp_path)), journal=journal)  # a new process
    (est,) = again.run(calls)
    np.testing.assert_allclose(est.z, exact(calls[0]), atol=1e-12)
    assert len(again.backend.submitted()) == 1 and again.stats.reattached == 1
    assert (journal.get(job.payload).job_id, journal.get(job.payload).submits) == (job_id, 1)


def test_an_intent_a_paid_backend_cannot_look_up_is_named_never_resubmitted_silently():
    class Billed(type(get_backend("mock"))):
        paid = True
        find_submitted = None  # a service that cannot be asked for a job by its tag

    calls = layer_calls(chain(4), 20, qnns=1)
    journal = Journal()
    backend = Billed()
    (job,) = scheduler(backend, journal=journal).plan(calls).jobs
    journal.intent(job.payload, "mock", job.executions, 1000)
    with pytest.raises(JournalError, match=f"a job \\(payload {job.payload}\\) was being "):
        scheduler(backend, journal=journal).run(calls)
    assert backend.submits == 0
    (est,) = scheduler(backend, journal=journal, resubmit_unrecorded=True).run(calls)
    assert backend.submits == 1 and journal.get(job.payload).submits == 1
    np.testing.assert_allclose(est.z, exact(calls[0]), atol=1e-12)


def test_a_job_refused_at_submit_is_not_counted_as_paid():
    calls = layer_calls(chain(4), 20, qnns=1)
    journal = Journal()
    s = scheduler(get_backend("mock?fail=0"), journal=journal)

    def refuse(pubs, tag=None):
        raise PermanentBackendError("mock: refused")

    s.scheduler.backend.submit = refuse
    with pytest.raises(PermanentBackendError, match="was rejected by mock: mock: refused"):
        s.run(calls)
    (record,) = journal.records()
    assert record.status == FAILED and record.job_id is None and journal.paid() == 0
