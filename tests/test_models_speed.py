"""Speed options: each leaves the fp32 default alone and gives (nearly) the fp32 outputs."""

import pytest
import torch

import models
from models import speed
from models.x3d import Bottleneck

SMALL = {"clip_len": 4, "crop_size": 64}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: two OpenMP threads on a shared 2-core machine crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pair(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Two copies of one small model in eval mode; X3D-M without softmax, to compare logits."""
    options = {"head_softmax": False} if name == "x3d_m" else {}
    torch.manual_seed(0)
    first = models.build(name, 20, **SMALL, **options).eval()
    second = models.build(name, 20, **SMALL, **options).eval()
    second.load_state_dict(first.state_dict())
    return first, second


def test_build_default_is_fp32_channels_first():
    for name in models.MODEL_NAMES:
        model = models.build(name, 20, **SMALL)
        for param in model.parameters():
            assert param.dtype == torch.float32 and param.is_contiguous()


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_channels_last_gives_the_same_outputs(name):
    plain, fast = pair(name)
    speed.apply_channels_last(fast)
    conv_weights = [m.weight for m in fast.modules() if isinstance(m, torch.nn.Conv3d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last_3d) for w in conv_weights)
    x = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_bf16_autocast_on_cpu_is_close_to_fp32(name):
    model, _ = pair(name)
    x = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        expected = model(x)
        with speed.autocast("cpu", "fp32"):
            assert torch.equal(model(x), expected)  # fp32 is a no-op
        with speed.autocast("cpu", "bf16"):
            actual = model(x)
    assert actual.dtype == torch.bfloat16
    # bf16 keeps 8 bits of mantissa: a few percent of the output scale.
    assert (actual.float() - expected).abs().max() <= 0.05 * expected.abs().max()


def test_fp16_and_unknown_precisions_are_refused_with_a_clear_error():
    with pytest.raises(speed.SpeedOptionError, match="fp16 needs a CUDA device"):
        speed.autocast("cpu", "fp16")
    with pytest.raises(speed.SpeedOptionError, match="valid precisions: fp32, bf16, fp16"):
        speed.autocast("cpu", "int8")
    assert not speed.grad_scaler("cpu", "bf16").is_enabled()


def test_compiled_block_gives_the_same_outputs():
    """torch.compile on one X3D block (compiling a whole model on CPU takes minutes)."""
    torch.manual_seed(0)
    block = Bottleneck(24, 54, 24, stride=1, use_se=True, shortcut_bn=False).eval()
    compiled = speed.compile_model(block)
    x = torch.randn(2, 24, 4, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), block(x), rtol=1e-5, atol=1e-5)
