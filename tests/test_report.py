"""`qvit-hw report`: every number recomputed from a run's raw files, and the HTML in a browser.

Runs here use a QViT on the offline digits data with 7x7 patches (16 tokens, 96 QNN rows
per image), as tests/test_run.py does, so that each takes a second or a few.
"""

import base64
import csv
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from cli_output import error_line
from qiskit.quantum_info import hellinger_fidelity
from sklearn.metrics import confusion_matrix, roc_auc_score
from typer.testing import CliRunner

from qvit_hw.cli import app
from qvit_hw.jobs.config import SchedulerConfig
from qvit_hw.jobs.run import RunOptions, run_bundle
from qvit_hw.transpile import get_target

runner = CliRunner()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def runs(bundle, tmp_path_factory) -> dict[str, Path]:
    """Complete runs of the first test images: exact, ideal shots, and fake_brisbane with
    readout mitigation (its report is also written, beside the shots run)."""
    root = tmp_path_factory.mktemp("runs")
    settings = {
        "statevector": RunOptions(bundle, limit=4),
        "shots": RunOptions(bundle, backend="shots", limit=12,
                            scheduler=SchedulerConfig(shots=400, job_size=40)),
        "fake": RunOptions(bundle, backend="fake_brisbane", limit=2, mitigate="readout",
                           scheduler=SchedulerConfig(shots=300, poll_interval=0.0)),
    }  # fmt: skip
    out = {name: root / name for name in settings}
    for name, options in settings.items():
        run_bundle(options, out[name])
    args = ["report", str(out["fake"]), "--against", str(out["shots"]), "--out", str(out["fake"])]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


def raw(run: Path) -> tuple[dict[str, np.ndarray], list[dict[str, str]]]:
    with np.load(run / "rows.npz") as npz:
        rows = {k: npz[k] for k in npz.files}
    with (run / "predictions.csv").open() as f:
        return rows, list(csv.DictReader(f))


def report(run: Path) -> dict:
    if not (run / "report.json").exists():
        assert runner.invoke(app, ["report", str(run)]).exit_code == 0
    return json.loads((run / "report.json").read_text())


@pytest.mark.parametrize("name", ["shots", "fake"])
def test_z_errors_match_the_raw_rows(runs, name):
    rows, _ = raw(runs[name])
    z = report(runs[name])["z"]
    d = rows["estimate"] - rows["exact"]  # (R, n)
    assert z["values"] == d.size
    assert z["mae"] == pytest.approx(np.abs(d).mean(), rel=1e-12)
    assert z["rmse"] == pytest.approx(np.sqrt(np.mean(d**2)), rel=1e-12)
    assert z["within_2se"] == pytest.approx(np.mean(np.abs(d) <= 2 * rows["stderr"]))
    corr = np.corrcoef(rows["estimate"].ravel(), rows["exact"].ravel())[0, 1]
    assert z["correlation"] == pytest.approx(corr, rel=1e-12)
    raw_mae = np.abs(rows["estimate_raw"] - rows["exact"]).mean()
    assert report(runs[name])["z_raw"]["mae"] == pytest.approx(raw_mae, rel=1e-12)
    # shots alone: errors are shot noise, about 95 % within 2 standard errors
    if name == "shots":
        assert 0.9 < z["within_2se"] < 0.99
        assert z["mae"] == pytest.approx(z["shot_noise_mae"], rel=0.1)


def test_errors_per_qnn_and_per_physical_qubit(runs):
    rows, _ = raw(runs["fake"])
    numbers = report(runs["fake"])
    err = np.abs(rows["estimate"] - rows["exact"])
    names = list(rows["names"])
    assert [r["qnn"] for r in numbers["per_qnn"]] == names
    for i, row in enumerate(numbers["per_qnn"]):
        assert row["mae"] == pytest.approx(err[rows["qnn"] == i].mean(), rel=1e-12)
    per_qubit = {r["qubit"]: r["mae"] for r in numbers["per_qubit"]}
    assert set(per_qubit) == set(np.unique(rows["qubits"]).tolist())
    assert len(per_qubit) > 4  # packed copies on many physical qubits of the chip
    assert set(per_qubit) <= set(range(get_target("ibm_brisbane", live=False).num_qubits))
    for q, mae in per_qubit.items():
        assert mae == pytest.approx(err[rows["qubits"] == q].mean(), rel=1e-12)


