"""Both heads as the reference made them: the 400-way hub model built and initialised, then
its projection replaced by a fresh ``nn.Linear`` (PyTorch's default init) under the same seed."""

import math
import warnings

import pytest
import torch
import torch.nn as nn

import models
from models.convert import from_pytorchvideo

with warnings.catch_warnings():  # the reference warns about deprecated torch APIs
    warnings.simplefilter("ignore")
    from pytorchvideo.models.hub import mvit_base_16x4
    from pytorchvideo.models.x3d import create_x3d


def reference_x3d(num_classes: int) -> nn.Module:
    """The hub's x3d_m at 4x64x64 (its builder fixes 16x224x224), projection replaced."""
    model = create_x3d(input_clip_length=4, input_crop_size=64, depth_factor=2.2)
    model.blocks[5].proj = nn.Linear(2048, num_classes)
    return model


def reference_mvit(num_classes: int) -> nn.Module:
    model = mvit_base_16x4(pretrained=False, temporal_size=4, spatial_size=64)
    model.head.proj = nn.Linear(768, num_classes)
    return model


CASES = {
    "x3d_m": (reference_x3d, "head.fc", 2048),
    "mvit_b_16x4": (reference_mvit, "head.1", 768),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("num_classes", [20, 400])
def test_seeded_build_equals_the_hub_model_with_a_fresh_projection(name, num_classes):
    make_reference, _, _ = CASES[name]
    torch.manual_seed(3)
    ref = make_reference(num_classes)
    torch.manual_seed(3)
    ours = models.build(name, num_classes, clip_len=4, crop_size=64)
    ref_state = from_pytorchvideo(name, ref.state_dict())
    assert set(ref_state) == set(ours.state_dict())
    for key, tensor in ours.state_dict().items():
        assert torch.equal(tensor, ref_state[key]), key


@pytest.mark.parametrize("name", list(CASES))
def test_head_has_pytorchs_default_linear_init(name):
    _, head, fan_in = CASES[name]
    torch.manual_seed(0)
    state = models.build(name, 20, clip_len=4, crop_size=64).state_dict()
    weight, bias = state[f"{head}.weight"], state[f"{head}.bias"]
    bound = 1 / math.sqrt(fan_in)
    assert weight.shape == (20, fan_in) and bias.shape == (20,)
    # Uniform in +-1/sqrt(fan_in): inside the bounds and spread over them (std bound/sqrt(3)),
    # not the families' N(0, 0.01) / truncated N(0, 0.02) with a zero bias.
    assert weight.abs().max() <= bound and bias.abs().max() <= bound
    assert weight.abs().max() > 0.95 * bound
    assert weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert (bias != 0).all() and bias.abs().max() > 0.5 * bound
