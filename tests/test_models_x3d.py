"""X3D-M against pytorchvideo's hub ``x3d_m`` (the independent reference implementation)."""

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import models
from models.convert import from_pytorchvideo, to_pytorchvideo
from tests.helpers.models import randomize

with warnings.catch_warnings():  # the reference warns about deprecated torch APIs
    warnings.simplefilter("ignore")
    from pytorchvideo.models.hub import x3d_m
    from pytorchvideo.models.x3d import create_x3d

ATOL = 1e-5
# The reference's swish uses a deprecated autograd attribute on every backward.
pytestmark = pytest.mark.filterwarnings("ignore:'saved_variables' is deprecated")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine, two OpenMP threads that wait for each
    other at every layer make these small forwards 5-10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def reference(clip_len: int, crop: int, num_classes: int = 400, **options) -> nn.Module:
    """The hub's x3d_m settings (its builder fixes 16x224x224, so call create_x3d as it does)."""
    return create_x3d(input_clip_length=clip_len, input_crop_size=crop, depth_factor=2.2,
                      model_num_class=num_classes, **options)


def ours_like(ref: nn.Module, clip_len: int, crop: int, num_classes: int = 400,
              **options) -> nn.Module:
    ours = models.build("x3d_m", num_classes, clip_len=clip_len, crop_size=crop, **options)
    ours.load_state_dict(from_pytorchvideo("x3d_m", ref.state_dict()))
    return ours


def test_hub_model_at_benchmark_sizes_eval():
    """Built for 16x224x224 as the benchmark trains, fed 224 and the 256 eval crop."""
    ref = randomize(x3d_m(pretrained=False)).eval()
    ours = ours_like(ref, 16, 224).eval()
    for crop in (224, 256):  # 256: 7x7 pooling windows over an 8x8 map, softmax, mean
        x = torch.randn(1, 3, 16, crop, crop)
        with torch.no_grad():
            expected, actual = ref(x), ours(x)
        torch.testing.assert_close(actual, expected, rtol=0, atol=ATOL)
        assert actual.shape == (1, 400)


@pytest.mark.parametrize(("clip_len", "crop"), [(8, 112), (16, 64)])
def test_demo_sizes_eval(clip_len, crop):
    ref = randomize(reference(clip_len, crop, num_classes=20)).eval()
    ours = ours_like(ref, clip_len, crop, num_classes=20).eval()
    x = torch.randn(1, 3, clip_len, crop, crop)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=ATOL)


def test_train_mode_outputs_and_running_statistics():
    """BN in training mode, dropout off: same outputs and updated BN statistics."""
    ref = randomize(reference(4, 64, num_classes=20, dropout_rate=0.0)).train()
    ours = ours_like(ref, 4, 64, num_classes=20, dropout=0.0).train()
    x = torch.randn(3, 3, 4, 64, 64)
    with torch.no_grad():
        expected, actual = ref(x), ours(x)
    torch.testing.assert_close(actual, expected, rtol=0, atol=ATOL)
    torch.testing.assert_close(actual.sum(dim=1), torch.ones(3))  # softmax in training too
    ref_state = from_pytorchvideo("x3d_m", ref.state_dict())
    for name, tensor in ours.state_dict().items():
        torch.testing.assert_close(tensor, ref_state[name], rtol=1e-5, atol=ATOL,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_train_mode_gradients_in_float64():
    """Backward through the whole network (swish, SE, softmax head) gives the reference's
    gradients. In float64, because fp32 rounding near ReLU and small-batch BN makes
    gradients of two correct fp32 implementations differ by more than 1e-5."""
    ref = randomize(reference(2, 32, num_classes=20, dropout_rate=0.0)).train().double()
    ours = ours_like(ref, 2, 32, num_classes=20, dropout=0.0).train().double()
    x = torch.randn(3, 3, 2, 32, 32, dtype=torch.float64)
    y = torch.tensor([0, 5, 19])
    F.cross_entropy(ref(x), y).backward()
    F.cross_entropy(ours(x), y).backward()
    ref_grads = from_pytorchvideo("x3d_m", {n: p.grad for n, p in ref.named_parameters()})
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, ref_grads[name], rtol=1e-7, atol=1e-9)


