"""X3D-M (Feichtenhofer 2020, "X3D: Expanding Architectures for Efficient Video Recognition").

The architecture, the initialisation and the forward pass are those of pytorchvideo's hub
``x3d_m`` (``create_x3d`` with width factor 2.0, depth factor 2.2, bottleneck factor 2.25):

- stem: 1x3x3 conv (stride 1,2,2) -> depthwise 5x1x1 conv -> BN -> ReLU, 24 channels;
- four stages of bottleneck blocks, depths 3/5/11/7, widths 24/48/96/192, inner widths
  54/108/216/432; each block is 1x1x1 conv -> BN -> ReLU -> depthwise 3x3x3 conv (the
  first block of a stage has spatial stride 2) -> BN -> SE (every other block, starting with
  the first) -> swish -> 1x1x1 conv -> BN, added to the shortcut, then ReLU;
- head: 1x1x1 conv 192->432 -> BN -> ReLU -> AvgPool3d with a kernel fixed at build time from
  the clip length and crop (stride 1) -> 1x1x1 conv 432->2048 -> ReLU -> dropout -> linear
  per position -> softmax -> average over the positions left by the pool.

Initialisation, as the reference run made it: the 400-way model is built and initialised
the way pytorchvideo does (He-normal convolutions, BatchNorm 1/0 with every residual branch's
last BatchNorm zeroed, a 2048->400 projection N(0, 0.01)), then that projection is replaced
by a fresh ``nn.Linear(2048, num_classes)`` with PyTorch's default initialisation (weights
and bias uniform in +-1/sqrt(2048)). One seed gives the same weights as pytorchvideo's hub
``x3d_m`` with its projection replaced under that seed.

The fixed pool kernel matters: a model built for 16x224x224 and fed a 256 crop pools 7x7
windows over an 8x8 map and averages the softmax of the four windows, exactly as the
reference does when the benchmark evaluates X3D-M at crop 256.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

STEM_WIDTH = 24
STAGE_DEPTHS = (3, 5, 11, 7)
STAGE_WIDTHS = (24, 48, 96, 192)
BOTTLENECK_FACTOR = 2.25
SE_RATIO = 0.0625
HEAD_WIDTH = 2048
TOTAL_SPATIAL_STRIDE = 32  # stem 2 x four stages of 2
REFERENCE_CLASSES = 400  # the hub model's head, built and initialised before it is replaced


def _round_se_width(width: int) -> int:
    """SE bottleneck width: width x 1/16 rounded to a multiple of 8 (at least 8)."""
    scaled = width * SE_RATIO
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


class SqueezeExcite(nn.Module):
    """Channel gating from the clip-wide mean: x * sigmoid(fc2(relu(fc1(mean(x)))))."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv3d(channels, reduced, kernel_size=1)
        self.fc2 = nn.Conv3d(reduced, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean(dim=(2, 3, 4), keepdim=True)
        scale = torch.sigmoid(self.fc2(F.relu(self.fc1(scale))))
        return x * scale


class Bottleneck(nn.Module):
    """One residual block; the shortcut is a strided 1x1x1 conv when shape changes."""

    def __init__(
        self, dim_in: int, dim_inner: int, dim_out: int, stride: int, use_se: bool,
        shortcut_bn: bool,
    ) -> None:
        super().__init__()
        # Modules are created in the reference's order so that one seed gives one init.
        self.shortcut: nn.Module | None = None
        self.shortcut_bn: nn.Module | None = None
        if dim_in != dim_out or stride > 1:
            self.shortcut = nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False)
            if shortcut_bn:
                self.shortcut_bn = nn.BatchNorm3d(dim_out)
        self.conv_a = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.bn_a = nn.BatchNorm3d(dim_inner)
        self.conv_b = nn.Conv3d(
            dim_inner, dim_inner, 3, stride=(1, stride, stride), padding=1,
            groups=dim_inner, bias=False,
        )
        self.bn_b = nn.BatchNorm3d(dim_inner)
        self.se = SqueezeExcite(dim_inner, _round_se_width(dim_inner)) if use_se else None
        self.conv_c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.bn_c = nn.BatchNorm3d(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.shortcut is not None:
            shortcut = self.shortcut(x)
            if self.shortcut_bn is not None:
                shortcut = self.shortcut_bn(shortcut)
        # In-place ReLUs: BN's backward keeps its input, not its output, so this saves memory.
        y = F.relu(self.bn_a(self.conv_a(x)), inplace=True)
        y = self.bn_b(self.conv_b(y))
        if self.se is not None:
            y = self.se(y)
        y = self.bn_c(self.conv_c(F.silu(y)))
        return F.relu(shortcut + y, inplace=True)


class X3DHead(nn.Module):
    """Projected pooling, dropout, per-position linear layer, optional softmax, mean."""

    def __init__(
        self, dim_in: int, dim_inner: int, num_classes: int, pool_kernel: tuple[int, int, int],
        dropout: float, softmax: bool,
    ) -> None:
        super().__init__()
        self.conv5 = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.bn5 = nn.BatchNorm3d(dim_inner)
        self.pool = nn.AvgPool3d(pool_kernel, stride=1)
        self.lin5 = nn.Conv3d(dim_inner, HEAD_WIDTH, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.fc = nn.Linear(HEAD_WIDTH, num_classes)
        self.softmax = softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.bn5(self.conv5(x)), inplace=True))
        x = F.relu(self.lin5(x), inplace=True)
        if self.dropout is not None:
            x = self.dropout(x)
        x = self.fc(x.permute(0, 2, 3, 4, 1))  # B x T x H x W x classes
        if self.softmax:
            x = x.softmax(dim=-1)
        return x.mean(dim=(1, 2, 3))


