"""Targets: snapshot contents, names, and the live-device code paths (offline: mocked)."""

import json

import pytest

import qvit_hw.devices.catalog as targets
import qvit_hw.devices.rigetti as rigetti
from qvit_hw.errors import CredentialsError, TranspileError
from qvit_hw.transpile import get_target


@pytest.fixture(autouse=True)
def _fresh_cache():
    targets._load.cache_clear()
    yield
    targets._load.cache_clear()


@pytest.mark.parametrize(
    ("name", "qubits", "edges", "basis"),
    [
        ("ibm_brisbane", 127, 144, ("ecr", "rz", "sx", "x")),
        ("ibm_torino", 133, 150, ("cz", "rz", "sx", "x")),
        ("ibm_fez", 156, 176, ("cz", "rz", "sx", "x")),
        ("rigetti_ankaa_3", 84, 7 * 11 + 6 * 12, ("iswap", "rz", "sx", "x")),
        ("rigetti_cepheus_1_108q", 108, 9 * 11 + 8 * 12, ("cz", "rz", "sx", "x")),
    ],
)
def test_snapshots(name, qubits, edges, basis):
    dt = get_target(name, live=False)
    assert (dt.num_qubits, len(dt.edges), dt.basis_gates) == (qubits, edges, basis)
    assert all(p < q for p, q in dt.edges)
    assert dt.source.startswith("snapshot: ")
    if name.startswith("ibm_"):  # calibration from the fake backend: every edge and qubit
        assert set(dt.two_qubit_error) == set(dt.edges)
        assert len(dt.readout_error) == qubits
        assert dt.two_qubit_error[dt.edges[0]] == pytest.approx(
            min(
                p.error
                for qargs, p in dt.target[basis[0]].items()
                if sorted(qargs) == list(dt.edges[0])
            )
        )
    else:  # Rigetti: no per-qubit numbers are published, none are invented
        assert dt.readout_error == {} and dt.two_qubit_error == {}


def test_rigetti_snapshot_files_say_where_they_come_from():
    for file in rigetti.RIGETTI_SNAPSHOTS.values():
        data = json.loads(
            (rigetti.resources.files(rigetti.__package__) / "data" / file).read_text()
        )
        assert {"source", "date", "assumptions", "quantum_processor_id"} <= set(data)
        assert any("topology" in a for a in data["assumptions"])


def test_brisbane_says_it_is_retired():
    assert "retired 2025-11-03" in get_target("ibm_brisbane").source


def test_unknown_target_suggests_the_close_name():
    with pytest.raises(TranspileError, match=r"unknown target 'ibm_brisben'; did you mean ibm_br"):
        get_target("ibm_brisben")
    assert get_target(" IBM-Torino ").name == "ibm_torino"


