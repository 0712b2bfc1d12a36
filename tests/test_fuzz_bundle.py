"""Seeded corruption of a bundle and of a finished run: every damaged input either gives the
original result exactly or one `QvitHwError` line, never a traceback or a silent change.

A bundle: ``load_bundle`` must refuse it with a one-line QvitHwError, or load a model whose
outputs on a fixed input are `torch.equal` to the original's (and, unless the case forges
the manifest's digest, the same manifest). A run: ``qvit-hw report`` must exit 1 with one
``error:`` line and write nothing, or exit 0 with a report.json equal to the undamaged one.

Each case says what it expects: ``refused``, ``same`` (harmless: whitespace, extra files,
files the report does not read) or ``either`` (random damage whose effect depends on where
it lands). In-range edits of a value only one file holds (a label that stays a valid class,
a cost) are caught by the sha256 of every output file that run.json records; run.json
itself is checked against the outputs it describes.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from qvit_hw.cli import app
from qvit_hw.errors import QvitHwError
from qvit_hw.export import load_bundle, manifest_digest
from qvit_hw.jobs.config import SchedulerConfig
from qvit_hw.jobs.run import RunOptions, run_bundle

Damage = Callable[[Path, random.Random], Any]
runner = CliRunner()

# --- helpers shared by both halves ------------------------------------------------------


def flip(name: str) -> Damage:
    """XOR one random byte of ``name`` with a random non-zero value."""

    def apply(root: Path, rng: random.Random) -> None:
        data = bytearray((root / name).read_bytes())
        data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
        (root / name).write_bytes(bytes(data))

    return apply


def truncate(name: str, keep: float | None = None) -> Damage:
    """Cut ``name`` to a share ``keep`` of its bytes (None: a random length)."""

    def apply(root: Path, rng: random.Random) -> None:
        data = (root / name).read_bytes()
        size = rng.randrange(len(data)) if keep is None else int(len(data) * keep)
        (root / name).write_bytes(data[:size])

    return apply


def write(name: str, data: bytes) -> Damage:
    return lambda root, rng: (root / name).write_bytes(data)


def delete(name: str) -> Damage:
    def apply(root: Path, rng: random.Random) -> None:
        path = root / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return apply


def swap(a: str, b: str) -> Damage:
    def apply(root: Path, rng: random.Random) -> None:
        tmp = root / ".swap"
        os.replace(root / a, tmp)
        os.replace(root / b, root / a)
        os.replace(tmp, root / b)

    return apply


def rename(a: str, b: str) -> Damage:
    return lambda root, rng: os.replace(root / a, root / b)


def to_dir(name: str) -> Damage:
    def apply(root: Path, rng: random.Random) -> None:
        (root / name).unlink()
        (root / name).mkdir()

    return apply


def edit_json(name: str, edit: Callable[[Any], Any], rehash: bool = False) -> Damage:
    """Edit a JSON file in place (what ``edit`` returns is ignored); ``rehash`` forges the
    manifest's digest afterwards."""

    def apply(root: Path, rng: random.Random) -> None:
        doc = json.loads((root / name).read_text())
        edit(doc)
        if rehash:
            doc["manifest_sha256"] = manifest_digest(doc)
        (root / name).write_text(json.dumps(doc))

    return apply


def reformat(name: str) -> Damage:
    """The same JSON with other whitespace and the keys in reverse order."""

    def apply(root: Path, rng: random.Random) -> None:
        doc = json.loads((root / name).read_text())
        (root / name).write_text(json.dumps(dict(reversed(list(doc.items()))), indent=1))

    return apply


VALUES = [None, True, 0, -1, 7, 2**63, 1e308, "", "x", "../../x", [], {}, [1, 2], {"a": 1}]


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = []
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for key, value in items:
        out.append((*prefix, key))
        out.extend(_paths(value, (*prefix, key)))
    return out


def mutate(doc: Any, rng: random.Random) -> None:
    """One random edit somewhere in a JSON tree: delete, replace, or add a key."""
    path = rng.choice(_paths(doc))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    op = rng.choice(["delete", "replace", "replace", "add"])
    if op == "delete":
        del parent[path[-1]]
    elif op == "replace":
        parent[path[-1]] = rng.choice(VALUES)
    elif isinstance(parent, dict):
        parent[f"extra{rng.randrange(100)}"] = rng.choice(VALUES)
    else:
        parent.insert(rng.randrange(len(parent) + 1), rng.choice(VALUES))


