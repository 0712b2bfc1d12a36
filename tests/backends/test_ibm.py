"""ibm_<device>: SamplerV2 in a Batch, run end to end in qiskit-ibm-runtime's local testing
mode, and against a mocked QiskitRuntimeService whose jobs fail with each mapped error."""

import itertools
import time
from types import SimpleNamespace

import numpy as np
import pytest
from qiskit.primitives import BackendSamplerV2
from qiskit.providers.exceptions import QiskitBackendNotFoundError
from qiskit_aer import AerSimulator
from qiskit_ibm_runtime.api.exceptions import RequestsApiError
from qiskit_ibm_runtime.exceptions import (
    IBMApiError,
    IBMError,
    IBMInputValueError,
    IBMNotAuthorizedError,
    RuntimeJobFailureError,
    RuntimeJobMaxTimeoutError,
    RuntimeJobNotFound,
    RuntimeJobTimeoutError,
)
from qiskit_ibm_runtime.fake_provider import FakeBrisbane, FakeFez
from typer.testing import CliRunner

from qvit_hw.backends import get_backend
from qvit_hw.backends.base import backend_identity, identity_key
from qvit_hw.backends.ibm import IBMRuntimeBackend, classify
from qvit_hw.circuit import chain, expectations, random_inputs
from qvit_hw.cli import app
from qvit_hw.errors import (
    BackendNotFoundError,
    CredentialsError,
    JobTooLargeError,
    PermanentBackendError,
    RunInterrupted,
    TransientBackendError,
)
from qvit_hw.jobs import QNNCall, QNNRunner, SchedulerConfig
from qvit_hw.jobs.journal import Journal
from qvit_hw.jobs.retry import Retry

SHOTS = 1000
CONCURRENT = "Unable to retrieve job result. Error code 1012; The user reached the maximum number of jobs running concurrently"  # noqa: E501


def call(rows=8, seed=1):
    spec = chain(4)
    x, w = random_inputs(spec, rows, seed=seed)
    return QNNCall("q", spec, w.numpy(), x.numpy()), expectations(spec, x, w).numpy()


def within_4_sigma(z, exact):
    sigma = np.sqrt((1 - exact**2) / SHOTS)
    return bool((np.abs(z - exact) <= 4 * sigma + 2 / SHOTS).all())


def test_local_testing_mode_runs_the_runtime_code_path_end_to_end():
    backend = get_backend("ibm_brisbane?local=1&seed=3")
    assert isinstance(backend, IBMRuntimeBackend) and backend.service is None
    assert backend.target.num_qubits == 127  # FakeBrisbane's target is what gets packed
    qnn, exact = call(rows=8)
    scheduler = QNNRunner(backend, SchedulerConfig(shots=SHOTS, max_copies=2, poll_interval=0))
    (estimates,) = scheduler.run([qnn])
    assert type(backend._batch).__name__ == "Batch"  # SamplerV2(mode=Batch(FakeBrisbane()))
    assert scheduler.stats.submitted == 1 and scheduler.stats.executions == 4
    assert scheduler.stats.shots == 4 * SHOTS
    error = np.abs(estimates.z - exact)
    assert error.mean() < 0.06  # the device's noise model: about 0.03 here
    assert (estimates.stderr > 0).all()
    with pytest.raises(JobTooLargeError, match="pass --max-copies 3 or fewer"):
        QNNRunner(backend, SchedulerConfig(shots=SHOTS, poll_interval=0)).run([qnn])  # all in one


