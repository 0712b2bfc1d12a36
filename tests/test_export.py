"""Export bundles: round trip, QASM that agrees with the model, integrity errors, the CLI."""

import json
import math
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest
import qiskit.qasm2
import qiskit.qasm3
import torch
from cli_output import error_line
from PIL import Image
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from qvit_hw import QViT, ViT, load_bundle
from qvit_hw.circuit import expectations, tree
from qvit_hw.cli import app
from qvit_hw.errors import BundleError, DataError
from qvit_hw.export import (
    FORMAT_VERSION,
    export_bundle,
    manifest_digest,
    qnns,
    read_image,
    token_angles,
)
from qvit_hw.model import exact_executor

INFO = {
    "stage": "train",
    "epoch": 3,
    "dataset": {"name": "digits", "size": 28, "task": "multi-class", "classes": ["0", "1"]},
    "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    "metrics": {"history": [], "best": {"epoch": 2, "val_auc": 0.75}, "test": {"auc": math.nan}},
    "run": {"seed": 0},
}


def write_manifest(path, manifest, rehash=True) -> None:
    """Write an edited manifest; ``rehash`` forges its digest, so that the check under
    test is the one after the digest's."""
    if rehash:
        manifest = {**manifest, "manifest_sha256": manifest_digest(manifest)}
    (path / "manifest.json").write_text(json.dumps(manifest))


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


@pytest.mark.parametrize("version", [1, FORMAT_VERSION + 1, None])
def test_other_format_version_is_refused(tmp_path, model, version):
    path = export_bundle(model, tmp_path / "b")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = version  # 1: bundles from before manifest_sha256
    write_manifest(path, manifest)
    with pytest.raises(
        BundleError,
        match=rf"^bundle .* has format version {version}; this qvit-hw reads version "
        rf"{FORMAT_VERSION}: export it again with this version \(`qvit-hw export`\)$",
    ):
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


def test_overwrite_replaces_a_bundle_and_what_transpile_adds_to_it(tmp_path, model):
    path = export_bundle(model, tmp_path / "b")
    (path / "transpile_ibm_brisbane.json").write_text("{}")
    (path / "quil").mkdir()
    (path / "quil" / "block0.head0.q.quil").write_text("RX(pi) 0\n")
    other = QViT(num_classes=3)
    export_bundle(other, path, overwrite=True)
    assert load_bundle(path).model.config == other.config
    assert sorted(p.name for p in path.iterdir()) == [
        "manifest.json",
        "qasm",
        "weights.safetensors",
    ]


def user_folder(root):
    """A folder of the user's: notes, a sub-folder, and a manifest.json of something else."""
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    (root / "data").mkdir()
    (root / "data" / "x.bin").write_bytes(b"\x00\x01")
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def files_of(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("overwrite", [True, False])
def test_overwrite_never_deletes_a_folder_of_user_files(tmp_path, model, overwrite):
    out = tmp_path / "mine"
    before = user_folder(out)
    with pytest.raises(
        BundleError,
        match=r"^--out: .*mine exists and is not a bundle \(it has no manifest\.json\); choose "
        r"another --out \(--overwrite replaces only a bundle from `qvit-hw export`\)$",
    ):
        export_bundle(model, out, overwrite=overwrite)
    assert files_of(out) == before
    (out / "manifest.json").write_text('{"format": "someone-else"}')
    with pytest.raises(BundleError, match=r"\(its manifest\.json is not a qvit-hw bundle's\)"):
        export_bundle(model, out, overwrite=overwrite)
    assert (out / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".mine*"))  # no temporary folder left either


def test_overwrite_refuses_a_bundle_holding_other_files(tmp_path, model):
    path = export_bundle(model, tmp_path / "b")
    (path / "qasm" / "notes.txt").write_text("mine")
    with pytest.raises(BundleError, match=r"is not a bundle \(it holds qasm/notes\.txt\)"):
        export_bundle(model, path, overwrite=True)
    (path / "qasm" / "notes.txt").unlink()
    (path / "results").mkdir()
    with pytest.raises(BundleError, match=r"is not a bundle \(it holds the folder results\)"):
        export_bundle(model, path, overwrite=True)
    assert (path / "results").is_dir() and load_bundle(path).model.config == model.config


