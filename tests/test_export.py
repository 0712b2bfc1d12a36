"""Export bundles: round trip, QASM that agrees with the model, integrity errors, the CLI."""

import json
import math

import numpy as np
import pytest
import qiskit.qasm2
import qiskit.qasm3
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from qvit_hw import QViT, ViT, load_bundle
from qvit_hw.circuit import expectations, tree
from qvit_hw.cli import app
from qvit_hw.errors import BundleError, DataError
from qvit_hw.export import FORMAT_VERSION, export_bundle, qnns, read_image, token_angles
from qvit_hw.model import exact_executor

INFO = {
    "stage": "train",
    "epoch": 3,
    "dataset": {"name": "digits", "size": 28, "task": "multi-class", "classes": ["0", "1"]},
    "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    "metrics": {"history": [], "best": {"epoch": 2, "val_auc": 0.75}, "test": {"auc": math.nan}},
    "run": {"seed": 0},
}


def z_of(circuit) -> np.ndarray:
    """Exact <Z> per clbit of a small bound circuit (qubit i measured into clbit i)."""
    from qiskit.quantum_info import Statevector

    probs = Statevector(circuit.remove_final_measurements(inplace=False)).probabilities()
    n = circuit.num_qubits
    bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    return probs @ (1 - 2 * bits)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return QViT(image_size=28, n_qubits=4, heads=2, num_classes=2, pairs=tree(4).pairs).eval()


@pytest.fixture
def images():
    return torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(1))


def test_round_trip_gives_identical_outputs(tmp_path, model, images):
    path = export_bundle(model, tmp_path / "bundle", info=INFO)
    loaded, manifest = load_bundle(path)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
    assert manifest["format_version"] == FORMAT_VERSION
    assert [q["name"] for q in manifest["qnns"]] == [
        f"block0.head{h}.{r}" for h in range(2) for r in "qkv"
    ]
    first = manifest["qnns"][4]
    assert (first["layer"], first["head"], first["role"], first["index"]) == (
        "block.attn.qkv", 1, "k", 4
    )  # fmt: skip
    assert first["spec"] == {"n_qubits": 4, "pairs": [[0, 1], [0, 2], [1, 3]]}
    assert manifest["dataset"]["name"] == "digits"
    assert manifest["metrics"] == {"best": {"epoch": 2, "val_auc": 0.75}, "test": {"auc": None}}
    assert manifest["packages"]["qiskit"] and manifest["packages"]["torch"]
    assert set(manifest["files"]) == {"weights.safetensors"} | {q["qasm"] for q in manifest["qnns"]}
    assert load_bundle(path).model.config == model.config  # also a named tuple with fields


def test_qasm3_files_agree_with_the_models_qnns(tmp_path, model, images):
    path = export_bundle(model, tmp_path / "bundle")
    angles = token_angles(model, images)[0, :3].double()  # (3, n) real tokens
    layer = model.block.attn.qkv
    outputs = exact_executor(layer.spec, layer.weight.detach().double(), angles[None])[0]
    for q, entry in zip(qnns(model), load_bundle(path).manifest["qnns"], strict=True):
        circuit = qiskit.qasm3.loads((path / entry["qasm"]).read_text())
        assert sorted(p.name for p in circuit.parameters) == ["x_0", "x_1", "x_2", "x_3"]
        by_name = {p.name: p for p in circuit.parameters}
        for t in range(3):
            bound = circuit.assign_parameters(
                {by_name[f"x_{i}"]: float(angles[t, i]) for i in range(4)}
            )
            np.testing.assert_allclose(z_of(bound), outputs[t, q.index].numpy(), atol=1e-6)


def test_per_token_qasm2_files_are_bound_and_exact(tmp_path, model, images):
    path = export_bundle(
        model, tmp_path / "b", per_token=3, image=images[:1], image_label="random image"
    )
    tokens = json.loads((path / "qasm2" / "tokens.json").read_text())
    angles = model.block.norm1(model.tokens(images[:1]))[0, :3].detach().double()
    np.testing.assert_allclose(tokens["angles"], angles.numpy(), atol=1e-7)
    layer = model.block.attn.qkv
    for q in qnns(model):
        exact = expectations(q.spec, angles, layer.weight[q.index].detach().double()).numpy()
        np.testing.assert_allclose(tokens["expected_z"][q.name], exact, atol=1e-12)
        for t in range(3):
            circuit = qiskit.qasm2.loads((path / "qasm2" / q.name / f"t{t:03d}.qasm").read_text())
            assert not circuit.parameters
            np.testing.assert_allclose(z_of(circuit), exact[t], atol=1e-6)
    assert load_bundle(path).manifest["per_token"] == {
        "image": "random image", "tokens": 3, "dir": "qasm2"
    }  # fmt: skip