def test_runtime_errors_map_onto_the_two_kinds():
    # RuntimeJobFailureError and RuntimeJobTimeoutError are qiskit JobErrors, not IBMErrors
    assert not issubclass(RuntimeJobFailureError, IBMError)
    assert not issubclass(RuntimeJobTimeoutError, IBMError)
    cases = [
        (RequestsApiError("503 Service Unavailable", status_code=503), TransientBackendError, ""),
        (RequestsApiError("429 Too Many Requests", status_code=429), TransientBackendError, ""),
        (RequestsApiError("Connection aborted"), TransientBackendError, "not answering"),
        (IBMApiError("internal server error"), TransientBackendError, ""),
        (RuntimeJobFailureError(CONCURRENT), TransientBackendError, "retryable"),
        (RuntimeJobFailureError("Error code 1202; Too many requests"), TransientBackendError, ""),
        (RuntimeJobTimeoutError("Timed out waiting"), TransientBackendError, "polling again"),
        (RequestsApiError("401 Unauthorized", status_code=401), PermanentBackendError, "creden"),
        (RequestsApiError("400 Bad Request", status_code=400), PermanentBackendError, "rejected"),
        (IBMNotAuthorizedError("not authorised"), PermanentBackendError, "not authorised"),
        (IBMInputValueError("shots must be positive"), PermanentBackendError, "shots"),
        (
            ValueError("The instruction h on qubits (0,) is not supported"),
            PermanentBackendError,
            "",
        ),
        (RuntimeJobFailureError("Error code 1517; invalid circuit"), PermanentBackendError, "1517"),
        (RuntimeJobMaxTimeoutError("Error code 1305; ran too long"), JobTooLargeError, "shrink"),
    ]
    for exc, kind, text in cases:
        error = classify(exc, "ibm_fez: job")
        assert type(error) is kind, (exc, error)
        assert text in str(error) and "\n" not in str(error)


# --- a mocked QiskitRuntimeService ----------------------------------------------------------


class MockJob:
    """A RuntimeJobV2 stand-in: scripted states, then Aer's result or a scripted error."""

    ids = itertools.count()

    def __init__(self, pubs, states=("DONE",), errors=()):
        self.id = f"job-{next(self.ids)}"
        self.pubs, self.states, self.errors = pubs, list(states), list(errors)

    def job_id(self):
        return self.id

    @property
    def usage_estimation(self):  # RuntimeJobV2: the service's estimate at submission
        return {"quantum_seconds": 1.5 * len(self.pubs)}

    def metrics(self):  # RuntimeJobV2: what the job used, once done
        return {"usage": {"quantum_seconds": 2.0 * len(self.pubs), "seconds": 3.0}}

    def status(self):
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def result(self):
        if self.errors:
            raise self.errors[0] if self.states[-1] == "ERROR" else self.errors.pop(0)
        sampler = BackendSamplerV2(backend=AerSimulator(seed_simulator=5))  # noiseless
        return sampler.run(self.pubs).result()


class MockSampler:
    """SamplerV2.run: each call takes the next script entry (an exception to raise at
    submit, or MockJob keyword arguments)."""

    def __init__(self, service, script=()):
        self.service, self.script, self.runs = service, list(script), 0
        self.options = SimpleNamespace(
            max_execution_time=None, environment=SimpleNamespace(job_tags=None)
        )
        self.limits = []  # max_execution_time at each run

    def run(self, pubs):
        self.runs += 1
        self.limits.append(self.options.max_execution_time)
        step = self.script.pop(0) if self.script else {}
        if isinstance(step, Exception):
            raise step
        job = MockJob(pubs, **step)
        job.tags = list(self.options.environment.job_tags or [])
        self.service.store[job.id] = job
        return job


class MockService:
    """QiskitRuntimeService: sees ibm_fez and ibm_torino, keeps jobs for re-attach."""

    def __init__(self):
        self.store, self.job_calls = {}, []

    def backend(self, name):
        if name != "ibm_fez":
            raise QiskitBackendNotFoundError("No backend matches the criteria.")
        return FakeFez()

    def backends(self):
        return [SimpleNamespace(name="ibm_torino"), SimpleNamespace(name="ibm_fez")]

    def job(self, job_id):
        self.job_calls.append(job_id)
        if job_id not in self.store:
            raise RuntimeJobNotFound(f"Job not found: {job_id}")
        return self.store[job_id]

    def jobs(self, job_tags=None, backend_name=None, limit=10, descending=True):
        found = [j for j in self.store.values() if set(job_tags or ()) <= set(j.tags)]
        return (found[::-1] if descending else found)[:limit]


def mocked(service, script=(), journal=None, clock=time.monotonic, **kwargs):
    sampler = MockSampler(service, script)
    backend = IBMRuntimeBackend(
        "ibm_brisbane", FakeBrisbane(), service=service, sampler=lambda: sampler
    )
    retry = Retry(attempts=3, sleep=lambda s: None)
    scheduler = QNNRunner(
        backend, SchedulerConfig(shots=SHOTS, max_copies=2, poll_interval=0, **kwargs),
        retry=retry, sleep=lambda s: None, journal=journal, clock=clock,
    )  # fmt: skip
    return scheduler, sampler


