"""Quil renderings parse back with pyquil and agree with the exact simulator in PyQVM."""

import numpy as np
import pytest
from pyquil import Program
from pyquil.quilbase import Gate

from qvit_hw.circuit import chain, expectations, quil, random_inputs, tree
from qvit_hw.errors import TranspileError
from qvit_hw.transpile.native import native_quil

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # pyquil deprecations


@pytest.mark.parametrize("spec", [chain(4), tree(8)], ids=["chain4", "tree8"])
def test_logical_quil_matches_the_exact_simulator(pyqvm_z, spec):
    x, w = random_inputs(spec, 3, seed=3)
    text = quil(spec, w)
    assert text.startswith(f"DECLARE x REAL[{spec.n_qubits}]") and "DECLARE w" not in text
    exact = expectations(spec, x, w).numpy()
    for r in range(3):
        np.testing.assert_allclose(pyqvm_z(text, x[r].numpy()), exact[r], atol=1e-6)


def test_logical_quil_declares_unbound_weights():
    text = quil(chain(3))
    assert "DECLARE w REAL[4]" in text and "RY(w[3]) 2" in text
    assert str(Program(text)).splitlines()[0] == "DECLARE x REAL[3]"
    with pytest.raises(ValueError, match="weights: expected 4 values, got 2"):
        quil(chain(3), [0.1, 0.2])


@pytest.mark.parametrize("target", ["rigetti_ankaa_3", "rigetti_cepheus_1_108q"])
@pytest.mark.parametrize("spec_id", ["chain4", "chain8", "ring4"])
def test_native_quil_of_a_compiled_copy_matches_the_exact_simulator(
    compiled, pyqvm_z, target, spec_id
):
    c = compiled(spec_id, target)
    x, w = random_inputs(c.spec, 2, seed=5)
    copy = min(2, c.copies - 1)  # not the first copy: checks the physical qubit numbering
    text = native_quil(c, w, copy=copy)
    prog = Program(text)
    natives = {"RX", "RZ", "ISWAP" if target == "rigetti_ankaa_3" else "CZ"}
    names = {i.name for i in prog.instructions if isinstance(i, Gate)}
    assert names <= natives and "CNOT" not in names
    used = {q.index for i in prog.instructions if isinstance(i, Gate) for q in i.qubits}
    assert used == set(c.placements[copy])
    exact = expectations(c.spec, x, w).numpy()
    for r in range(2):
        np.testing.assert_allclose(pyqvm_z(text, x[r].numpy()), exact[r], atol=1e-6)


def test_native_quil_refuses_gates_rigetti_lacks(compiled):
    c = compiled("chain4", "ibm_brisbane")
    with pytest.raises(TranspileError, match="no Quil native for 'ecr'"):
        native_quil(c, np.zeros((3, 2)))
