"""rigetti_<qpu> / rigetti_qvm: Quil with DECLAREd parameters, compiled once, one memory map
per row; checked on pyquil's PyQVM, with mocked QuantumComputers, and on local servers."""

import re
import socket
from types import SimpleNamespace

import numpy as np
import pytest
from pyquil import Program
from pyquil.pyqvm import PyQVM
from pyquil.quilbase import Declare, Measurement

from qvit_hw.backends import BackendTarget, get_backend
from qvit_hw.backends import rigetti as rigetti_module
from qvit_hw.backends.rigetti import RigettiBackend, quil_program, servers_missing
from qvit_hw.circuit import QNNSpec, chain, expectations, random_inputs, tree
from qvit_hw.errors import CredentialsError
from qvit_hw.jobs import QNNCall, QNNRunner, SchedulerConfig
from qvit_hw.jobs.retry import Retry
from qvit_hw.transpile import compile_qnn, get_target, logical_qnn

pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated")  # PyQVM, pyQuil v5 notes
SPECS = {
    "chain4": chain(4),
    "tree4": tree(4),
    "cycle4": QNNSpec(4, ((0, 1), (1, 2), (2, 3), (3, 0))),
    "chain6": chain(6),
}


def pyqvm_state(program: Program, n: int) -> np.ndarray:
    """The final wavefunction (2^n,) of a numeric program's gates on PyQVM."""
    gates = Program([i for i in program.instructions if not isinstance(i, Declare | Measurement)])
    vm = PyQVM(n_qubits=n)
    vm.execute(gates)
    return np.asarray(vm.wf_simulator.wf).reshape(-1)


def pyqvm_z(program: Program, n: int) -> np.ndarray:
    """Exact <Z_i> of a numeric Quil program from PyQVM's wavefunction."""
    probs = np.abs(pyqvm_state(program, n)) ** 2
    bits = (np.arange(2**n)[:, None] >> np.arange(n - 1, -1, -1)) & 1  # qubit 0 most significant
    return probs @ (1 - 2 * bits)


@pytest.mark.parametrize("name", SPECS)
def test_quil_of_every_qnn_runs_on_pyqvm_and_matches_the_exact_simulator(name):
    spec = SPECS[name]
    template = logical_qnn(spec)
    x, w = random_inputs(spec, 4, seed=3)
    values = template.parameter_values(x.numpy(), w.numpy())  # (4, params)
    z = np.stack([pyqvm_z(quil_program(template.circuit, row), spec.n_qubits) for row in values])
    np.testing.assert_allclose(z, expectations(spec, x, w).numpy(), atol=1e-6)
    text = quil_program(template.circuit).out()
    assert f"DECLARE p REAL[{spec.n_qubits + 2 * spec.n_pairs}]" in text
    assert "MEASURE 0 ro[0]" in text


@pytest.mark.parametrize("device", ["rigetti_ankaa_3", "rigetti_cepheus_1_108q"])
def test_quil_of_a_compiled_copy_in_rigetti_natives_matches_too(device):
    spec = tree(4)
    compiled = compile_qnn(spec, get_target(device, live=False), max_copies=1)
    copy = compiled.copy_circuit(0)  # the ISA gates of copy 0 on local qubits 0..3
    x, w = random_inputs(spec, 3, seed=4)
    values = compiled.parameter_values(x.numpy(), w.numpy())
    position = {p: i for i, p in enumerate(compiled.circuit.parameters)}
    columns = [position[p] for p in copy.parameters]
    z = np.stack([pyqvm_z(quil_program(copy, row[columns]), 4) for row in values])
    np.testing.assert_allclose(z, expectations(spec, x, w).numpy(), atol=1e-6)
    two_qubit = "ISWAP" if device == "rigetti_ankaa_3" else "CZ"
    assert two_qubit in quil_program(copy).out()


