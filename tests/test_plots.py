"""The chip drawing: every device snapshot on its real lattice."""

import numpy as np
import pytest

from qvit_hw.devices import get_target
from qvit_hw.plots import chip_plot, lattice_positions

LATTICES = {
    "ibm_brisbane": ("heavy-hex", 15, 13),  # Eagle: x columns, y levels (7 rows + 6 bridges)
    "ibm_torino": ("heavy-hex", 15, 14),  # Heron r1: its last bridges hang below row 7
    "ibm_fez": ("heavy-hex", 16, 15),  # Heron r2: 8 rows of 16
    "ibm_nighthawk": ("square lattice", 10, 12),  # Nighthawk: 12 rows of 10
    "rigetti_ankaa_3": ("square lattice", 12, 7),
    "rigetti_cepheus_1_108q": ("square lattice", 12, 9),
}


@pytest.mark.parametrize("name", list(LATTICES))
def test_every_coupler_joins_lattice_neighbours(name):
    dt = get_target(name, live=False)
    xy, kind = lattice_positions(list(dt.edges), dt.num_qubits)
    assert (kind, len(np.unique(xy[:, 0])), len(np.unique(xy[:, 1]))) == LATTICES[name]
    assert len({tuple(p) for p in xy}) == dt.num_qubits  # one site per qubit
    for p, q in dt.edges:
        assert np.abs(xy[p] - xy[q]).sum() == 1.0, (p, q)


def test_other_shapes_fall_back_to_the_coupling_map():
    ring = [(0, 1), (1, 2), (2, 3), (3, 5), (5, 0), (4, 5)]
    assert lattice_positions(ring, 6) is None
    png = chip_plot([{"qubit": 0, "mae": 0.1}], ring, 6)
    assert png.startswith(b"\x89PNG")
    assert lattice_positions([(0, 1)], 1) is None  # a coupler to a qubit the chip lacks


def test_the_report_finds_the_chip_behind_every_hardware_name():
    from qvit_hw.report import _coupling_map

    assert _coupling_map("braket:ankaa-3")[1] == 84  # Ankaa-3 through Braket: its grid
    assert _coupling_map("fake_brisbane")[1] == _coupling_map("ibm_brisbane")[1] == 127
    edges, size = _coupling_map("ibm_nighthawk?twirling=all")  # a live name: its snapshot
    assert size == 120 and lattice_positions(edges, size)[1] == "square lattice"
    assert _coupling_map("braket:local") == _coupling_map("statevector") == (None, None)
