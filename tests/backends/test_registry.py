"""Backends by name: options in the name, did-you-mean, hardware families by prefix."""

import pytest

from qvit_hw.backends import Backend, backend_infos, get_backend, parse_name
from qvit_hw.errors import BackendNotFoundError


def test_names_and_options():
    assert parse_name("Mock?transient=0.3&fail=1,2") == (
        "mock",
        {"transient": "0.3", "fail": "1,2"},
    )
    for name in ("statevector", "shots?seed=4", "fake_torino", "mock?inner=shots&seed=2"):
        backend = get_backend(name)
        assert isinstance(backend, Backend)
        assert backend.name == parse_name(name)[0]
    assert get_backend("shots?seed=4").seed == 4
    assert get_backend("mock?inner=shots&seed=2").inner.name == "shots"


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("statevectr", "statevector"),
        ("fake_brisbne", "fake_brisbane"),
        ("shot", "shots"),
        ("fake_nighthwak", "fake_nighthawk"),  # every device of the fake provider
        ("fake_marakesh", "fake_marrakesh"),
    ],
)
def test_unknown_names_suggest_the_closest(name, suggestion):
    with pytest.raises(BackendNotFoundError, match=f"did you mean {suggestion}") as info:
        get_backend(name)
    assert "`qvit-hw backends` lists them" in str(info.value)


def test_hardware_families_are_matched_by_prefix():
    from qvit_hw.backends.ibm import IBMRuntimeBackend
    from qvit_hw.backends.pennylane import PennyLaneBackend

    assert isinstance(get_backend("ibm_torino?local=1"), IBMRuntimeBackend)
    assert isinstance(get_backend("pennylane:default.qubit"), PennyLaneBackend)
    with pytest.raises(BackendNotFoundError, match="did you mean rigetti_ankaa_3"):
        get_backend("rigetti_ankaa_9")
    with pytest.raises(ValueError, match="backend ibm_fez: unknown option 'shots'"):
        get_backend("ibm_fez?shots=3")


def test_bad_options_name_the_backend():
    with pytest.raises(ValueError, match="backend statevector: unknown option 'seed'"):
        get_backend("statevector?seed=1")
    with pytest.raises(ValueError, match="backend: expected a name"):
        get_backend("")


def test_listing_covers_every_kind():
    names = [info.name for info in backend_infos()]
    assert names[:4] == ["statevector", "shots", "fake_<device>", "mock"]
    assert {"ibm_<device>", "rigetti_<qpu>", "rigetti_qvm", "pennylane:<device>"} <= set(names)
    assert all(info.available for info in backend_infos())


def test_backends_table_fits_80_columns_and_says_what_is_ready(monkeypatch):
    """Finding 8: the table cut its cells at 80 columns ("…") and called ibm_<device>
    "available" without credentials and rigetti_qvm with no server running."""
    import json

    from typer.testing import CliRunner

    import qvit_hw.backends.rigetti as rigetti
    import qvit_hw.devices.ibm as ibm
    from qvit_hw.cli import app

    monkeypatch.setattr(ibm, "has_credentials", lambda: False)
    monkeypatch.setattr(rigetti, "servers_missing", lambda ports, host="127.0.0.1": list(ports))
    runner = CliRunner()
    result = runner.invoke(app, ["backends"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in result.output
    assert any(line.startswith("│ ibm_<device>") and "needs" in line for line in lines)
    rows = {
        r["name"]: r["status"]
        for r in json.loads(runner.invoke(app, ["backends", "--json"]).output)
    }
    assert rows["statevector"] == rows["fake_<device>"] == "ready"
    assert rows["ibm_<device>"] == "needs credentials"
    assert rows["rigetti_qvm"] == "needs servers"
    monkeypatch.setattr(ibm, "has_credentials", lambda: True)
    monkeypatch.setattr(rigetti, "servers_missing", lambda ports, host="127.0.0.1": [])
    rows = {
        r["name"]: r["status"]
        for r in json.loads(runner.invoke(app, ["backends", "--json"]).output)
    }
    assert rows["ibm_<device>"] == rows["rigetti_qvm"] == "ready"
