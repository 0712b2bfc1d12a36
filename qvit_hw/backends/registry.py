"""Backends by name: ``get_backend("fake_brisbane")``, ``get_backend("mock?transient=0.3")``.

A name may carry options as a query string (``shots?seed=3``); keyword arguments add to
and override them. Hardware families are matched by prefix: ``ibm_<device>``,
``rigetti_<qpu>``, ``rigetti_qvm``, ``pennylane:<device>`` and ``braket:<device>``; any other
unknown name raises
BackendNotFoundError with did-you-mean suggestions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from ..errors import BackendNotFoundError, PermanentBackendError
from .base import Backend
from .options import BackendOptions

DEFAULT_BACKEND = "statevector"
HARDWARE_EXAMPLES = ("rigetti_qvm", "braket:local", "braket:ankaa-3")


@dataclass(frozen=True)
class BackendInfo:
    """One row of `qvit-hw backends`."""

    name: str
    description: str
    needs: str
    options: str
    available: bool = True


def backend_infos() -> list[BackendInfo]:
    from ..devices.ibm import fake_device_classes

    fakes = list(fake_device_classes())
    shown = ", ".join(n for n in ("fake_fez", "fake_marrakesh", "fake_nighthawk") if n in fakes)
    mock_options = (
        "inner, seed, transient, result_transient, fail, hang, latency, state, max_circuits, "
        "max_shots, max_executions, paid"
    )
    return [
        BackendInfo("statevector", "exact <Z>, no shot noise (default)", "-", "-"),
        BackendInfo("shots", "ideal sampling of the exact distribution", "-", "seed"),
        BackendInfo(
            "fake_<device>",
            f"an IBM device snapshot's noise and coupling map (fast exact noisy engine, or "
            f"Aer); every device of qiskit-ibm-runtime's fake provider ({len(fakes)}: {shown}, "
            "...; `qvit-hw devices` lists them)",
            "-",
            "seed, noise=0|1, engine=fast|aer, noise_model=PATH (an Aer NoiseModel's JSON), "
            "exact=1 (exact noisy <Z>, no shots)",
        ),
        BackendInfo("mock", "seeded fault injection around another backend", "-", mock_options),
        BackendInfo(
            "surrogate:DIR",
            "a device measured once by `qvit-hw characterize --out DIR`: every QNN's fitted "
            "function, evaluated offline (no job submitted)",
            "-",
            "device=NAME (refused unless DIR measured it)",
        ),
        BackendInfo(
            "ibm_<device>",
            "IBM Quantum, SamplerV2 in batch mode (local=1: the fake snapshot, same code path)",
            "QISKIT_IBM_TOKEN or a saved account",
            "local=0|1, seed",
        ),
        BackendInfo(
            "rigetti_<qpu>",
            "Rigetti QCS through pyquil (e.g. rigetti_ankaa_3)",
            "QCS credentials, quilc -S",
            "-",
        ),
        BackendInfo("rigetti_qvm", "Rigetti qvm (local)", "qvm -S and quilc -S", "noise=0|1"),
        BackendInfo(
            "pennylane:<device>",
            "any PennyLane device (e.g. default.qubit, qiskit.aer, rigetti.numpy_wavefunction)",
            "its plugin",
            "shots, python=PATH (device in another interpreter), device options",
        ),
        BackendInfo(
            "braket:local",
            "Amazon Braket's local simulator (OpenQASM 3 in Braket's dialect)",
            "the braket extra",
            "exact=0|1 (Braket's exact expectation values)",
        ),
        BackendInfo(
            "braket:<device>",
            "a QPU through Amazon Braket: ankaa-3, cepheus-1-108q (verbatim, physical qubits "
            "kept), sv1; or its device ARN",
            "AWS credentials (standard chain), the braket extra",
            "tasks_per_job, max_parallel",
        ),
    ]


def readiness(name: str) -> str:
    """Whether the backends a `backend_infos` row names can run here now: "ready", or what
    they still need ("needs credentials", "needs servers", "needs credentials and servers",
    "needs the <x> package"). A real check: credentials as the clients find them (no
    network), the local Rigetti servers by a TCP connect to their ports on this machine."""
    from importlib.util import find_spec

    try:
        if name in ("statevector", "shots", "fake_<device>", "mock"):
            return "ready"
        if name == "ibm_<device>":
            from ..devices.ibm import has_credentials

            return "ready" if has_credentials() else "needs credentials"
        if name.startswith("rigetti_"):
            if find_spec("pyquil") is None:
                return "needs the rigetti extra"
            from .rigetti import QUILC_PORT, QVM_PORT, servers_missing

            if name == "rigetti_qvm":
                return "needs servers" if servers_missing((QVM_PORT, QUILC_PORT)) else "ready"
            from ..devices.rigetti import has_credentials as qcs

            checks = (("credentials", qcs()), ("servers", not servers_missing((QUILC_PORT,))))
            need = [what for what, ok in checks if not ok]
            return f"needs {' and '.join(need)}" if need else "ready"
        if name.startswith("pennylane:"):
            return "ready" if find_spec("pennylane") else "needs the pennylane package"
        if name.startswith("braket:"):
            if find_spec("braket") is None:
                return "needs the braket extra"
            if name == "braket:local":
                return "ready"
            from ..devices.braket import has_credentials as aws

            return "ready" if aws() else "needs credentials"
    except Exception as exc:  # a check that fails says so rather than guessing
        return f"unknown ({type(exc).__name__})"
    return "ready"


def parse_name(text: str) -> tuple[str, dict[str, str]]:
    """``"mock?transient=0.3&seed=1"`` -> ("mock", {"transient": "0.3", "seed": "1"})."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"backend: expected a name, got {text!r}")
    base, _, query = text.strip().partition("?")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError as exc:
        raise ValueError(f"backend: cannot read the options in {text!r} ({exc})") from exc
    return base.lower(), options


