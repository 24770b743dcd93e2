"""Optional speed settings. None is part of the workload: a run that uses any of them is not
compliant (the reference trained in fp32, channels-first, eager). ``models.build`` never
applies them; the trainer does, on request, in this order: channels last, compile, and
``autocast`` around the forward pass and loss (with ``grad_scaler`` for fp16).
"""

import contextlib

import torch
import torch.nn as nn

PRECISIONS = ("fp32", "bf16", "fp16")


class SpeedOptionError(ValueError):
    """A speed setting that cannot run as asked (bad name, or not on this device)."""


def _to_channels_last(module: nn.Module, args: tuple) -> tuple:
    x, *rest = args
    if x.dim() == 5:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return (x, *rest)


def apply_channels_last(model: nn.Module) -> nn.Module:
    """Store the weights, and convert each 5-d input, in channels_last_3d layout (in place).

    Helps where the 3D convolution kernels prefer NDHWC (cuDNN with tensor cores); see
    docs/perf/models.md for what it does on CPU.
    """
    model.to(memory_format=torch.channels_last_3d)
    model.register_forward_pre_hook(_to_channels_last)
    return model


def compile_model(model: nn.Module, mode: str | None = None) -> nn.Module:
    """``torch.compile(model)``. Needs a C compiler on CPU and Triton on CUDA; the first steps
    are slow while it compiles, and every new input shape compiles again."""
    return torch.compile(model, mode=mode)


def autocast(device_type: str, precision: str) -> contextlib.AbstractContextManager:
    """Context for the forward pass and loss at ``precision`` ("fp32", "bf16" or "fp16").

    fp32 is a no-op. bf16 runs on CPU and on CUDA GPUs that support it. fp16 is CUDA only
    (CPU fp16 kernels are slow or missing) and needs ``grad_scaler`` to keep small gradients
    from flushing to zero.
    """
    if precision not in PRECISIONS:
        raise SpeedOptionError(
            f"unknown precision {precision!r}; valid precisions: {', '.join(PRECISIONS)}"
        )
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device_type != "cuda":
        raise SpeedOptionError(f"precision fp16 needs a CUDA device, not {device_type!r}; "
                               "use bf16 on CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device_type, dtype=dtype)


def grad_scaler(device_type: str, precision: str) -> torch.amp.GradScaler:
    """Loss scaler for ``precision``: active for fp16, a pass-through otherwise."""
    return torch.amp.GradScaler(device_type, enabled=precision == "fp16")
