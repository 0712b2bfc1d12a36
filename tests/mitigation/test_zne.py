"""Zero-noise extrapolation: folded templates change nothing but noise, extrapolation
recovers known zero-noise values with honest errors, and a noisy run loses its gate bias."""

import json

import numpy as np
import pytest
from compiled_copies import TARGETS, unitary_of
from typer.testing import CliRunner

from qvit_hw.circuit import chain, tree
from qvit_hw.cli import app
from qvit_hw.devices import catalog
from qvit_hw.mitigation.zne import ZNEConfig, extrapolate, fold_compiled
from qvit_hw.transpile import template_for

runner = CliRunner()


@pytest.mark.parametrize("name", TARGETS)
def test_folding_multiplies_two_qubit_gates_and_keeps_the_unitary(name):
    """On every listed target's ISA: scale 3 has 3x the 2-qubit gates (5: 5x), kept apart
    by barriers, and the same operator (up to a global phase) at random parameters."""
    target = catalog.get_target(name, live=False)
    two = target.two_qubit_gate if hasattr(target, "two_qubit_gate") else None
    compiled = template_for(tree(4), target, max_copies=1, seed=0)
    rng = np.random.default_rng(0)
    values = rng.uniform(-np.pi, np.pi, compiled.circuit.num_parameters)
    base = unitary_of(compiled, values)
    for scale in (3, 5):
        folded = fold_compiled(compiled, scale, target.basis_gates)
        ops = folded.circuit.count_ops()
        gate = two or next(g for g in ops if g in ("ecr", "cz", "iswap"))
        assert ops[gate] == scale * compiled.circuit.count_ops()[gate]
        assert folded.two_qubit_gates == scale * compiled.two_qubit_gates
        assert ops["barrier"] == (scale - 1) * compiled.circuit.count_ops()[gate]
        assert set(ops) <= {*target.basis_gates, "barrier", "measure"}
        assert base.equiv(unitary_of(folded, values))
        assert np.array_equal(folded.x_index, compiled.x_index)


@pytest.mark.parametrize("fold", ["two", "all"])
def test_a_fractional_scale_folds_a_seeded_subset_and_keeps_the_unitary(fold):
    """Scale 2 folds half the foldable gates once (mitiq's fold_gates_at_random): the
    folded gates are 2x the original's to within one, the same seed gives the same circuit,
    another seed another subset, and the operator is unchanged."""
    from qvit_hw.mitigation.zne import fold_gates, noise_scale

    target = catalog.get_target("ibm_brisbane", live=False)
    compiled = template_for(tree(4), target, max_copies=1, seed=0)
    values = np.random.default_rng(3).uniform(-np.pi, np.pi, compiled.circuit.num_parameters)
    folded = fold_compiled(compiled, 2, target.basis_gates, fold, seed=7)
    achieved = noise_scale(compiled.circuit, folded.circuit, fold)
    foldable = sum(
        1 for inst in compiled.circuit.data
        if inst.operation.name not in ("barrier", "measure", "rz")
        and (inst.operation.num_qubits == 2 or fold == "all")
    )  # fmt: skip
    assert abs(achieved - 2) <= 1 / foldable + 1e-12 and achieved != 1
    assert folded.circuit.name.endswith("_zne2")
    assert unitary_of(compiled, values).equiv(unitary_of(folded, values))
    again = fold_gates(compiled.circuit, 2, target.basis_gates, fold, seed=7)
    assert again == folded.circuit
    others = [fold_gates(compiled.circuit, 2, target.basis_gates, fold, seed=s) for s in range(4)]
    assert any(o != folded.circuit for o in others)
    more = fold_compiled(compiled, 2.9, target.basis_gates, fold, seed=7)
    assert noise_scale(compiled.circuit, more.circuit, fold) > achieved


def test_extrapolation_uses_the_scales_the_templates_reached(bundle, tmp_path):
    """--zne-scales 1,2 on the ideal exact device changes nothing (folding is exact), and
    the run records the fractional scale in its identity."""
    plain, folded = tmp_path / "plain", tmp_path / "zne"
    common = (bundle, "--backend", "fake_brisbane?noise=0&exact=1", "--limit", "1",
              "--max-copies", "1")  # fmt: skip
    assert run(*common, "--out", str(plain)).exit_code == 0
    result = run(*common, "--mitigate", "zne", "--zne-scales", "1,2", "--zne-extrapolation",
                 "linear", "--out", str(folded))  # fmt: skip
    assert result.exit_code == 0, result.output
    a, b = np.load(plain / "rows.npz"), np.load(folded / "rows.npz")
    assert np.abs(a["estimate"] - b["estimate"]).max() < 1e-9
    assert json.loads((folded / "run.json").read_text())["identity"]["zne"]["scales"] == [1, 2]


