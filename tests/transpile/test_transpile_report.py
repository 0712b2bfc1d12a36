"""`qvit-hw transpile BUNDLE`: JSON report per target and native Quil for Rigetti."""

import json
import shutil

import numpy as np
import pytest
import torch
from cli_output import error_line
from typer.testing import CliRunner

from qvit_hw import QViT
from qvit_hw.cli import app
from qvit_hw.errors import TranspileError
from qvit_hw.export import export_bundle, qnns, token_angles
from qvit_hw.model import exact_executor
from qvit_hw.transpile import get_target

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # pyquil deprecations


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.manual_seed(0)
    model = QViT(image_size=28, n_qubits=4, heads=2, num_classes=2).eval()
    return model, export_bundle(model, tmp_path_factory.mktemp("b") / "bundle")


def test_cli_writes_reports_and_quil_that_matches_the_model(tmp_path, bundle, compiled, pyqvm_z):
    model, path = bundle
    args = ["transpile", str(path), "--target", "ibm_torino", "--target", "rigetti_ankaa_3"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path), "--snapshot"])
    assert result.exit_code == 0, result.output
    names = [q.name for q in qnns(model)]

    ibm = json.loads((tmp_path / "transpile_ibm_torino.json").read_text())
    reference = compiled("chain4", "ibm_torino")  # same spec, seed and target
    assert [r["qnn"] for r in ibm["qnns"]] == names
    for row in ibm["qnns"]:
        assert row["swaps"] == 0 and row["quil"] is None
        assert row["copies"] == reference.copies
        assert row["layout"] == list(reference.placements[0])
        assert row["two_qubit_gates"] == 3 and row["depth"] == reference.depth
        assert row["est_success"] == pytest.approx(reference.est_success)
        assert row["copies_by_packing"] == {"best": 22, "max": 25}  # printed for each packing
    assert ibm["source"].startswith("snapshot: qiskit-ibm-runtime")
    assert "22/25" in result.output and ibm["packing"] == "best"
    assert len(ibm["specs"]) == 1  # one template for the six QNNs of the layer

    rigetti = json.loads((tmp_path / "transpile_rigetti_ankaa_3.json").read_text())
    assert all(r["est_success"] is None for r in rigetti["qnns"])  # no calibration: unknown
    images = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(2))
    angles = token_angles(model, images)[0, :2].double()  # (2, n) real tokens
    layer = model.block.attn.qkv
    outputs = exact_executor(layer.spec, layer.weight.detach().double(), angles[None])[0]
    for q, row in zip(qnns(model), rigetti["qnns"], strict=True):
        text = (tmp_path / row["quil"]).read_text()
        assert row["quil"] == f"quil/{q.name}.quil" and "DECLARE x REAL[4]" in text
        for t in range(2):
            np.testing.assert_allclose(
                pyqvm_z(text, angles[t].numpy()), outputs[t, q.index].numpy(), atol=1e-6
            )
    assert "rigetti_ankaa_3: 84 qubits" in result.output


def test_cli_unknown_target_fails_before_any_work(tmp_path, bundle):
    _, path = bundle
    args = ["transpile", str(path), "--target", "ibm_fez", "--target", "rigeti_ankaa_3"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path)])
    line = error_line(result)
    assert "did you mean rigetti_ankaa_3" in line
    assert not list(tmp_path.iterdir())
    with pytest.raises(TranspileError, match="did you mean rigetti_ankaa_3"):
        get_target("rigeti_ankaa_3")


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_cli_refuses_a_file_as_out_and_creates_nothing(tmp_path, bundle, where):
    _, path = bundle
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    out = file if where == "file" else file / "reports"
    before = sorted(p.name for p in path.rglob("*"))
    args = ["transpile", str(path), "--target", "ibm_torino", "--out", str(out), "--snapshot"]
    assert error_line(CliRunner().invoke(app, args)) == (
        f"error: --out: {file} is a file, not a folder"
        if where == "file"
        else f"error: --out: {out} lies under {file}, which is a file"
    )
    assert sorted(tmp_path.iterdir()) == [file] and file.read_text() == "mine"
    assert sorted(p.name for p in path.rglob("*")) == before  # nothing written in the bundle


def test_cli_an_edited_bundle_is_one_line(tmp_path, bundle):
    _, path = bundle
    edited = tmp_path / "edited"
    shutil.copytree(path, edited)
    text = (edited / "manifest.json").read_text()
    (edited / "manifest.json").write_text(text.replace('"heads": 2', '"heads": 3'))
    args = ["transpile", str(edited), "--target", "ibm_torino", "--snapshot"]
    assert error_line(CliRunner().invoke(app, args)) == (
        "error: manifest.json was modified after export (manifest_sha256 mismatch): export the "
        "bundle again instead of editing it"
    )
