"""braket:local end to end on a bundle, and braket:<device> against a mocked AwsDevice whose
tasks run in Braket's local simulator: batching, physical qubits, resume, error mapping."""

import itertools
import json
import re
import time

import numpy as np
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from typer.testing import CliRunner

from qvit_hw.backends import get_backend
from qvit_hw.backends.braket import (
    BraketBackend,
    BraketLocalBackend,
    decode_job_id,
    encode_job_id,
)
from qvit_hw.circuit import expectations, random_inputs, tree
from qvit_hw.cli import app
from qvit_hw.devices.braket import classify, find_device
from qvit_hw.errors import (
    BackendNotFoundError,
    CredentialsError,
    PermanentBackendError,
    RunInterrupted,
    TransientBackendError,
)
from qvit_hw.jobs import QNNCall, QNNRunner, SchedulerConfig
from qvit_hw.jobs.journal import Journal
from qvit_hw.jobs.retry import Retry

SHOTS = 1000
PREFIX = "arn:aws:braket:us-west-1:123456789012:quantum-task/"

pytestmark = pytest.mark.usefixtures("seeded_braket")


def call(rows=8, seed=1):
    spec = tree(4)
    x, w = random_inputs(spec, rows, seed=seed)
    return QNNCall("q", spec, w.numpy(), x.numpy()), expectations(spec, x, w).numpy()


def within_4_sigma(z, exact, shots=SHOTS):
    """Shot noise and nothing else, for Braket's sampler (seeded by conftest's `seeded_braket`).

    A per-value 4-sigma bound over hundreds of values fails one run in forty by chance, so
    4 standard errors bound what summarises them all: the mean z-score and the z-scores'
    spread (where a value's binomial is near normal: at least 10 expected minority shots).
    Each value must still lie within 6 sigma (+4/shots for the skew near |<Z>| = 1). Checked
    on 20,000 exact draws of the test bundle's 96 rows (each row's 4 qubits jointly, as its
    shots are): 11 false failures; 1.3x the shot noise, or a bias of 0.01, fails.
    """
    sigma = np.sqrt((1 - exact**2) / shots)
    if not (np.abs(z - exact) <= 6 * sigma + 4 / shots).all():
        return False
    normal = (1 - np.abs(exact)) / 2 * shots >= 10
    scores = ((z - exact) / sigma)[normal]
    n = scores.size
    assert n >= 16, "too few near-normal values to judge the spread"
    spread = abs(scores.std() - 1) <= 4 / np.sqrt(2 * n)
    return bool(abs(scores.mean()) <= 4 / np.sqrt(n) and spread)


def client_error(code, status=400, op="CreateQuantumTask"):
    response = {"Error": {"Code": code, "Message": f"{code} happened"},
                "ResponseMetadata": {"HTTPStatusCode": status}}  # fmt: skip
    return ClientError(response, op)


# --- a mocked AwsDevice: tasks that run in Braket's local simulator -------------------------


class FakeTask:
    """AwsQuantumTask stand-in: scripted states, then LocalSimulator's result."""

    def __init__(self, arn, program, shots, states):
        self.id, self.program, self.shots, self.states = arn, program, shots, list(states)
        self.failure = "QPU calibration in progress"

    def state(self):
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def metadata(self):
        return {"failureReason": self.failure}

    def result(self):
        from braket.devices import LocalSimulator

        return LocalSimulator().run(self.program, shots=self.shots).result()


class FakeAwsDevice:
    """``run_batch`` records each call; ``script`` entries are exceptions to raise or task
    state lists; `reattach` is the backend's ``task`` (AwsQuantumTask(arn)) hook."""

    ids = itertools.count()

    def __init__(self, script=()):
        self.script, self.calls, self.tasks, self.reattached = list(script), [], {}, []

    def run_batch(self, programs, *, shots, inputs, **kwargs):
        from braket.ir.openqasm import Program

        self.calls.append({"programs": programs, "shots": shots, "inputs": inputs, **kwargs})
        step = self.script.pop(0) if self.script else ("COMPLETED",)
        if isinstance(step, Exception):
            raise step
        tasks = []
        for program, s, values in zip(programs, shots, inputs, strict=True):
            arn = f"{PREFIX}{next(self.ids):08d}-0000-4000-8000-000000000000"
            task = FakeTask(arn, Program(source=program.source, inputs=values), s, step)
            self.tasks[arn] = task
            tasks.append(task)

        class Batch:
            pass

        batch = Batch()
        batch.tasks = tasks
        return batch

    def reattach(self, arn):
        self.reattached.append(arn)
        if arn not in self.tasks:
            raise client_error("ResourceNotFoundException", 404, "GetQuantumTask")
        return self.tasks[arn]


