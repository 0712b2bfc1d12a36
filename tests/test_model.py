"""QViT and ViT: shapes, parameter counts, the executor hook, and learning signal."""

import numpy as np
import pytest
import torch

from qvit_hw.circuit import expectations, tree
from qvit_hw.model import (
    ModelConfig,
    QNNLayer,
    QViT,
    VisionTransformer,
    ViT,
    count_parameters,
    exact_executor,
)

PAPER_COUNTS = {(28, 4): 1000, (224, 4): 4000, (224, 8): 8000}


@pytest.mark.parametrize(("size", "n"), list(PAPER_COUNTS))
@pytest.mark.parametrize("kind", ["qvit", "vit"])
def test_parameter_counts_near_the_papers(kind, size, n):
    model = VisionTransformer(ModelConfig(model=kind, image_size=size, n_qubits=n))
    count = count_parameters(model)
    assert abs(count - PAPER_COUNTS[size, n]) / PAPER_COUNTS[size, n] < 0.2, count


def test_qvit_has_two_angles_per_pair_per_qnn_and_no_bias():
    model = QViT(n_qubits=8, heads=2, image_size=224)
    (layer,) = model.quantum_layers()
    assert layer.weight.shape == (6, 7, 2)  # heads x {q, k, v}, pairs, (a, b)
    assert layer.names == ("head0.q", "head0.k", "head0.v", "head1.q", "head1.k", "head1.v")
    assert ViT(n_qubits=8, image_size=224).quantum_layers() == []


@pytest.mark.parametrize(("size", "n"), [(28, 4), (28, 8), (224, 4)])
def test_forward_shapes(size, n):
    model = QViT(image_size=size, n_qubits=n, num_classes=7)
    images = torch.randn(3, 3, size, size)
    assert model.tokens(images).shape == (3, 196, n)
    assert model.features(images).shape == (3, n)
    assert (model.features(images) >= 0).all()  # post-ReLU
    assert model(images).shape == (3, 7)


def test_wrong_image_size_names_the_expected_shape():
    model = QViT(image_size=28)
    with pytest.raises(
        ValueError, match=r"images: expected \(B, 3, 28, 28\), got \(2, 3, 32, 32\)"
    ):
        model(torch.zeros(2, 3, 32, 32))


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="image_size must be one of"):
        ModelConfig(image_size=64)
    with pytest.raises(ValueError, match="model must be 'qvit' or 'vit'"):
        ModelConfig(model="cnn")
    with pytest.raises(ValueError, match="is repeated"):
        ModelConfig(pairs=((0, 1), (0, 1)))
    cfg = ModelConfig(image_size=224, n_qubits=8, pairs=tree(8).pairs, num_classes=5)
    assert cfg.patch_size == 16 and cfg.n_tokens == 196
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    torch.manual_seed(0)
    a = VisionTransformer(cfg)
    b = VisionTransformer(ModelConfig.from_dict(cfg.to_dict()))
    b.load_state_dict(a.state_dict())
    images = torch.randn(2, 3, 224, 224)
    torch.testing.assert_close(a(images), b(images))


def test_quantum_layer_evaluates_its_qnns_exactly():
    torch.manual_seed(1)
    model = QViT(n_qubits=4, heads=2).double()
    layer = model.block.attn.qkv
    x = torch.randn(2, 196, 4, dtype=torch.float64)
    q, k, v = layer(x)  # (B, H, T, n) each
    for h in range(2):
        for role, out in enumerate((q, k, v)):
            ref = expectations(layer.spec, x, layer.weight[3 * h + role])
            torch.testing.assert_close(out[:, h], ref)


def test_executor_swap_changes_only_the_qnn_evaluation():
    torch.manual_seed(2)
    model = QViT(n_qubits=4).double()
    images = torch.randn(2, 3, 28, 28, dtype=torch.float64)
    calls = []

    def recording(spec, weights, angles, names):
        calls.append((angles.shape, tuple(names)))
        return exact_executor(spec, weights, angles, names)

    def flipped(spec, weights, angles, names):
        return -exact_executor(spec, weights, angles, names)

    exact = model(images)
    with model.executor(recording):
        torch.testing.assert_close(model(images), exact)
    assert calls == [((2, 196, 4), model.block.attn.qkv.names)]
    with model.executor(flipped):
        assert (model(images) - exact).abs().max() > 1e-6
    torch.testing.assert_close(model(images), exact)  # restored on exit


