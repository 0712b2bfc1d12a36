"""IBM Quantum devices: fake-backend snapshots, the live target, credentials, errors.

One credential rule for every command (`transpile`, `run`, `pennylane:qiskit.remote`):
whatever ``QiskitRuntimeService()`` finds, i.e. ``QISKIT_IBM_TOKEN`` (with
``QISKIT_IBM_INSTANCE`` / ``QISKIT_IBM_CHANNEL`` / ``QISKIT_IBM_URL``) or an account saved
once with ``QiskitRuntimeService.save_account``. `has_credentials` asks the same account
manager without touching the network; `connect` opens the service. This module never
reads, logs or stores the token.

Runtime errors become our two kinds (`classify`): transient (retried by the scheduler):
HTTP 5xx and 429, connection failures, ``IBMApiError``, ``RuntimeJobTimeoutError`` (the
job is still running: poll again, never resubmit), and job failures whose code the IBM
error registry tells to retry (`RETRYABLE_CODES`). Permanent: authentication,
``IBMInputValueError``, validation failures, cancelled jobs and any other job failure;
``RuntimeJobMaxTimeoutError`` is a `JobTooLargeError` that says to shrink the job.
"""

from __future__ import annotations

import inspect
import re
from datetime import date
from functools import cache
from importlib import metadata
from typing import Any

from ..errors import (
    BackendError,
    BackendNotFoundError,
    CredentialsError,
    JobTooLargeError,
    PermanentBackendError,
    TransientBackendError,
    TranspileError,
    one_line,
)
from .naming import suggestions
from .target import DeviceTarget, from_qiskit_target

RETIRED = {"ibm_brisbane": "2025-11-03"}  # retirement dates the project has checked
IBM_MAX_EXECUTIONS = 10_000_000  # circuits x shots per Sampler job
# IBM Quantum error code registry: codes whose solution is "retry" or "wait" (internal
# error, converter / validation / backend / queue hiccups, concurrent-job limit, request
# rate limit, pending-job limit)
RETRYABLE_CODES = frozenset({1000, 1006, 1008, 1010, 1011, 1012, 1202, 3458})
MAX_TIME_CODE = 1305  # the job ran past the maximum execution time
NO_CREDENTIALS = (
    "{name}: no IBM Quantum credentials; set QISKIT_IBM_TOKEN (and QISKIT_IBM_INSTANCE, "
    "QISKIT_IBM_CHANNEL where needed) or save an account once with "
    "QiskitRuntimeService.save_account(token=..., instance=...); for a local noisy run "
    "use --backend {fake}"
)
_CODE = re.compile(r"[Ee]rror code:? ?(\d{4})")


# --- snapshots ----------------------------------------------------------------------------


@cache
def fake_device_classes() -> dict[str, str]:
    """Backend name -> class name of every V2 fake backend (``fake_brisbane``: FakeBrisbane)."""
    from qiskit_ibm_runtime import fake_provider
    from qiskit_ibm_runtime.fake_provider.fake_backend import FakeBackendV2

    out = {}
    for cls_name, cls in vars(fake_provider).items():
        if inspect.isclass(cls) and issubclass(cls, FakeBackendV2) and cls is not FakeBackendV2:
            stem = cls_name.removeprefix("Fake").removesuffix("V2").removesuffix("Backend")
            out[f"fake_{stem.lower()}"] = cls_name
    return dict(sorted(out.items()))


def fake_backend(name: str) -> Any:
    """A new fake backend: ``fake_brisbane`` or ``ibm_brisbane`` -> FakeBrisbane()."""
    from qiskit_ibm_runtime import fake_provider

    fake = fake_name_of(name)
    classes = fake_device_classes()
    if fake not in classes:
        raise BackendNotFoundError(name, suggestions(fake, classes))
    return getattr(fake_provider, classes[fake])()


def fake_name_of(name: str) -> str:
    """``ibm_brisbane`` -> ``fake_brisbane`` (fake names pass through)."""
    return name if name.startswith("fake_") else "fake_" + name.removeprefix("ibm_")


def fake_hint(name: str) -> str:
    """The fake backend to suggest in place of ``ibm_<device>``."""
    fake = fake_name_of(name)
    return fake if fake in fake_device_classes() else "fake_<device> (e.g. fake_brisbane)"


def snapshot(name: str) -> DeviceTarget:
    """The offline snapshot of ``ibm_<device>``: the fake backend qiskit-ibm-runtime ships
    for it (any device of its fake provider), with its calibration date."""
    backend = fake_backend(name)
    props = backend.properties()
    when = props.last_update_date.date().isoformat() if props is not None else "unknown date"
    version = metadata.version("qiskit-ibm-runtime")
    cls = type(backend).__name__
    source = f"snapshot: qiskit-ibm-runtime {version} {cls}, calibration of {when}"
    if name in RETIRED:
        source += f" (device retired {RETIRED[name]}; kept as the reference snapshot)"
    return from_qiskit_target(name, backend.target, source)


# --- the live service ---------------------------------------------------------------------


def has_credentials() -> bool:
    """Whether `connect` would find credentials (environment or saved account); no network."""
    from qiskit_ibm_runtime.accounts import AccountManager, AccountNotFoundError

    try:
        AccountManager.get()
    except AccountNotFoundError:
        return False
    except Exception:  # a malformed account: `connect` says what is wrong with it
        return True
    return True