def ankaa(device):
    return BraketBackend("braket:ankaa-3", find_device("ankaa-3"), device, task=device.reattach)


def runner(backend, journal=None, clock=time.monotonic, **kwargs):
    config = SchedulerConfig(shots=SHOTS, max_copies=2, poll_interval=0, packing="best", **kwargs)
    retry = Retry(attempts=3, sleep=lambda s: None)
    return QNNRunner(
        backend, config, retry=retry, sleep=lambda s: None, journal=journal, clock=clock
    )


def test_one_batched_submission_per_job_on_the_placed_physical_qubits():
    device = FakeAwsDevice()
    backend = ankaa(device)
    assert backend.target.device.name == "rigetti_ankaa_3" and backend.paid
    qnn, exact = call(rows=16)
    scheduler = runner(backend, job_size=5)
    (estimates,) = scheduler.run([qnn])
    assert within_4_sigma(estimates.z, exact)
    assert scheduler.stats.submitted == len(device.calls) == 2  # 8 executions: jobs of 5 + 3
    assert [len(c["programs"]) for c in device.calls] == [5, 3]
    placements = scheduler.template(qnn.spec).compiled.placements
    placed = sorted(q for p in placements for q in p)
    for c in device.calls:
        assert c["disable_qubit_rewiring"] is True and set(c["shots"]) == {SHOTS}
        source = c["programs"][0].source
        assert "#pragma braket verbatim" in source and "include" not in source
        named = sorted({int(q) for q in re.findall(r"\$(\d+)", source)})
        assert named == placed  # the compiled placement, nothing rewired
    task = next(iter(device.tasks.values()))
    assert sorted(task.result().measured_qubits) == placed


def test_resume_reattaches_to_journalled_task_ids_without_resubmitting(tmp_path):
    device = FakeAwsDevice(script=[("QUEUED",)])
    ticks = itertools.count(step=10.0)
    journal = Journal(tmp_path / "journal.sqlite")
    qnn, exact = call()
    first = runner(ankaa(device), journal, job_timeout=5, clock=lambda: next(ticks))
    with pytest.raises(RunInterrupted, match="--resume re-attaches"):
        first.run([qnn])
    journal.close()
    assert len(device.calls) == 1
    arns = list(device.tasks)
    for task in device.tasks.values():
        task.states = ["COMPLETED"]  # the tasks finished while we were away

    resumed = runner(ankaa(device), Journal(tmp_path / "journal.sqlite"))  # a new process
    (estimates,) = resumed.run([qnn])
    assert len(device.calls) == 1 and resumed.stats.submitted == 0  # nothing paid twice
    assert resumed.stats.reattached == 1 and device.reattached == arns
    assert within_4_sigma(estimates.z, exact)


def test_job_ids_carry_rows_per_pub_and_every_task_arn():
    arns = [f"{PREFIX}a", f"{PREFIX}b", f"{PREFIX}c"]
    job_id = encode_job_id([2, 1], arns)
    assert job_id == f"braket|2.1|{PREFIX}|a,b,c"
    assert decode_job_id(job_id) == ([2, 1], arns)
    with pytest.raises(ValueError, match="lists 3 tasks for 4 rows"):
        decode_job_id(job_id.replace("2.1", "3.1"))
    assert ankaa(FakeAwsDevice()).status("ibm-job-1").name == "UNKNOWN"


def test_braket_errors_map_onto_the_two_kinds():
    cases = [
        (client_error("ThrottlingException"), TransientBackendError),
        (client_error("InternalServiceException", 500), TransientBackendError),
        (client_error("ServiceQuotaExceededException", 402), TransientBackendError),
        (client_error("SomethingNew", 503), TransientBackendError),
        (EndpointConnectionError(endpoint_url="https://braket.us-west-1.amazonaws.com"),
         TransientBackendError),
        (client_error("ValidationException"), PermanentBackendError),
        (client_error("AccessDeniedException", 403), PermanentBackendError),
        (client_error("DeviceRetiredException"), PermanentBackendError),
        (NoCredentialsError(), CredentialsError),
    ]  # fmt: skip
    for exc, kind in cases:
        error = classify(exc, "braket:ankaa-3: submit")
        assert type(error) is kind, (exc, error)
        assert str(error).startswith("braket:ankaa-3: submit") and "\n" not in str(error)
    assert "ThrottlingException" in str(classify(cases[0][0], "x"))
    assert "aws configure" in str(classify(NoCredentialsError(), "x"))


