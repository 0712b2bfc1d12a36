"""compile_qnn: ISA circuits that compute the exact <Z>, with independent packed copies."""

import numpy as np
import pytest

from qvit_hw.circuit import chain, expectations, random_inputs
from qvit_hw.transpile import check_isa, compile_qnn, get_target

# the devices these tests go through in depth: heavy-hex with ECR and CZ, Rigetti's square
# lattices (uncalibrated). Of the catalog's ~60 devices, every one of 100+ qubits is
# transpiled and run end to end in test_every_device.py, Nighthawk's packing tested below.
REFERENCE = (
    "ibm_brisbane", "ibm_torino", "ibm_fez", "rigetti_ankaa_3", "rigetti_cepheus_1_108q",
)  # fmt: skip

CASES = [(s, t) for t in REFERENCE for s in ("chain4", "chain8", "tree8", "ring4")]


@pytest.mark.parametrize(("spec_id", "target"), CASES)
def test_every_copy_gives_the_exact_expectations(compiled, copy_z, spec_id, target):
    c = compiled(spec_id, target)
    rows = c.copies + 1  # two executions, the last one padded
    x, w = random_inputs(c.spec, rows, seed=7)
    values = c.parameter_values(x.numpy(), w.numpy())
    assert values.shape == (2, c.circuit.num_parameters)
    z = copy_z(c, values)[:rows]  # (rows, n): row r = execution r // k, copy r % k
    np.testing.assert_allclose(z, expectations(c.spec, x, w).numpy(), atol=1e-6)


@pytest.mark.parametrize(("spec_id", "target"), CASES)
def test_isa_only_basis_gates_on_coupling_edges(compiled, spec_id, target):
    c = compiled(spec_id, target)
    dt = get_target(target)
    edges = set(dt.edges)
    ops = set(c.circuit.count_ops())
    assert ops <= {*dt.basis_gates, "measure"}
    assert dt.two_qubit_gate in ops
    for inst in c.circuit.data:
        if inst.operation.num_qubits == 2:
            p, q = (c.circuit.find_bit(b).index for b in inst.qubits)
            assert (min(p, q), max(p, q)) in edges
    check_isa(c.circuit, dt)  # the package's own check agrees


@pytest.mark.parametrize(("spec_id", "target"), CASES)
def test_copies_are_separate_connected_components(compiled, spec_id, target):
    assert_independent_copies(compiled(spec_id, target))