@pytest.mark.parametrize("name", ["shots", "fake", "statevector"])
def test_agreement_accuracy_auc_and_confusion_match_predictions(runs, name):
    _, table = raw(runs[name])
    labels = np.array([int(r["label"]) for r in table])
    pred = np.array([int(r["pred"]) for r in table])
    exact = np.array([int(r["pred_exact"]) for r in table])
    p = report(runs[name])["predictions"]
    assert p["images"] == len(table)
    assert p["agreement"] == pytest.approx(np.mean(pred == exact))
    assert p["accuracy"] == pytest.approx(np.mean(pred == labels))
    assert p["exact_accuracy"] == pytest.approx(np.mean(exact == labels))
    for key, prefix in (("auc", "prob_"), ("exact_auc", "prob_exact_")):
        probs = np.array([[float(r[f"{prefix}{c}"]) for c in range(10)] for r in table])
        aucs = [roc_auc_score(labels == c, probs[:, c]) for c in range(10)
                if 0 < np.sum(labels == c) < len(labels)]  # fmt: skip
        assert p[key] == pytest.approx(np.mean(aucs), rel=1e-12)
    np.testing.assert_array_equal(p["confusion"], confusion_matrix(exact, pred, labels=range(10)))


def test_cost_table_is_the_runs_cost(runs):
    cost = json.loads((runs["fake"] / "cost.json").read_text())
    table = report(runs["fake"])["cost"]
    for key in ("rows", "executions", "shots", "jobs", "retries", "wall_seconds", "qpu_seconds"):
        assert table[key] == cost[key]
    assert table["shots"] == cost["executions"] * 300 and table["packing"] == cost["packing"]


@pytest.mark.parametrize("name", ["shots", "fake"])
def test_hellinger_fidelity_of_sampled_rows_matches_qiskit(runs, name):
    rows, _ = raw(runs[name])
    with np.load(runs[name] / "histograms.npz") as npz:
        ids, counts, exact = npz["row"], npz["counts"], npz["exact"]
    shots = 400 if name == "shots" else 300
    assert len(ids) >= 4 and (counts.sum(axis=1) == shots).all()
    signs = 1 - 2 * ((np.arange(16)[:, None] >> np.arange(4)) & 1)  # (16, 4): bit i = qubit i
    # the exact distribution is that of the row's QNN; the counts are its raw shots
    np.testing.assert_allclose(exact @ signs, rows["exact"][ids], atol=1e-12)
    np.testing.assert_allclose(counts @ signs / shots, rows["estimate_raw"][ids], atol=1e-12)
    fidelity = [
        hellinger_fidelity({s: int(c) for s, c in enumerate(cnt) if c}, dict(enumerate(ex)))
        for cnt, ex in zip(counts, exact, strict=True)
    ]
    h = report(runs[name])["hellinger"]
    assert h["rows"] == len(ids)
    assert h["mean"] == pytest.approx(np.mean(fidelity), rel=1e-9)
    assert h["min"] == pytest.approx(np.min(fidelity), rel=1e-9)
    if name == "shots":  # sampling alone: 16 outcomes from 400 shots lose about 1-2 %
        assert h["min"] > 0.95 and h["mean"] < 1.0


def test_an_exact_run_reports_no_error_and_no_histograms(runs):
    numbers = report(runs["statevector"])
    assert numbers["z"]["mae"] < 1e-12 and numbers["z"]["within_2se"] == 1.0
    assert numbers["hellinger"] is None and numbers["predictions"]["agreement"] == 1.0
    assert not (runs["statevector"] / "histograms.npz").exists()