@pytest.mark.parametrize("scale", [3, 2])
def test_a_folded_template_keeps_its_folds_from_quilc_and_its_values(scale):
    """zne on Rigetti: every inserted G^-1 sits in one PRAGMA PRESERVE_BLOCK (quilc leaves
    those as written, so G G^-1 G is not cancelled back to G), and PyQVM gives the
    unfolded values."""
    from qvit_hw.mitigation.zne import fold_compiled

    spec = tree(4)
    target = get_target("rigetti_ankaa_3", live=False)
    compiled = compile_qnn(spec, target, max_copies=1)
    folded = fold_compiled(compiled, scale, target.basis_gates, seed=1)
    copy = folded.copy_circuit(0)
    text = quil_program(copy).out()
    folds = sum(1 for i in copy.data if i.operation.name == "barrier") // 2
    assert folds > 0
    assert text.count("PRAGMA PRESERVE_BLOCK") == text.count("PRAGMA END_PRESERVE_BLOCK") == folds
    inside = text.split("PRAGMA PRESERVE_BLOCK")[1].split("PRAGMA END_PRESERVE_BLOCK")[0]
    assert "ISWAP" in inside or "CZ" in inside  # the inverse 2-qubit gate is in the block
    x, w = random_inputs(spec, 3, seed=5)
    values = folded.parameter_values(x.numpy(), w.numpy())
    position = {p: i for i, p in enumerate(folded.circuit.parameters)}
    columns = [position[p] for p in copy.parameters]
    programs = [quil_program(copy, row[columns]) for row in values]
    z = np.stack([pyqvm_z(prog, 4) for prog in programs])  # PyQVM runs the pragmas too
    np.testing.assert_allclose(z, expectations(spec, x, w).numpy(), atol=1e-6)


# --- mocked QuantumComputers: the qvm and QCS paths without servers ------------------------


class MockQAM:
    """Runs what it is given: memory values substituted into the Quil, qubits renumbered
    0..m-1 (a QPU program names physical qubits), PyQVM's wavefunction sampled per row."""

    def __init__(self) -> None:
        self.memory_maps: list[dict] = []

    def execute_with_memory_map_batch(self, executable, memory_maps):
        maps = list(memory_maps)
        self.memory_maps += maps
        return [(executable, m, len(self.memory_maps) + i) for i, m in enumerate(maps)]

    def get_result(self, handle):
        executable, memory_map, seed = handle
        values = memory_map.get("p", [])
        text = re.sub(r"\bp\[(\d+)\]", lambda m: f"({values[int(m.group(1))]!r})", executable.out())
        lines = [s for s in text.splitlines() if s and not s.startswith(("DECLARE", "PRAGMA"))]
        used = sorted({int(q) for s in lines for q in _qubits(s)})
        local = {q: i for i, q in enumerate(used)}
        program = Program("\n".join(_renumber(s, local) for s in lines))
        measured = [  # (local qubit, ro index)
            (local[int(q)], int(r))
            for q, r in re.findall(r"^MEASURE (\d+) ro\[(\d+)\]", text, re.M)
        ]
        m = len(used)
        probs = np.abs(pyqvm_state(program, m)) ** 2
        rng = np.random.default_rng(seed)
        outcomes = rng.choice(2**m, size=executable.num_shots, p=probs / probs.sum())
        ro = np.zeros((executable.num_shots, max(r for _, r in measured) + 1), dtype=np.uint8)
        for q, r in measured:
            ro[:, r] = (outcomes >> (m - 1 - q)) & 1  # PyQVM: qubit 0 most significant
        return SimpleNamespace(get_register_map=lambda: {"ro": ro})


def _qubits(line: str) -> list[str]:
    args = line.split(")")[-1] if "(" in line else line.split(" ", 1)[1]
    return [t for t in args.split() if t.isdigit()]


def _renumber(line: str, local: dict[int, int]) -> str:
    head, args = line.rsplit(")", 1) if "(" in line else line.split(" ", 1)
    head = head + ")" if "(" in line else head
    return head + " " + " ".join(str(local[int(t)]) if t.isdigit() else t for t in args.split())


class MockQC:
    """A QuantumComputer whose compile (quilc) is recorded and returns the program."""

    def __init__(self) -> None:
        self.qam = MockQAM()
        self.compiled: list[Program] = []

    def compile(self, program):
        self.compiled.append(program)
        return program


def within_4_stderr(estimates, exact) -> bool:
    """|estimate - exact| <= 4 sigma of the exact value (+ 2/shots for values near +-1)."""
    shots = 400
    sigma = np.sqrt((1 - exact**2) / shots)
    return bool((np.abs(estimates.z - exact) <= 4 * sigma + 2 / shots).all())