def test_parameter_count_and_seeded_init_equal_the_hub_model():
    torch.manual_seed(0)
    ref = x3d_m(pretrained=False)
    ref.blocks[5].proj = nn.Linear(2048, 400)  # the reference's fresh head (test_models_heads)
    torch.manual_seed(0)
    ours = models.build("x3d_m", 400)
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in ref.parameters()) == 3_794_274
    # Same module order and init rules, so one seed gives the same weights bit for bit.
    ref_state = from_pytorchvideo("x3d_m", ref.state_dict())
    for name, tensor in ours.state_dict().items():
        assert torch.equal(tensor, ref_state[name]), name
    assert set(to_pytorchvideo("x3d_m", ours.state_dict())) == set(ref.state_dict())


def test_architecture_facts():
    model = models.build("x3d_m", 20)
    assert model.stem.conv_xy.kernel_size == (1, 3, 3)
    assert model.stem.conv_t.kernel_size == (5, 1, 1) and model.stem.conv_t.groups == 24
    assert [len(stage) for stage in model.stages] == [3, 5, 11, 7]
    assert [stage[0].conv_c.out_channels for stage in model.stages] == [24, 48, 96, 192]
    assert [stage[0].conv_a.out_channels for stage in model.stages] == [54, 108, 216, 432]
    assert [block.se is not None for block in model.stages[1]] == [True, False, True, False, True]
    assert model.stages[0][0].shortcut is not None and model.stages[0][0].shortcut_bn is None
    assert all(stage[0].shortcut_bn is not None for stage in model.stages[1:])
    assert model.head.fc.in_features == 2048 and model.head.fc.out_features == 20
    assert model.head.pool.kernel_size == (16, 7, 7)
    assert isinstance(model.head.dropout, nn.Dropout) and model.head.dropout.p == 0.5


def test_head_softmax_off_gives_the_reference_logits():
    ref = randomize(reference(4, 64, num_classes=20, head_activation=None)).eval()
    ours = ours_like(ref, 4, 64, num_classes=20, head_softmax=False).eval()
    x = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        actual = ours(x)
        torch.testing.assert_close(actual, ref(x), rtol=0, atol=ATOL)
    assert not torch.allclose(actual.sum(dim=1), torch.ones(2))


def test_stage2_shortcut_bn_and_dropout_options():
    default = models.build("x3d_m", 20, clip_len=4, crop_size=64)
    with_bn = models.build("x3d_m", 20, clip_len=4, crop_size=64, stage2_shortcut_bn=True)
    assert isinstance(with_bn.stages[0][0].shortcut_bn, nn.BatchNorm3d)
    assert (sum(p.numel() for p in with_bn.parameters())
            == sum(p.numel() for p in default.parameters()) + 2 * 24)
    no_dropout = models.build("x3d_m", 20, clip_len=4, crop_size=64, dropout=0.0)
    assert not any(isinstance(m, nn.Dropout) for m in no_dropout.modules())


def test_build_rejects_bad_names_options_and_sizes():
    with pytest.raises(ValueError, match="valid models: x3d_m, mvit_b_16x4"):
        models.build("x3d_l", 20)
    valid = "valid options: head_softmax, stage2_shortcut_bn, dropout, bn_span"
    with pytest.raises(ValueError, match=valid):
        models.build("x3d_m", 20, drop_path=0.1)
    with pytest.raises(ValueError, match="crop_size >= 32"):
        models.build("x3d_m", 20, crop_size=16)
    with pytest.raises(ValueError, match="num_classes must be at least 1"):
        models.build("x3d_m", 0)