def test_transient_errors_are_retried_repolled_or_resubmitted_as_classified():
    service = MockService()
    script = [
        RequestsApiError("503 Service Unavailable", status_code=503),  # submit: retried
        {"states": ("QUEUED", "ERROR"), "errors": [RuntimeJobFailureError(CONCURRENT)]},
        {"states": ("RUNNING", "DONE"), "errors": [RuntimeJobTimeoutError("timed out")]},
    ]
    scheduler, sampler = mocked(service, script)
    qnn, exact = call()
    (estimates,) = scheduler.run([qnn])
    stats = scheduler.stats
    assert sampler.runs == 3  # the 503, the job failed with code 1012, the good one
    assert stats.submitted == 2 and stats.resubmitted == 1  # 1012: submitted again
    assert stats.retries == 2  # the 503 and the result timeout (polled again, no resubmit)
    assert within_4_sigma(estimates.z, exact)


@pytest.mark.parametrize(
    ("step", "kind", "message"),
    [
        (IBMInputValueError("shots must be positive"), PermanentBackendError, "rejected"),
        (
            {"states": ("ERROR",), "errors": [RuntimeJobFailureError("Error code 1517; bad")]},
            PermanentBackendError,
            "1517",
        ),
        (
            {"states": ("ERROR",), "errors": [RuntimeJobMaxTimeoutError("Error code 1305")]},
            PermanentBackendError,
            "shrink the job with a smaller --job-size",
        ),
    ],
    ids=["input-value", "job-failure", "max-time"],
)
def test_permanent_errors_stop_at_once(step, kind, message):
    scheduler, sampler = mocked(MockService(), [step])
    with pytest.raises(kind, match=message):
        scheduler.run([call()[0]])
    assert sampler.runs == 1 and scheduler.stats.retries == 0


def test_resume_reattaches_to_the_journalled_job_instead_of_resubmitting(tmp_path):
    service = MockService()
    ticks = itertools.count(step=10.0)
    journal = Journal(tmp_path / "journal.sqlite")
    first, sampler = mocked(
        service, [{"states": ("RUNNING",)}], journal, job_timeout=5, clock=lambda: next(ticks)
    )
    qnn, exact = call()
    with pytest.raises(RunInterrupted, match="--resume re-attaches"):
        first.run([qnn])
    (job_id,) = service.store
    journal.close()
    service.store[job_id].states = ["DONE"]  # the job finished while we were away

    resumed, sampler = mocked(service, journal=Journal(tmp_path / "journal.sqlite"))
    (estimates,) = resumed.run([qnn])
    assert service.job_calls == [job_id] and sampler.runs == 0  # job(), not run()
    assert resumed.stats.reattached == 1 and resumed.stats.submitted == 0
    assert within_4_sigma(estimates.z, exact)


# --- connecting -----------------------------------------------------------------------------


@pytest.fixture
def no_account(monkeypatch, tmp_path):
    for var in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL", "QISKIT_IBM_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(
        "qiskit_ibm_runtime.accounts.management._DEFAULT_ACCOUNT_CONFIG_JSON_FILE",
        str(tmp_path / "qiskit-ibm.json"),
    )


def test_without_credentials_one_line_names_what_to_set(no_account, tmp_path):
    with pytest.raises(CredentialsError) as info:
        get_backend("ibm_brisbane")
    text = str(info.value)
    for needed in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "save_account", "fake_brisbane"):
        assert needed in text
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(tmp_path / "bundle"),
            "--backend",
            "ibm_brisbane",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "QISKIT_IBM_TOKEN" in result.output


def test_the_live_device_target_and_a_device_the_account_cannot_see(monkeypatch):
    monkeypatch.setattr("qiskit_ibm_runtime.QiskitRuntimeService", MockService)
    backend = get_backend("ibm_fez")
    assert backend.service is not None and backend.target.num_qubits == 156  # live target
    with pytest.raises(BackendNotFoundError) as info:
        get_backend("ibm_brisbane")
    assert str(info.value) == (
        "ibm_brisbane: this IBM Quantum account cannot use it (ibm_brisbane was retired on "
        "2025-11-03); devices it can use: ibm_fez, ibm_torino (or offline: fake_brisbane, "
        "transpile --snapshot)"
    )


