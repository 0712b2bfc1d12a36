"""Amazon Braket: the devices reachable through it, AWS credentials, Braket's errors.

A Braket QPU is known by its device ARN or a short name (``ankaa-3``); each maps onto the
device snapshot the scheduler transpiles and packs for (``rigetti_ankaa_3``: the same chip
QCS reaches). Credentials come from the standard AWS chain (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``~/.aws/credentials``, SSO, instance roles),
read by boto3 without touching the network. `classify` maps Braket's and botocore's
exceptions onto `TransientBackendError` (a retry may fix it) or `PermanentBackendError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BackendError, CredentialsError, PermanentBackendError, TransientBackendError


@dataclass(frozen=True)
class BraketDevice:
    """A device reachable through Braket: its ARN and the snapshot qvit-hw compiles for
    (None: a simulator that runs the logical circuit)."""

    short: str
    arn: str
    target: str | None

    @property
    def region(self) -> str:
        return self.arn.split(":")[3] or "us-east-1"


BRAKET_DEVICES = {
    d.short: d
    for d in (
        BraketDevice("ankaa-3", "arn:aws:braket:us-west-1::device/qpu/rigetti/Ankaa-3",
                     "rigetti_ankaa_3"),
        BraketDevice("cepheus-1-108q",
                     "arn:aws:braket:us-west-1::device/qpu/rigetti/Cepheus-1-108Q",
                     "rigetti_cepheus_1_108q"),
        BraketDevice("sv1", "arn:aws:braket:::device/quantum-simulator/amazon/sv1", None),
    )
}  # fmt: skip
CREDENTIALS_HINT = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or run `aws configure`; "
    "braket:local runs offline without them"
)
# botocore ClientError codes a retry may fix (throttling, service-side trouble)
TRANSIENT_CODES = frozenset({
    "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
    "InternalServiceException", "InternalServerException", "InternalFailure",
    "ServiceUnavailable", "ServiceUnavailableException", "RequestTimeout",
    "RequestTimeoutException", "DeviceOfflineException", "ServiceQuotaExceededException",
})  # fmt: skip


def find_device(name: str) -> BraketDevice:
    """``ankaa-3``, ``ankaa_3``, ``rigetti_ankaa_3`` or the device ARN (any case)."""
    key = name.strip().lower()
    for device in BRAKET_DEVICES.values():
        aliases = {device.short, device.short.replace("-", "_"), device.arn.lower()}
        if device.target:
            aliases.add(device.target)
        if key in aliases:
            return device
    import difflib

    close = difflib.get_close_matches(key, list(BRAKET_DEVICES), n=2, cutoff=0.5)
    hint = f"; did you mean {' or '.join(f'braket:{c}' for c in close)}?" if close else ""
    known = ", ".join(f"braket:{d}" for d in ("local", *BRAKET_DEVICES))
    raise PermanentBackendError(f"unknown Braket device {name!r}{hint} (known: {known})")


def has_credentials() -> bool:
    """Whether the standard AWS chain finds credentials (no network call)."""
    try:
        import boto3

        return boto3.Session().get_credentials() is not None
    except Exception:  # a broken config file reads as no credentials
        return False


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def classify(exc: BaseException, what: str) -> BackendError:
    """One of our errors for a Braket / botocore exception, its message on one line."""
    from ..errors import one_line

    name, code = type(exc).__name__, _error_code(exc)
    text = f"{what}: {name}{f' {code}' if code else ''}: {one_line(exc)}"
    if name in ("NoCredentialsError", "PartialCredentialsError", "NoRegionError"):
        return CredentialsError(f"{what}: no AWS credentials ({CREDENTIALS_HINT})")
    if code in TRANSIENT_CODES or name in (
        "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
        "ConnectionClosedError", "ConnectionError", "TimeoutError",
    ):  # fmt: skip
        return TransientBackendError(text)
    status = getattr(exc, "response", {}) or {}
    http = (
        status.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(status, dict)
        else None
    )
    if isinstance(http, int) and http >= 500:
        return TransientBackendError(text)
    return PermanentBackendError(text)
