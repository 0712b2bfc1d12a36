"""Layout choice by calibration, exact embeddings, regions, and greedy disjoint packing."""

from itertools import pairwise

import numpy as np
import pytest

from qvit_hw.circuit import QNNSpec, chain, tree
from qvit_hw.devices import DeviceTarget, from_qiskit_target
from qvit_hw.transpile import get_target, packing_factor
from qvit_hw.transpile.layout import UNUSABLE_ERROR, Chip, embeddings, regions
from qvit_hw.transpile.packing import bound, pack, with_tiling

CALIBRATED = ("ibm_brisbane", "ibm_torino", "ibm_fez")


def random_paths(chip: Chip, n: int, count: int, seed: int) -> np.ndarray:
    """Random self-avoiding walks of n usable qubits (drawn independently of `embeddings`)."""
    rng = np.random.default_rng(seed)
    starts = np.flatnonzero(chip.usable)
    paths: list[list[int]] = []
    while len(paths) < count:
        path = [int(rng.choice(starts))]
        while len(path) < n:
            options = [q for q in np.flatnonzero(chip.adjacent[path[-1]]) if q not in path]
            if not options:
                break
            path.append(int(rng.choice(options)))
        if len(path) == n:
            paths.append(path)
    return np.array(paths)


@pytest.mark.parametrize("target", CALIBRATED)
@pytest.mark.parametrize("n", [4, 8])
def test_chosen_chain_is_no_worse_than_random_valid_paths(compiled, target, n):
    chip = Chip.of(get_target(target))
    spec = chain(n)
    best = compiled(f"chain{n}", target).placements[0]
    others = random_paths(chip, n, 300, seed=n)
    best_score = chip.score(np.array([best]), spec.pairs)[0]
    assert best_score <= chip.score(others, spec.pairs).min()
    # the score is what the brief says: 2-qubit errors on the path + readout errors
    dt = get_target(target)
    edges = [(min(p, q), max(p, q)) for p, q in pairwise(best)]
    expected = sum(dt.two_qubit_error[e] for e in edges) + sum(dt.readout_error[q] for q in best)
    assert best_score == pytest.approx(expected)


def test_chain_embeddings_are_exactly_the_simple_paths():
    chip = Chip.of(get_target("rigetti_cepheus_1_108q"))  # 9 x 12 grid, all usable
    paths = embeddings(chip, chain(3)).placements
    # a path of 3 is a centre with two distinct neighbours, in both directions
    degree = chip.adjacent.sum(1)
    assert len(paths) == int((degree * (degree - 1)).sum())
    assert len({tuple(p) for p in paths}) == len(paths)
    assert chip.adjacent[paths[:, 0], paths[:, 1]].all()
    assert chip.adjacent[paths[:, 1], paths[:, 2]].all()


def test_broken_couplers_and_qubits_are_never_used():
    dt = get_target("ibm_torino")
    chip = Chip.of(dt)
    broken = [e for e, err in dt.two_qubit_error.items() if err >= UNUSABLE_ERROR]
    bad_qubits = [q for q, err in dt.readout_error.items() if err >= UNUSABLE_ERROR]
    assert broken and bad_qubits  # the snapshot has some
    paths = embeddings(chip, chain(4)).placements
    used_edges = {tuple(sorted(e)) for p in paths for e in pairwise(p)}
    assert not used_edges & set(broken)
    assert not np.isin(paths, bad_qubits).any()


def test_tree_embeds_without_swaps_and_cycles_fall_back_to_regions():
    heavy_hex = Chip.of(get_target("ibm_fez"))
    assert len(embeddings(heavy_hex, tree(8)))  # degree-3 nodes 1 and 2 are not adjacent
    ring = QNNSpec(4, ((0, 1), (1, 2), (2, 3), (3, 0)))
    assert len(embeddings(heavy_hex, ring)) == 0  # heavy-hex has no 4-cycles
    found = regions(heavy_hex, ring)
    assert found.routed and len(found) > 0
    for region in found.placements[:20]:  # connected: a spanning walk exists inside it
        sub = heavy_hex.adjacent[np.ix_(region, region)]
        reach = {0}
        for _ in range(4):
            reach |= {j for i in reach for j in np.flatnonzero(sub[i])}
        assert reach == {0, 1, 2, 3}


def test_disconnected_specs_are_placed_compactly():
    chip = Chip.of(get_target("rigetti_ankaa_3"))
    spec = QNNSpec(4, ((0, 1), (2, 3)))
    best = embeddings(chip, spec).placements[0]
    assert chip.adjacent[best[0], best[1]] and chip.adjacent[best[2], best[3]]


