"""BatchNorm span in one process: the layouts, DataParallel's scatter of a short batch, plain
BatchNorm where the span covers the batch, evaluation and the state-dict keys."""

import copy
import pickle

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import models
from models.bn_span import SpanBatchNorm3d, SpanLayout, apply_bn_span, plan_bn_span
from tests.helpers.models import CLIP, batch, build_model, data_parallel_step, optimizer
from tests.helpers.train import one_thread


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


@pytest.mark.parametrize(("span", "batch_size", "rank", "world", "expected"), [
    (4, 16, 0, 1, SpanLayout(4, 4, (), True, 0)),
    (4, 8, 1, 2, SpanLayout(4, 2, (), False, 1)),
    (4, 4, 0, 4, SpanLayout(4, 1, (), True, 0)),
    (4, 2, 0, 8, SpanLayout(4, 1, (0, 1), True, 0)),
    (4, 2, 5, 8, SpanLayout(4, 1, (4, 5), False, 5)),
    (4, 1, 6, 16, SpanLayout(4, 1, (4, 5, 6, 7), False, 6)),
    (4, 2, 0, 1, SpanLayout(4, 1, (), True, 0)),  # one process, batch below the span: plain
    (8, 2, 1, 2, SpanLayout(8, 1, (0, 1), False, 1)),  # span beyond the global batch
    (4, None, 0, 1, SpanLayout(4, None, (), True, 0)),
])
def test_layouts(span, batch_size, rank, world, expected):
    assert plan_bn_span(span, batch_size, rank, world) == expected


@pytest.mark.parametrize(("args", "message"), [
    ((4, 6, 0, 1), "per-process batch 6 is not a multiple of bn_span 4"),
    ((4, 3, 0, 2), "bn_span 4 is not a multiple of the per-process batch 3"),
    ((8, 2, 0, 6), "6 processes do not split into groups of 4"),
    ((4, None, 0, 2), "needs the per-process batch size"),
    ((4, 16, 1, 1), "rank 1 not in 0..0"),
    ((-1, 16, 0, 1), "bn_span must be at least 1"),
])
def test_layouts_that_cannot_keep_the_span_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        plan_bn_span(*args)


@pytest.mark.parametrize("clips", [10, 5])
def test_short_batch_is_scattered_as_data_parallel_does(clips):
    """A last batch of 10 clips: chunks of 3, 3, 3, 1; of 5: 2, 2, 1 on three replicas."""
    x, y = batch()
    expected = data_parallel_step(x[:clips], y[:clips])
    model = apply_bn_span(build_model().train(), 4, 16)
    loss = F.cross_entropy(model(x[:clips]), y[:clips])
    loss.backward()
    assert loss.item() == pytest.approx(expected["loss"], rel=1e-12)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, expected["grads"][name], rtol=1e-7, atol=1e-10)
    optimizer(model).step()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, expected["state"][name], rtol=1e-7, atol=1e-10)