def test_zne_settings_are_checked_with_one_line():
    with pytest.raises(ValueError, match="--zne-scales must be 1 and at least one more number"):
        ZNEConfig((1, 0.5))
    with pytest.raises(ValueError, match="--zne-scales must be 1 and at least one more number"):
        ZNEConfig((2, 3))
    with pytest.raises(ValueError, match="--zne-scales must be numbers >= 1, got '1,x'"):
        ZNEConfig.parse("1,x", "richardson")
    assert ZNEConfig.parse("1,3.0,2.5", "linear").scales == (1, 3, 2.5)  # whole ones stay int
    with pytest.raises(ValueError, match="--zne-extrapolation must be one of"):
        ZNEConfig((1, 3), "cubic")
    from qvit_hw.mitigation import parse_mitigation

    assert parse_mitigation("readout,learned,zne") == ("readout", "learned", "zne")
    with pytest.raises(ValueError, match="so it comes first"):
        parse_mitigation("zne,readout")
    assert parse_mitigation("readout,zne,fourier") == ("readout", "zne", "fourier")


@pytest.mark.parametrize("method", ["richardson", "linear", "exponential"])
def test_extrapolation_recovers_a_known_zero_noise_value_with_honest_errors(method):
    """z(lambda) = z0 exp(-0.05 lambda) measured at 1, 3, 5 with noise: the extrapolated
    values' z-scores against z0 have sd within 10 % of 1 (the model's own bias is small
    next to the noise here)."""
    rng = np.random.default_rng(1)
    z0 = rng.uniform(0.3, 0.9, 20000)
    scales = (1, 3, 5) if method != "richardson" else (1, 3)
    lam = np.array(scales, dtype=float)[:, None]
    truth = z0 * (np.exp(-0.05 * lam) if method != "linear" else 1 - 0.05 * lam)
    se = np.full_like(truth, 0.01)
    measured = truth + se * rng.standard_normal(truth.shape)
    est, err = extrapolate(measured, se, scales, method)
    z = (est - z0) / err
    assert 0.9 < z.std() < 1.1 and abs(z.mean()) < 0.2
    if method == "richardson":
        assert np.allclose(err, np.sqrt(1.5**2 + 0.5**2) * 0.01)  # 2.5x the variance


def run(*args):
    return runner.invoke(app, ["run", *args])


def test_on_an_ideal_device_zne_changes_nothing(bundle, tmp_path):
    """fake_brisbane's noise off and exact values: the folded (and twirled) rows equal the
    unfolded ones to 1e-9, so the extrapolation returns them; untwirled, the run costs 3x
    the executions at scales 1, 3, 5; dealt over 8 twirls, at most one part-filled
    execution more per draw and scale."""
    plain = tmp_path / "plain"
    common = (bundle, "--backend", "fake_brisbane?noise=0&exact=1", "--limit", "2",
              "--max-copies", "2")  # fmt: skip
    assert run(*common, "--out", str(plain)).exit_code == 0
    a = np.load(plain / "rows.npz")
    executions = json.loads((plain / "cost.json").read_text())["executions"]
    for twirls in ("0", "8"):
        folded = tmp_path / f"zne{twirls}"
        result = run(*common, "--mitigate", "zne", "--zne-scales", "1,3,5", "--zne-twirls",
                     twirls, "--out", str(folded))  # fmt: skip
        assert result.exit_code == 0, result.output
        b = np.load(folded / "rows.npz")
        assert np.abs(a["estimate"] - b["estimate"]).max() < 1e-9
        cost = json.loads((folded / "cost.json").read_text())["executions"]
        if twirls == "0":
            assert cost == 3 * executions
        else:
            assert 3 * executions <= cost <= 3 * (executions + 8), (cost, executions)
        zne = {"scales": [1, 3, 5], "extrapolation": "richardson", "fold": "all"}
        if twirls != "0":
            zne["twirls"] = 8
        assert json.loads((folded / "run.json").read_text())["identity"]["zne"] == zne