def assert_independent_copies(c):
    """No 2-qubit gate links two copies; copy c's clbits read copy c's qubits."""
    parent = list(range(c.circuit.num_qubits))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for inst in c.circuit.data:
        if inst.operation.num_qubits == 2:
            p, q = (c.circuit.find_bit(b).index for b in inst.qubits)
            parent[find(p)] = find(q)
    used = {c.circuit.find_bit(b).index for i in c.circuit.data for b in i.qubits}
    components: dict[int, set[int]] = {}
    for q in used:
        components.setdefault(find(q), set()).add(q)
    assert sorted(map(sorted, components.values())) == sorted(map(sorted, c.placements))
    # measurement map: copy c, logical i -> clbit c*n + i, on a qubit of copy c
    n = c.spec.n_qubits
    for inst in c.circuit.data:
        if inst.operation.name == "measure":
            clbit = c.circuit.find_bit(inst.clbits[0]).index
            assert c.circuit.find_bit(inst.qubits[0]).index in c.placements[clbit // n]


@pytest.mark.parametrize("target", REFERENCE)
@pytest.mark.parametrize("spec_id", ["chain4", "chain8", "tree8"])
def test_specs_that_fit_the_lattice_need_no_swaps(compiled, spec_id, target):
    c = compiled(spec_id, target)
    assert c.swaps == 0
    assert c.two_qubit_gates == c.spec.n_pairs * (2 if target == "rigetti_ankaa_3" else 1)
    assert c.copies >= (9 if c.spec.n_qubits == 8 else 20)


def test_routed_specs_report_their_swaps(compiled):
    ring = compiled("ring4", "ibm_brisbane")  # heavy-hex has no 4-cycles
    triangle = compiled("triangle3", "rigetti_cepheus_1_108q")  # square grids have no 3-cycles
    assert ring.swaps >= 1 and triangle.swaps >= 1
    assert compiled("ring4", "rigetti_cepheus_1_108q").swaps == 0  # a plaquette of the grid


def test_parameter_values_puts_row_r_on_execution_r_div_k_copy_r_mod_k(compiled):
    c = compiled("chain4", "ibm_torino")
    k, n = c.copies, 4
    angles = np.arange((k + 3) * n, dtype=float).reshape(k + 3, n)  # rows 0..k+2
    weights = np.arange(6, dtype=float).reshape(3, 2) + 100
    values = c.parameter_values(angles, weights)  # (2, n_params)
    assert values.shape == (2, c.circuit.num_parameters)
    np.testing.assert_array_equal(values[1, c.x_index[2]], angles[k + 2])
    np.testing.assert_array_equal(values[1, c.x_index[3]], angles[-1])  # padding repeats
    np.testing.assert_array_equal(values[1, c.x_index[k - 1]], angles[-1])
    np.testing.assert_array_equal(values[:, c.w_index], np.tile(weights.reshape(-1), (2, 1)))
    params = list(c.circuit.parameters)
    assert [params[i].name for i in c.w_index] == [f"w[{j}]" for j in range(6)]
    assert [params[i].name for i in c.x_index[1]] == [f"x1[{i}]" for i in range(n)]


def test_parameter_values_rejects_wrong_shapes(compiled):
    c = compiled("chain4", "ibm_torino")
    with pytest.raises(ValueError, match=r"angles: expected shape \(rows, 4\)"):
        c.parameter_values(np.zeros((3, 5)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"weights: expected shape \(3, 2\)"):
        c.parameter_values(np.zeros((3, 4)), np.zeros((2, 2)))


def test_max_copies_and_the_best_placement_first(compiled):
    packed = compiled("chain4", "ibm_fez")
    single = compile_qnn(packed.spec, "ibm_fez", max_copies=1)
    assert single.copies == 1 and single.placements[0] == packed.placements[0]
    assert single.circuit.num_parameters == 4 + 6
    assert single.est_success == pytest.approx(packed.est_success)
    assert 0.5 < packed.est_success < 1
    assert np.isnan(compiled("chain4", "rigetti_ankaa_3").est_success)  # no calibration
    with pytest.raises(ValueError, match="max_copies must be >= 1"):
        compile_qnn(packed.spec, "ibm_fez", max_copies=0)


def test_max_packing_compiles_independent_copies_that_stay_exact():
    from qvit_hw.backends.simulate import exact_z

    spec = chain(4)
    compiled = compile_qnn(spec, get_target("ibm_brisbane", live=False), packing="max")
    assert compiled.copies == 26
    check_isa(compiled.circuit, get_target("ibm_brisbane", live=False))
    x, w = random_inputs(spec, 52, seed=3)
    z = exact_z(compiled.circuit, compiled.parameter_values(x, w))  # (2, 26 * 4)
    np.testing.assert_allclose(z.reshape(-1, 4), expectations(spec, x, w).numpy(), atol=1e-9)


@pytest.mark.parametrize(("n", "k"), [(4, 30), (8, 15)])
def test_nighthawk_is_packed_to_its_bound_with_independent_exact_copies(n, k):
    """Nighthawk's 12 x 10 square lattice holds 120 // n disjoint chains; `max` finds them
    all (`best` takes the 24 / 11 best-calibrated), each copy on its own qubits."""
    from qvit_hw.backends.simulate import exact_z
    from qvit_hw.transpile import bound

    dt = get_target("ibm_nighthawk", live=False)
    spec = chain(n)
    compiled = compile_qnn(spec, dt, packing="max")
    assert compiled.copies == bound(dt, n) == k
    check_isa(compiled.circuit, dt)
    assert_independent_copies(compiled)
    x, w = random_inputs(spec, 2 * k - 1, seed=5)
    z = exact_z(compiled.circuit, compiled.parameter_values(x, w))  # (2, k * n)
    np.testing.assert_allclose(
        z.reshape(-1, n)[: 2 * k - 1], expectations(spec, x, w).numpy(), atol=1e-9
    )