def get_backend(name: str = DEFAULT_BACKEND, **options: Any) -> Backend:
    """The backend called ``name``, configured by the name's query string and ``options``."""
    if isinstance(name, str) and name.strip().lower().startswith("surrogate:"):
        return _surrogate(name.strip())  # its folder keeps its case
    base, query = parse_name(name)
    return _factory(base)(base, BackendOptions(base, {**query, **options}))


def _factory(base: str) -> Callable[[str, BackendOptions], Backend]:
    from ..devices import catalog, ibm

    if base in _LOCAL:
        return _LOCAL[base]
    if base in ibm.fake_device_classes():
        return _fake
    if base.startswith("ibm_"):
        if base not in catalog.names() and not ibm.has_credentials():  # the service decides
            raise BackendNotFoundError(base, catalog.suggestions(base))  # with credentials
        return _ibm
    if base.startswith("rigetti_"):
        return _rigetti
    if base.startswith("pennylane:"):
        return _pennylane
    if base.startswith("braket:"):
        return _braket
    known = [*_LOCAL, *ibm.fake_device_classes(), *catalog.names(), *HARDWARE_EXAMPLES]
    raise BackendNotFoundError(base, catalog.suggestions(base, known))


def _statevector(base: str, opts: BackendOptions) -> Backend:
    from .statevector import StatevectorBackend

    opts.done()
    return StatevectorBackend()


def _shots(base: str, opts: BackendOptions) -> Backend:
    from .shots import ShotsBackend

    seed = opts.int("seed", 0)
    opts.done()
    return ShotsBackend(seed=seed)


def _fake(base: str, opts: BackendOptions) -> Backend:
    from .fake import FakeDeviceBackend

    seed, noise = opts.int("seed", 0), opts.bool("noise", True)
    engine = opts.raw("engine", "fast")  # fast | aer; FakeDeviceBackend names the option
    noise_model = opts.raw("noise_model")  # a path (or, as a keyword, a NoiseModel)
    exact = opts.bool("exact", False)
    opts.done()
    return FakeDeviceBackend(
        base, seed=seed, noise=noise, engine=engine, noise_model=noise_model, exact=exact
    )


def _mock(base: str, opts: BackendOptions) -> Backend:
    from .mock import MockBackend, MockOptions

    options = MockOptions.parse(opts.rest())
    return MockBackend(options, inner_backend=get_backend(options.inner))


def _ibm(base: str, opts: BackendOptions) -> Backend:
    from .ibm import open_ibm

    return open_ibm(base, opts)


def _rigetti(base: str, opts: BackendOptions) -> Backend:
    from .rigetti import open_rigetti

    return open_rigetti(base, opts)


def _pennylane(base: str, opts: BackendOptions) -> Backend:
    from .pennylane import open_pennylane

    return open_pennylane(base, opts)


def _braket(base: str, opts: BackendOptions) -> Backend:
    from .braket import open_braket

    return open_braket(base, opts)


_LOCAL: dict[str, Callable[[str, BackendOptions], Backend]] = {
    "statevector": _statevector,
    "shots": _shots,
    "mock": _mock,
}


def _surrogate(name: str) -> Backend:
    """``surrogate:DIR`` or ``surrogate:DIR?device=NAME``, on the measured device's target."""
    from .surrogate import SurrogateBackend, read_characterization

    folder, _, query = name[len("surrogate:") :].partition("?")
    opts = BackendOptions("surrogate", dict(parse_qsl(query, keep_blank_values=True)))
    device = opts.str("device", None)
    opts.done()
    if not folder:
        raise ValueError("backend: surrogate:DIR needs the folder `qvit-hw characterize` wrote")
    record = read_characterization(folder)
    if device is not None and device != record["device"]:
        raise PermanentBackendError(
            f"surrogate:{folder} measured {record['device']}, not {device}: characterize "
            f"{device} for a surrogate of it"
        )
    measured = get_backend(record["backend"])
    return SurrogateBackend(folder, record, measured.target.device)