def test_overwrite_refuses_a_file_or_a_path_under_a_file(tmp_path, model):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    with pytest.raises(ValueError, match=r"^--out: .*notes\.txt is a file, not a folder$"):
        export_bundle(model, file, overwrite=True)
    with pytest.raises(ValueError, match=r"^--out: .*notes\.txt/b lies under .*notes\.txt, which"):
        export_bundle(model, file / "b", overwrite=True)
    assert file.read_text() == "mine" and sorted(tmp_path.iterdir()) == [file]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_every_file_gets_the_users_umask(tmp_path, model, images, umask):
    old = os.umask(umask)
    try:
        path = export_bundle(model, tmp_path / "b", per_token=2, image=images[:1])
    finally:
        os.umask(old)
    modes = {
        p.relative_to(path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in path.rglob("*")
    }
    files = {rel for rel in modes if (path / rel).is_file()}
    assert {"weights.safetensors", "manifest.json", "qasm2/tokens.json"} <= files
    for rel, mode in modes.items():
        want = (0o666 if rel in files else 0o777) & ~umask
        assert mode == want, (rel, oct(mode), oct(want))
    assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~umask


def test_an_edited_manifest_is_refused(tmp_path, model):
    path = export_bundle(model, tmp_path / "b", info=INFO)
    text = (path / "manifest.json").read_text()
    manifest = json.loads(text)
    assert manifest["manifest_sha256"] == manifest_digest(manifest)
    # other whitespace and key order: the same manifest, still loads
    (path / "manifest.json").write_text(json.dumps(dict(reversed(manifest.items()))))
    assert load_bundle(path).manifest == manifest
    edited = json.loads(text)
    edited["normalization"]["mean"] = [0.4, 0.5, 0.5]  # would change every probability
    (path / "manifest.json").write_text(json.dumps(edited))
    with pytest.raises(
        BundleError,
        match=r"^manifest\.json was modified after export \(manifest_sha256 mismatch\): export "
        r"the bundle again instead of editing it$",
    ):
        load_bundle(path)
    del edited["manifest_sha256"]
    (path / "manifest.json").write_text(json.dumps(edited))
    with pytest.raises(BundleError, match=r"manifest\.json has no manifest_sha256; export it"):
        load_bundle(path)
    (path / "manifest.json").write_text(text.replace('"stage": "train"', '"stage": NaN'))
    with pytest.raises(BundleError, match=r"is not valid JSON \(NaN is not a JSON number\)$"):
        load_bundle(path)


@pytest.mark.parametrize(
    "rel",
    [
        "../../../etc/passwd",
        "/etc/passwd",
        "qasm/../weights.safetensors",
        "qasm2/../../x/t000.qasm",
        "qasm/sub/block0.head0.q.qasm",
        "qasm\\block0.head0.q.qasm",
        "./weights.safetensors",
        "notes.txt",
        "",
    ],
)
def test_file_entries_must_be_plain_names_inside_the_bundle(tmp_path, model, rel, monkeypatch):
    path = export_bundle(model, tmp_path / "b")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"][rel] = "0" * 64
    write_manifest(path, manifest)
    opened = []
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda p: opened.append(p) or real(p))
    with pytest.raises(
        BundleError,
        match=rf"^bundle .*: manifest\.json lists {re.escape(repr(rel))}, which is "
        r"not a file of a bundle \(plain names in the bundle, qasm/ or qasm2/ only\); export",
    ):
        load_bundle(path)
    assert opened == [path / "manifest.json"]  # nothing else was read, inside or outside


@pytest.mark.parametrize("name", ["../../x", "/tmp/x", "block0.head0.q/../../x", 3, None])
def test_qnn_names_must_be_plain(tmp_path, model, name):
    path = export_bundle(model, tmp_path / "b")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["qnns"][0]["name"] = name
    write_manifest(path, manifest)
    with pytest.raises(
        BundleError,
        match=rf"manifest\.json has a QNN named {re.escape(repr(name))} \(expected "
        r"block<b>\.head<h>\.<q\|k\|v>\)",
    ):
        load_bundle(path)