@pytest.mark.parametrize("scales", ["1,3", "1,2"])
def test_on_fake_brisbane_zne_removes_most_of_the_gate_bias(bundle, tmp_path, scales):
    """Exact noisy values (no shots) at one placement, readout corrected by exact
    calibration: what is left, the gate bias against the ideal model, falls by more than
    half with richardson (1, 3), and with (1, 2), whose second template folds a seeded
    half of the gates and is extrapolated from the scale it reached. Untwirled: a row
    on one twirl draw carries that draw's error, which only averaging over rows (the fit)
    removes (tests/mitigation/test_twirl.py)."""
    plain, folded = tmp_path / "plain", tmp_path / "zne"
    common = (bundle, "--backend", "fake_brisbane?exact=1", "--limit", "2",
              "--max-copies", "1")  # fmt: skip
    assert run(*common, "--mitigate", "readout", "--out", str(plain)).exit_code == 0
    result = run(*common, "--mitigate", "readout,zne", "--zne-scales", scales,
                 "--zne-twirls", "0", "--out", str(folded))  # fmt: skip
    assert result.exit_code == 0, result.output
    a, b = np.load(plain / "rows.npz"), np.load(folded / "rows.npz")
    bias = np.abs(a["estimate"] - a["exact"]).mean()
    left = np.abs(b["estimate"] - b["exact"]).mean()
    assert left < 0.5 * bias, (bias, left)
    stages = json.loads((folded / "corrections.json").read_text())["stages"]
    assert [s["name"] for s in stages] == ["raw", "readout", "readout+zne"]


@pytest.mark.parametrize("name", ["ibm_brisbane", "rigetti_ankaa_3"])
def test_folding_every_gate_scales_the_one_qubit_gates_too(name):
    """--zne-fold all: SX and X (not the virtual RZ) are folded as well, the unitary kept."""
    target = catalog.get_target(name, live=False)
    compiled = template_for(chain(4), target, max_copies=1, seed=0)
    values = np.random.default_rng(2).uniform(-np.pi, np.pi, compiled.circuit.num_parameters)
    folded = fold_compiled(compiled, 3, target.basis_gates, "all")
    before, after = compiled.circuit.count_ops(), folded.circuit.count_ops()
    assert after["sx"] >= 3 * before["sx"]  # each SX^-1 is RZ SX RZ
    assert after.get("x", 0) == 3 * before.get("x", 0)
    assert unitary_of(compiled, values).equiv(unitary_of(folded, values))
    with pytest.raises(ValueError, match="--zne-fold must be one of two, all"):
        ZNEConfig((1, 3), "richardson", "some")


