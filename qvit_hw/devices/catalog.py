"""The device catalog: every device qvit-hw knows by name, one for every command.

Offline snapshots, each with its source and date (`DeviceTarget.source`):

- IBM: ``ibm_<device>`` for every device the installed qiskit-ibm-runtime's fake provider
  describes, read off the provider itself (`ibm.fake_device_classes`), so a new release
  brings its new chips; ``fake_<device>`` is the backend that simulates the same snapshot.
- Rigetti: the JSON snapshots in ``data/`` (`rigetti.RIGETTI_SNAPSHOTS`).

Live devices: ``live=None`` follows one rule for every command: the live device where its
family's credentials are configured (`ibm.has_credentials`, `rigetti.has_credentials`, no
network touched to find out), its offline snapshot otherwise. With IBM credentials the
service, not the snapshot list, decides which ``ibm_<device>`` names exist: a device the
account cannot see (retired, or unknown) is one line naming those it can.

Names are read the same way everywhere (`canonical`: case, spaces and ``-`` do not matter;
``fake_fez`` is ``ibm_fez``'s snapshot) and an unknown one gets the same did-you-mean
(`suggestions`) in `transpile`, `run`, `report` and `devices`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from ..errors import TranspileError
from . import ibm, naming, rigetti
from .lattice import lattice_positions
from .target import DeviceTarget


@cache
def names() -> tuple[str, ...]:
    """Every device with an offline snapshot: IBM's (from the fake provider), then Rigetti's."""
    ibm_names = sorted(ibm_name(fake) for fake in ibm.fake_device_classes())
    return (*ibm_names, *rigetti.RIGETTI_SNAPSHOTS)


def ibm_name(fake: str) -> str:
    """``fake_fez`` -> ``ibm_fez``."""
    return "ibm_" + fake.removeprefix("fake_")


def canonical(name: str) -> str:
    """A device name as the catalog spells it: `` IBM-Fez`` -> ``ibm_fez``, ``fake_fez`` ->
    ``ibm_fez`` (the snapshot the fake backend simulates)."""
    key = naming.normal(name)
    return ibm_name(key) if key.startswith("fake_") else key


def suggestions(name: str, known: Iterable[str] | None = None) -> list[str]:
    """Up to two close names among ``known`` (default: the catalog), `naming.suggestions`."""
    return naming.suggestions(name, names() if known is None else known)


def unknown_device(name: str, what: str = "target") -> TranspileError:
    """The one-line error for a name the catalog does not know."""
    close = suggestions(name)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return TranspileError(
        f"unknown {what} {name!r}{hint} ({len(names())} devices known: `qvit-hw devices` "
        "lists them)"
    )


def family_of(key: str) -> str | None:
    """``"ibm"``, ``"rigetti"`` or None for a canonical name."""
    if key.startswith("ibm_"):
        return "ibm"
    return "rigetti" if key in rigetti.RIGETTI_SNAPSHOTS else None


def get_target(name: str, *, live: bool | None = None) -> DeviceTarget:
    """The device called ``name``; unknown names raise TranspileError with a did-you-mean.

    ``live=None`` reads the live device where credentials are configured (the rule of
    `ibm.has_credentials` / `rigetti.has_credentials`, the same for every command) and the
    snapshot otherwise (no network attempt without credentials; ``fake_<device>`` is always
    the snapshot); ``True`` insists on the live device (CredentialsError without
    credentials); ``False`` always gives the snapshot. A live IBM name need not have a
    snapshot: the service says whether the account has it.
    """
    key = canonical(name)
    family = family_of(key)
    if family is None:
        raise unknown_device(name)
    module = ibm if family == "ibm" else rigetti
    if live is None:  # ``fake_<device>`` names the snapshot itself
        live = not naming.normal(name).startswith("fake_") and module.has_credentials()
    if key not in names() and not (live and family == "ibm"):
        raise unknown_device(name)
    return _load(key, live)


@cache
def _load(name: str, live: bool) -> DeviceTarget:
    family = ibm if name.startswith("ibm_") else rigetti
    return family.live_target(name) if live else family.snapshot(name)


@dataclass(frozen=True)
class DeviceInfo:
    """One row of `qvit-hw devices`."""

    name: str
    num_qubits: int
    lattice: str  # "square lattice", "heavy-hex" or "coupling map"
    two_qubit_gate: str  # "-" for a 1-qubit chip
    source: str


def describe(name: str) -> DeviceInfo:
    """The snapshot of ``name`` in one row (reads the snapshot; no network)."""
    dt = get_target(name, live=False)
    gate = dt.two_qubit_gate if dt.edges else "-"
    return DeviceInfo(dt.name, dt.num_qubits, lattice_kind(dt), gate, dt.source)


def lattice_kind(dt: DeviceTarget) -> str:
    """What the chip's coupling map is: "square lattice", "heavy-hex" or "coupling map"."""
    found = lattice_positions(list(dt.edges), dt.num_qubits)
    return found[1] if found is not None else "coupling map"
