"""Adaptive shots: flip probabilities, Neyman allocation, pooling of rounds, and runs with
``--shots auto`` that stop where predictions are settled and resume without paying twice."""

import csv
import json

import numpy as np
import pytest
import torch
from scipy.stats import norm
from typer.testing import CliRunner

from qvit_hw.cli import app
from qvit_hw.jobs.adaptive import (
    allocate,
    flip_probability,
    linearised,
    pool,
    share_duplicates,
    spent_out,
)
from qvit_hw.jobs.combine import RowEstimates
from qvit_hw.jobs.config import AdaptiveConfig

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def two_classes(offset: float):
    """A model whose class 0 logit is the sum of its QNN values and class 1's is ``offset``:
    z (M, b, T, Q, n) -> (M, b, 2)."""

    def logits_of(z: torch.Tensor, images: np.ndarray) -> torch.Tensor:
        s = z.sum(dim=(2, 3, 4))
        return torch.stack([s, torch.full_like(s, offset)], dim=-1)

    return logits_of


def test_the_flip_probability_of_a_linear_model_is_the_normal_tail():
    rng = np.random.default_rng(0)
    z = rng.uniform(-0.2, 0.2, (3, 5, 2, 4))  # (B, T, Q, n)
    se = np.full_like(z, 0.02)
    sigma = 0.02 * np.sqrt(z[0].size)
    offsets = z.reshape(3, -1).sum(1) - np.array([0.5, 2.0, 8.0]) * sigma  # margins in sigmas
    exact = norm.sf(np.array([0.5, 2.0, 8.0]))
    for i, offset in enumerate(offsets):
        _, p_lin, margin, grad = linearised(two_classes(offset), z[i : i + 1], se[i : i + 1],
                                            np.arange(1))  # fmt: skip
        assert p_lin[0] == pytest.approx(exact[i], rel=1e-6, abs=1e-12)
        assert margin[0] == pytest.approx(z[i].sum() - offset) and np.allclose(grad, 1.0)
        draws = 4000
        flip, *_ = flip_probability(
            two_classes(offset), z[i : i + 1], se[i : i + 1], draws, np.random.default_rng(1),
            threshold=0.05,
        )  # fmt: skip
        stderr = np.sqrt(exact[i] * (1 - exact[i]) / draws)
        assert abs(flip[0] - exact[i]) <= 4 * stderr + 1e-12  # Monte Carlo where it matters


def test_correlated_qubits_of_a_row_add_their_noise_together():
    # every row's n = 4 qubits perfectly correlated: the sum's stderr is 4 se, not 2 se
    z = np.zeros((1, 6, 2, 4))
    se = np.full_like(z, 0.01)
    corr = np.ones((1, 6, 2, 4, 4))
    sigma = 0.01 * 4 * np.sqrt(12)  # 12 rows of 4 qubits moving as one
    offset = -1.5 * sigma  # margin: 1.5 sigma
    _, p_lin, _, _ = linearised(two_classes(offset), z, se, np.arange(1), corr)
    assert p_lin[0] == pytest.approx(norm.sf(1.5), rel=1e-6)
    _, p_ind, _, _ = linearised(two_classes(offset), z, se, np.arange(1))
    assert p_ind[0] == pytest.approx(norm.sf(3.0), rel=1e-6)  # independent: half the sigma
    draws = 4000
    flip, *_ = flip_probability(two_classes(offset), z, se, draws, np.random.default_rng(2),
                                threshold=0.05, corr=corr)  # fmt: skip
    p = norm.sf(1.5)
    assert abs(flip[0] - p) <= 4 * np.sqrt(p * (1 - p) / draws)


