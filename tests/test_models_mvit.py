"""MViT-B 16x4 against pytorchvideo's hub ``mvit_base_16x4`` (the independent reference)."""

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.video import mvit_v1_b
from torchvision.models.video.mvit import Pool

import models
from models.convert import from_pytorchvideo, to_pytorchvideo

with warnings.catch_warnings():  # the reference warns about deprecated torch APIs
    warnings.simplefilter("ignore")
    from pytorchvideo.models.hub import mvit_base_16x4

ATOL = 1e-5


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine, two OpenMP threads that wait for each
    other at every layer make these forwards several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def reference(clip_len: int, crop: int, num_classes: int = 400, **options) -> nn.Module:
    return mvit_base_16x4(pretrained=False, temporal_size=clip_len, spatial_size=crop,
                          head_num_classes=num_classes, **options)


def randomize(model: nn.Module, seed: int = 1) -> nn.Module:
    """Random weights everywhere, LayerNorm scales and biases included (the init sets 1/0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            noise = torch.randn(tensor.shape, generator=generator)
            if tensor.dim() <= 1:
                tensor.copy_(noise * 0.2 + (1.0 if name.endswith(".weight") else 0.0))
            else:
                tensor.copy_(tensor + 0.1 * tensor.std() * noise)
    return model


def ours_like(ref: nn.Module, clip_len: int, crop: int, num_classes: int = 400,
              **options) -> nn.Module:
    ours = models.build("mvit_b_16x4", num_classes, clip_len=clip_len, crop_size=crop, **options)
    ours.load_state_dict(from_pytorchvideo("mvit_b_16x4", ref.state_dict()))
    return ours


def test_parameter_count_seeded_init_and_benchmark_size_eval():
    """At the benchmark's 16x224x224: parameter count, init and outputs of the hub model."""
    torch.manual_seed(0)
    ref = reference(16, 224)
    ref.head.proj = nn.Linear(768, 400)  # the reference's fresh head (test_models_heads)
    torch.manual_seed(0)
    ours = models.build("mvit_b_16x4", 400)
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in ref.parameters()) == 36_610_672
    # Same init rules in the same order: one seed gives the same weights bit for bit.
    ref_state = from_pytorchvideo("mvit_b_16x4", ref.state_dict())
    for name, tensor in ours.state_dict().items():
        assert torch.equal(tensor, ref_state[name]), name
    assert set(to_pytorchvideo("mvit_b_16x4", ours.state_dict())) == set(ref.state_dict())

    randomize(ref).eval()
    ours.load_state_dict(from_pytorchvideo("mvit_b_16x4", ref.state_dict()))
    ours.eval()
    x = torch.randn(1, 3, 16, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=ATOL)


@pytest.mark.parametrize(("clip_len", "crop"), [(8, 112), (4, 64)])
def test_demo_sizes_eval(clip_len, crop):
    ref = randomize(reference(clip_len, crop, num_classes=20)).eval()
    ours = ours_like(ref, clip_len, crop, num_classes=20).eval()
    x = torch.randn(2, 3, clip_len, crop, crop)
    with torch.no_grad():
        actual = ours(x)
        torch.testing.assert_close(actual, ref(x), rtol=0, atol=ATOL)
    assert actual.shape == (2, 20)
    assert not torch.allclose(actual.sum(dim=1), torch.ones(2))  # logits, no softmax


def test_train_mode_outputs_and_gradients():
    ref = randomize(reference(4, 64, num_classes=20, head_dropout_rate=0.0)).train()
    ours = ours_like(ref, 4, 64, num_classes=20, dropout=0.0).train()
    x = torch.randn(2, 3, 4, 64, 64)
    y = torch.tensor([3, 17])
    expected, actual = ref(x), ours(x)
    torch.testing.assert_close(actual, expected, rtol=0, atol=ATOL)
    F.cross_entropy(expected, y).backward()
    F.cross_entropy(actual, y).backward()
    ref_grads = from_pytorchvideo("mvit_b_16x4",
                                  {n: p.grad for n, p in ref.named_parameters()})
    # Relative to the largest gradient: some (e.g. the patch bias) are ~1e-10 everywhere.
    scale = max(g.abs().max().item() for g in ref_grads.values())
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, ref_grads[name], rtol=1e-4, atol=1e-6 * scale,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_block_table_is_torchvision_mvit_v1_b():
    ours = models.build("mvit_b_16x4", 400, drop_path=0.2)
    theirs = mvit_v1_b()  # torchvision's default stochastic depth is 0.2
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    for block, their_block in zip(ours.blocks, theirs.blocks, strict=True):
        # Ours differ only in the pooling norms' eps and the fused attention product.
        ours_repr = repr(block).replace("eps=1e-05", "eps=1e-06")
        assert ours_repr.replace("FusedMultiscaleAttention", "MultiscaleAttention") == repr(
            their_block)


def test_pooling_norms_use_the_reference_eps():
    model = models.build("mvit_b_16x4", 20, clip_len=4, crop_size=64)
    pool_norms = {id(m.norm_act[0]) for m in model.modules() if isinstance(m, Pool)
                  and m.norm_act is not None}
    assert len(pool_norms) == 2 * 16 + 3  # k and v in every block, q in the three pooling ones
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            assert module.eps == (1e-5 if id(module) in pool_norms else 1e-6)


def test_dropout_and_drop_path_options_match_the_reference():
    ours = models.build("mvit_b_16x4", 20, clip_len=4, crop_size=64, dropout=0.3, drop_path=0.2)
    ref = reference(4, 64, num_classes=20, droppath_rate_block=0.2)
    assert [b.stochastic_depth.p for b in ours.blocks] == pytest.approx(
        [b.drop_path.drop_prob if hasattr(b.drop_path, "drop_prob") else 0.0
         for b in ref.blocks])
    assert ours.head[0].p == 0.3
    default = models.build("mvit_b_16x4", 20, clip_len=4, crop_size=64)
    assert default.head[0].p == 0.5
    assert all(b.stochastic_depth.p == 0.0 for b in default.blocks)


def test_build_rejects_bad_options_and_sizes():
    with pytest.raises(ValueError, match="valid options: dropout, drop_path"):
        models.build("mvit_b_16x4", 20, head_softmax=False)
    with pytest.raises(ValueError, match="valid options: dropout, drop_path"):
        models.build("mvit_b_16x4", 20, bn_span=4)  # only LayerNorm: no BatchNorm span
    with pytest.raises(ValueError, match="even clip_len"):
        models.build("mvit_b_16x4", 20, clip_len=15)
    with pytest.raises(ValueError, match="divisible by 4"):
        models.build("mvit_b_16x4", 20, crop_size=110)
