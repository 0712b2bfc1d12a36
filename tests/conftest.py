"""Fixtures shared across test modules."""

import itertools

import numpy as np
import pytest
import torch

from qvit_hw.data import Normalization
from qvit_hw.export import export_bundle
from qvit_hw.model import QViT


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> str:
    """A small digits bundle (28x28 with 7x7 patches: 16 tokens), seeded, untrained."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("bundle") / "digits"
    info = {"dataset": {"name": "digits", "size": 28}, "normalization": Normalization().to_dict()}
    export_bundle(QViT(num_classes=10, patch_size=7), path, info=info)
    return str(path)


@pytest.fixture(name="image_folder")
def image_folder_fixture():
    """`image_files.write_image_folder`: class sub-folders of 8-bit, 16-bit, float or DICOM
    images."""
    from image_files import write_image_folder

    return write_image_folder


@pytest.fixture
def seeded_braket(monkeypatch):
    """Braket's simulator draws its shots from a fresh unseeded ``default_rng()``: give each
    simulation the next of a fixed sequence of seeds, so a test draws the same shots on every
    run (unseeded, test_braket's 4-sigma checks failed about one CI run in a hundred)."""
    from braket.default_simulator.state_vector_simulation import StateVectorSimulation

    seeds = itertools.count(2026)
    init = StateVectorSimulation.__init__

    def seeded_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._rng_generator = np.random.default_rng(next(seeds))

    monkeypatch.setattr(StateVectorSimulation, "__init__", seeded_init)