def test_a_vit_exports_without_qnns(tmp_path):
    path = export_bundle(ViT(num_classes=3), tmp_path / "vit")
    assert load_bundle(path).manifest["qnns"] == []


def test_other_format_version_is_refused(tmp_path, model):
    path = export_bundle(model, tmp_path / "b")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="has format version 2; this qvit-hw reads version 1"):
        load_bundle(path)


def test_missing_file_is_named(tmp_path, model):
    path = export_bundle(model, tmp_path / "b")
    (path / "qasm" / "block0.head1.v.qasm").unlink()
    with pytest.raises(BundleError, match=r"is missing qasm/block0.head1.v.qasm"):
        load_bundle(path)
    (path / "manifest.json").unlink()
    with pytest.raises(BundleError, match=r"is missing manifest\.json"):
        load_bundle(path)
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nowhere")


def test_edited_weights_are_detected(tmp_path, model):
    path = export_bundle(model, tmp_path / "b")
    state = load_file(path / "weights.safetensors")
    state["head.bias"] = state["head.bias"] + 1
    save_file(state, path / "weights.safetensors")
    with pytest.raises(
        BundleError, match=r"^weights.safetensors was modified after export \(sha256 mismatch\)$"
    ):
        load_bundle(path)


def test_existing_output_needs_overwrite(tmp_path, model):
    path = export_bundle(model, tmp_path / "b")
    with pytest.raises(BundleError, match="already exists; choose another --out or pass"):
        export_bundle(model, path)
    other = QViT(num_classes=2)
    export_bundle(other, path, overwrite=True)
    assert not list(tmp_path.glob(".b*"))  # no temporary directories left behind
    assert load_bundle(path).model.config == other.config


def test_read_image(tmp_path, model):
    Image.fromarray(np.zeros((28, 28, 3), dtype=np.uint8)).save(tmp_path / "ok.png")
    pixels, label = read_image(str(tmp_path / "ok.png"), model, INFO)
    assert pixels.shape == (28, 28, 3) and label.endswith("ok.png")
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(DataError, match=r"shape \(32, 32, 3\); the model takes uint8 \(28, 28"):
        read_image(str(tmp_path / "big.png"), model, INFO)
    pixels, label = read_image("7", model, INFO)  # digits: bundled with scikit-learn
    assert pixels.dtype == np.uint8 and label == "digits test image 7"
    with pytest.raises(DataError, match=r"--image 100000: the digits test split has \d+ images"):
        read_image("100000", model, INFO)
    with pytest.raises(DataError, match="neither a file nor an image index"):
        read_image("missing.png", model, INFO)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real (tiny) training run on the offline digits data: one epoch, 40 images."""
    from qvit_hw.train import Schedule, TrainOptions, train

    out = tmp_path_factory.mktemp("run")
    train(TrainOptions("digits", limit=40, schedule=Schedule(epochs=1)), out)
    return out / "best.pt"


def test_cli_export_from_a_checkpoint(tmp_path, checkpoint):
    from qvit_hw.train import load_checkpoint

    runner = CliRunner()
    out = tmp_path / "bundle"
    args = ["export", str(checkpoint), "--out", str(out), "--per-token", "2", "--image", "0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    model, manifest = load_bundle(out)
    trained, info = load_checkpoint(checkpoint)
    x = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), trained(x))
    assert manifest["dataset"] == info["dataset"]
    assert manifest["metrics"]["test"] == info["metrics"]["test"]
    assert manifest["per_token"]["image"] == "digits test image 0"
    assert len(list((out / "qasm2" / "block0.head0.q").glob("t*.qasm"))) == 2

    result = runner.invoke(app, ["export", str(checkpoint), "--out", str(out), "--per-token", "2"])
    assert result.exit_code == 1
    assert "--per-token needs --image" in result.output
