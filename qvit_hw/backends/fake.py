"""`fake_<device>`: an IBM device snapshot's noise model and coupling map, simulated.

Every V2 fake backend of ``qiskit_ibm_runtime.fake_provider`` is available under its own
name (``fake_brisbane``, ``fake_torino``, ``fake_fez``, ...). The backend takes ISA circuits
for the device, as the real one does, and keeps each packed copy on its physical qubits
with their noise: a packed circuit is split into its independent copies (qubits linked by
2-qubit gates), and each copy is simulated over the whole chip with the noise of its own
qubits. Two engines, the same noise model (``NoiseModel.from_backend(fake)``, built once
per process and device):

- ``engine=fast`` (default): `noisy.NoisyTemplate` compiles each copy once with the
  model's channels and gives the exact outcome distribution of every row at once; shots
  are drawn from it (`noisy.sample_counts`), seeded by the pub's content.
- ``engine=aer``: each copy runs as its own circuit through Aer (``AerSimulator.
  from_backend(fake)``, which drops the idle qubits), all copies of all rows of a job in
  one call (a few hundred rows per second).

``noise_model=PATH`` (or ``FakeDeviceBackend(name, noise_model=model)`` with an Aer
`NoiseModel`) replaces the device's model in both engines; a file is the JSON of
``json.dump(model.to_dict(serializable=True), f)`` (see `load_noise_model`). Limits are
IBM's: at most ``max_shots`` shots per circuit and 10M executions (circuits x shots) per
job. ``noise=False`` keeps the device's layout and gates but simulates them ideally.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..devices.ibm import fake_backend, fake_device_classes
from ..errors import PermanentBackendError, one_line
from .base import (
    SAMPLE_ROWS,
    SAMPLE_SHOTS,
    CircuitCache,
    LocalBackend,
    Pub,
    PubResult,
    outcome_bits,
    pub_seed,
)
from .ibm import calibration_date, ibm_target
from .noisy import NoisyTemplate, sample_counts
from .simulate import cached_components

__all__ = ["ENGINES", "FakeDeviceBackend", "fake_device_classes", "load_noise_model"]

ENGINES = ("fast", "aer")

if TYPE_CHECKING:
    from qiskit import QuantumCircuit


class FakeDeviceBackend(LocalBackend):
    """A fake IBM device simulated with its noise model (``noise=False``: ideally).

    ``engine``: ``"fast"`` (the exact noisy engine, then sampling) or ``"aer"``.
    ``noise_model``: a qiskit_aer `NoiseModel`, or the path of one saved as JSON, used in
    place of the device's (None: the device's); do not change a model once it is given.
    ``exact``: return each row's exact noisy <Z> (the fast engine's outcome probabilities,
    no shots drawn): the value a device's fit should converge to.
    """

    def __init__(
        self,
        name: str,
        *,
        seed: int = 0,
        noise: bool = True,
        engine: str = "fast",
        noise_model: Any = None,
        exact: bool = False,
    ) -> None:
        self.seed = int(seed)
        self.exact = bool(exact)
        self.noise = bool(noise)
        self.engine = parse_engine(engine, f"backend {name}: option engine")
        if self.exact and self.engine != "fast":
            raise ValueError(f"backend {name}: exact=1 needs the fast engine, not {engine}")
        self._user_model: Any = None
        self._user_digest: str | None = None
        if noise_model is not None:
            what = f"backend {name}: option noise_model"
            if not self.noise:
                raise ValueError(f"{what}: noise=0 simulates ideally; it takes no noise model")
            if isinstance(noise_model, str | os.PathLike):
                self._user_model, self._user_digest = load_noise_model(noise_model, what)
            elif _is_noise_model(noise_model):
                self._user_model = noise_model
            else:
                raise ValueError(
                    f"{what} must be a qiskit_aer NoiseModel or the path of one saved as "
                    f"JSON, got {type(noise_model).__name__}"
                )
        self.device = fake_backend(name)
        source = f"snapshot: {type(self.device).__name__}, calibration of "
        super().__init__(
            name, ibm_target(name, self.device, source + calibration_date(self.device))
        )
        self._simulator: Any = None
        self._copies_of: CircuitCache[list[_Copy]] = CircuitCache()
        self._templates_of: CircuitCache[list[NoisyTemplate]] = CircuitCache()

    def _result_options(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "noise": self.noise,
            "engine": self.engine,
            "noise_model": self.noise_model_id,
            **({"exact": True} if self.exact else {}),
        }

    @property
    def noise_model(self) -> Any:
        """The Aer `NoiseModel` simulated (None: ideal)."""
        if not self.noise:
            return None
        return self._user_model if self._user_model is not None else device_noise_model(self.name)

    @property
    def noise_model_id(self) -> str | None:
        """``"device"`` (the snapshot's model), ``"sha256:..."`` of a user's model (its
        file, or its JSON), None when ideal."""
        if not self.noise:
            return None
        if self._user_model is None:
            return "device"
        if self._user_digest is None:
            self._user_digest = noise_model_digest(self._user_model)
        return self._user_digest

    def readout_errors(self) -> dict[int, tuple[float, float]]:
        """(p(1|0), p(0|1)) per qubit: the device's calibration, or a user model's own
        readout errors (the qubits it has one for)."""
        if self._user_model is None:
            return super().readout_errors()
        from .noisy import _readout_error

        out = {}
        for q in range(self.device.num_qubits):
            confusion = _readout_error(self._user_model, q)
            if confusion is not None:
                out[q] = (float(confusion[0, 1]), float(confusion[1, 0]))
        return out

    def _check(self, pubs: Sequence[Pub]) -> None:
        super()._check(pubs)
        for pub in pubs:  # the ISA (and the engine's support) of every pub before any runs
            self._copies(pub.circuit)
            if self.engine == "fast":
                self._templates(pub.circuit)

    # --- simulation ----------------------------------------------------------------------

    def simulator(self) -> Any:
        """The Aer simulator of ``engine=aer``."""
        if self._simulator is None:
            from qiskit_aer import AerSimulator

            if not self.noise:
                self._simulator = AerSimulator()
            elif self._user_model is not None:
                self._simulator = AerSimulator.from_backend(
                    self.device, noise_model=self._user_model
                )
            else:
                self._simulator = _noisy_simulator(self.name)
        return self._simulator

    def _copies(self, circuit: QuantumCircuit) -> list[_Copy]:
        """The ISA-checked independent copies of a packed circuit (cached per template)."""

        def build(qc: QuantumCircuit) -> list[_Copy]:
            _check_isa(qc, self.device.target, self.name)
            return _split(qc)

        return self._copies_of.get(circuit, build)

    def _templates(self, circuit: QuantumCircuit) -> list[NoisyTemplate]:
        """One compiled `NoisyTemplate` per copy of a packed circuit (cached per template)."""

        def build(qc: QuantumCircuit) -> list[NoisyTemplate]:
            model = self.noise_model
            try:
                return [NoisyTemplate.build(cp.circuit, model) for cp in self._copies(qc)]
            except ValueError as exc:
                raise PermanentBackendError(
                    f"{self.name}: the fast noisy engine cannot run {qc.name}: "
                    f"{one_line(exc)} (engine=aer runs it through Aer)"
                ) from exc

        return self._templates_of.get(circuit, build)

    def _run(self, pub: Pub) -> PubResult:
        return self._run_fast(pub) if self.engine == "fast" else self._run_aer(pub)

    def _run_fast(self, pub: Pub) -> PubResult:
        copies, templates = self._copies(pub.circuit), self._templates(pub.circuit)
        width = pub.circuit.num_clbits
        ones = np.zeros((pub.rows, width), dtype=np.int64)
        exact_z = np.zeros((pub.rows, width))
        rows = min(SAMPLE_ROWS, pub.rows)  # raw shots kept for the fidelity report
        samples = np.zeros((rows, min(pub.shots, SAMPLE_SHOTS), width), np.uint8)
        rng = np.random.default_rng(pub_seed(self.seed, pub))
        for cp, template in zip(copies, templates, strict=True):
            if not cp.clbits:
                continue
            try:
                if cp.cols.size:
                    probs = template.probabilities(pub.values[:, cp.cols])
                else:  # no parameters: the same distribution for every row
                    one = template.probabilities(np.zeros((1, 0)))
                    probs = np.broadcast_to(one, (pub.rows, one.shape[1]))
            except ValueError as exc:
                raise PermanentBackendError(
                    f"{self.name}: the fast noisy engine failed: {one_line(exc)}"
                ) from exc
            if self.exact:
                k = len(cp.clbits)
                signs = 1 - 2 * ((np.arange(2**k)[:, None] >> np.arange(k)) & 1)  # (2^k, k)
                exact_z[:, cp.clbits] = np.asarray(probs) @ signs
                continue
            local, bits = sample_counts(probs, pub.shots, rng)
            ones[:, cp.clbits] = local
            samples[:, :, cp.clbits] = bits
        if self.exact:
            return PubResult(exact_z, 0)
        return PubResult.from_ones(ones, pub.shots, samples)

    def _run_aer(self, pub: Pub) -> PubResult:
        copies = self._copies(pub.circuit)  # cached by _check
        experiments: list[QuantumCircuit] = []
        binds: list[dict[Any, Any]] = []
        for cp in copies:
            if cp.cols.size:
                experiments.append(cp.circuit)
                columns = pub.values[:, cp.cols].T  # (params, rows)
                binds.append(dict(zip(cp.circuit.parameters, columns, strict=True)))
            else:  # no parameters: one experiment per row
                experiments += [cp.circuit] * pub.rows
                binds += [{}] * pub.rows
        try:
            result = (
                self.simulator()
                .run(
                    experiments,
                    parameter_binds=binds,
                    shots=pub.shots,
                    seed_simulator=pub_seed(self.seed, pub),
                )
                .result()
            )
        except Exception as exc:  # Aer raises AerError and assorted others
            raise PermanentBackendError(f"{self.name}: Aer failed: {exc}") from exc
        if not result.success:
            raise PermanentBackendError(f"{self.name}: Aer failed: {result.status}")
        ones = np.zeros((pub.rows, pub.circuit.num_clbits), dtype=np.int64)
        rows = min(SAMPLE_ROWS, pub.rows)  # raw shots kept for the fidelity report
        samples = np.zeros((rows, min(pub.shots, SAMPLE_SHOTS), pub.circuit.num_clbits), np.uint8)
        rng = np.random.default_rng(pub_seed(self.seed, pub))
        experiment = 0
        for cp in copies:
            local = np.zeros((pub.rows, len(cp.clbits)), dtype=np.int64)
            for row in range(pub.rows):
                counts = result.results[experiment + row].data.counts
                outcomes = np.array([int(k, 16) for k in counts])
                shots = np.array(list(counts.values()))
                local[row] = shots @ ((outcomes[:, None] >> np.arange(len(cp.clbits))) & 1)
                if row < rows:
                    samples[row][:, cp.clbits] = outcome_bits(outcomes, shots, len(cp.clbits), rng)
            ones[:, cp.clbits] = local
            experiment += pub.rows
        return PubResult.from_ones(ones, pub.shots, samples)


@cache
def device_noise_model(name: str) -> Any:
    """``NoiseModel.from_backend`` of the device (building it takes seconds: once per
    process); both engines simulate this object."""
    from qiskit_aer.noise import NoiseModel

    return NoiseModel.from_backend(fake_backend(name))


@cache
def _noisy_simulator(name: str) -> Any:
    """Aer with the device's noise model (`AerSimulator.from_backend` builds the same)."""
    from qiskit_aer import AerSimulator

    model = device_noise_model(name)
    options = {} if model.is_ideal() else {"noise_model": model}
    return AerSimulator.from_backend(fake_backend(name), **options)


def parse_engine(value: Any, what: str = "engine") -> str:
    """``"fast"`` or ``"aer"``; ValueError naming ``what`` for anything else."""
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text not in ENGINES:
        raise ValueError(f"{what} must be one of {', '.join(ENGINES)}, got {value!r}")
    return text


def _is_noise_model(obj: Any) -> bool:
    from qiskit_aer.noise import NoiseModel

    return isinstance(obj, NoiseModel)


def load_noise_model(path: str | os.PathLike[str], what: str = "noise_model") -> tuple[Any, str]:
    """An Aer `NoiseModel` saved with ``json.dump(model.to_dict(serializable=True), f)``,
    and ``"sha256:<hex>"`` of the file. Any problem is one ValueError naming ``what``.

    ``NoiseModel.from_dict`` does not read complex numbers back from that JSON (they are
    [real, imag] pairs there): the matrices of ``kraus`` and ``unitary`` instructions are
    turned back into complex arrays first.
    """
    from qiskit_aer.noise import NoiseModel

    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"{what}: no file {str(file)!r}")
    try:
        data = file.read_bytes()
        obj = json.loads(data)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{what}: cannot read {str(file)!r} as JSON ({one_line(exc)})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("errors"), list):
        raise ValueError(
            f"{what}: {str(file)!r} is not a saved Aer NoiseModel (expected the JSON of "
            "NoiseModel.to_dict(serializable=True): an object with a list of 'errors')"
        )
    try:
        _complex_params(obj)
        with warnings.catch_warnings():  # from_dict is deprecated, and the only reader
            warnings.simplefilter("ignore", DeprecationWarning)
            model = NoiseModel.from_dict(obj)
    except Exception as exc:  # NoiseError, KeyError, TypeError, ...: a damaged file
        raise ValueError(
            f"{what}: {str(file)!r} is not a valid Aer NoiseModel "
            f"({type(exc).__name__}: {one_line(exc)})"
        ) from None
    return model, "sha256:" + hashlib.sha256(data).hexdigest()