def test_an_image_whose_variance_sits_in_rows_at_the_ceiling_gives_up():
    grad = np.zeros((2, 3, 1, 1))
    grad[:, :, 0, 0] = [10.0, 1.0, 1.0]  # row 0 holds 98 % of the variance
    se = np.full_like(grad, 0.01)
    corr = np.ones((2, 3, 1, 1, 1))
    shots = np.array([[[800], [100], [100]], [[100], [800], [100]]])  # image 0: row 0 full
    np.testing.assert_array_equal(spent_out(grad, se, shots, corr, 800), [True, False])
    full = np.full((2, 3, 1), 800)
    assert spent_out(grad, se, full, corr, 800).all()


def test_rows_one_to_the_device_share_the_most_shots_any_of_them_wants():
    shots = np.array([[[100, 200], [400, 100]], [[283, 100], [100, 800]]])  # (B=2, T=2, Q=2)
    same = np.array([0, 1, 1, 2])  # image 0's token 1 is image 1's token 0
    got = share_duplicates(shots, same)
    np.testing.assert_array_equal(got[0, 1], [400, 100])
    np.testing.assert_array_equal(got[1, 0], [400, 100])
    np.testing.assert_array_equal(got[0, 0], shots[0, 0])
    np.testing.assert_array_equal(got[1, 1], shots[1, 1])


def test_allocation_follows_the_gradient_stays_on_the_ladder_and_never_shrinks():
    config = AdaptiveConfig(initial_shots=100, max_shots_per_row=3200)
    assert config.ladder.tolist() == [100, 141, 200, 283, 400, 566, 800, 1131, 1600, 2263, 3200]
    grad = np.zeros((2, 4, 1, 1))
    grad[:, :, 0, 0] = [4.0, 2.0, 1.0, 0.0]  # row 0 matters most, row 3 not at all
    stderr = np.full_like(grad, 0.1)
    shots = np.full((2, 4, 1), 100)
    new = allocate(grad, stderr, shots, np.array([0.1, 0.1]), np.array([True, False]), config)
    assert new[1].tolist() == shots[1].tolist()  # a stopped image gets nothing
    got = new[0, :, 0]
    assert got[0] >= got[1] >= got[2] >= got[3] == 100 and got[0] > 100
    assert set(got.tolist()) <= set(config.ladder.tolist())
    assert (got <= 100 * config.growth).all()  # at most `growth` times per round
    # a settled margin wants no more: only the image's floor of sqrt(2) times its shots
    calm = allocate(grad, stderr, shots, np.array([100.0, 100.0]), np.array([True, True]), config)
    assert shots[0].sum() < calm[0, :, 0].sum() <= 2 * shots[0].sum()


def estimates(z, shots):
    se = np.sqrt((1 - z**2) / np.maximum(shots, 1)[:, None])
    qubits = np.zeros(z.shape, dtype=np.int64)
    return RowEstimates(z, se, z, se, qubits, stages=((z, se),), shots=np.asarray(shots))


def test_rounds_pool_by_shots_as_if_they_were_one_run():
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, (50, 4))  # P(1) per row and qubit
    a, b = rng.binomial(200, p), rng.binomial(600, p)  # ones in two rounds
    first = estimates(1 - 2 * a / 200, np.full(50, 200))
    shots_b = np.where(np.arange(50) < 30, 600, 0)  # the second round ran 30 rows only
    second = estimates(np.where(shots_b[:, None] > 0, 1 - 2 * b / 600, 0.0), shots_b)
    pooled = pool([first, second])
    total = 200 + shots_b
    ones = a + np.where(shots_b[:, None] > 0, b, 0)
    np.testing.assert_allclose(pooled.z, 1 - 2 * ones / total[:, None], atol=1e-12)
    np.testing.assert_array_equal(pooled.shots, total)
    np.testing.assert_allclose(pooled.stages[0][0], pooled.z)
    # stderr: each round's, weighted by its share of the shots
    w1, w2 = 200 / total, shots_b / total
    want = np.sqrt(w1[:, None] ** 2 * first.stderr**2 + w2[:, None] ** 2 * second.stderr**2)
    np.testing.assert_allclose(pooled.stderr, want, atol=1e-12)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--target-agreement", "1.0"), "--target-agreement must be in"),
        (("--initial-shots", "0"), "--initial-shots must be >= 1"),
        (("--initial-shots", "500", "--max-shots-per-row", "100"), "must be >= --initial-shots"),
    ],
)
def test_bad_adaptive_flags_are_one_line(bundle, tmp_path, flags, message):
    result = cli("run", bundle, "--shots", "auto", *flags, "--out", tmp_path / "x")
    assert result.exit_code == 1 and message in result.output
    assert not (tmp_path / "x").exists()