class X3D(nn.Module):
    """X3D-M for clips of ``clip_len`` x ``crop_size`` (they fix the head's pool kernel).
    Input B x 3 x T x H x W; output B x num_classes. Options (defaults = the workload):

    - head_softmax: softmax in the head in training too, as the hub model (loss on probs).
    - stage2_shortcut_bn: BN on the first, stride-only, stage-2 shortcut (the hub has none).
    - dropout: dropout rate before the final linear layer.
    """

    def __init__(
        self,
        num_classes: int,
        clip_len: int = 16,
        crop_size: int = 224,
        head_softmax: bool = True,
        stage2_shortcut_bn: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if clip_len < 1 or crop_size < TOTAL_SPATIAL_STRIDE:
            raise ValueError(
                f"x3d_m needs clip_len >= 1 and crop_size >= {TOTAL_SPATIAL_STRIDE}, "
                f"got {clip_len} and {crop_size}"
            )
        self.stem = nn.Sequential()
        self.stem.add_module(
            "conv_xy", nn.Conv3d(3, STEM_WIDTH, (1, 3, 3), (1, 2, 2), (0, 1, 1), bias=False)
        )
        self.stem.add_module(
            "conv_t",
            nn.Conv3d(STEM_WIDTH, STEM_WIDTH, (5, 1, 1), padding=(2, 0, 0), groups=STEM_WIDTH,
                      bias=False),
        )
        self.stem.add_module("bn", nn.BatchNorm3d(STEM_WIDTH))
        self.stem.add_module("relu", nn.ReLU(inplace=True))

        stages = []
        dim_in = STEM_WIDTH
        for depth, dim_out in zip(STAGE_DEPTHS, STAGE_WIDTHS, strict=True):
            dim_inner = int(BOTTLENECK_FACTOR * dim_out)
            blocks = [
                Bottleneck(
                    dim_in if i == 0 else dim_out, dim_inner, dim_out,
                    stride=2 if i == 0 else 1, use_se=i % 2 == 0,
                    # The reference puts BN on a shortcut only when it changes width.
                    shortcut_bn=stage2_shortcut_bn or dim_in != dim_out,
                )
                for i in range(depth)
            ]
            stages.append(nn.Sequential(*blocks))
            dim_in = dim_out
        self.stages = nn.Sequential(*stages)

        side = math.ceil(crop_size / TOTAL_SPATIAL_STRIDE)
        self.head = X3DHead(
            STAGE_WIDTHS[-1], int(BOTTLENECK_FACTOR * STAGE_WIDTHS[-1]), REFERENCE_CLASSES,
            (clip_len, side, side), dropout, head_softmax,
        )
        _init_weights(self)
        # The reference's fresh head: created after the init, so it keeps PyTorch's default
        # Linear init and the random numbers drawn before it are those of the 400-way model.
        self.head.fc = nn.Linear(HEAD_WIDTH, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def _init_weights(model: nn.Module) -> None:
    """pytorchvideo's ResNet-style init: He-normal (fan_out) convs, BN 1/0, linear N(0, 0.01)
    (the 400-way projection, replaced afterwards), and the last BN of every residual branch
    zeroed so that each block starts as identity."""
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, Bottleneck):
            nn.init.zeros_(m.bn_c.weight)