def noise_model_digest(model: Any) -> str:
    """``"sha256:<hex>"`` of a `NoiseModel`'s JSON (``to_dict(serializable=True)``) without
    the errors' ids (random per `QuantumError` object): equal models, equal digests."""
    obj = model.to_dict(serializable=True)
    for error in obj.get("errors", []):
        error.pop("id", None)
    text = json.dumps(obj, sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _complex_params(obj: dict[str, Any]) -> None:
    """In place: [real, imag] pairs -> complex in the matrices of a serialised model."""

    def matrix(value: Any) -> np.ndarray:
        a = np.asarray(value)
        if a.dtype.kind in "iuf" and a.ndim == 3 and a.shape[-1] == 2:
            return a[..., 0] + 1j * a[..., 1]
        return a

    for error in obj["errors"]:
        for circuit in error.get("instructions") or []:
            for inst in circuit:
                if inst.get("name") == "kraus":
                    inst["params"] = [matrix(k) for k in inst["params"]]
                elif inst.get("name") == "unitary":
                    inst["params"] = [matrix(inst["params"][0]), *inst["params"][1:]]


class _Copy:
    """One independent part of a packed circuit, over the whole chip, its clbits renumbered."""

    def __init__(self, circuit: QuantumCircuit, cols: np.ndarray, clbits: list[int]) -> None:
        self.circuit = circuit  # clbit j of this circuit is clbit clbits[j] of the pub's
        self.cols = cols  # columns of the pub's values, in circuit.parameters order
        self.clbits = clbits


def _split(circuit: QuantumCircuit) -> list[_Copy]:
    from qiskit import QuantumCircuit

    position = {p: i for i, p in enumerate(circuit.parameters)}
    out = []
    for comp in cached_components(circuit):
        members = {circuit.qubits[q] for q in comp.qubits}
        clbits = [c for _, c in comp.measured]
        local = {circuit.clbits[c]: j for j, c in enumerate(clbits)}
        sub = QuantumCircuit(circuit.num_qubits, len(clbits), name=f"{circuit.name}_part")
        for inst in circuit.data:
            if inst.operation.name == "barrier" or not members.issuperset(inst.qubits):
                continue
            qargs = [circuit.find_bit(q).index for q in inst.qubits]
            sub.append(inst.operation, qargs, [local[c] for c in inst.clbits])
        cols = np.array([position[p] for p in sub.parameters], dtype=np.int64)
        out.append(_Copy(sub, cols, clbits))
    return out


def _check_isa(circuit: QuantumCircuit, target: Any, name: str) -> None:
    if circuit.num_qubits > target.num_qubits:
        raise PermanentBackendError(
            f"{name}: the circuit has {circuit.num_qubits} qubits, the device {target.num_qubits}"
        )
    for inst in circuit.data:
        op = inst.operation.name
        if op == "barrier":
            continue
        qargs = tuple(circuit.find_bit(q).index for q in inst.qubits)
        if not target.instruction_supported(op, qargs):
            raise PermanentBackendError(
                f"{name}: {op} on qubits {qargs} is not native to the device; transpile the "
                "circuit for its target first"
            )