def random_mutation(name: str, rehash: bool = False) -> Damage:
    def apply(root: Path, rng: random.Random) -> None:
        edit_json(name, lambda d: mutate(d, rng), rehash)(root, rng)

    return apply


def one_line(message: str) -> None:
    assert message and "\n" not in message and "Traceback" not in message, message


# --- bundles ------------------------------------------------------------------------------

M, W = "manifest.json", "weights.safetensors"
Q0, Q1 = "qasm/block0.head0.q.qasm", "qasm/block0.head1.v.qasm"


def outside_link(root: Path, rng: random.Random) -> None:
    """A QASM file replaced by a link to an identical copy outside the bundle."""
    copy = root.parent / "outside.qasm"
    copy.write_bytes((root / Q0).read_bytes())
    (root / Q0).unlink()
    (root / Q0).symlink_to(copy)


def extra_file(root: Path, rng: random.Random) -> None:
    (root / "notes.txt").write_text("a file export does not list")
    (root / "qasm" / "README").write_text("neither")


def touch(root: Path, rng: random.Random) -> None:
    for p in root.rglob("*"):
        os.utime(p, (0, 0))


BUNDLE_CASES: dict[str, tuple[Damage, str]] = {
    "weights truncated": (truncate(W, 0.5), "refused"),
    "weights emptied": (truncate(W, 0.0), "refused"),
    "weights appended": (lambda r, g: (r / W).write_bytes((r / W).read_bytes() + b"\0"), "refused"),
    **{f"weights byte {i}": (flip(W), "refused") for i in range(4)},
    **{f"manifest byte {i}": (flip(M), "either") for i in range(6)},
    **{f"qasm byte {i}": (flip(Q1), "refused") for i in range(2)},
    **{f"random truncation {name}": (truncate(name), "refused") for name in (W, Q0)},
    "random truncation manifest": (truncate(M), "either"),  # maybe only its last newline
    "manifest truncated": (truncate(M, 0.5), "refused"),
    "manifest garbage": (write(M, bytes(range(256))), "refused"),
    "manifest empty": (write(M, b""), "refused"),
    "manifest a list": (write(M, b"[1, 2, 3]"), "refused"),
    "manifest NaN": (
        lambda r, g: (r / M).write_text((r / M).read_text().replace('"heads": 2', '"heads": NaN')),
        "refused",
    ),
    "manifest deleted": (delete(M), "refused"),
    "weights deleted": (delete(W), "refused"),
    "qasm deleted": (delete(Q1), "refused"),
    "qasm folder deleted": (delete("qasm"), "refused"),
    "qasm edited": (lambda r, g: (r / Q0).write_text((r / Q0).read_text() + "// x\n"), "refused"),
    "qasm files swapped": (swap(Q0, Q1), "refused"),
    "qasm renamed": (rename(Q0, "qasm/block0.head0.z.qasm"), "refused"),
    "weights and qasm swapped": (swap(W, Q0), "refused"),
    "weights a folder": (to_dir(W), "refused"),
    "manifest a folder": (to_dir(M), "refused"),
    **{
        f"no {key}": (edit_json(M, lambda d, k=key: d.pop(k)), "refused")
        for key in ("files", "qnns", "model", "format", "format_version", "manifest_sha256")
    },
    **{
        f"{key} of another type": (
            edit_json(M, lambda d, k=key, v=value: d.update({k: v})),
            "refused",
        )
        for key, value in (
            ("files", []),
            ("qnns", {}),
            ("model", "x"),
            ("format_version", "2"),
            ("normalization", [0.5]),
            ("per_token", 5),
        )
    },
    "normalization edited": (
        edit_json(M, lambda d: d["normalization"].update(mean=[0.4, 0.5, 0.5])),
        "refused",
    ),
    "dataset edited": (edit_json(M, lambda d: d["dataset"].update(name="bloodmnist")), "refused"),
    "classes edited": (
        edit_json(M, lambda d: d["model"]["config"].update(num_classes=2)),
        "refused",
    ),
    "pairs edited": (
        edit_json(M, lambda d: d["qnns"][0]["spec"].update(pairs=[[1, 0]])),
        "refused",
    ),
    "digest edited": (edit_json(M, lambda d: d["files"].update({W: "0" * 64})), "refused"),
    "file outside": (
        edit_json(M, lambda d: d["files"].update({"../../../etc/passwd": ""})),
        "refused",
    ),
    "file outside, forged": (
        edit_json(M, lambda d: d["files"].update({"../../../etc/passwd": "0" * 64}), rehash=True),
        "refused",
    ),
    "absolute file, forged": (
        edit_json(M, lambda d: d["files"].update({"/etc/passwd": "0" * 64}), rehash=True),
        "refused",
    ),
    "qnn name outside, forged": (
        edit_json(M, lambda d: d["qnns"][0].update(name="../../x"), rehash=True),
        "refused",
    ),
    "no files, forged": (edit_json(M, lambda d: d.pop("files"), rehash=True), "refused"),
    "qnns a dict, forged": (edit_json(M, lambda d: d.update(qnns={}), rehash=True), "refused"),
    "config a list, forged": (
        edit_json(M, lambda d: d["model"].update(config=[]), rehash=True),
        "refused",
    ),
    "huge config, forged": (
        edit_json(
            M, lambda d: d["model"]["config"].update(image_size=2**40, patch_size=1), rehash=True
        ),
        "refused",
    ),
    "link outside": (outside_link, "refused"),
    "reformatted": (reformat(M), "same"),
    "extra files": (extra_file, "same"),
    "old times": (touch, "same"),
    **{f"random edit {i}": (random_mutation(M), "refused") for i in range(8)},
    **{f"random edit {i}, forged": (random_mutation(M, rehash=True), "forged") for i in range(12)},
}