def test_ibm_without_credentials_uses_the_snapshot_without_network(monkeypatch):
    monkeypatch.delenv("QISKIT_IBM_TOKEN", raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("QiskitRuntimeService must not be contacted without credentials")

    monkeypatch.setattr("qiskit_ibm_runtime.QiskitRuntimeService", no_network)
    assert get_target("ibm_fez").source.startswith("snapshot: ")
    with pytest.raises(CredentialsError, match="set QISKIT_IBM_TOKEN"):
        get_target("ibm_fez", live=True)


def test_ibm_with_credentials_reads_the_live_target(monkeypatch):
    from qiskit_ibm_runtime.fake_provider import FakeTorino

    seen = {}

    class Service:  # stands in for the cloud: returns a backend with a real Target
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def backend(self, name):
            seen["name"] = name
            return FakeTorino()

    monkeypatch.setenv("QISKIT_IBM_TOKEN", "token-123")
    monkeypatch.setenv("QISKIT_IBM_INSTANCE", "crn:test")
    monkeypatch.setattr("qiskit_ibm_runtime.QiskitRuntimeService", Service)
    dt = get_target("ibm_torino")
    assert dt.source.startswith("live: IBM Quantum ibm_torino")
    # one credential rule for every command: the service reads QISKIT_IBM_* (or a saved
    # account) itself, as `qvit-hw run` does
    assert seen == {"name": "ibm_torino"}
    assert dt.num_qubits == 133

    class Down(Service):
        def backend(self, name):
            raise ConnectionError("service unreachable")

    targets._load.cache_clear()
    monkeypatch.setattr("qiskit_ibm_runtime.QiskitRuntimeService", Down)
    with pytest.raises(TranspileError, match=r"could not read the live target \(service unre"):
        get_target("ibm_torino")


def _no_qcs(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("QCS_SETTINGS_FILE_PATH", str(tmp_path / "settings.toml"))
    monkeypatch.setenv("QCS_SECRETS_FILE_PATH", str(tmp_path / "secrets.toml"))


def test_rigetti_without_qcs_credentials(monkeypatch, tmp_path):
    _no_qcs(monkeypatch, tmp_path)
    assert get_target("rigetti_ankaa_3").source.startswith("snapshot: ")
    with pytest.raises(CredentialsError, match=r"no QCS credentials .*qcs auth login"):
        get_target("rigetti_ankaa_3", live=True)


def _fidelity(name, value):
    return {"name": name, "value": value, "timestamp": "2026-01-01T00:00:00Z"}


# A three-node ISA in the QCS API's JSON schema (test data, not a real device's numbers).
ISA = {
    "name": "Test-3",
    "architecture": {
        "family": "Ankaa",
        "nodes": [{"node_id": 0}, {"node_id": 1}, {"node_id": 2}],
        "edges": [{"node_ids": [0, 1]}, {"node_ids": [1, 2]}],
    },
    "instructions": [
        {
            "name": "RX",
            "node_count": 1,
            "parameters": [{"name": "theta"}],
            "sites": [
                {"node_ids": [q], "characteristics": [_fidelity("f1QRB", 0.999)]} for q in range(3)
            ],
            "characteristics": [],
        },
        {
            "name": "MEASURE",
            "node_count": 1,
            "parameters": [],
            "sites": [
                {"node_ids": [q], "characteristics": [_fidelity("fRO", 0.95 + q / 100)]}
                for q in range(3)
            ],
            "characteristics": [],
        },
        {
            "name": "ISWAP",
            "node_count": 2,
            "parameters": [],
            "sites": [
                {"node_ids": [0, 1], "characteristics": [_fidelity("fISWAP", 0.99)]},
                {"node_ids": [1, 2], "characteristics": [_fidelity("fISWAP", 0.98)]},
            ],
            "characteristics": [],
        },
    ],
    "benchmarks": [],
}


def test_rigetti_with_credentials_reads_the_live_isa(monkeypatch):
    from qcs_sdk.qpu.isa import InstructionSetArchitecture

    asked = []

    def fake_get_isa(qpu_id, client):
        asked.append((qpu_id, client))
        return InstructionSetArchitecture.from_raw(json.dumps(ISA))

    monkeypatch.setattr(rigetti, "qcs_client", lambda: "client")
    monkeypatch.setattr("qcs_sdk.qpu.isa.get_instruction_set_architecture", fake_get_isa)
    dt = get_target("rigetti_ankaa_3")
    assert asked == [("Ankaa-3", "client")]
    assert dt.source.startswith("live: Rigetti QCS ISA of Ankaa-3")
    assert (dt.num_qubits, dt.edges, dt.basis_gates) == (
        3,
        ((0, 1), (1, 2)),
        ("iswap", "rz", "sx", "x"),
    )
    assert dt.two_qubit_error == pytest.approx({(0, 1): 0.01, (1, 2): 0.02})
    assert dt.readout_error == pytest.approx({0: 0.05, 1: 0.04, 2: 0.03})
    assert dt.target["sx"][(2,)].error == pytest.approx(0.001)


def test_every_name_spelling_reaches_the_same_snapshot_and_typos_get_a_did_you_mean():
    assert get_target("fake_nighthawk", live=False).name == "ibm_nighthawk"
    assert get_target(" IBM-Marrakesh ", live=False).name == "ibm_marrakesh"
    for typo, meant in (("nighthawk", "ibm_nighthawk"), ("ibm_marakesh", "ibm_marrakesh")):
        with pytest.raises(TranspileError, match=rf"did you mean {meant}\b.*`qvit-hw devices`"):
            get_target(typo, live=False)


def test_a_snapshot_whose_every_coupler_reads_broken_holds_placeholders():
    """FakeKyoto gives every ECR coupler error 1.0: not a calibration (the chip ran), so its
    2-qubit errors are left out, said in the source, and the chip stays usable."""
    kyoto = get_target("ibm_kyoto", live=False)
    assert kyoto.two_qubit_error == {} and len(kyoto.edges) == 144
    assert "placeholders, not a calibration" in kyoto.source
    assert all(p.error is None for p in kyoto.target["ecr"].values())
    assert len(kyoto.readout_error) == 127  # the rest of its calibration is kept
    torino = get_target("ibm_torino", live=False)  # a few broken couplers: still a calibration
    assert max(torino.two_qubit_error.values()) == 1.0 and "placeholders" not in torino.source


def test_cli_devices_lists_the_catalog_with_lattice_and_source():
    from typer.testing import CliRunner

    from qvit_hw.cli import app

    result = CliRunner().invoke(app, ["devices", "--min-qubits", "120"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line}
    assert "ibm_nighthawk" in rows and "ibm_kyiv" in rows and "rigetti_ankaa_3" not in rows
    assert "square lattice" in rows["ibm_nighthawk"] and "120" in rows["ibm_nighthawk"]
    assert "heavy-hex" in rows["ibm_fez"] and "FakeFez, calibration of 20" in rows["ibm_fez"]
