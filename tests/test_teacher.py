"""The TinyViT-5M port equals timm's model, loads timm checkpoints, and wears the KD head."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from qvit_hw.data import DEFAULT_NORMALIZATION
from qvit_hw.errors import CheckpointError
from qvit_hw.teacher import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Teacher,
    download_pretrained,
    load_timm_weights,
    tiny_vit_5m_224,
)

# timm imports torchvision, which cannot load beside this torch build. Inside this script
# only, every `torchvision.*` module is an empty stand-in: timm's TinyViT never calls it.
TIMM_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, importlib.machinery, sys, types

    class _Any(type):
        def __getattr__(cls, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Any(name, (), {})

    class _Module(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Any(name, (), {})

    class _StandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path, target=None):
            if fullname.split(".")[0] == "torchvision":
                return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
            return None

        def create_module(self, spec):
            return _Module(spec.name)

        def exec_module(self, module):
            module.__path__ = []

    sys.meta_path.insert(0, _StandIn())

    import timm, torch
    from safetensors.torch import save_file

    out = sys.argv[1]
    torch.manual_seed(0)
    model = timm.create_model("tiny_vit_5m_224", pretrained=False, num_classes=1000)
    with torch.no_grad():  # non-trivial BatchNorm statistics and attention biases
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_()
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
        for name, p in model.named_parameters():
            if "attention_biases" in name or ".bn." in name:
                p.normal_(0, 0.5)
    model.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        y = model(x)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, out + "/model.safetensors")
    n_params = sum(p.numel() for p in model.parameters())
    torch.save({"x": x, "y": y, "n_params": n_params}, out + "/reference.pt")
    """
)


@pytest.fixture(scope="module")
def timm_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """timm's own tiny_vit_5m_224: its checkpoint, an input batch and its outputs."""
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm is not installed (pip install -e .[dev])")
    out = tmp_path_factory.mktemp("timm")
    script = out / "timm_reference.py"
    script.write_text(TIMM_SCRIPT)
    subprocess.run([sys.executable, str(script), str(out)], check=True, timeout=300)
    return out


def test_port_loads_timm_checkpoint_strictly_and_matches_its_outputs(timm_reference: Path) -> None:
    ref = torch.load(timm_reference / "reference.pt", weights_only=True)
    port = load_timm_weights(timm_reference / "model.safetensors").eval()

    assert sum(p.numel() for p in port.parameters()) == ref["n_params"] == 5_392_764
    with torch.no_grad():
        torch.testing.assert_close(port(ref["x"]), ref["y"], atol=1e-5, rtol=0)

    from safetensors.torch import load_file

    fresh = tiny_vit_5m_224(num_classes=1000)
    fresh.load_state_dict(load_file(timm_reference / "model.safetensors"), strict=True)
    assert fresh.state_dict().keys() == port.state_dict().keys()


def test_five_million_parameters_before_the_head_swap() -> None:
    backbone = tiny_vit_5m_224(num_classes=0, init=False)  # (init only changes values)
    assert sum(p.numel() for p in backbone.parameters()) == 5_071_764
    teacher = Teacher(n_qubits=4, num_classes=7, init=False)
    extra = sum(p.numel() for p in teacher.kd_head.parameters())
    assert extra == 320 * 4 + 4 + 4 * 7 + 7


def test_old_style_checkpoint_with_model_key_and_bias_indices_loads(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = tiny_vit_5m_224(num_classes=10)  # the head width is read from the file
    state = dict(source.state_dict())
    state["stages.1.blocks.0.attn.attention_bias_idxs"] = torch.zeros(49, 49, dtype=torch.long)
    torch.save({"model": state}, tmp_path / "tiny_vit_5m_22k_distill.pth")

    loaded = load_timm_weights(tmp_path / "tiny_vit_5m_22k_distill.pth")
    assert loaded.head.fc.weight.shape == (10, 320)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_foreign_or_missing_weights_are_refused(tmp_path: Path) -> None:
    save_file({"conv.weight": torch.zeros(3, 3)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="is not a timm tiny_vit_5m_224 checkpoint"):
        load_timm_weights(tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match=r"teacher weights .*nope\.safetensors not found"):
        load_timm_weights(tmp_path / "nope.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match=r"bad\.safetensors do not load"):
        load_timm_weights(tmp_path / "bad.safetensors")


def test_pretrained_download_offline_fails_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HOME", str(tmp_path))  # nothing cached
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no 20 s of retries
    with pytest.raises(CheckpointError, match=r"pass --teacher-weights PATH$") as err:
        download_pretrained()
    assert "timm/tiny_vit_5m_224.dist_in22k_ft_in1k/model.safetensors" in str(err.value)
    assert "\n" not in str(err.value)


def test_teacher_reads_student_inputs_and_exposes_the_n_vector() -> None:
    torch.manual_seed(0)
    teacher = Teacher(n_qubits=4, num_classes=3).eval()
    value = 0.2  # a flat grey image in the data's normalisation
    small = torch.full((2, 3, 28, 28), value)

    prepared = teacher.prepare(small)
    assert prepared.shape == (2, 3, 224, 224)
    pixel = value * DEFAULT_NORMALIZATION.std[0] + DEFAULT_NORMALIZATION.mean[0]
    expected = (pixel - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(prepared[0, :, 100, 7], expected, atol=1e-6, rtol=0)

    images = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        n_vector = teacher.features(images)
        logits = teacher(images)
    assert n_vector.shape == (2, 4) and (n_vector >= 0).all()
    torch.testing.assert_close(logits, teacher.last_linear(n_vector))
    big = torch.randn(1, 3, 224, 224)  # 224x224 inputs are only re-normalised
    torch.testing.assert_close(teacher.prepare(big), big * teacher.scale + teacher.shift)
    with pytest.raises(ValueError, match=r"images: expected \(B, 3, S, S\)"):
        teacher.prepare(torch.zeros(2, 28, 28))