@pytest.fixture
def mocked_account(monkeypatch):
    """Credentials in the environment and the mocked service (sees ibm_fez, ibm_torino)."""
    import qvit_hw.devices.catalog as catalog

    monkeypatch.setenv("QISKIT_IBM_TOKEN", "token-123")
    monkeypatch.setenv("QISKIT_IBM_INSTANCE", "crn:test")
    monkeypatch.setattr("qiskit_ibm_runtime.QiskitRuntimeService", MockService)
    catalog._load.cache_clear()
    yield
    catalog._load.cache_clear()


def test_a_retired_or_unknown_live_device_is_one_line_naming_the_usable_ones(
    mocked_account, monkeypatch, bundle, tmp_path
):
    from qiskit_ibm_runtime.ibm_backend import IBMRetiredBackend

    usable = "devices it can use: ibm_fez, ibm_torino"
    cases = [
        ("transpile", "ibm_brisbane", "cannot use it (ibm_brisbane was retired on 2025-11-03)"),
        ("transpile", "ibm_boston", "ibm_boston: this IBM Quantum account cannot use it;"),
        ("run", "ibm_boston", "ibm_boston: this IBM Quantum account cannot use it;"),
    ]

    class Retiring(MockService):  # the service knows ibm_kyoto as a retired backend
        def backend(self, name):
            return (
                IBMRetiredBackend.from_name(name) if name == "ibm_kyoto" else super().backend(name)
            )

    for command, device, why in [*cases, ("run", "ibm_kyoto", "(ibm_kyoto is retired)")]:
        if device == "ibm_kyoto":
            monkeypatch.setattr("qiskit_ibm_runtime.QiskitRuntimeService", Retiring)
        flag = "--target" if command == "transpile" else "--backend"
        out = str(tmp_path / f"{command}_{device}")
        result = CliRunner().invoke(app, [command, bundle, flag, device, "--out", out])
        assert result.exit_code == 1, result.output
        assert result.output.count("\n") == 1, result.output  # one line
        assert why in result.output and usable in result.output, result.output
    # the device the account has: its live target, from the same service; fake_fez: the
    # snapshot, credentials or not
    for name, source in (("ibm_fez", "live: IBM Quantum ibm_fez"), ("fake_fez", "FakeFez")):
        result = CliRunner().invoke(app, ["transpile", bundle, "--target", name, "--out", out])
        assert result.exit_code == 0 and source in result.output, result.output


def test_without_credentials_an_unknown_ibm_name_gets_a_did_you_mean(no_account):
    with pytest.raises(BackendNotFoundError, match="did you mean ibm_nighthawk"):
        get_backend("ibm_nighthwak")
    with pytest.raises(BackendNotFoundError, match="did you mean ibm_marrakesh"):
        get_backend("ibm_marakesh?local=1")


def test_refused_credentials_never_echo_the_token(monkeypatch):
    monkeypatch.setenv("QISKIT_IBM_TOKEN", "secret-token-123")

    def refuse():
        raise RequestsApiError("401 Client Error: Unauthorized", status_code=401)

    monkeypatch.setattr("qiskit_ibm_runtime.QiskitRuntimeService", refuse)
    with pytest.raises(PermanentBackendError, match="refused the credentials") as info:
        get_backend("ibm_fez")
    assert "secret-token-123" not in str(info.value)


def test_malformed_credentials_are_one_line_naming_what_to_check(no_account, monkeypatch):
    monkeypatch.setenv("QISKIT_IBM_TOKEN", "secret-token-456")
    monkeypatch.setenv("QISKIT_IBM_INSTANCE", "crn:not-a-crn")
    with pytest.raises(CredentialsError, match="credentials are malformed") as info:
        get_backend("ibm_fez")
    assert "QISKIT_IBM_INSTANCE" in str(info.value) and "secret-token-456" not in str(info.value)


