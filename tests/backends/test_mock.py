"""The mock backend injects faults reproducibly and returns its inner backend's results."""

import numpy as np
import pytest
from qiskit import QuantumCircuit

from qvit_hw.backends import JobStatus, Pub, get_backend
from qvit_hw.backends.mock import MockBackend, MockOptions
from qvit_hw.errors import JobTooLargeError, PermanentBackendError, TransientBackendError


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pubs(rows: int = 3) -> list[Pub]:
    qc = QuantumCircuit(1, 1)
    qc.x(0)
    qc.measure(0, 0)
    return [Pub(qc, np.zeros((rows, 0)), 100)]


def submit_until_accepted(mock: MockBackend) -> str:
    while True:
        try:
            return mock.submit(pubs())
        except TransientBackendError:
            continue


def test_transient_submit_failures_follow_the_rate_and_the_seed():
    def failures(seed: int) -> list[bool]:
        mock = get_backend(f"mock?transient=0.3&seed={seed}")
        out = []
        for _ in range(400):
            try:
                mock.submit(pubs())
                out.append(False)
            except TransientBackendError:
                out.append(True)
        return out

    first = failures(1)
    assert failures(1) == first  # seeded
    assert failures(2) != first
    assert 0.25 < np.mean(first) < 0.35


def test_results_come_from_the_inner_backend():
    mock = get_backend("mock", inner="statevector")
    job_id = mock.submit(pubs())
    (result,) = mock.result(job_id).pubs
    np.testing.assert_allclose(result.z, -1.0)  # X|0> = |1>: <Z> = -1 exactly
    assert result.shots == 0


def test_latency_failures_and_hangs_by_submit_ordinal():
    clock = Clock()
    mock = MockBackend(MockOptions(latency=10.0, fail=(1,), hang=(2,)), clock=clock)
    ok, failing, hanging = (mock.submit(pubs()) for _ in range(3))
    assert mock.status(ok) is JobStatus.QUEUED
    clock.now += 6
    assert mock.status(ok) is JobStatus.RUNNING
    clock.now += 5
    assert mock.status(ok) is JobStatus.DONE
    assert mock.status(failing) is JobStatus.FAILED
    with pytest.raises(PermanentBackendError, match="failed permanently"):
        mock.result(failing)
    clock.now += 1e9
    assert mock.status(hanging) is JobStatus.RUNNING
    assert mock.status("mock-99999-00000000") is JobStatus.UNKNOWN


def test_transient_result_failures():
    mock = get_backend("mock?result_transient=0.5&seed=3")
    job_id = mock.submit(pubs())
    outcomes = []
    for _ in range(50):
        try:
            mock.result(job_id)
            outcomes.append("ok")
        except TransientBackendError:
            outcomes.append("failed")
    assert 10 < outcomes.count("failed") < 40
    assert mock.calls["result_failed"] == outcomes.count("failed")


def test_state_folder_lets_a_new_process_reattach(tmp_path):
    clock = Clock()
    first = MockBackend(state=str(tmp_path), latency="5", clock=clock)
    job_id = submit_until_accepted(first)
    second = MockBackend(state=str(tmp_path), latency="5", clock=clock)  # "another process"
    assert second.status(job_id) is JobStatus.QUEUED  # known, not lost
    clock.now += 5
    np.testing.assert_allclose(second.result(job_id).pubs[0].z, -1.0)
    second.submit(pubs())
    log = second.submitted()
    assert [entry["ordinal"] for entry in log] == [0, 1]  # counted across both instances
    assert log[0]["job_id"] == job_id


def test_limits_can_be_tightened():
    mock = get_backend("mock?max_circuits=2&max_shots=50")
    assert mock.target.max_circuits == 2
    with pytest.raises(JobTooLargeError, match="100 shots per circuit exceed mock's limit of 50"):
        mock.submit(pubs(rows=1))
    with pytest.raises(JobTooLargeError, match="3 circuits exceeds mock's limit of 2"):
        get_backend("mock?max_circuits=2").submit(pubs(rows=3))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"transient": "1.5"}, r"transient must be in \[0, 1\)"),
        ({"latency": "-1"}, "latency must be >= 0"),
        ({"bogus": "1"}, "unknown option 'bogus'"),
        ({"fail": "x"}, "bad option value"),
        ({"inner": "mock"}, "inner must be another backend"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        MockOptions.parse(options)


def test_a_tagged_job_is_found_again_by_a_new_process(tmp_path):
    first = get_backend(f"mock?state={tmp_path}")
    job_id = first.submit(pubs(), tag="payload-1")
    first.submit(pubs())
    again = get_backend(f"mock?state={tmp_path}")  # another process, same service
    assert again.find_submitted("payload-1") == job_id
    assert again.find_submitted("payload-2") is None
    assert get_backend("mock").find_submitted("payload-1") is None  # no state: this process's