@pytest.fixture(scope="module")
def reference(bundle: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
    x = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    model, manifest = load_bundle(bundle)
    with torch.no_grad():
        return x, model(x), manifest


@pytest.mark.parametrize("case", list(BUNDLE_CASES))
def test_a_damaged_bundle_loads_identically_or_is_one_error(bundle, reference, tmp_path, case):
    damage, expect = BUNDLE_CASES[case]
    x, outputs, manifest = reference
    path = tmp_path / "bundle"
    shutil.copytree(bundle, path)
    damage(path, random.Random(f"{case}"))
    try:
        model, loaded = load_bundle(path)
    except QvitHwError as exc:
        one_line(str(exc))
        assert expect in ("refused", "either", "forged"), f"{case}: refused ({exc})"
        return
    assert expect in ("same", "either", "forged"), f"{case}: loaded"
    with torch.no_grad():
        assert torch.equal(model(x), outputs), case  # never a silent change of the model
    if expect != "forged":  # a forged digest may carry other metadata, never other outputs
        assert loaded == manifest, case


def test_enough_bundle_damage_is_tried():
    assert len(BUNDLE_CASES) >= 30


# --- runs ---------------------------------------------------------------------------------

RUN, CSV, ROWS, HIST, COST = (
    "run.json",
    "predictions.csv",
    "rows.npz",
    "histograms.npz",
    "cost.json",
)


def npz(name: str, edit: Callable[[dict[str, np.ndarray]], Any]) -> Damage:
    """Rewrite an .npz with ``edit`` applied to its arrays (a well-formed file)."""

    def apply(root: Path, rng: random.Random) -> None:
        with np.load(root / name) as archive:
            arrays = {k: archive[k] for k in archive.files}
        edit(arrays)
        np.savez(root / name, **arrays)

    return apply


def table(edit: Callable[[list[list[str]]], Any]) -> Damage:
    """Rewrite predictions.csv with ``edit`` applied to its rows (header first)."""

    def apply(root: Path, rng: random.Random) -> None:
        with (root / CSV).open(newline="") as f:
            rows = list(csv.reader(f))
        new = edit(rows)
        with (root / CSV).open("w", newline="") as f:
            csv.writer(f).writerows(rows if new is None else new)

    return apply


def set_cell(row: int, column: int, value: str) -> Damage:
    return table(lambda rows: rows[row].__setitem__(column, value))


def label_as_predicted(rows: list[list[str]]) -> None:
    for r in rows[1:]:
        r[1] = r[2]  # every image now correct: the run's recorded accuracy no longer holds


def crlf_to_lf(root: Path, rng: random.Random) -> None:
    (root / CSV).write_bytes((root / CSV).read_bytes().replace(b"\r\n", b"\n"))


RUN_CASES: dict[str, tuple[Damage, str]] = {
    "run.json truncated": (truncate(RUN, 0.5), "refused"),
    "run.json emptied": (truncate(RUN, 0.0), "refused"),
    "run.json garbage": (write(RUN, bytes(range(256))), "refused"),
    "run.json a list": (write(RUN, b"[1, 2]"), "refused"),
    "run.json a string": (write(RUN, b'"complete"'), "refused"),
    "run.json a folder": (to_dir(RUN), "refused"),
    "run.json running": (edit_json(RUN, lambda d: d.update(status="running")), "refused"),
    "run.json no status": (edit_json(RUN, lambda d: d.pop("status")), "refused"),
    "run.json 3 images": (edit_json(RUN, lambda d: d.update(images=3)), "refused"),
    "run.json 1 image": (edit_json(RUN, lambda d: d.update(images=1)), "refused"),
    "run.json images a string": (edit_json(RUN, lambda d: d.update(images="2")), "refused"),
    "run.json 9 classes": (edit_json(RUN, lambda d: d["classes"].pop()), "refused"),
    "run.json no summary": (edit_json(RUN, lambda d: d.pop("summary")), "refused"),
    "run.json accuracy edited": (
        edit_json(RUN, lambda d: d["summary"].update(accuracy=0.75)),
        "refused",
    ),
    "run.json backend a number": (edit_json(RUN, lambda d: d.update(backend=3)), "refused"),
    "run.json no dataset": (edit_json(RUN, lambda d: d.pop("dataset")), "refused"),
    "run.json reformatted": (reformat(RUN), "same"),
    "predictions row missing": (table(lambda rows: rows[:-1]), "refused"),
    "predictions header only": (table(lambda rows: rows[:1]), "refused"),
    "predictions row repeated": (table(lambda rows: [*rows, rows[-1]]), "refused"),
    "predictions empty": (write(CSV, b""), "refused"),
    "predictions truncated": (truncate(CSV, 0.7), "refused"),
    "predictions garbage": (write(CSV, bytes(range(256)) * 4), "refused"),
    "predictions column removed": (table(lambda rows: [r[:-1] for r in rows]), "refused"),
    "predictions labels edited": (table(label_as_predicted), "refused"),
    "predictions pred edited": (set_cell(1, 2, "11"), "refused"),
    "predictions not a number": (set_cell(2, 6, "nan"), "refused"),
    "predictions probability edited": (set_cell(1, 4, "0.5"), "refused"),
    "predictions deleted": (delete(CSV), "refused"),
    "predictions renamed": (rename(CSV, "predictions.old.csv"), "refused"),
    "predictions and cost swapped": (swap(CSV, COST), "refused"),
    "predictions LF endings": (crlf_to_lf, "refused"),  # bytes differ from the recorded hash
    "predictions a label to another class": (set_cell(1, 1, "3"), "refused"),
    **{f"rows byte {i}": (flip(ROWS), "either") for i in range(5)},
    "rows truncated": (truncate(ROWS, 0.5), "refused"),
    "rows emptied": (truncate(ROWS, 0.0), "refused"),
    "rows garbage": (write(ROWS, bytes(range(256)) * 8), "refused"),
    "rows no arrays": (lambda r, g: np.savez(r / ROWS), "refused"),
    "rows no stderr": (npz(ROWS, lambda a: a.pop("stderr")), "refused"),
    "rows pickled names": (
        npz(ROWS, lambda a: a.update(names=np.array(list(a["names"]), dtype=object))),
        "refused",
    ),
    "rows float32": (npz(ROWS, lambda a: a.update(estimate=a["estimate"].astype("f4"))), "refused"),
    "rows 3 qubits": (npz(ROWS, lambda a: a.update(estimate=a["estimate"][:, :3])), "refused"),
    "rows none": (npz(ROWS, lambda a: a.update({k: v[:0] for k, v in a.items()})), "refused"),
    "rows NaN": (npz(ROWS, lambda a: a["stderr"].__setitem__((0, 0), np.nan)), "refused"),
    "rows qnn out of range": (npz(ROWS, lambda a: a["qnn"].__setitem__(0, 99)), "refused"),
    "rows estimates edited": (npz(ROWS, lambda a: a["estimate"].__imul__(0.9)), "refused"),
    "rows half the rows": (
        npz(ROWS, lambda a: a.update({k: v[: len(v) // 2] for k, v in a.items() if k != "names"})),
        "refused",
    ),
    "rows and histograms swapped": (swap(ROWS, HIST), "refused"),
    "rows deleted": (delete(ROWS), "refused"),
    **{f"histograms byte {i}": (flip(HIST), "either") for i in range(3)},
    "histograms truncated": (truncate(HIST, 0.5), "refused"),
    "histograms no counts": (npz(HIST, lambda a: a.pop("counts")), "refused"),
    "histograms other rows": (npz(HIST, lambda a: a["row"].__iadd__(1)), "refused"),
    "histograms negative": (npz(HIST, lambda a: a["counts"].__imul__(-1)), "refused"),
    "cost deleted": (delete(COST), "refused"),
    "cost a list": (write(COST, b"[]"), "refused"),
    "cost truncated": (truncate(COST, 0.5), "refused"),
    "cost reformatted": (reformat(COST), "refused"),
    "cost shots edited": (edit_json(COST, lambda d: d.update(shots=d["shots"] + 1)), "refused"),
    "outputs hash edited": (
        edit_json(RUN, lambda d: d["outputs"].update({"cost.json": "0" * 64})),
        "refused",
    ),
    "a class name a number": (
        edit_json(RUN, lambda d: d["classes"].__setitem__(1, 1e308)),
        "refused",
    ),
    "jobs.jsonl deleted": (delete("jobs.jsonl"), "refused"),
    "journal deleted": (delete("journal.sqlite"), "same"),
    "an extra file": (write("notes.txt", b"mine"), "same"),
    **{f"random truncation {name}": (truncate(name), "either") for name in (RUN, CSV, COST)},
    **{f"random edit {i}": (random_mutation(RUN), "either") for i in range(4)},
}


def _report(run: Path) -> Any:
    return runner.invoke(app, ["report", str(run)])


def _numbers(run: Path) -> dict:
    doc = json.loads((run / "report.json").read_text())
    doc.pop("run")  # the run's path
    return doc


@pytest.fixture(scope="module")
def finished_run(bundle, tmp_path_factory) -> tuple[Path, dict]:
    """A complete `shots` run of 2 images, and the numbers of its report."""
    root = tmp_path_factory.mktemp("fuzz_run")
    options = RunOptions(bundle, backend="shots", limit=2, scheduler=SchedulerConfig(shots=200))
    run_bundle(options, root / "run")
    copy = root / "reference"
    shutil.copytree(root / "run", copy)
    result = _report(copy)
    assert result.exit_code == 0, result.output
    return root / "run", _numbers(copy)


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_a_damaged_run_reports_identically_or_is_one_line(finished_run, tmp_path, case):
    damage, expect = RUN_CASES[case]
    original, numbers = finished_run
    run = tmp_path / "run"
    shutil.copytree(original, run)
    damage(run, random.Random(case))
    before = sorted(p.name for p in run.iterdir()) if run.is_dir() else None
    result = _report(run)
    if result.exit_code == 0:
        assert expect in ("same", "either"), f"{case}: reported\n{result.output}"
        assert _numbers(run) == numbers, case  # never a silent change
        return
    assert expect in ("refused", "either"), f"{case}: refused\n{result.output}"
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    one_line(lines[0])
    assert sorted(p.name for p in run.iterdir()) == before  # no report.json or .html


def test_enough_run_damage_is_tried():
    assert len(RUN_CASES) >= 30
