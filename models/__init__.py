"""The two benchmark models. ``build`` is the only entry point the trainer uses.

Models take a float tensor B x C x T x H x W and return B x num_classes (logits, or softmax
probabilities for X3D-M with ``head_softmax``); they know nothing of data.
"""

import torch.nn as nn

from models.bn_span import apply_bn_span
from models.mvit import build_mvit_b_16x4
from models.x3d import X3D

MODEL_NAMES = ("x3d_m", "mvit_b_16x4")
X3D_OPTIONS = ("head_softmax", "stage2_shortcut_bn", "dropout", "bn_span")
MVIT_OPTIONS = ("dropout", "drop_path")


def build(name: str, num_classes: int, clip_len: int = 16, crop_size: int = 224,
          **options) -> nn.Module:
    """Build ``name`` ("x3d_m" or "mvit_b_16x4") for clips of ``clip_len`` x ``crop_size``.

    Options, x3d_m: head_softmax (True), stage2_shortcut_bn (False), dropout (0.5), bn_span
    (None: plain BatchNorm; the workload's 4 is set by the trainer, which also calls
    ``models.bn_span.apply_bn_span`` with the per-process batch and the process layout;
    alone, bn_span N gives one process's BatchNorm statistics over chunks of N clips);
    mvit_b_16x4: dropout (0.5), drop_path (0.0). The other defaults are the workload's.
    Both heads are fresh ``nn.Linear`` layers with PyTorch's default initialisation, put in
    after the 400-way model was built and initialised, as the reference did.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if name == "x3d_m":
        _check_options(name, options, X3D_OPTIONS)
        bn_span = options.pop("bn_span", None)
        model = X3D(num_classes, clip_len=clip_len, crop_size=crop_size, **options)
        return apply_bn_span(model, bn_span)
    if name == "mvit_b_16x4":
        _check_options(name, options, MVIT_OPTIONS)
        return build_mvit_b_16x4(num_classes, clip_len=clip_len, crop_size=crop_size, **options)
    raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODEL_NAMES)}")


def _check_options(name: str, options: dict, valid: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for {name}; valid options: {', '.join(valid)}"
        )
