"""Compiled circuits as files: QPY + parameter order that qiskit runs without qvit-hw, and
OpenQASM 3 in Braket's dialect that Braket's local simulator runs unchanged."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from qvit_hw import QViT
from qvit_hw.circuit import chain, expectations, qiskit_circuit, tree
from qvit_hw.cli import app
from qvit_hw.errors import CircuitError
from qvit_hw.export import export_bundle
from qvit_hw.transpile import compile_qnn
from qvit_hw.transpile.openqasm import braket_name, braket_qasm, write_compiled

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(scope="module")
def fez_files(tmp_path_factory):
    torch.manual_seed(0)
    model = QViT(image_size=28, n_qubits=4, heads=1, num_classes=2).eval()
    path = export_bundle(model, tmp_path_factory.mktemp("b") / "bundle")
    out = tmp_path_factory.mktemp("t")
    args = ["transpile", str(path), "--target", "ibm_fez", "--snapshot", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return model, out, path


def _exact(spec, rows, weights):
    return expectations(spec, torch.tensor(rows), torch.tensor(weights)).numpy()


def test_the_ibm_fez_qpy_is_isa_and_runs_on_aer_to_the_exact_z(fez_files):
    from qiskit import qpy
    from qiskit.quantum_info import Pauli
    from qiskit_aer import AerSimulator
    from qiskit_ibm_runtime.fake_provider import FakeFez

    model, out, _ = fez_files
    report = json.loads((out / "transpile_ibm_fez.json").read_text())
    stem = out / report["specs"][0]["compiled"]
    assert report["qnns"][0]["compiled"] == report["specs"][0]["compiled"]
    assert report["specs"][0]["compiled"] == "compiled/ibm_fez/spec0"
    with open(f"{stem}.qpy", "rb") as fh:
        (circuit,) = qpy.load(fh)
    order = json.loads(stem.with_suffix(".json").read_text())
    target = FakeFez().target
    for inst in circuit.data:  # ISA: every gate native on its physical qubits
        qargs = tuple(circuit.find_bit(q).index for q in inst.qubits)
        assert target.instruction_supported(inst.operation.name, qargs), inst.operation.name
    assert [p.name for p in circuit.parameters] == order["parameters"]
    k, n = order["copies"], order["n_qubits"]
    assert k == report["qnns"][0]["copies"] > 20 and n == 4

    # bind as a user would: one token row per copy, the QNN's weights from the file
    assert sorted(order["qnn_weights"]) == sorted(f"block0.head0.{r}" for r in "qkv")
    weights = np.array(order["qnn_weights"]["block0.head0.k"])
    layer = model.block.attn.qkv
    np.testing.assert_allclose(weights, layer.weight[1].detach().numpy().reshape(-1), atol=1e-7)
    rows = np.random.default_rng(3).uniform(-np.pi, np.pi, (k, n))
    values = np.zeros(len(order["parameters"]))
    values[np.array(order["inputs"])] = rows
    values[np.array(order["weights"])] = weights
    bound = circuit.assign_parameters(values).remove_final_measurements(inplace=False)
    qubit_of_clbit = [order["placements"][c][i] for c in range(k) for i in range(n)]
    for j, q in enumerate(qubit_of_clbit):
        bound.save_expectation_value(Pauli("Z"), [q], label=f"z{j}")
    # 112 active qubits: an MPS (copies never entangle); Aer's qubit truncation would read
    # every saved <Z> off one qubit, so it is off
    sim = AerSimulator(method="matrix_product_state", enable_truncation=False)
    data = sim.run(bound, shots=1).result().data()
    z = np.array([data[f"z{j}"] for j in range(k * n)]).reshape(k, n)
    np.testing.assert_allclose(z, _exact(layer.spec, rows, weights.reshape(-1, 2)), atol=1e-6)


def test_the_qiskit_dialect_qasm_declares_the_written_parameters(fez_files):
    _, out, _ = fez_files
    text = (out / "compiled/ibm_fez/spec0.qasm").read_text()
    order = json.loads((out / "compiled/ibm_fez/spec0.json").read_text())
    assert text.startswith("OPENQASM 3.0;") and order["dialect"] == "qiskit"
    for name in order["qasm_parameters"]:
        assert f"input float[64] {name};" in text


@pytest.mark.parametrize("target", ["rigetti_ankaa_3", "ibm_fez"])
def test_the_braket_dialect_runs_unchanged_in_braket_local_simulator(
    tmp_path, target, seeded_braket
):
    from braket.devices import LocalSimulator
    from braket.ir.openqasm import Program

    spec = tree(4)
    compiled = compile_qnn(spec, target, max_copies=2)
    weights = np.random.default_rng(1).uniform(-np.pi, np.pi, spec.weight_shape)
    paths = write_compiled(compiled, tmp_path, "spec0", dialect="braket")
    text = Path(paths["qasm"]).read_text()
    order = json.loads(Path(paths["json"]).read_text())
    assert "include" not in text and "#pragma braket verbatim" in text and "$" in text
    assert ("cnot" in text) is False and order["dialect"] == "braket"  # ISA: no CNOT left
    rows = np.random.default_rng(2).uniform(-np.pi, np.pi, (2, 4))
    values = compiled.parameter_values(rows, weights)[0]
    inputs = dict(zip(order["qasm_parameters"], map(float, values), strict=True))
    exact = _exact(spec, rows, weights).reshape(-1)
    shots = LocalSimulator().run(Program(source=text, inputs=inputs), shots=4000).result()
    placed = [q for p in order["placements"] for q in p]
    assert list(shots.measured_qubits) == placed  # physical qubits kept, clbit order
    z = 1 - 2 * shots.measurements.mean(axis=0)
    assert np.all(np.abs(z - exact) < 4 * np.sqrt((1 - exact**2 + 1e-3) / 4000))
    exact_text = braket_qasm(compiled.circuit, physical=True, exact=True)
    values_exact = LocalSimulator().run(Program(source=exact_text, inputs=inputs), shots=0)
    np.testing.assert_allclose(values_exact.result().values, exact, atol=1e-9)


def test_the_logical_qnn_in_braket_dialect_and_its_errors():
    from braket.devices import LocalSimulator
    from braket.ir.openqasm import Program

    spec = chain(4)
    qc = qiskit_circuit(spec, measure=True)
    text = braket_qasm(qc, physical=False, exact=True)
    assert "qubit[4] q;" in text and "cnot q[0], q[1];" in text and "$" not in text
    x, w = np.array([0.1, 0.5, -1.0, 2.0]), np.linspace(-1, 1, 6)
    values = dict(
        zip([braket_name(p.name) for p in qc.parameters], qc_values(qc, x, w), strict=True)
    )
    result = LocalSimulator().run(Program(source=text, inputs=values), shots=0).result()
    np.testing.assert_allclose(result.values, _exact(spec, x, w.reshape(3, 2)), atol=1e-9)
    assert braket_name("x0[12]") == "x0_12" and braket_name("3a") == "p_3a"
    qc.h(0)  # after the measurement
    with pytest.raises(CircuitError, match="h after a measurement"):
        braket_qasm(qc, physical=False)


def qc_values(qc, x, w):
    from qvit_hw.circuit import bind_values

    bound = bind_values(qc, x, w)
    return [float(bound[p]) for p in qc.parameters]


def test_cli_dialect_braket_writes_verbatim_programs_and_refuses_unknown_dialects(
    tmp_path, fez_files
):
    _, _, bundle = fez_files
    args = ["transpile", str(bundle), "--target", "rigetti_ankaa_3", "--snapshot"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path), "--dialect", "braket"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "compiled/rigetti_ankaa_3/spec0.qasm").read_text()
    order = json.loads((tmp_path / "compiled/rigetti_ankaa_3/spec0.json").read_text())
    assert order["dialect"] == "braket" and order["target"] == "rigetti_ankaa_3"
    assert "#pragma braket verbatim" in text and "iswap $" in text and "include" not in text
    for name in order["qasm_parameters"]:
        assert f"input float {name};" in text
    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "x"), "--dialect", "quil"])
    assert bad.exit_code == 1
    assert "dialect must be one of qiskit, braket, got 'quil'" in " ".join(bad.output.split())