def test_qvm_path_compiles_once_and_runs_one_memory_map_per_row():
    qc = MockQC()
    backend = RigettiBackend("rigetti_qvm", BackendTarget("rigetti_qvm"), lambda n: qc)
    spec = tree(4)
    (x1, w1), (x2, w2) = random_inputs(spec, 6, seed=1), random_inputs(spec, 6, seed=2)
    calls = [QNNCall("q", spec, w1.numpy(), x1.numpy()), QNNCall("k", spec, w2.numpy(), x2.numpy())]
    scheduler = QNNRunner(backend, SchedulerConfig(shots=400, job_size=5, poll_interval=0))
    estimates = scheduler.run(calls)
    assert scheduler.stats.jobs == 3  # 12 rows in jobs of at most 5
    assert backend.compiles == 1 and len(qc.compiled) == 1  # one quilc call for all jobs
    assert len(qc.qam.memory_maps) == 12  # one memory map per row
    assert "DECLARE p REAL[10]" in qc.compiled[0].out()
    assert within_4_stderr(estimates[0], expectations(spec, x1, w1).numpy())
    assert within_4_stderr(estimates[1], expectations(spec, x2, w2).numpy())


def test_qpu_path_keeps_the_transpiled_placement():
    device = get_target("rigetti_ankaa_3", live=False)
    target = BackendTarget("rigetti_ankaa_3", device)
    qc = MockQC()
    backend = RigettiBackend("rigetti_ankaa_3", target, lambda n: qc, naive_rewiring=True)
    spec = chain(4)
    x, w = random_inputs(spec, 6, seed=5)
    scheduler = QNNRunner(backend, SchedulerConfig(shots=400, max_copies=2, poll_interval=0))
    (estimates,) = scheduler.run([QNNCall("q", spec, w.numpy(), x.numpy())])
    template = scheduler.template(spec).compiled
    text = qc.compiled[0].out()
    gates = [s for s in text.splitlines() if not s.startswith("DECLARE")]
    assert gates[0] == 'PRAGMA INITIAL_REWIRING "NAIVE"'  # quilc keeps our placement
    used = {int(q) for s in text.splitlines() for q in _qubits(s) if not s.startswith("PRAGMA")}
    assert used == {q for placement in template.placements for q in placement}
    assert len(qc.qam.memory_maps) == 3  # 6 rows, 2 copies per execution
    assert within_4_stderr(estimates, expectations(spec, x, w).numpy())


def test_rigetti_qvm_asks_pyquil_for_an_n_qubit_qvm(monkeypatch):
    asked = []
    monkeypatch.setattr(rigetti_module, "servers_missing", lambda ports: [])
    monkeypatch.setattr("pyquil.get_qc", lambda name, **kw: asked.append((name, kw)) or MockQC())
    backend = get_backend("rigetti_qvm?noise=1")
    assert backend.target.qiskit_target is None  # the logical QNN: quilc compiles it
    spec = chain(4)
    x, w = random_inputs(spec, 3, seed=7)
    runner = QNNRunner(backend, SchedulerConfig(shots=400, poll_interval=0))
    runner.run([QNNCall("q", spec, w.numpy(), x.numpy())])
    assert asked == [("4q-qvm", {"noisy": True})]


def test_rigetti_qpu_uses_the_qcs_client_and_the_device_target(monkeypatch):
    from qvit_hw import devices
    from qvit_hw.devices import rigetti

    client = object()
    asked = []
    monkeypatch.setattr(rigetti, "qcs_client", lambda: client)
    monkeypatch.setattr(devices, "get_target", lambda name, live: rigetti.snapshot(name))
    monkeypatch.setattr(rigetti_module, "servers_missing", lambda ports: [])
    monkeypatch.setattr("pyquil.get_qc", lambda name, **kw: asked.append((name, kw)) or MockQC())
    backend = get_backend("rigetti_ankaa_3")
    assert backend.target.num_qubits == 84 and backend.naive_rewiring
    spec = chain(4)
    x, w = random_inputs(spec, 3, seed=8)
    scheduler = QNNRunner(backend, SchedulerConfig(shots=400, max_copies=2, poll_interval=0))
    (estimates,) = scheduler.run([QNNCall("q", spec, w.numpy(), x.numpy())])
    assert within_4_stderr(estimates, expectations(spec, x, w).numpy())
    assert asked == [("Ankaa-3", {"client_configuration": client})]