def test_gradients_reach_the_qnn_weights_and_a_few_steps_learn():
    torch.manual_seed(3)
    model = QViT(n_qubits=4, num_classes=2)
    images = torch.randn(16, 3, 28, 28)
    labels = (images[:, 0, :14].mean(dim=(1, 2)) > 0).long()  # a learnable rule
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        assert model.block.attn.qkv.weight.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_general_pair_lists_work_in_the_model():
    torch.manual_seed(4)
    model = QViT(n_qubits=8, image_size=28, pairs=tree(8).pairs)
    images = torch.randn(2, 3, 28, 28)
    out = model(images)
    out.sum().backward()
    assert out.shape == (2, 2)
    assert model.block.attn.qkv.weight.grad.shape == (6, 7, 2)


# --- QNNLayer: the paper's QNN as a standalone trainable layer -----------------------------


def test_qnn_layer_matches_expectations_for_one_and_many_qnns():
    import qvit_hw
    from qvit_hw.model import QNNLayer

    torch.manual_seed(0)
    layer = qvit_hw.QNNLayer(qvit_hw.chain(4)).double()
    assert layer.weight.shape == (3, 2) and layer.weight.requires_grad
    x = torch.rand(5, 7, 4, dtype=torch.float64) * 3
    want = expectations(layer.spec, x, layer.weight)
    assert torch.allclose(layer(x), want, atol=1e-12)
    assert torch.allclose(layer(x[0, 0]), want[0, 0], atol=1e-12)  # any leading shape
    many = QNNLayer(tree(4), qnns=3).double()
    z = many(x[:, 0])  # (5, 4) -> (5, 3, 4)
    assert z.shape == (5, 3, 4)
    for q in range(3):
        assert torch.allclose(z[:, q], expectations(tree(4), x[:, 0], many.weight[q]), atol=1e-12)
    with pytest.raises(ValueError, match=r"expected angles \(\.\.\., 4\), got \(5, 3\)"):
        layer(torch.zeros(5, 3))


def test_qnn_layer_trains_and_its_executor_hook_is_called():
    from qvit_hw.model import QNNLayer

    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(16, 4), QNNLayer(4), torch.nn.Linear(4, 2))
    x, y = torch.randn(64, 16), torch.randint(0, 2, (64,))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses[::10]
    assert model[1].weight.grad is not None and model[1].weight.grad.abs().sum() > 0
    calls = []

    def executor(spec, weights, angles, names):
        calls.append((tuple(weights.shape), tuple(angles.shape), tuple(names)))
        return exact_executor(spec, weights, angles, names)

    layer = QNNLayer(4, executor=executor, names=["mine"])
    out = layer(torch.zeros(3, 4))
    assert calls == [((1, 3, 2), (3, 1, 4), ("mine",))]
    assert torch.allclose(out, expectations(layer.spec, torch.zeros(3, 4), layer.weight))


def test_the_models_qkv_projection_is_a_qnn_layer_with_the_same_weights_name():
    from qvit_hw.model import QNNLayer, QuantumProjection

    model = QViT(n_qubits=4, heads=2)
    (layer,) = model.quantum_layers()
    assert isinstance(layer, QuantumProjection) and isinstance(layer, QNNLayer)
    assert "block.attn.qkv.weight" in model.state_dict()
    tokens = torch.rand(2, 5, 4)
    _, k, _ = layer(tokens)
    z = expectations(layer.spec, tokens[:, :, None], layer.weight)  # (2, 5, 6, 4)
    assert torch.allclose(k[:, 1], z[:, :, 1 * 3 + 1], atol=1e-6)  # head 1, role k


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((None,), TypeError, "spec: expected a QNNSpec or a qubit count \\(int\\), got NoneType"),
        ((4.0,), TypeError, "spec: expected a QNNSpec or a qubit count"),
        ((4, 2.5), TypeError, "qnns: expected an int, got float"),
    ],
)
def test_qnn_layer_arguments_are_checked(args, error, message):
    with pytest.raises(error, match=message):
        QNNLayer(*args)


def test_qnn_layer_refuses_input_that_is_not_real_angles():
    layer = QNNLayer(4)
    with pytest.raises(
        TypeError, match=r"QNNLayer: expected a torch\.Tensor of angles, got ndarray"
    ):
        layer(np.zeros((2, 4)))
    with pytest.raises(
        TypeError, match=r"QNNLayer: expected real angles, got dtype torch\.complex64"
    ):
        layer(torch.zeros(2, 4, dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"expected angles \(\.\.\., 4\), got \(\)"):
        layer(torch.tensor(0.3))