def test_against_puts_both_runs_in_the_json_and_side_by_side_in_the_html(runs):
    doc = json.loads((runs["fake"] / "report.json").read_text())
    assert doc["backend"] == "fake_brisbane" and doc["against"]["backend"] == "shots"
    page = (runs["fake"] / "report.html").read_text()
    assert "fake_brisbane (300 shots, mitigate=readout)" in page and "shots (400 shots)" in page
    assert "<script" not in page and not re.search(r'(src|href)="(?!data:)|url\(', page)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    # scatter, errors, per QNN, per qubit, Hellinger, agreement vs what the run spent,
    # confusion vs exact and vs true labels
    assert len(images) == 2 * 8
    import matplotlib.image as mpimg

    for data in images:
        pixels = mpimg.imread(io.BytesIO(base64.b64decode(data)), format="png")
        assert pixels.ndim == 3 and pixels.std() > 0.05  # decodes, and is not blank


def test_report_of_a_missing_or_unfinished_run_fails_with_one_line(runs, tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "not a run directory" in result.output
    unfinished = tmp_path / "unfinished"
    shutil.copytree(runs["statevector"], unfinished)
    run = json.loads((unfinished / "run.json").read_text())
    (unfinished / "run.json").write_text(json.dumps({**run, "status": "interrupted"}))
    from qvit_hw.errors import DataError
    from qvit_hw.report import write_report

    with pytest.raises(DataError, match=r"the run is interrupted, not complete; .*--resume"):
        write_report(unfinished)
    with pytest.raises(DataError, match=r"not a run directory \(no run.json\)"):
        write_report(tmp_path / "nope")


# a script the browser test adds to the report: where the page lays out what it shows
MEASURE_JS = """
window.addEventListener("load", () => {
  const box = (r) => [r.left + scrollX, r.top + scrollY, r.right + scrollX, r.bottom + scrollY];
  const texts = [...document.querySelectorAll("p.about b")].map((b) => {
    const range = document.createRange();
    range.selectNodeContents(b);
    return {text: b.textContent, box: box(range.getBoundingClientRect()),
            font: parseFloat(getComputedStyle(b).fontSize)};
  });
  const images = [...document.images].map((img) => ({
    alt: img.alt, box: box(img.getBoundingClientRect()),
    natural: [img.naturalWidth, img.naturalHeight]}));
  const root = document.documentElement;
  root.dataset.measured = JSON.stringify({page: [root.scrollWidth, root.scrollHeight],
                                          texts, images});
});
"""
LEGIBLE_PX = 9  # the smallest text, in screen pixels, the report may show


def chromium(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess:
    """Headless chromium on ``page`` at one device pixel per CSS pixel; it lets the page
    settle for 10 s of virtual time (load event and scripts run), however busy the CPU."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
            "--v=0", "--hide-scrollbars", "--force-device-scale-factor=1",
            "--virtual-time-budget=10000", *extra, page.as_uri()]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    return proc


def test_report_html_renders_in_headless_chromium(runs, tmp_path, monkeypatch):
    """The browser's screenshot of `report A --against B`, taken at the page's full height,
    shows the data set, the class names, both labelled confusion matrices per run and the
    chip with its qubit numbers, all at a legible size: the page's own layout (boxes a
    script in the page measures) puts each inside the screenshot, the screenshot's pixels
    there are the plot's, and the plot draws its labels at >= 9 screen pixels."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (make browser installs it)")
        pytest.skip("chromium is not installed: `make browser` (as root) installs it")
    import hashlib
    import html

    import matplotlib.image as mpimg
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    import qvit_hw.plots as plots
    from qvit_hw.report import CONFUSIONS

    # PNG sha256 -> its texts: (axes, kind, text, font size in PNG pixels, inside the PNG)
    drawn: dict[str, list[tuple[int, str, str, float, bool]]] = {}
    png = plots._png

    def text_spy(fig):
        data = png(fig)
        renderer = FigureCanvasAgg(fig).get_renderer()  # the PNG's pixels: same dpi
        width, height = fig.bbox.width, fig.bbox.height
        texts = []
        for a, ax in enumerate(fig.axes):
            kinds = {"tick": [*ax.get_xticklabels(), *ax.get_yticklabels()], "text": ax.texts,
                     "title": [ax.title], "label": [ax.xaxis.label, ax.yaxis.label]}  # fmt: skip
            for kind, group in kinds.items():
                for t in group:
                    if not (t.get_visible() and t.get_text()):
                        continue
                    b = t.get_window_extent(renderer)
                    inside = b.x0 >= -1 and b.y0 >= -1 and b.x1 <= width + 1 and b.y1 <= height + 1
                    size = t.get_fontsize() * fig.dpi / 72
                    texts.append((a, kind, t.get_text(), size, inside))
        drawn[hashlib.sha256(data).hexdigest()] = texts
        return data

    monkeypatch.setattr(plots, "_png", text_spy)
    out = tmp_path / "report"
    args = ["report", str(runs["fake"]), "--against", str(runs["shots"]), "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    source = (out / "report.html").read_text()
    images = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]*)"', source)
    pngs = {html.unescape(alt): base64.b64decode(data) for alt, data in images}
    assert len(pngs) == 16 and "Fidelity report" in source
    page = tmp_path / "measured.html"
    page.write_text(source.replace("</body>", f"<script>{MEASURE_JS}</script></body>"))

    def measure(window: str) -> dict:
        dom = chromium(tmp_path, page, f"--window-size={window}", "--dump-dom").stdout
        found = re.search(r'data-measured="([^"]*)"', dom)
        assert found, dom[-2000:]
        return json.loads(html.unescape(found.group(1)))

    width, height = measure("1280,1000")["page"]
    assert width <= 1280, (width, height)  # nothing wider than the window
    window = f"1280,{height}"  # the whole page: the screenshot shows everything on it
    layout = measure(window)  # where things lie in the screenshot
    assert layout["page"] == [width, height]
    shot = tmp_path / "shot.png"
    chromium(tmp_path, page, f"--window-size={window}", f"--screenshot={shot}")
    pixels = mpimg.imread(shot)[..., :3]  # (height, 1280, 3) in [0, 1]
    assert pixels.shape[:2] == (height, 1280) and pixels.std() > 0.05

    def crop(box: list[float]) -> np.ndarray:
        left, top, right, bottom = box
        assert 0 <= left < right <= 1280 and 0 <= top < bottom <= height, box  # in the shot
        return pixels[round(top) : round(bottom), round(left) : round(right)]

    # the data set and the class names: text in the page, inked in the screenshot
    doc = report(runs["fake"])
    classes = ", ".join(f"{i}: {c}" for i, c in enumerate(doc["classes"]))
    for name in ("digits", classes):
        seen = [t for t in layout["texts"] if t["text"] == name]
        assert len(seen) == 2, (name, layout["texts"])  # each run says it
        for t in seen:
            assert t["font"] >= LEGIBLE_PX and t["box"][3] - t["box"][1] >= LEGIBLE_PX, t
            assert (crop(t["box"]).mean(axis=-1) < 0.5).sum() >= 4 * len(name), t  # ink

    def shown(alt_start: str) -> list[tuple[dict, float, list]]:
        """Each image whose alt text starts so: its layout, the screen pixels per PNG
        pixel, and its texts, after checking that the screenshot shows the whole PNG."""
        from PIL import Image

        found = []
        for img in layout["images"]:
            if not img["alt"].startswith(alt_start):
                continue
            data = pngs[img["alt"]]
            left, top, right, bottom = img["box"]
            scale = (right - left) / img["natural"][0]
            assert scale == pytest.approx((bottom - top) / img["natural"][1], abs=0.01), img
            painted = crop(img["box"])
            original = Image.open(io.BytesIO(data)).convert("RGB")
            original = original.resize((painted.shape[1], painted.shape[0]))
            same = np.abs(painted - np.asarray(original) / 255).max(axis=-1) <= 0.1
            assert same.mean() > 0.9, (img["alt"], same.mean())  # the plot, all of it
            found.append((img, scale, drawn[hashlib.sha256(data).hexdigest()]))
        return found

    def legible(texts: list, scale: float, kind: str, wanted: str) -> None:
        """``wanted`` is drawn as a ``kind`` of text in the plot (its first axes), inside
        the PNG, at >= 9 screen pixels."""
        sizes = [px * scale for a, k, text, px, inside in texts
                 if a == 0 and k == kind and text == wanted and inside]  # fmt: skip
        assert sizes and min(sizes) >= LEGIBLE_PX, (kind, wanted, sizes, scale)

    for title, _, truth in CONFUSIONS:
        both = shown(f"{title}: ")
        assert len(both) == 2, title  # per run
        for _, scale, texts in both:
            legible(texts, scale, "title", title)
            for label in (truth, "backend's prediction"):
                legible(texts, scale, "label", label)
            for name in doc["classes"]:
                legible(texts, scale, "tick", name)
    (chip,) = shown("Error per physical qubit: fake_brisbane")
    _, scale, texts = chip
    assert any(t.startswith("heavy-hex: ") for _, _, t, _, _ in texts)  # on its lattice
    for row in doc["per_qubit"]:
        legible(texts, scale, "text", str(row["qubit"]))


