"""MViT-B 16x4 (Fan et al. 2021, "Multiscale Vision Transformers").

torchvision's ``MViT`` in its ``mvit_v1_b`` configuration is the same network as
pytorchvideo's hub ``mvit_base_16x4`` (same blocks, pooling, positional encoding,
initialisation and parameter count) and is maintained, so it is built on. The block table
is spelled out here because ``mvit_v1_b`` fixes the input to 16x224x224 while the CPU demo
presets need smaller clips, and two things are changed after building:

- the reference normalises pooled q, k and v with LayerNorm eps 1e-5 (torchvision uses 1e-6
  there, as everywhere else), so those norms get eps 1e-5;
- attention runs through ``scaled_dot_product_attention`` (same product, same parameters),
  which never stores the N x N_kv attention matrix: about 15% less time per training step
  at 16x224x224 on CPU (perf/model_step.py), and the fused kernels on GPUs.

The head, as the reference run made it: the 400-way model is built and initialised
(truncated normal std 0.02 for linear layers), then its 768->400 projection is replaced by a
fresh ``nn.Linear(768, num_classes)`` with PyTorch's default initialisation (weights and bias
uniform in +-1/sqrt(768)). One seed gives the same weights as pytorchvideo's hub
``mvit_base_16x4`` with its projection replaced under that seed.

torchvision stores q, k and v as one linear layer; ``models.convert`` maps the keys.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.video import MViT
from torchvision.models.video.mvit import MSBlockConfig, MultiscaleAttention, Pool

DEPTH = 16
EMBED_DIM = 96
STAGE_STARTS = (1, 3, 14)  # these blocks pool q by 1x2x2 and double the heads; the block
# before each doubles the width (the MViT-B table: dims 96/192/384/768, heads 1/2/4/8)
POOL_KERNEL = [3, 3, 3]
POOL_NORM_EPS = 1e-5  # the reference's attention-pooling LayerNorm; 1e-6 elsewhere
Q_STRIDE = (1, 2, 2)
FIRST_KV_STRIDE = (1, 8, 8)  # kv pooling stride of block 0, divided by Q_STRIDE at each stage
PATCH_STRIDE = (2, 4, 4)
REFERENCE_CLASSES = 400  # the hub model's head, built and initialised before it is replaced


def mvit_b_block_settings() -> list[MSBlockConfig]:
    """The 16 block configurations of MViT-B (identical to torchvision's ``mvit_v1_b``)."""
    settings = []
    heads, width, kv_stride = 1, EMBED_DIM, list(FIRST_KV_STRIDE)
    for index in range(DEPTH):
        pools_q = index in STAGE_STARTS
        if pools_q:
            heads *= 2
            kv_stride = [max(s // q, 1) for s, q in zip(kv_stride, Q_STRIDE, strict=True)]
        width_out = 2 * width if index + 1 in STAGE_STARTS else width
        settings.append(MSBlockConfig(
            num_heads=heads,
            input_channels=width,
            output_channels=width_out,
            kernel_q=list(POOL_KERNEL) if pools_q else [],
            kernel_kv=list(POOL_KERNEL),
            stride_q=list(Q_STRIDE) if pools_q else [],
            stride_kv=list(kv_stride),
        ))
        width = width_out
    return settings


class FusedMultiscaleAttention(MultiscaleAttention):
    """torchvision's MViT v1 attention with the softmax(q k^T / sqrt(d)) v product fused."""

    def forward(self, x: torch.Tensor, thw: tuple[int, int, int]
                ) -> tuple[torch.Tensor, tuple[int, int, int]]:
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.transpose(1, 3).unbind(dim=2)  # each B x heads x tokens x head_dim
        if self.pool_k is not None:
            k = self.pool_k(k, thw)[0]
        if self.pool_v is not None:
            v = self.pool_v(v, thw)[0]
        if self.pool_q is not None:
            q, thw = self.pool_q(q, thw)
        x = F.scaled_dot_product_attention(q, k, v, scale=self.scaler)
        x = x.transpose(1, 2).reshape(batch, -1, self.output_dim)
        return self.project(x), thw


def build_mvit_b_16x4(
    num_classes: int,
    clip_len: int = 16,
    crop_size: int = 224,
    dropout: float = 0.5,
    drop_path: float = 0.0,
) -> MViT:
    """MViT-B 16x4 for clips of ``clip_len`` frames and ``crop_size`` square crops.

    The positional embeddings are sized for that input, so the model accepts only it.
    ``dropout`` is the head dropout; ``drop_path`` the stochastic depth of the last block
    (rising linearly from 0 at the first block).
    """
    if clip_len < PATCH_STRIDE[0] or clip_len % PATCH_STRIDE[0]:
        raise ValueError(f"mvit_b_16x4 needs an even clip_len >= 2, got {clip_len}")
    if crop_size < 4 * PATCH_STRIDE[1] or crop_size % PATCH_STRIDE[1]:
        raise ValueError(f"mvit_b_16x4 needs a crop_size divisible by 4 and >= 16, got {crop_size}")
    model = MViT(
        spatial_size=(crop_size, crop_size),
        temporal_size=clip_len,
        block_setting=mvit_b_block_settings(),
        residual_pool=False,  # the MViTv2 options are all off: this is MViT (v1)
        residual_with_cls_embed=False,
        rel_pos_embed=False,
        proj_after_attn=False,
        dropout=dropout,
        stochastic_depth_prob=drop_path,
        num_classes=REFERENCE_CLASSES,
    )
    # The reference's fresh head, created after the init: PyTorch's default Linear init.
    model.head[1] = nn.Linear(model.head[1].in_features, num_classes)
    for module in model.modules():
        if isinstance(module, Pool) and module.norm_act is not None:
            for norm in module.norm_act:
                if isinstance(norm, nn.LayerNorm):
                    norm.eps = POOL_NORM_EPS
        if isinstance(module, MultiscaleAttention):
            # Only the forward differs, so switching the class keeps parameters and init.
            # The MViTv2 options that forward leaves out are off in MViT-B.
            assert not module.residual_pool and module.rel_pos_h is None
            module.__class__ = FusedMultiscaleAttention
    return model
