"""The scheduler as the model's QNN executor: same model code, rows recorded."""

import numpy as np
import pytest
import torch

from qvit_hw.backends import get_backend
from qvit_hw.jobs.config import SchedulerConfig
from qvit_hw.jobs.executor import ROW_FIELDS, SchedulerExecutor
from qvit_hw.jobs.runner import QNNRunner
from qvit_hw.model import QViT


@pytest.fixture
def model_and_images():
    torch.manual_seed(0)
    model = QViT(num_classes=3, patch_size=7).eval()  # 16 tokens: small and quick
    return model, torch.randn(3, 3, 28, 28)


def test_statevector_executor_reproduces_the_exact_model(model_and_images):
    model, images = model_and_images
    executor = SchedulerExecutor(QNNRunner(get_backend("statevector")))
    executor.begin_batch([10, 11, 12])
    with torch.no_grad():
        exact = model(images)
        with model.executor(executor):
            got = model(images)
    torch.testing.assert_close(got, exact, atol=1e-5, rtol=1e-5)
    rows = executor.rows()
    assert set(ROW_FIELDS) | {"names"} == set(rows)
    assert len(rows["image"]) == 3 * 16 * 6  # images x tokens x QNNs (2 heads x q, k, v)
    assert list(rows["names"]) == [f"block0.head{h}.{r}" for h in (0, 1) for r in "qkv"]
    assert sorted(set(rows["image"].tolist())) == [10, 11, 12]
    np.testing.assert_allclose(rows["estimate"], rows["exact"], atol=1e-12)
    np.testing.assert_array_equal(rows["layer"], 0)
    first = (rows["image"] == 11) & (rows["token"] == 5) & (rows["qnn"] == 4)  # head1.k
    angles = model.block.norm1(model.tokens(images))[1, 5].double()
    np.testing.assert_allclose(rows["angles"][first][0], angles.detach().numpy())


def test_shot_executor_changes_outputs_within_shot_noise(model_and_images):
    model, images = model_and_images
    executor = SchedulerExecutor(QNNRunner(get_backend("shots"), SchedulerConfig(shots=100_000)))
    with torch.no_grad():
        exact = model(images)
        with model.executor(executor):
            got = model(images)
    assert not torch.equal(got, exact)
    torch.testing.assert_close(got, exact, atol=0.05, rtol=0)
    rows = executor.rows()
    assert (rows["stderr"] > 0).mean() > 0.99


def test_batch_naming_must_fit(model_and_images):
    model, images = model_and_images
    executor = SchedulerExecutor(QNNRunner(get_backend("statevector")))
    executor.begin_batch([0, 1])
    with (
        pytest.raises(ValueError, match="begin_batch named 2 images, the batch has 3"),
        torch.no_grad(),
        model.executor(executor),
    ):
        model(images)