def test_packing_is_greedy_disjoint_and_best_first():
    chip = Chip.of(get_target("ibm_brisbane"))
    candidates = embeddings(chip, chain(4))
    chosen = pack(candidates)
    placements = candidates.placements[chosen]
    assert len(np.unique(placements)) == placements.size  # disjoint
    assert chosen[0] == 0 and np.all(np.diff(candidates.scores[chosen]) >= 0)
    # maximal: every candidate left over shares a qubit with a chosen one
    free = ~np.isin(candidates.placements, placements).any(axis=1)
    assert not free.any()
    assert len(pack(candidates, max_copies=3)) == 3


@pytest.mark.parametrize(
    ("target", "k4", "k8"),
    [
        ("rigetti_ankaa_3", 21, 10),  # 7 x 12 grid: rows of 4 tile it exactly (84 / 4)
        ("rigetti_cepheus_1_108q", 27, 13),  # 9 x 12 grid: 108 / 4
    ],
)
def test_packing_factor_on_uncalibrated_grids(target, k4, k8):
    assert (packing_factor(target, 4), packing_factor(target, 8)) == (k4, k8)


MAX_COUNTS = {  # chain specs, n = 4 / 8: what the min-conflict greedy reaches
    "ibm_brisbane": (26, 13),
    "ibm_torino": (25, 13),
    "ibm_fez": (30, 15),
    "ibm_nighthawk": (30, 15),  # square lattice: its bound, 120 // n
    "rigetti_ankaa_3": (21, 10),
    "rigetti_cepheus_1_108q": (27, 13),
}


@pytest.mark.parametrize("target", sorted(MAX_COUNTS))
def test_packing_max_holds_more_copies_disjoint_and_maximal(target):
    chip = Chip.of(get_target(target, live=False))
    for n, expected in zip((4, 8), MAX_COUNTS[target], strict=True):
        candidates = embeddings(chip, chain(n))
        chosen = pack(candidates, packing="max")
        placements = candidates.placements[chosen]
        assert len(chosen) == expected >= len(pack(candidates))
        assert len(np.unique(placements)) == placements.size  # disjoint
        assert not (~np.isin(candidates.placements, placements).any(axis=1)).any()  # maximal
        assert np.all(np.diff(candidates.scores[chosen]) >= 0)  # copy 0 is the best placed
        assert len(pack(candidates, max_copies=5, packing="max")) == 5


def square_lattice(rows: int, width: int, missing: tuple[tuple[int, int], ...]) -> DeviceTarget:
    """An uncalibrated square lattice numbered row by row, without the couplers ``missing``."""
    from qiskit.circuit import Measure, Parameter
    from qiskit.circuit.library import CZGate, RZGate, SXGate
    from qiskit.transpiler import Target

    n = rows * width
    target = Target(num_qubits=n)
    for gate in (SXGate(), RZGate(Parameter("t")), Measure()):
        target.add_instruction(gate, {(q,): None for q in range(n)})
    couplers = [(q, q + 1) for q in range(n) if (q + 1) % width]
    couplers += [(q, q + width) for q in range(n - width)]
    kept = [c for c in couplers if c not in missing]
    target.add_instruction(CZGate(), {e: None for c in kept for e in (c, c[::-1])})
    return from_qiskit_target(f"square{rows}x{width}", target, "test lattice")


def test_max_tiles_a_square_lattice_where_the_greedy_falls_short():
    """6 x 6 without two couplers: the min-conflict greedy alone fits 8 chains of 4; a snake
    through the lattice cut every 4 qubits fits 9, the bound 36 // 4."""
    dt = square_lattice(6, 6, missing=((27, 28), (0, 6)))
    chip = Chip.of(dt)
    assert chip.width == 6
    plain = embeddings(chip, chain(4))
    assert len(pack(plain, packing="max")) == 8  # what `max` found before the tiling
    tiled = with_tiling(chip, chain(4), plain)
    chosen = tiled.placements[pack(tiled, packing="max")]
    assert len(chosen) == bound(dt, 4) == 9
    assert len(np.unique(chosen)) == chosen.size  # disjoint
    assert all(chip.adjacent[p[i], p[i + 1]] for p in chosen for i in range(3))  # chains
    assert len(pack(tiled, max_copies=4, packing="max")) == 4
    assert len(pack(tiled, packing="best")) <= 9  # best-first is unchanged by the tiling


@pytest.mark.parametrize(("n", "expected"), [(3, 40), (5, 24), (6, 20), (7, 17)])
def test_max_reaches_the_bound_on_nighthawk_for_every_chain_length(n, expected):
    assert packing_factor("ibm_nighthawk", n, packing="max") == expected == 120 // n


def test_the_bound_counts_usable_qubits_only():
    torino = get_target("ibm_torino", live=False)  # one qubit reads out broken
    assert bound(torino, 4) == (133 - 1) // 4 and bound("rigetti_ankaa_3", 8) == 84 // 8


def test_an_unknown_packing_is_refused_naming_it():
    candidates = embeddings(Chip.of(get_target("ibm_fez", live=False)), chain(4))
    with pytest.raises(ValueError, match="packing must be one of best, max, got 'most'"):
        pack(candidates, packing="most")