def test_a_file_that_links_outside_the_bundle_is_refused(tmp_path, model):
    path = export_bundle(model, tmp_path / "b")
    qasm = path / "qasm" / "block0.head0.q.qasm"
    outside = tmp_path / "copy.qasm"
    outside.write_bytes(qasm.read_bytes())  # same content: the sha256 alone would pass
    qasm.unlink()
    qasm.symlink_to(outside)
    with pytest.raises(
        BundleError, match=r"^bundle .*: qasm/block0\.head0\.q\.qasm is a link to a file outside"
    ):
        load_bundle(path)


def _drop(key):
    return lambda m: m.pop(key)


MALFORMED = {
    "no files": (_drop("files"), r"manifest\.json has no 'files'"),
    "no qnns": (_drop("qnns"), r"manifest\.json has no 'qnns'"),
    "no model": (_drop("model"), r"manifest\.json has no 'model'"),
    "files a list": (
        lambda m: m.update(files=list(m["files"])),
        r"has 'files' of type list, not dict",
    ),
    "qnns a dict": (lambda m: m.update(qnns={"a": 1}), r"has 'qnns' of type dict, not list"),
    "model a list": (lambda m: m.update(model=[]), r"has 'model' of type list, not dict"),
    "weights unlisted": (
        lambda m: m["files"].pop("weights.safetensors"),
        r"does not list weights\.safetensors",
    ),
    "digest a number": (
        lambda m: m["files"].update({"weights.safetensors": 5}),
        r"has no sha256 for weights\.safetensors",
    ),
    "qnn a number": (lambda m: m["qnns"].__setitem__(0, 7), r"has a QNN named None"),
    "qnn unlisted": (lambda m: m["qnns"].pop(), r"manifest QNN specs disagree with the model"),
    "qnn spec": (
        lambda m: m["qnns"][1]["spec"].update(pairs=[[0, 1]]),
        r"manifest QNN specs disagree with the model config",
    ),
    "qasm unlisted": (
        lambda m: m["files"].pop("qasm/block0.head1.v.qasm"),
        r"its manifest does not list qasm/block0\.head1\.v\.qasm, unlike what export writes",
    ),
    "config missing": (lambda m: m["model"].pop("config"), r"has no model config"),
    "config a string": (lambda m: m["model"].update(config="x"), r"has no model config"),
    "config key": (
        lambda m: m["model"]["config"].pop("pairs"),
        r"weights do not fit its model config \('pairs'\)",
    ),
    "config type": (
        lambda m: m["model"]["config"].update(heads="two"),
        r"weights do not fit its model config",
    ),
    "config other": (
        lambda m: m["model"]["config"].update(num_classes=5),
        r"weights do not fit its model config \(head\.bias: weights\.safetensors has \(2,\), "
        r"the config needs \(5,\)\)$",
    ),
    "normalization": (
        lambda m: m.update(normalization={"mean": [0.5], "std": [0.5]}),
        r"has a malformed 'normalization'",
    ),
    "normalization zero": (
        lambda m: m.update(normalization={"mean": [0.5] * 3, "std": [0.5, 0, 0.5]}),
        r"has a malformed 'normalization'",
    ),
    "normalization a list": (
        lambda m: m.update(normalization=[1, 2]),
        r"has 'normalization' of type list, not an object",
    ),
    "dataset a list": (
        lambda m: m.update(dataset=["digits"]),
        r"has 'dataset' of type list, not an object",
    ),
    "dataset name": (lambda m: m.update(dataset={"name": 3}), r"has a data set name 3"),
    "per_token": (lambda m: m.update(per_token=5), r"has 'per_token' of type int, not an object"),
    "per_token files": (
        lambda m: m.update(per_token={"image": "x", "tokens": 2, "dir": "qasm2"}),
        r"its manifest does not list qasm2/",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_manifest_is_one_bundle_error(tmp_path, model, case):
    edit, message = MALFORMED[case]
    path = export_bundle(model, tmp_path / "b", info=INFO)
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    write_manifest(path, manifest)  # a valid digest: the check under test is the next one
    with pytest.raises(BundleError, match=message) as error:
        load_bundle(path)
    assert "\n" not in str(error.value) and str(error.value).startswith(
        ("bundle ", "manifest.json")
    )


@pytest.mark.parametrize("content", ["[1, 2]", '"a string"', "", "\x00\xff"])
def test_a_manifest_that_is_not_an_object_is_one_bundle_error(tmp_path, model, content):
    path = export_bundle(model, tmp_path / "b")
    (path / "manifest.json").write_text(content, encoding="latin-1")
    with pytest.raises(BundleError, match=r"(is not valid JSON|is not a qvit-hw bundle)"):
        load_bundle(path)


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


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_cli_export_refuses_a_file_as_out_and_creates_nothing(tmp_path, checkpoint, where):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    out = file if where == "file" else file / "bundle"
    for extra in ([], ["--overwrite"]):
        result = CliRunner().invoke(app, ["export", str(checkpoint), "--out", str(out), *extra])
        line = error_line(result)
        assert line == (
            f"error: --out: {file} is a file, not a folder"
            if where == "file"
            else f"error: --out: {out} lies under {file}, which is a file"
        )
    assert sorted(tmp_path.iterdir()) == [file] and file.read_text() == "mine"


def test_cli_export_overwrite_keeps_a_folder_of_user_files(tmp_path, checkpoint):
    out = tmp_path / "mine"
    before = user_folder(out)
    result = CliRunner().invoke(app, ["export", str(checkpoint), "--out", str(out), "--overwrite"])
    assert error_line(result).startswith(f"error: --out: {out} exists and is not a bundle (it has")
    assert files_of(out) == before and sorted(tmp_path.iterdir()) == [out]


def test_cli_a_file_that_is_not_a_checkpoint_or_not_a_bundle_says_what_it_is(tmp_path, checkpoint):
    """Finding 6: `export metrics.json` printed torch's weights_only=False advice; `run
    best.pt` said "not found" for a file that exists."""
    runner = CliRunner()
    metrics = checkpoint.parent / "metrics.json"
    result = runner.invoke(app, ["export", str(metrics), "--out", str(tmp_path / "b")])
    assert result.exit_code == 1 and "weights_only" not in result.output
    assert result.output.strip() == (
        f"error: {metrics} is not a qvit-hw checkpoint (torch cannot read it as one: "
        "UnpicklingError); give OUT/best.pt or OUT/last.pt of `qvit-hw train`"
    )
    result = runner.invoke(app, ["run", str(checkpoint), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and result.output.strip() == (
        f"error: {checkpoint} is a training checkpoint, not a bundle: export it first "
        f"(qvit-hw export {checkpoint} --out BUNDLE) and give the bundle's folder"
    )
    assert not (tmp_path / "b").exists() and not (tmp_path / "r").exists()


def test_cli_export_overwrite_replaces_what_transpile_added(tmp_path, checkpoint):
    """Finding 4: export -> transpile -> export --overwrite refused ("holds the folder
    compiled") and needed an rm -rf."""
    runner = CliRunner()
    out = tmp_path / "bundle"
    assert runner.invoke(app, ["export", str(checkpoint), "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, ["transpile", str(out), "--target", "ibm_fez", "--snapshot"])
    assert result.exit_code == 0, result.output
    assert (out / "compiled" / "ibm_fez" / "spec0.qpy").is_file()
    result = runner.invoke(app, ["export", str(checkpoint), "--out", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "qasm", "weights.safetensors"]
    (out / "compiled").mkdir()
    (out / "compiled" / "notes.txt").write_text("mine")  # not transpile's: refused
    result = runner.invoke(app, ["export", str(checkpoint), "--out", str(out), "--overwrite"])
    assert result.exit_code == 1 and "it holds compiled/notes.txt" in result.output