def test_transient_submits_are_retried_and_permanent_ones_stop():
    device = FakeAwsDevice(script=[client_error("ThrottlingException")])
    qnn, exact = call(rows=4)
    scheduler = runner(ankaa(device))
    (estimates,) = scheduler.run([qnn])
    assert scheduler.stats.retries == 1 and len(device.calls) == 2
    assert within_4_sigma(estimates.z, exact)

    device = FakeAwsDevice(script=[client_error("ValidationException")])
    with pytest.raises(PermanentBackendError, match="submit: ClientError ValidationException"):
        runner(ankaa(device)).run([qnn])
    assert len(device.calls) == 1

    device = FakeAwsDevice(script=[("QUEUED", "FAILED")])
    with pytest.raises(PermanentBackendError, match="QPU calibration in progress"):
        runner(ankaa(device)).run([qnn])


def test_names_credentials_and_offline_are_one_line(monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(CredentialsError, match=r"braket:ankaa-3 needs AWS credentials: set AWS_"):
        get_backend("braket:ankaa-3")
    with pytest.raises(BackendNotFoundError, match="did you mean braket:ankaa-3"):
        get_backend("braket:ankaa-9")
    assert find_device("arn:aws:braket:us-west-1::device/qpu/rigetti/ankaa-3").short == "ankaa-3"
    assert find_device("rigetti_ankaa_3") is find_device("Ankaa_3")
    with pytest.raises(ValueError, match="unknown option 'shots'"):
        get_backend("braket:local?shots=3")

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")

    def offline(*args, **kwargs):
        raise EndpointConnectionError(endpoint_url="https://braket.us-west-1.amazonaws.com")

    monkeypatch.setattr("braket.aws.AwsDevice", offline)
    with pytest.raises(PermanentBackendError) as info:
        get_backend("braket:ankaa-3")
    text = str(info.value)
    assert "connect to Amazon Braket (us-west-1): EndpointConnectionError" in text
    assert text.endswith("or use braket:local offline") and "\n" not in text


# --- braket:local end to end -----------------------------------------------------------------


def test_braket_local_runs_a_bundle_exactly_and_with_shots(bundle, tmp_path):
    cli = CliRunner()

    def run(backend, out, *extra):
        args = ["run", bundle, "--limit", "1", "--backend", backend, "--out", str(out), *extra]
        result = cli.invoke(app, args)
        assert result.exit_code == 0, result.output
        with np.load(out / "rows.npz") as rows:
            return {k: rows[k] for k in ("estimate", "exact", "stderr", "shots")}

    reference = run("statevector", tmp_path / "sv")
    exact = run("braket:local?exact=1", tmp_path / "exact")
    assert len(exact["estimate"]) == 96
    np.testing.assert_allclose(exact["estimate"], reference["estimate"], atol=1e-9)
    assert (exact["stderr"] == 0).all()
    sampled = run("braket:local", tmp_path / "shots", "--shots", str(SHOTS))
    assert within_4_sigma(sampled["estimate"], sampled["exact"])
    assert (sampled["shots"] == SHOTS).all() and (sampled["stderr"] > 0).any()
    identity = json.loads((tmp_path / "exact" / "run.json").read_text())
    assert "braket:local" in json.dumps(identity)


def test_braket_local_is_exact_per_pub_on_its_own():
    qnn, exact = call(rows=6, seed=4)
    (estimates,) = QNNRunner(BraketLocalBackend(exact=True)).run([qnn])
    np.testing.assert_allclose(estimates.z, exact, atol=1e-9)


def test_a_folded_template_goes_to_braket_verbatim_with_every_fold():
    """zne on a Braket QPU: the folded circuit's 2-qubit gates are all in the verbatim box
    (Braket's compiler does not touch it, so G G^-1 G stays), 3x the unfolded ones."""
    from qvit_hw.devices.catalog import get_target
    from qvit_hw.mitigation.zne import fold_compiled
    from qvit_hw.transpile import template_for
    from qvit_hw.transpile.openqasm import braket_qasm

    target = get_target("rigetti_ankaa_3", live=False)
    compiled = template_for(tree(4), target, max_copies=1, seed=0)
    folded = fold_compiled(compiled, 3, target.basis_gates)
    plain, text = braket_qasm(compiled.circuit), braket_qasm(folded.circuit)
    box = text.split("#pragma braket verbatim")[1]
    gate = "iswap" if "iswap" in plain else "cz"
    assert box.count(f"{gate} ") == text.count(f"{gate} ") == 3 * plain.count(f"{gate} ") > 0