def test_error_suppression_options_reach_sampler_v2_and_the_identity(monkeypatch):
    monkeypatch.setattr("qiskit_ibm_runtime.QiskitRuntimeService", MockService)
    backend = get_backend("ibm_fez?twirling=all&dd=XY4")
    assert backend.service is not None  # the live path, mocked
    sampler = backend._batch_sampler()  # SamplerV2(mode=Batch(device)) as submit makes it
    assert type(sampler).__name__ == "SamplerV2"
    twirling, dd = sampler.options.twirling, sampler.options.dynamical_decoupling
    assert (twirling.enable_gates, twirling.enable_measure) == (True, True)
    assert (dd.enable, dd.sequence_type) == (True, "XY4")
    plain = get_backend("ibm_fez")
    assert plain._batch_sampler().options.dynamical_decoupling.enable is not True
    identity = backend_identity(backend)
    assert (identity["twirling"], identity["dd"], identity["local"]) == ("all", "XY4", False)
    assert identity_key(backend) != identity_key(plain)
    local = get_backend("ibm_fez?local=1&twirling=measure")  # local mode accepts and records
    assert local._batch_sampler().options.twirling.enable_measure is True
    assert backend_identity(local)["twirling"] == "measure"
    with pytest.raises(ValueError, match="dd must be one of none, XX, XpXm, XY4"):
        get_backend("ibm_fez?local=1&dd=XZ")


def test_a_qpu_seconds_budget_stops_the_run_and_reaches_sampler_v2_as_max_execution_time():
    from qvit_hw.errors import BudgetExhausted

    service = MockService()
    qnn, _ = call(rows=96)
    scheduler, sampler = mocked(service, job_size=16)  # 16 executions (k = 2: 32 rows) per job
    seconds = scheduler.scheduler.job_cost(scheduler.plan([qnn]).jobs[0])[1]
    from qvit_hw.jobs.cost import JOB_OVERHEAD

    # rep delay + circuit per shot, and IBM's per-job overhead
    expected = 16 * SHOTS * (250e-6 + 1e-6) + JOB_OVERHEAD["ibm"]
    assert seconds == pytest.approx(expected, rel=0.1)
    budget = 2.5 * seconds  # two jobs fit, the third would pass it
    scheduler, sampler = mocked(service, job_size=16, max_qpu_seconds=budget)
    with pytest.raises(BudgetExhausted, match="would take the run past --max-qpu-seconds"):
        scheduler.run([qnn])
    assert sampler.runs == 2  # stopped before paying for the third
    assert sampler.limits == [int(budget), int(budget - seconds)]  # the remainder, each time
    assert scheduler.backend.paid  # a live service: `qvit-hw run` asks first


def test_the_services_own_qpu_seconds_are_kept_beside_the_estimate_and_survive_resume():
    from qvit_hw.jobs import Journal

    journal = Journal()
    scheduler, _ = mocked(MockService(), journal=journal, job_size=4)
    qnn, _ = call(rows=16)  # 8 executions: 2 jobs of one pub each
    scheduler.run([qnn])
    stats = scheduler.stats
    assert (stats.qpu_seconds, stats.qpu_seconds_service_estimate) == (4.0, 3.0)
    from qvit_hw.jobs.cost import JOB_OVERHEAD

    # 8 executions of SHOTS at about 251 us, and IBM's per-job overhead for each of 2 jobs
    expected = 8 * SHOTS * 251e-6 + 2 * JOB_OVERHEAD["ibm"]
    assert stats.qpu_seconds_estimated == pytest.approx(expected, rel=0.1)
    again, sampler = mocked(MockService(), journal=journal, job_size=4)
    again.run([qnn])  # from the journal: nothing submitted, the same numbers
    assert sampler.runs == 0 and again.stats.reused == 2
    assert (again.stats.qpu_seconds, again.stats.qpu_seconds_service_estimate) == (4.0, 3.0)


def test_a_job_whose_id_the_journal_lost_is_found_by_its_ibm_job_tag(tmp_path):
    """The run stopped between the service accepting a job and the journal recording its
    id: --resume finds it by the tag it was submitted with and pays nothing again."""
    service = MockService()
    journal = Journal(tmp_path / "journal.sqlite")
    first, _ = mocked(service, journal=journal)
    qnn, exact = call()
    (job,) = first.plan([qnn]).jobs
    journal.intent(job.payload, first.backend.name, job.executions, SHOTS)
    job_id = first.backend.submit(job.pubs, tag=job.payload)  # paid, id never journaled
    assert service.store[job_id].tags == [job.payload]
    resumed, again = mocked(service, journal=journal)
    (estimates,) = resumed.run([qnn])
    assert again.runs == 0 and resumed.stats.reattached == 1
    assert journal.get(job.payload).job_id == job_id
    assert within_4_sigma(estimates.z, exact)
    assert resumed.backend.find_submitted("no-such-tag") is None
