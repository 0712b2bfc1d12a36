"""A researcher's own image folder through train -> export -> run, as commands."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from qvit_hw.cli import app


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


def error_line(result: Any) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def predictions(run: Path) -> list[dict[str, str]]:
    with (run / "predictions.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sorted_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes, 100 PNGs each, as a camera roll lists them: every 'no' before 'yes'."""
    from image_files import write_image_folder

    root = tmp_path_factory.mktemp("mri") / "brain"
    write_image_folder(root, {"no": 100, "yes": 100}, "png8")
    return root


@pytest.fixture(scope="module")
def folder_bundle(sorted_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`train --dataset PATH --limit 40` (one epoch), exported."""
    work = tmp_path_factory.mktemp("work")
    result = invoke(
        "train", "--dataset", sorted_folder, "--limit", 40, "--epochs", 1, "--out", work / "t"
    )
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    result = invoke("export", work / "t" / "best.pt", "--out", work / "bundle")
    assert result.exit_code == 0, result.output
    return work / "bundle"


def test_limit_trains_on_both_classes_and_records_the_folder(
    folder_bundle: Path, sorted_folder: Path
) -> None:
    metrics = json.loads((folder_bundle.parent / "t" / "metrics.json").read_text())
    data = metrics["dataset"]
    assert data["images"] == {
        "train": {"no": 20, "yes": 20},
        "val": {"no": 10, "yes": 10},
        "test": {"no": 20, "yes": 20},
    }
    assert metrics["best"]["val_auc"] is not None  # both classes: AUC defined
    manifest = json.loads((folder_bundle / "manifest.json").read_text())["dataset"]
    assert manifest["name"] == "folder" and manifest["classes"] == ["no", "yes"]
    assert manifest["task"] == "binary-class" and manifest["root"] == str(sorted_folder)
    assert manifest["fingerprint"].startswith("folder:sha256:")


def test_run_limit_takes_both_classes_the_same_each_time(
    folder_bundle: Path, tmp_path: Path
) -> None:
    """`run --limit 40` used to take 40 images of 'no'; the folder is the bundle's own."""
    for out in ("a", "b"):
        result = invoke("run", folder_bundle, "--limit", 40, "--out", tmp_path / out)
        assert result.exit_code == 0, result.output
        assert "warning" not in result.output
    a, b = predictions(tmp_path / "a"), predictions(tmp_path / "b")
    assert a == b
    assert sorted({r["label_name"] for r in a}) == ["no", "yes"]
    assert [r["label_name"] for r in a].count("yes") == 20
    assert {r["pred_name"] for r in a} <= {"no", "yes"}
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run["classes"] == ["no", "yes"] and run["data_notes"] == []
    assert run["data_fingerprint"].startswith("folder:sha256:")


def test_a_split_of_one_class_is_refused_in_train_and_explained_in_run(
    folder_bundle: Path, sorted_folder: Path, tmp_path: Path
) -> None:
    line = error_line(
        invoke("train", "--dataset", sorted_folder, "--limit", 1, "--epochs", 1,
               "--out", tmp_path / "t")
    )  # fmt: skip
    assert line == (
        "error: the train split (--limit 1) holds only class 'no' of ['no', 'yes']: a model "
        "trained on it learns one answer; give more images of the other classes"
    )
    result = invoke("run", folder_bundle, "--limit", 1, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert "warning: the test split (1 images) holds only class 'no': ROC AUC is undefined" in (
        " ".join(result.output.split())
    )
    notes = json.loads((tmp_path / "r" / "run.json").read_text())["data_notes"]
    assert len(notes) == 1 and "ROC AUC is undefined (n/a)" in notes[0]


def test_a_folder_of_other_class_names_is_refused_naming_both(
    folder_bundle: Path, tmp_path: Path
) -> None:
    from image_files import write_image_folder

    write_image_folder(tmp_path / "other", {"healthy": 10, "tumor": 10})
    line = error_line(invoke("run", folder_bundle, "--dataset", tmp_path / "other",
                             "--out", tmp_path / "r"))  # fmt: skip
    assert line == (
        "error: the images' classes ['healthy', 'tumor'] are not the bundle's ['no', 'yes']: "
        "its predictions would name the wrong classes (rename the class folders to the "
        "bundle's, or run another bundle)"
    )
    assert not (tmp_path / "r").exists()


def test_a_dicom_folder_trains_and_runs_end_to_end(tmp_path: Path) -> None:
    from image_files import write_image_folder

    write_image_folder(tmp_path / "ct", {"normal": 15, "lesion": 15}, "dcm")
    args = ("--epochs", 1, "--limit", 8, "--out", tmp_path / "t")
    result = invoke("train", "--dataset", "folder", "--data-root", tmp_path / "ct", *args)
    assert result.exit_code == 0, result.output
    assert invoke("export", tmp_path / "t" / "best.pt", "--out", tmp_path / "b").exit_code == 0
    result = invoke("run", tmp_path / "b", "--backend", "shots?seed=1", "--shots", 200,
                    "--limit", 6, "--out", tmp_path / "r")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = predictions(tmp_path / "r")
    assert len(rows) == 6 and {r["label_name"] for r in rows} == {"lesion", "normal"}
    assert all(int(r["row_shots"]) > 0 for r in rows)


def test_the_folder_is_a_data_set_of_its_own_in_datasets_and_the_report(
    folder_bundle: Path, tmp_path: Path
) -> None:
    """Finding 3: `datasets` listed image folders as oasis, 4 classes, multi-class; the
    report called a 2-class folder multi-class and showed classes as 0/1."""
    result = CliRunner().invoke(app, ["datasets"], env={"COLUMNS": "200"})  # a row a line
    listing = " ".join(result.output.split())
    assert "│ folder │ image folder │ from its folders │ per sub-folder │" in listing
    assert "│ oasis │ image folder │ multi-class │ 4 │ OASIS (--data-root) │" in listing
    out = tmp_path / "r"
    assert invoke("run", folder_bundle, "--limit", 6, "--out", out).exit_code == 0
    assert invoke("report", out).exit_code == 0
    doc = json.loads((out / "report.json").read_text())
    assert doc["predictions"]["task"] == "binary-class"
    assert doc["dataset"] == "folder" and doc["classes"] == ["no", "yes"]
    page = (out / "report.html").read_text()
    assert "classes <b>0: no, 1: yes</b>" in page and "data set <b>folder (/" in page