# --- start-up errors ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rigetti_qvm_without_servers_fails_at_once_with_one_line(monkeypatch):
    monkeypatch.setattr(rigetti_module, "QVM_PORT", _free_port())
    monkeypatch.setattr(rigetti_module, "QUILC_PORT", _free_port())

    def no_network(*args, **kwargs):
        raise AssertionError("get_qc must not be reached without servers")

    monkeypatch.setattr("pyquil.get_qc", no_network)
    with pytest.raises(CredentialsError, match=r"qvm -S and quilc -S.*make rigetti-servers") as e:
        get_backend("rigetti_qvm")
    assert "\n" not in str(e.value)
    assert rigetti_module.CONNECT_TIMEOUT * 2 < 1.0  # two connects: well under a second


def test_rigetti_qpu_without_qcs_credentials_says_how_to_log_in(monkeypatch, tmp_path):
    monkeypatch.setenv("QCS_SETTINGS_FILE_PATH", str(tmp_path / "settings.toml"))
    monkeypatch.setenv("QCS_SECRETS_FILE_PATH", str(tmp_path / "secrets.toml"))
    with pytest.raises(CredentialsError, match=r"rigetti_ankaa_3: no QCS credentials.*qcs auth"):
        get_backend("rigetti_ankaa_3")


def test_unknown_rigetti_device_suggests_known_ones():
    with pytest.raises(Exception, match="did you mean rigetti_ankaa_3"):
        get_backend("rigetti_ankaa_9")


@pytest.mark.skipif(
    bool(servers_missing((5000, 5555))),
    reason="qvm -S / quilc -S not running on ports 5000 / 5555 (start: make rigetti-servers)",
)
def test_against_local_qvm_and_quilc():
    spec = chain(4)
    x, w = random_inputs(spec, 4, seed=6)
    retry = Retry(attempts=2, sleep=lambda s: None)
    scheduler = QNNRunner(
        get_backend("rigetti_qvm"), SchedulerConfig(shots=400, poll_interval=0), retry=retry
    )
    (estimates,) = scheduler.run([QNNCall("q", spec, w.numpy(), x.numpy())])
    assert within_4_stderr(estimates, expectations(spec, x, w).numpy())


def test_a_twirled_folded_template_keeps_its_paulis_from_quilc_and_its_values():
    """zne with twirling on Rigetti: each twirled gate (its Paulis beside it) is one
    PRAGMA PRESERVE_BLOCK, one block where it sits inside a fold (quilc does not nest
    them), and PyQVM gives the untwirled values."""
    from qvit_hw.mitigation.twirl import twirl_compiled
    from qvit_hw.mitigation.zne import fold_compiled

    spec = tree(4)
    target = get_target("rigetti_ankaa_3", live=False)
    compiled = compile_qnn(spec, target, max_copies=1)
    folded = fold_compiled(compiled, 3, target.basis_gates, seed=1)
    twirled = twirl_compiled(folded, target.basis_gates, 2)
    copy = twirled.copy_circuit(0)
    text = quil_program(copy).out()
    gates = copy.count_ops()["iswap"]
    folds = gates // 3  # each original G: G, then G^-1 G with G^-1 in a fold
    # blocks: the 2 twirled Gs of each fold outside it, and the fold (its twirl inside)
    assert text.count("PRAGMA PRESERVE_BLOCK") == text.count("PRAGMA END_PRESERVE_BLOCK")
    assert text.count("PRAGMA PRESERVE_BLOCK") == 3 * folds
    x, w = random_inputs(spec, 3, seed=5)
    values = twirled.parameter_values(x.numpy(), w.numpy())
    position = {p: i for i, p in enumerate(twirled.circuit.parameters)}
    columns = [position[p] for p in copy.parameters]
    programs = [quil_program(copy, row[columns]) for row in values]
    z = np.stack([pyqvm_z(prog, 4) for prog in programs])
    np.testing.assert_allclose(z, expectations(spec, x, w).numpy(), atol=1e-6)