def train_step_state(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
    model.train()
    out = model(x)
    return out, model.state_dict()


@pytest.mark.parametrize(("span", "batch_size"), [(4, 4), (8, 4), (None, 16), (0, 16)])
def test_a_span_covering_the_batch_is_plain_batchnorm(span, batch_size):
    x = batch(batch_size)[0]
    plain_out, plain_state = train_step_state(build_model(), x)
    out, state = train_step_state(apply_bn_span(build_model(), span, batch_size), x)
    assert torch.equal(out, plain_out)
    assert all(torch.equal(state[k], plain_state[k]) for k in plain_state)


def test_chunks_differ_from_plain_batchnorm_in_training_only():
    x = batch(8)[0]
    plain, chunked = build_model(), apply_bn_span(build_model(), 4, 8)
    assert not torch.allclose(train_step_state(chunked, x)[0], train_step_state(plain, x)[0])
    chunked.load_state_dict(plain.state_dict())
    with torch.no_grad():  # evaluation: plain BatchNorm with the running statistics
        torch.testing.assert_close(chunked.eval()(x), plain.eval()(x), rtol=0, atol=0)


def test_build_option_keeps_parameters_buffers_and_keys():
    torch.manual_seed(0)
    plain = models.build("x3d_m", 20, clip_len=CLIP[0], crop_size=CLIP[1], dropout=0.0)
    torch.manual_seed(0)
    spanned = models.build("x3d_m", 20, clip_len=CLIP[0], crop_size=CLIP[1], dropout=0.0,
                           bn_span=4)
    norms = [m for m in spanned.modules() if isinstance(m, nn.BatchNorm3d)]
    assert norms and all(type(m) is SpanBatchNorm3d for m in norms)
    assert all(m.span_layout == SpanLayout(4, None, (), True, 0) for m in norms)
    plain_state, state = plain.state_dict(), spanned.state_dict()
    assert list(state) == list(plain_state)
    assert all(torch.equal(state[k], plain_state[k]) for k in state)
    spanned.load_state_dict(plain_state)  # old checkpoints load as they are
    # Copies and pickles keep the layout (the process groups live outside the modules).
    for clone in (copy.deepcopy(spanned), pickle.loads(pickle.dumps(spanned))):
        assert clone.head.bn5.span_layout == spanned.head.bn5.span_layout
    # Without the per-process batch, chunks of 4 clips: 16 clips as 4 chunks of 4.
    x = batch()[0].float()
    configured = apply_bn_span(copy.deepcopy(spanned), 4, 16)
    torch.testing.assert_close(spanned(x), configured(x), rtol=0, atol=0)
    # A span of None restores plain BatchNorm.
    apply_bn_span(spanned, None)
    assert all(type(m) is nn.BatchNorm3d for m in spanned.modules()
               if isinstance(m, nn.BatchNorm3d))
    assert not hasattr(spanned.head.bn5, "span_layout")


def test_running_statistics_follow_momentum_none_as_batchnorm_does():
    """A cumulative average (momentum None) counts the batches as nn.BatchNorm does."""
    x = batch(4)[0]
    plain, chunked = build_model(), apply_bn_span(build_model(), 4, 4)
    for model in (plain, chunked):
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.momentum = None
        for _ in range(2):
            train_step_state(model, x)
    assert all(torch.equal(chunked.state_dict()[k], v) for k, v in plain.state_dict().items())


@pytest.mark.parametrize("channels_last", [False, True])
def test_one_layer_against_batchnorm_per_chunk(channels_last):
    """The layer alone, in either memory format (a speed option keeps channels last)."""
    torch.manual_seed(0)
    plain = nn.BatchNorm3d(8).double()
    nn.init.uniform_(plain.weight)
    nn.init.normal_(plain.bias)
    chunked = apply_bn_span(copy.deepcopy(plain), 2, 8)
    x = torch.randn(8, 8, 3, 5, 5, dtype=torch.float64)
    grad = torch.randn_like(x)
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    x_chunked = x.clone(memory_format=fmt).requires_grad_()
    out = chunked(x_chunked)
    assert out.is_contiguous(memory_format=fmt)
    out.backward(grad.contiguous(memory_format=fmt))
    x_plain = x.clone().requires_grad_()
    expected = torch.cat([plain(part) if i == 0 else F.batch_norm(
        part, None, None, plain.weight, plain.bias, True, 0.1, plain.eps)
        for i, part in enumerate(x_plain.split(2))])
    expected.backward(grad)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(x_chunked.grad, x_plain.grad, rtol=0, atol=1e-12)
    for name in ("weight", "bias"):
        torch.testing.assert_close(getattr(chunked, name).grad, getattr(plain, name).grad,
                                   rtol=0, atol=1e-12)
    for name, buffer in plain.named_buffers():
        assert torch.equal(getattr(chunked, name), buffer), name