AUTO = ("--shots", "auto", "--initial-shots", "100", "--max-shots-per-row", "6400",
        "--limit", "6", "--batch-size", "3")  # fmt: skip


@pytest.fixture(scope="module")
def adaptive_run(bundle, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("adaptive")
    out, state = tmp / "run", tmp / "mock"
    backend = f"mock?inner=shots&state={state}"
    result = cli("run", bundle, "--backend", backend, *AUTO, "--target-agreement", "0.999",
                 "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, state, backend


def test_an_adaptive_run_stops_settled_images_and_spends_on_the_rest(adaptive_run):
    out, _, _ = adaptive_run
    with (out / "predictions.csv").open() as f:
        table = list(csv.DictReader(f))
    shots = np.array([int(r["row_shots"]) for r in table])
    flip = np.array([float(r["flip_probability"]) for r in table])
    rows = np.load(out / "rows.npz")
    per_row = rows["shots"]
    ladder = AdaptiveConfig(initial_shots=100, max_shots_per_row=6400).ladder
    assert set(np.unique(per_row).tolist()) <= set(ladder.tolist())
    assert per_row.min() == 100 and per_row.max() > 100  # some rows got more, not all
    # per image: the rows' shots add up, and each image is settled or at the ceiling
    by_image = np.bincount(rows["image"], weights=per_row).astype(int)
    np.testing.assert_array_equal(by_image, shots)
    # rows at the ceiling: all of an image's, or those holding 90 % of its variance
    at_ceiling = np.array([(per_row[rows["image"] == i] >= 6400).any() for i in range(6)])
    assert ((flip < 0.001) | at_ceiling).all()  # STOP x (1 - target)
    cost = json.loads((out / "cost.json").read_text())
    assert cost["row_shots"] == int(per_row.sum()) == cost["shots"]  # k = 1, no duplicates
    rounds = cost["adaptive"]["rounds"]
    assert rounds[0]["shots"] == 100 * len(per_row) and rounds[-1]["shots"] == per_row.sum()
    assert [r["round"] for r in rounds] == list(range(1, len(rounds) + 1)) and len(rounds) > 1
    # the stderr of a row shrinks as 1/sqrt(shots): pooled rounds are honest
    z, se = rows["estimate"], rows["stderr"]
    expected = np.sqrt(np.clip(1 - z**2, 0, None) / per_row[:, None])
    np.testing.assert_allclose(se, expected, rtol=0.35, atol=1e-3)


def test_a_resumed_adaptive_run_pays_for_nothing_again(adaptive_run, bundle):
    out, state, backend = adaptive_run
    paid = len((state / "submits.jsonl").read_text().splitlines())
    result = cli("run", bundle, "--backend", backend, *AUTO, "--target-agreement", "0.999",
                 "--out", out, "--resume")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len((state / "submits.jsonl").read_text().splitlines()) == paid
    cost = json.loads((out / "cost.json").read_text())
    assert cost["submitted"] == 0 and cost["reused"] == cost["jobs"]


def test_the_report_of_an_adaptive_run_plots_agreement_against_shots(adaptive_run):
    from qvit_hw.report import load_run, plots

    out, _, _ = adaptive_run
    result = cli("report", out)
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text()
    assert "Adaptive shots: agreement vs shots spent" in html
    titles = [t for t, png in plots(load_run(out), json.loads((out / "report.json").read_text()))]
    assert "Adaptive shots: agreement vs shots spent, shots per row" in titles
    assert "QPU seconds: where the figure comes from" in html