def rewrite_npz(file: Path, edit) -> None:
    with np.load(file) as npz:
        arrays = {k: npz[k] for k in npz.files}
    edit(arrays)
    np.savez(file, **arrays)  # np.savez adds .npz: file already ends with it


def edit_json(name: str, edit):
    def apply(run: Path) -> None:
        doc = json.loads((run / name).read_text())
        edit(doc)  # in place
        (run / name).write_text(json.dumps(doc))

    return apply


def edit_csv(edit):
    def apply(run: Path) -> None:
        with (run / "predictions.csv").open(newline="") as f:
            rows = list(csv.reader(f))
        rows = edit(rows) or rows
        with (run / "predictions.csv").open("w", newline="") as f:
            csv.writer(f).writerows(rows)

    return apply


def truncate(name: str, keep: float):
    def apply(run: Path) -> None:
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: int(len(data) * keep)])

    return apply


def label_as_predicted(rows):
    rows[1][1] = rows[1][2]  # image 0 now "correct": the accuracy the run recorded changes
    rows[1][-3] = rows[1][-2]  # and its label's name with it


def label_name_edited(rows):
    rows[1][-3] = "cat"  # the class names after the numbers must be run.json's


BAD_RUNS = {
    "one image row missing": (
        edit_csv(lambda rows: rows[:-1]),
        r"predictions\.csv has 11 image rows, run\.json says the run has 12 images; the run's "
        r"outputs are incomplete or were changed after it: run it again",
    ),
    "predictions garbage": (
        lambda run: (run / "predictions.csv").write_text("no,such\nheader,at all\n"),
        r"predictions\.csv does not start with the header `qvit-hw run` writes for 10 classes",
    ),
    "predictions empty": (
        lambda run: (run / "predictions.csv").write_text(""),
        r"predictions\.csv does not start with the header",
    ),
    "predictions not utf-8": (
        lambda run: (run / "predictions.csv").write_bytes(b"image,\xff\xfe"),
        r"predictions\.csv is not readable text \('utf-8' codec can't decode",
    ),
    "predictions short row": (
        edit_csv(lambda rows: [*rows[:3], rows[3][:5], *rows[4:]]),
        r"predictions\.csv has a row of the wrong length",
    ),
    "predictions not a number": (
        edit_csv(lambda rows: rows[2].__setitem__(5, "0.1x")),
        r"predictions\.csv holds a value that is not a number \(could not convert string to",
    ),
    "predictions unknown class": (
        edit_csv(lambda rows: rows[2].__setitem__(1, "10")),
        r"predictions\.csv: a label or prediction is not a class in 0\.\.9",
    ),
    "predictions label name edited": (
        edit_csv(label_name_edited),
        r"predictions\.csv: its class names are not those of run\.json for its indices",
    ),
    "predictions label edited": (
        edit_csv(label_as_predicted),
        r": accuracy from the run's files is 0\.\d+, its run\.json summary says 0(\.\d+)?; the run",
    ),
    "run.json a list": (
        lambda run: (run / "run.json").write_text("[1, 2]"),
        r"run\.json holds a JSON list, not the object `qvit-hw run` writes; it is not a run's",
    ),
    "run.json a number": (
        lambda run: (run / "run.json").write_text("3"),
        r"run\.json holds a JSON int, not the object",
    ),
    "run.json truncated": (truncate("run.json", 0.5), r"run\.json is not valid JSON \("),
    "run.json running": (
        edit_json("run.json", lambda d: d.update(status="running")),
        r"the run is running, not complete; finish it with `qvit-hw run \.\.\. --resume` first",
    ),
    "run.json no images": (
        edit_json("run.json", lambda d: d.pop("images")),
        r"run\.json has no 'images'; the run's outputs",
    ),
    "run.json images a string": (
        edit_json("run.json", lambda d: d.update(images="12")),
        r"run\.json has 'images' = '12' of type str, not int; the run's outputs",
    ),
    "run.json no summary": (
        edit_json("run.json", lambda d: d.pop("summary")),
        r"run\.json has no 'summary'",
    ),
    "rows.npz truncated": (
        truncate("rows.npz", 0.6),
        r"rows\.npz is damaged or not a NumPy archive \(File is not a zip file\); the run's",
    ),
    "rows.npz empty file": (
        lambda run: (run / "rows.npz").write_bytes(b""),
        r"rows\.npz is damaged or not a NumPy archive \(File is not a zip file\)",
    ),
    "rows.npz no arrays": (
        lambda run: np.savez(run / "rows.npz"),
        r"rows\.npz has no 'names' array",
    ),
    "rows.npz no rows": (
        lambda run: rewrite_npz(
            run / "rows.npz", lambda a: a.update({k: v[:0] for k, v in a.items() if k != "names"})
        ),
        r"rows\.npz: it holds no rows",
    ),
    "rows.npz no estimate": (
        lambda run: rewrite_npz(run / "rows.npz", lambda a: a.pop("estimate")),
        r"rows\.npz has no 'estimate' array",
    ),
    "rows.npz pickled": (
        lambda run: rewrite_npz(
            run / "rows.npz", lambda a: a.update(names=np.array(list(a["names"]), dtype=object))
        ),
        r"rows\.npz is damaged or not a NumPy archive \(Object arrays cannot be loaded when "
        r"allow_pickle=False\)",
    ),
    "rows.npz estimates edited": (
        lambda run: rewrite_npz(run / "rows.npz", lambda a: a["estimate"].__imul__(0.5)),
        r": z_mae from the run's files is [\d.e-]+, its run\.json summary says [\d.e-]+; the",
    ),
    "histograms truncated": (
        truncate("histograms.npz", 0.7),
        r"histograms\.npz is damaged or not a NumPy archive \(",
    ),
    "histograms garbage": (
        lambda run: (run / "histograms.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 64),
        r"histograms\.npz is damaged or not a NumPy archive \(",
    ),
    "histograms of other rows": (
        lambda run: rewrite_npz(run / "histograms.npz", lambda a: a["row"].__iadd__(1)),
        r"histograms\.npz: its exact distributions are not those of its rows",
    ),
    "cost.json a list": (
        lambda run: (run / "cost.json").write_text("[]"),
        r"cost\.json holds a JSON list; the run's outputs",
    ),
    "cost.json missing": (
        lambda run: (run / "cost.json").unlink(),
        r": the run is complete but cost\.json is missing; the run's outputs",
    ),
}


@pytest.mark.parametrize("case", list(BAD_RUNS))
def test_report_of_a_damaged_run_is_one_line_and_writes_nothing(runs, tmp_path, case):
    damage, message = BAD_RUNS[case]
    run = tmp_path / "run"
    shutil.copytree(runs["shots"], run, ignore=shutil.ignore_patterns("report.*"))
    damage(run)
    before = sorted(p.name for p in run.iterdir())
    line = error_line(runner.invoke(app, ["report", str(run)]))
    assert re.search(message, line), line
    assert sorted(p.name for p in run.iterdir()) == before  # no report.json or .html


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_report_refuses_a_file_as_out_and_creates_nothing(runs, tmp_path, where):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    out = file if where == "file" else file / "report"
    line = error_line(runner.invoke(app, ["report", str(runs["statevector"]), "--out", str(out)]))
    assert line == (
        f"error: --out: {file} is a file, not a folder"
        if where == "file"
        else f"error: --out: {out} lies under {file}, which is a file"
    )
    assert sorted(tmp_path.iterdir()) == [file] and file.read_text() == "mine"


def test_every_correction_is_shown_side_by_side_with_its_calibration_cost(runs):
    doc = json.loads((runs["fake"] / "report.json").read_text())
    stages = doc["corrections"]
    assert [s["name"] for s in stages] == ["raw", "readout"]
    assert stages[0]["z_mae"] == pytest.approx(doc["z_raw"]["mae"])
    assert stages[1]["z_mae"] == pytest.approx(doc["z"]["mae"])
    assert stages[1]["z_mae"] < stages[0]["z_mae"]
    assert stages[1]["agreement"] == doc["predictions"]["agreement"]
    assert doc["cost"]["calibration_jobs"] == 1 and doc["cost"]["calibration_executions"] == 2
    page = (runs["fake"] / "report.html").read_text()
    assert "Corrections side by side" in page and "calibration share" in page


# --- side by side: one colour scale, a warning when the runs differ; the chip's lattice ----


def test_compared_runs_that_differ_say_so_in_one_line_each(runs, tmp_path):
    doc = json.loads((runs["fake"] / "report.json").read_text())
    warnings = doc["warnings"]
    assert len(warnings) == 2  # 2 vs 12 images, 300 vs 400 shots; the same data set
    assert warnings[0].startswith(f"the runs differ in images: 2 in {runs['fake']}, 12 in ")
    assert "differ in shots: 300 in" in warnings[1] and "not directly comparable" in warnings[1]
    page = (runs["fake"] / "report.html").read_text()
    assert page.count('<p class="warning">warning: the runs differ in') == 2
    result = runner.invoke(
        app, ["report", str(runs["fake"]), "--against", str(runs["shots"]), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0 and "warning: the runs differ in images" in result.output
    same = runner.invoke(app, ["report", str(runs["fake"]), "--against", str(runs["fake"]),
                               "--out", str(tmp_path / "same")])  # fmt: skip
    assert same.exit_code == 0 and "warning" not in same.output
    assert json.loads((tmp_path / "same" / "report.json").read_text())["warnings"] == []


def test_the_report_names_data_set_bundle_classes_and_both_confusions(runs, tmp_path):
    """Finding 9: the report named neither data set nor bundle, showed classes as numbers,
    gave no reason for n/a, and compared the backend with the exact model only."""
    one = tmp_path / "one"
    doc = report(runs["shots"])
    _, table = raw(runs["shots"])
    labels = np.array([int(r["label"]) for r in table])
    pred = np.array([int(r["pred"]) for r in table])
    truth = confusion_matrix(labels, pred, labels=range(10))
    np.testing.assert_array_equal(doc["predictions"]["confusion_true"], truth)
    assert doc["classes"] == [str(i) for i in range(10)] and doc["dataset"] == "digits"
    assert doc["cost"]["shots_per_image"] == pytest.approx(doc["cost"]["shots"] / 12)
    page = (runs["shots"] / "report.html").read_text()
    assert "data set <b>digits</b>" in page and "classes <b>0: 0, 1: 1," in page
    assert f"bundle {json.loads((runs['shots'] / 'run.json').read_text())['bundle']};" in page
    for title in ("backend vs the exact model", "backend vs the true labels"):
        assert f'alt="Predictions: {title}: ' in page
    # one image: its AUC is n/a, and the report says why
    bundle = json.loads((runs["shots"] / "run.json").read_text())["bundle"]
    result = runner.invoke(app, ["run", bundle, "--limit", "1", "--out", str(one)])
    assert result.exit_code == 0, result.output
    doc = report(one)
    assert doc["predictions"]["auc"] is None
    only = raw(one)[1][0]["label_name"]
    assert doc["predictions"]["auc_na_reason"] == f"the 1 images hold only class '{only}'"
    page = (one / "report.html").read_text()
    assert f"note: ROC AUC is n/a: the 1 images hold only class &#x27;{only}&#x27;" in page
    assert "note: the test split (1 images) holds only class" in page


def test_against_writes_its_own_file_and_leaves_each_runs_report(runs, tmp_path):
    """Finding 4: `report A --against B` replaced A's own report.html."""
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(runs["statevector"], a)
    shutil.copytree(runs["shots"], b)
    for run in (a, b):
        assert runner.invoke(app, ["report", str(run)]).exit_code == 0
    own = {run: (run / "report.html").read_bytes() for run in (a, b)}
    result = runner.invoke(app, ["report", str(a), "--against", str(b)])
    assert result.exit_code == 0, result.output
    assert f"wrote {a / 'report-vs-b.json'} and {a / 'report-vs-b.html'}" in result.output
    assert {run: (run / "report.html").read_bytes() for run in (a, b)} == own
    doc = json.loads((a / "report-vs-b.json").read_text())
    assert doc["against"]["backend"] == "shots"
    assert sorted(p.name for p in b.iterdir()) == sorted(p.name for p in runs["shots"].iterdir())


def test_side_by_side_plots_share_one_colour_scale(runs, tmp_path, monkeypatch):
    import qvit_hw.report as report_module

    seen = {"chip": [], "confusion": []}
    chip, confusion = report_module.chip_plot, report_module.confusion_plot

    def chip_spy(per_qubit, edges, num_qubits, *, vmax=None):
        seen["chip"].append((max(r["mae"] for r in per_qubit), vmax))
        return chip(per_qubit, edges, num_qubits, vmax=vmax)

    def confusion_spy(matrix, *, vmax=None, **labels):
        seen["confusion"].append((int(matrix.max()), vmax))
        return confusion(matrix, vmax=vmax, **labels)

    monkeypatch.setattr(report_module, "chip_plot", chip_spy)
    monkeypatch.setattr(report_module, "confusion_plot", confusion_spy)
    report_module.write_report(runs["fake"], against=runs["shots"], out=tmp_path)
    (own_a, top_a), (own_b, top_b) = seen["chip"]
    assert top_a == top_b == max(own_a, own_b) and own_a != own_b
    assert len(seen["confusion"]) == 4  # vs the exact model and vs the true labels, per run
    assert len({v for _, v in seen["confusion"]}) == 1
    assert seen["confusion"][0][1] == max(c for c, _ in seen["confusion"])
    seen["chip"].clear()
    report_module.write_report(runs["fake"], out=tmp_path / "alone")
    assert seen["chip"][0][1] is None  # one run: its own scale


def test_headless_screenshot_shows_the_chip_on_its_heavy_hex_lattice(runs, tmp_path):
    """The fake_brisbane run's chip, as a browser draws the report: the idle qubits' grey
    discs sit on 13 rows of Eagle's heavy-hex (7 rows of qubits, 6 of bridges) and 15
    columns, where a spring layout would scatter them."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (make browser installs it)")
        pytest.skip("chromium is not installed: `make browser` (as root) installs it")
    from scipy import ndimage
    from scipy.cluster.hierarchy import fclusterdata

    from qvit_hw.report import write_report

    page = write_report(runs["fake"], out=tmp_path / "report")
    shot = tmp_path / "shot.png"
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
            "--force-device-scale-factor=1", "--virtual-time-budget=10000",
            f"--screenshot={shot}", "--window-size=1400,3600",
            page.as_uri()]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import matplotlib.image as mpimg

    rgb = (mpimg.imread(shot)[..., :3] * 255).round()
    grey = (np.abs(rgb - 224) <= 2).all(axis=-1)  # the idle discs' fill, #e0e0e0
    labels, count = ndimage.label(grey)
    sizes = ndimage.sum(grey, labels, range(1, count + 1))
    discs = [i + 1 for i, s in enumerate(sizes) if 8 <= s <= 80]
    centres = np.array(ndimage.center_of_mass(grey, labels, discs))  # (discs, (y, x))
    # the chip drawing: the one dense cluster of grey discs (single linkage at 100 px, so a
    # grey mark of a plot beside or below the chip is not counted with it)
    cluster = fclusterdata(centres, t=100, criterion="distance", method="single")
    chip = centres[cluster == np.bincount(cluster).argmax()]
    used = len(report(runs["fake"])["per_qubit"])
    assert abs(len(chip) - (127 - used)) <= 2, (len(chip), used)

    def on_lattice(values, most):
        """Values on a regular pitch (the lattice's), in at most ``most`` lines."""
        values = np.sort(values)
        gaps = np.diff(values)
        span = values[-1] - values[0]
        pitch = span / round(span / gaps[gaps > 4].min())  # the mean pitch, not one gap
        steps = (values - values[0]) / pitch
        return np.abs(steps - steps.round()).max() < 0.2 and len(np.unique(steps.round())) <= most

    assert on_lattice(chip[:, 0], 13) and on_lattice(chip[:, 1], 15)
