"""The optimiser and the per-epoch LR follow the workload."""

import warnings
from pathlib import Path

import pytest
import torch

import opts
from train.schedule import build_optimizer, config_lr

REPO = Path(__file__).resolve().parent.parent


def torch_sequential_lrs(epochs: int) -> list[float]:
    """The LR of each epoch from torch's own schedulers with the workload's numbers
    (WORKLOAD.md: LinearLR start 0.1 over 5 epochs, then CosineAnnealingLR T_max 25,
    eta_min 1e-5, stepped once per epoch, base LR 0.01)."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.01, momentum=0.94, nesterov=True)
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=5)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=25, eta_min=1e-5)
    schedule = torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[5])
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(epochs):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
    return lrs


@pytest.mark.parametrize("preset", ["X3D_M", "MVIT_B_16x4"])
def test_lr_of_every_epoch_matches_sequential_lr(preset):
    config = opts.load_preset(REPO / "configs" / f"{preset}.yaml")
    expected = torch_sequential_lrs(config["epochs"])
    assert len(expected) == 20
    ours = [config_lr(config, epoch) for epoch in range(config["epochs"])]
    assert ours == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert ours[0] == pytest.approx(0.001) and ours[5] == pytest.approx(0.01)


def test_optimizer_is_nesterov_sgd_with_decay_on_every_parameter():
    config = opts.load_preset(REPO / "configs" / "X3D_M.yaml")
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1), torch.nn.BatchNorm3d(4),
                                torch.nn.Flatten(), torch.nn.LazyLinear(2))
    model(torch.zeros(1, 3, 1, 2, 2))
    optimizer = build_optimizer(model, config)
    assert isinstance(optimizer, torch.optim.SGD)
    (group,) = optimizer.param_groups
    assert {id(p) for p in group["params"]} == {id(p) for p in model.parameters()}
    assert (group["momentum"], group["dampening"], group["nesterov"]) == (0.94, 0.0, True)
    assert group["weight_decay"] == pytest.approx(5e-4)
    assert group["lr"] == pytest.approx(0.001)  # epoch 0 of the warm-up