def connect(name: str) -> Any:
    """``QiskitRuntimeService()`` with the user's credentials, or a one-line error."""
    from qiskit_ibm_runtime import QiskitRuntimeService
    from qiskit_ibm_runtime.accounts import AccountNotFoundError, InvalidAccountError

    try:
        return QiskitRuntimeService()
    except AccountNotFoundError as exc:
        raise CredentialsError(NO_CREDENTIALS.format(name=name, fake=fake_hint(name))) from exc
    except (AttributeError, TypeError, ValueError, InvalidAccountError) as exc:
        # the account manager's own parsing (e.g. of a CRN) fails this way, before any request
        raise CredentialsError(
            f"{name}: the IBM Quantum credentials are malformed ({one_line(exc)}); check "
            "QISKIT_IBM_INSTANCE (a CRN 'crn:v1:bluemix:public:quantum-computing:...' or an "
            "instance name), QISKIT_IBM_TOKEN and QISKIT_IBM_CHANNEL, or the saved account"
        ) from exc
    except Exception as exc:
        raise classify(exc, f"{name}: connecting to IBM Quantum") from exc


def live_device(service: Any, name: str) -> Any:
    """The live backend ``name``; a device the account cannot use (the service does not
    know it, or reports it retired) is one line naming those it can."""
    from qiskit.providers.exceptions import QiskitBackendNotFoundError

    try:
        device = service.backend(name)
    except QiskitBackendNotFoundError as exc:
        raise not_usable(service, name) from exc
    except Exception as exc:
        raise classify(exc, f"{name}: looking up the device") from exc
    if type(device).__name__ == "IBMRetiredBackend":  # the service knows it, retired
        raise not_usable(service, name, retired=True)
    return device


def not_usable(service: Any, name: str, *, retired: bool = False) -> BackendNotFoundError:
    """BackendNotFoundError for a device the account cannot use, naming those it can."""
    try:
        usable = sorted(b.name for b in service.backends())
    except Exception:  # listing is a courtesy; the error stands either way
        usable = []
    if name in RETIRED:
        why = f" ({name} was retired on {RETIRED[name]})"
    else:
        why = f" ({name} is retired)" if retired else ""
    error = BackendNotFoundError(name, usable)
    error.args = (
        f"{name}: this IBM Quantum account cannot use it{why}; devices it can use: "
        f"{', '.join(usable) or 'none'} (or offline: {fake_hint(name)}, transpile --snapshot)",
    )
    return error


def live_target(name: str) -> DeviceTarget:
    """The live device's target (needs credentials: CredentialsError without them, before
    any network attempt)."""
    if not has_credentials():
        raise CredentialsError(NO_CREDENTIALS.format(name=name, fake=fake_hint(name)))
    service = connect(name)
    try:
        # a retired or unknown device: BackendNotFoundError, one line naming the account's
        target = live_device(service, name).target
    except BackendNotFoundError:
        raise
    except Exception as exc:  # the runtime client raises many unrelated types
        cause = exc.__cause__ if isinstance(exc, BackendError) and exc.__cause__ else exc
        raise TranspileError(
            f"{name}: could not read the live target ({one_line(cause)}); use the offline "
            "snapshot with --snapshot (live=False)"
        ) from exc
    return from_qiskit_target(name, target, f"live: IBM Quantum {name}, read {date.today()}")


# --- errors -------------------------------------------------------------------------------


def classify(exc: BaseException, what: str) -> BackendError:
    """The `BackendError` an exception of qiskit-ibm-runtime (or the network) stands for."""
    from qiskit_ibm_runtime.api.exceptions import RequestsApiError
    from qiskit_ibm_runtime.exceptions import (
        IBMAccountError,
        IBMApiError,
        IBMNotAuthorizedError,
        RuntimeInvalidStateError,
        RuntimeJobFailureError,
        RuntimeJobMaxTimeoutError,
        RuntimeJobTimeoutError,
    )
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import Timeout

    if isinstance(exc, BackendError):
        return exc
    text = one_line(exc)
    if isinstance(exc, RuntimeJobMaxTimeoutError) or error_code(text) == MAX_TIME_CODE:
        return JobTooLargeError(
            f"{what}: the job ran past IBM's maximum execution time ({text}); shrink the "
            "job with a smaller --job-size (or fewer --shots)"
        )
    if isinstance(exc, RuntimeJobTimeoutError):  # waiting timed out; the job goes on
        return TransientBackendError(f"{what}: the job is still running ({text}); polling again")
    if isinstance(exc, RuntimeJobFailureError):
        if error_code(text) in RETRYABLE_CODES:
            return TransientBackendError(f"{what}: the job failed with a retryable error ({text})")
        return PermanentBackendError(f"{what}: the job failed ({text})")
    if isinstance(exc, RequestsApiError):
        status = getattr(exc, "status_code", -1)
        if status in (401, 403):
            return PermanentBackendError(
                f"{what}: IBM Quantum refused the credentials (HTTP {status}); check "
                "QISKIT_IBM_TOKEN / QISKIT_IBM_INSTANCE or the saved account"
            )
        if status == -1 or status == 429 or status >= 500 or error_code(text) in RETRYABLE_CODES:
            return TransientBackendError(f"{what}: IBM Quantum is not answering ({text})")
        return PermanentBackendError(f"{what}: IBM Quantum rejected the request ({text})")
    if isinstance(exc, IBMApiError | RequestsConnectionError | Timeout | ConnectionError):
        return TransientBackendError(f"{what}: IBM Quantum is not answering ({text})")
    if isinstance(exc, IBMNotAuthorizedError | IBMAccountError):
        return PermanentBackendError(f"{what}: not authorised ({text})")
    if isinstance(exc, RuntimeInvalidStateError):
        return PermanentBackendError(f"{what}: {text}")
    # IBMInputValueError, validation (ValueError from the Sampler's ISA check), the rest
    return PermanentBackendError(f"{what}: {text}")


def error_code(text: str) -> int | None:
    """The 4-digit IBM error code in a message, if any."""
    match = _CODE.search(text)
    return int(match.group(1)) if match else None
