"""The sqlite journal: submitted before waiting, results kept, readable after a restart."""

import numpy as np
from qiskit import QuantumCircuit

from qvit_hw.backends import JobResult, Pub, PubResult
from qvit_hw.jobs.journal import DONE, FAILED, SUBMITTED, Journal, payload_hash


def pub(values: np.ndarray, shots: int = 100) -> Pub:
    qc = QuantumCircuit(1, 1)
    return Pub(qc, values, shots)


def test_payload_hash_depends_on_everything_that_changes_results():
    base = payload_hash("shots", [pub(np.zeros((2, 0)))], ["c1"])
    assert base == payload_hash("shots", [pub(np.zeros((2, 0)))], ["c1"])
    assert base != payload_hash("mock", [pub(np.zeros((2, 0)))], ["c1"])  # backend
    assert base != payload_hash("shots", [pub(np.zeros((2, 0)), 200)], ["c1"])  # shots
    assert base != payload_hash("shots", [pub(np.zeros((2, 0)))], ["c2"])  # circuit
    assert base != payload_hash("shots", [pub(np.zeros((3, 0)))], ["c1"])  # rows


def test_a_job_goes_from_submitted_to_done_and_survives_a_restart(tmp_path):
    path = tmp_path / "journal.sqlite"
    result = JobResult((PubResult(np.array([[0.5, -0.25]]), 1000), PubResult(np.ones((2, 1)), 0)))
    with Journal(path) as journal:
        journal.submitted("p1", "shots", "job-1", executions=3, shots=1000)
        assert journal.get("p1").status == SUBMITTED  # before any waiting
        assert journal.result("p1") is None
        journal.done("p1", result)
        journal.submitted("p2", "shots", "job-2", executions=1, shots=1000)
        journal.failed("p2", "calibration failed")
    with Journal(path) as journal:  # a new process
        record = journal.get("p1")
        assert (record.status, record.job_id, record.executions, record.submits) == (
            DONE, "job-1", 3, 1
        )  # fmt: skip
        got = journal.result("p1")
        np.testing.assert_array_equal(got.pubs[0].z, [[0.5, -0.25]])
        assert [p.shots for p in got.pubs] == [1000, 0]
        assert journal.get("p2").error == "calibration failed"
        assert journal.counts() == {DONE: 1, FAILED: 1}


def test_resubmitting_a_payload_counts_submits_and_clears_the_old_result():
    journal = Journal()
    journal.submitted("p", "mock", "job-1", 1, 10)
    journal.done("p", JobResult((PubResult(np.zeros((1, 1)), 10),)))
    journal.submitted("p", "mock", "job-2", 1, 10)
    record = journal.get("p")
    assert (record.job_id, record.submits, record.status) == ("job-2", 2, SUBMITTED)
    assert journal.result("p") is None


def test_the_ledger_refuses_a_journal_that_lost_rows_and_forgives_an_unwritten_intent(tmp_path):
    import sqlite3

    import pytest

    from qvit_hw.errors import JournalError

    path, ledger = tmp_path / "journal.sqlite", tmp_path / "ledger.json"
    with Journal(path, ledger=ledger) as journal:
        for p in ("p1", "p2", "p3"):
            journal.intent(p, "mock", 1, 10)
            journal.submitted(p, "mock", f"job-{p}", 1, 10)
        journal.ledger.add("p4")  # the disk filled before p4's intent reached the journal
    with Journal(path, ledger=ledger) as journal:  # p4 was never submitted: forgiven
        assert journal.ledger.jobs == 3 and journal.ledger.last is None
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM jobs WHERE payload = 'p2'")
    with pytest.raises(JournalError, match=r"holds 2 of the 3 jobs this run submitted"):
        Journal(path, ledger=ledger)
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO jobs (payload, backend, status, executions, shots, job_id) "
                   "VALUES ('px', 'mock', 'submitted', 1, 10, 'job-x')")  # fmt: skip
    with pytest.raises(JournalError, match="holds 3 jobs, not the 3 this run submitted"):
        Journal(path, ledger=ledger)


def test_an_intent_is_a_row_without_a_job_id_until_the_submit_is_recorded():
    from qvit_hw.jobs.journal import SUBMITTING

    journal = Journal()
    journal.intent("p", "mock", 2, 10)
    record = journal.get("p")
    assert (record.status, record.job_id, record.submits) == (SUBMITTING, None, 0)
    assert journal.paid() == 1
    journal.submitted("p", "mock", "job-1", 2, 10)
    assert (journal.get("p").job_id, journal.get("p").submits) == ("job-1", 1)
    journal.intent("q", "mock", 1, 10)
    journal.failed("q", "rejected at submit")  # the backend refused it: nothing was paid
    assert journal.paid() == 1