def test_the_report_shows_each_scale_and_the_extrapolation(bundle, tmp_path):
    """rows.npz keeps every scale's corrected values; the report gives per QNN the MAE at
    each scale and extrapolated (lower than at scale 1 on a noisy device), and the 2-qubit
    gates each scale costs (5x at scale 5, the default's)."""
    out = tmp_path / "zne"
    result = run(bundle, "--backend", "fake_brisbane?exact=1", "--limit", "2", "--max-copies",
                 "1", "--mitigate", "readout,zne", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert np.load(out / "rows.npz")["estimate_scales"].shape[1:] == (2, 4)
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0
    zne = json.loads((out / "report.json").read_text())["zne"]
    assert zne["scales"] == [1, 5] and zne["two_qubit_gates"][1] == 5 * zne["two_qubit_gates"][0]
    for q in zne["per_qnn"]:
        assert q["mae"][1] > q["mae"][0] > q["extrapolated"]
    assert zne["twirls"] == 8
    html = (out / "report.html").read_text()
    assert "Zero-noise extrapolation (2-qubit gates twirled, 8 draws)" in html


def test_the_runner_extrapolates_from_the_reached_scale_not_the_asked_one():
    """A 4-qubit tree on fake_brisbane has 3 ECRs: scale 2 folds round(1.5) = 2 of them,
    reaching 7/3. Values linear in the scale, a + b (lambda - 1), extrapolate to a - b
    exactly only from 7/3 (from 2 they would give a - 2b)."""
    from qvit_hw.backends import get_backend
    from qvit_hw.jobs.combine import RowEstimates
    from qvit_hw.jobs.config import SchedulerConfig
    from qvit_hw.jobs.plan import QNNCall
    from qvit_hw.jobs.runner import QNNRunner

    config = SchedulerConfig(zne_scales=(1, 2), zne_extrapolation="linear", zne_fold="two",
                             max_copies=1)  # fmt: skip
    qnn = QNNRunner(get_backend("fake_brisbane?noise=0"), config, mitigation="zne")
    spec = tree(4)
    reached = qnn.achieved_scales(spec)
    assert reached == (1, 7 / 3)
    call = QNNCall("q", spec, np.zeros(spec.weight_shape), np.zeros((5, 4)))
    a, b = np.full((5, 4), 0.6), np.full((5, 4), -0.05)

    def at(scale):
        z = a + b * (scale - 1)
        return RowEstimates(z, np.full_like(z, 0.01), z, z, np.zeros((5, 4), int))

    (out,) = qnn._extrapolated([call], [[at(s)] for s in reached])
    assert np.allclose(out.z, a - b) and out.scaled.shape == (5, 2, 4)


@pytest.mark.parametrize("order", ["readout,zne,learned", "readout,learned,zne"])
def test_learned_composes_with_zne_in_the_order_given(bundle, tmp_path, order):
    """Exact noisy values on fake_brisbane: learned after zne is fitted on its calibration
    rows extrapolated like the data; learned before zne is fitted per scale. Either way
    each stage is recorded in order and the last leaves less error than readout alone;
    every calibration job the pure plan lists is the one the run executes."""
    plain, mixed = tmp_path / "plain", tmp_path / "mixed"
    common = (bundle, "--backend", "fake_brisbane?exact=1", "--limit", "2",
              "--max-copies", "1", "--calibration-rows", "64")  # fmt: skip
    assert run(*common, "--mitigate", "readout", "--out", str(plain)).exit_code == 0
    result = run(*common, "--mitigate", order, "--out", str(mixed))
    assert result.exit_code == 0, result.output
    a, b = np.load(plain / "rows.npz"), np.load(mixed / "rows.npz")
    assert np.abs(b["estimate"] - b["exact"]).mean() < np.abs(a["estimate"] - a["exact"]).mean()
    corrections = json.loads((mixed / "corrections.json").read_text())
    names = order.split(",")
    expected = ["raw"] + ["+".join(names[: i + 1]) for i in range(len(names))]
    assert [s["name"] for s in corrections["stages"]] == expected
    (fitted,) = corrections["fitted"].values()
    learned = (
        {"learned after zne"} if order.endswith("learned") else {"learned", "learned at scale 5"}
    )
    assert set(fitted) == {"readout"} | learned


def test_the_calibration_plan_lists_every_calibration_job_the_run_executes():
    """zne with learned before and after it: `calibration_plan` (what --dry-run prices) has
    exactly the calibration jobs the runner then executes; readout is fitted once and shared
    by both scales."""
    from qvit_hw.backends import get_backend
    from qvit_hw.jobs.config import SchedulerConfig
    from qvit_hw.jobs.plan import QNNCall
    from qvit_hw.jobs.runner import QNNRunner

    spec = tree(4)
    rng = np.random.default_rng(4)
    call = QNNCall("q", spec, rng.uniform(-1, 1, spec.weight_shape), rng.uniform(-1, 1, (6, 4)))
    steps = {
        "readout,zne,learned": ["readout", "learned"],  # after zne: one fit, every scale
        "readout,learned,zne": ["readout", "learned", "learned"],
    }  # one fit per scale
    for order, names in steps.items():
        config = SchedulerConfig(shots=200, calibration_rows=16, max_copies=1)
        qnn = QNNRunner(get_backend("fake_brisbane?exact=1"), config, mitigation=order)
        planned = qnn.calibration_plan(spec)
        assert [m.name for m, _ in planned] == names
        qnn.run([call])
        assert qnn.stats.calibration_jobs == sum(len(jobs) for _, jobs in planned)
        assert qnn.corrections(spec, 5)[0] is qnn.corrections(spec)[0]  # readout shared


@pytest.mark.parametrize("backend", ["statevector", "shots?seed=3"])
def test_on_simulators_without_a_device_folding_changes_nothing_but_noise(
    bundle, tmp_path, backend
):
    """statevector: the folded circuits (logical gates, inverted by qiskit) give the exact
    values to 1e-9; shots: the extrapolated values stay within 4 standard errors of exact
    (Richardson (1, 5), the default, has 1.6x the variance, and its stderr says so)."""
    out = tmp_path / "zne"
    result = run(bundle, "--backend", backend, "--limit", "2", "--mitigate", "zne",
                 "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = np.load(out / "rows.npz")
    err = rows["estimate"] - rows["exact"]
    if backend == "statevector":
        assert np.abs(err).max() < 1e-9
        assert np.abs(rows["estimate_scales"] - rows["exact"][:, None]).max() < 1e-9
    else:
        # a value read all +1 (or -1) at a scale has stderr 0 there: its extrapolated
        # stderr is the other scale's share alone, and says nothing of its own error
        se = rows["stderr"]
        ok = (se > 0) & (np.abs(rows["estimate_scales"]) < 1).all(axis=1)
        z = err[ok] / se[ok]
        assert np.abs(z).max() < 4.5 and 0.8 < z.std() < 1.2, (np.abs(z).max(), z.std())
        ratio = se.mean() / rows["stderr_raw"].mean()  # sqrt(1.25^2 + 0.25^2) = 1.27 at equal se
        assert 1.15 < ratio < 1.4, ratio
