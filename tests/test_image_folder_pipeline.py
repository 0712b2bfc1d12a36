"""A researcher's own image folder through train -> export -> run, as commands."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from cli_output import error_line
from typer.testing import CliRunner

from qvit_hw.cli import app


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


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


def test_a_sixteen_bit_folder_trains_on_the_tensors_of_its_eight_bit_self(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 2, as the user's commands: `train --dataset FOLDER` on 16-bit PNGs (mode
    I;16, as X-ray and MRI exports write them) used to train on nearly white images; every
    batch the model sees now equals the same images saved as 8-bit to one grey level, and
    `run` on the 16-bit folder predicts what it predicts on the 8-bit one."""
    from image_files import write_image_folder
    from PIL import Image

    import qvit_hw.train.runtime as runtime

    per_class = {"no": 10, "yes": 10}
    for kind in ("png8", "png16"):
        write_image_folder(tmp_path / kind, per_class, kind)  # the same pixels
    assert Image.open(tmp_path / "png16" / "no" / "slice000.png").mode.startswith("I;16")
    seen: dict[str, list[Any]] = {"png8": [], "png16": []}
    batches: list[Any] = []  # the command now running's
    normalize = runtime.normalize

    def spy(images: Any, norm: Any) -> Any:
        x = normalize(images, norm)
        batches.append(x.detach().cpu().clone())
        return x

    monkeypatch.setattr(runtime, "normalize", spy)  # every batch train feeds the model
    for kind in ("png8", "png16"):
        batches = seen[kind]
        result = invoke("train", "--dataset", tmp_path / kind, "--epochs", 1, "--batch-size", 8,
                        "--out", tmp_path / f"t-{kind}")  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "warning" not in result.output
    eight, sixteen = seen["png8"], seen["png16"]
    assert len(eight) == len(sixteen) > 2  # training batches, then val and test
    for a, b in zip(eight, sixteen, strict=True):
        assert a.shape == b.shape
        assert float((a - b).abs().max()) <= 2 / 255 + 1e-6  # one grey level (std 0.5)
    every = [float(x.mean()) for x in sixteen]
    assert max(every) < 0.5  # not nearly white (1.0): the images' own mean is about 0
    records = {
        k: json.loads((tmp_path / f"t-{k}" / "metrics.json").read_text())["dataset"]
        for k in ("png8", "png16")
    }
    assert records["png16"]["images"] == records["png8"]["images"]
    assert records["png16"]["classes"] == ["no", "yes"]
    assert records["png16"]["fingerprint"] != records["png8"]["fingerprint"]  # other bytes

    result = invoke("export", tmp_path / "t-png8" / "best.pt", "--out", tmp_path / "bundle")
    assert result.exit_code == 0, result.output
    for kind in ("png8", "png16"):
        result = invoke("run", tmp_path / "bundle", "--dataset", tmp_path / kind,
                        "--out", tmp_path / f"r-{kind}")  # fmt: skip
        assert result.exit_code == 0, result.output
    a, b = predictions(tmp_path / "r-png8"), predictions(tmp_path / "r-png16")
    assert [r["label_name"] for r in a] == [r["label_name"] for r in b]
    probs = [k for k in a[0] if k.startswith("prob_")]
    assert len(probs) == 4, list(a[0])  # the backend's and the exact model's, per class
    for ra, rb in zip(a, b, strict=True):
        for k in probs:
            assert abs(float(ra[k]) - float(rb[k])) < 0.02, (k, ra, rb)


def test_unreadable_images_are_one_line_naming_them_or_skipped_with_a_count(
    tmp_path: Path,
) -> None:
    """Finding 5, as the user's commands: three corrupted images took three runs to find.
    `train` and `run` now name the first few and count them all in one line (the whole
    folder, every split), and with --skip-unreadable go on and say how many they left out."""
    from image_files import write_image_folder

    from qvit_hw.data import load_split

    root = tmp_path / "mri"
    write_image_folder(root, {"no": 12, "yes": 12})
    broken = ["no/slice001.png", "no/slice004.png", "no/slice010.png", "yes/slice000.png",
              "yes/slice005.png", "yes/slice007.png", "yes/slice011.png"]  # fmt: skip
    for rel in broken:
        (root / rel).write_bytes(b"not a png")
    (root / "yes" / "slice003.png").write_bytes((root / "yes" / "slice002.png").read_bytes()[:60])
    broken = sorted([*broken, "yes/slice003.png"])  # and one cut short
    train = ("train", "--dataset", root, "--epochs", 1, "--batch-size", 8)

    line = error_line(invoke(*train, "--out", tmp_path / "t"))
    assert line.startswith(f"error: {root}: 8 unreadable images: {broken[0]} (")
    assert all(rel in line for rel in broken[:5]) and broken[5] not in line  # the first few
    assert line.endswith(
        "; and 3 more; fix or remove them, or pass --skip-unreadable to leave them out"
    )
    assert not (tmp_path / "t").exists()

    result = invoke(*train, "--skip-unreadable", "--out", tmp_path / "t")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert f"warning: left out 8 unreadable images (first: {root / broken[0]})" in said
    counts = json.loads((tmp_path / "t" / "metrics.json").read_text())["dataset"]["images"]
    assert sum(n for split in counts.values() for n in split.values()) == 24 - 8

    assert invoke("export", tmp_path / "t" / "best.pt", "--out", tmp_path / "b").exit_code == 0
    line = error_line(invoke("run", tmp_path / "b", "--dataset", root, "--out", tmp_path / "r"))
    assert line.startswith(f"error: {root}: 8 unreadable images: {broken[0]} (")  # all splits
    assert not (tmp_path / "r").exists()
    result = invoke("run", tmp_path / "b", "--dataset", root, "--skip-unreadable",
                    "--out", tmp_path / "r")  # fmt: skip
    assert result.exit_code == 0, result.output
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    left_out = [n for n in run["data_notes"] if n.startswith("left out ")]
    assert len(left_out) == 1, run["data_notes"]
    test = load_split("folder", "test", 28, root, skip_unreadable=True)  # what run reads
    assert left_out[0].startswith(f"left out {len(test.skipped)} unreadable images (first: ")
    assert len(test.skipped) >= 1 and run["images"] == len(test) == len(predictions(tmp_path / "r"))
    assert f"warning: {left_out[0]}" in " ".join(result.output.split())
