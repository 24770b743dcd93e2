"""Checkpoint interop with pytorchvideo and SlowFast for both models.

pytorchvideo hub checkpoints and SlowFast checkpoints store ``{"model_state": state_dict}``
with pytorchvideo's key names (SlowFast's may carry a ``module.`` prefix from
DistributedDataParallel). ``import`` turns one into a state dict of ``models.build``'s model;
``export`` turns ours back into ``{"model_state": ...}`` with pytorchvideo's keys. Load an
imported file with ``model.load_state_dict(torch.load(path, weights_only=True))``.

    python -m models.convert import --model x3d_m --src X3D_M.pyth --out x3d_m.pt
    python -m models.convert export --model x3d_m --src x3d_m.pt --out X3D_M.pyth
"""

import argparse
import os
import re
import sys

import torch

from formats.files import atomic_path

StateDict = dict[str, torch.Tensor]


class ConvertError(Exception):
    """A checkpoint that cannot be read or does not hold the named model."""


# X3D-M: pytorchvideo module path -> ours (the parameter name after the last dot is kept).
_X3D_FIXED = {
    "blocks.0.conv.conv_t": "stem.conv_xy",  # pytorchvideo's "conv_t" is the 1x3x3 conv
    "blocks.0.conv.conv_xy": "stem.conv_t",  # and its "conv_xy" the depthwise 5x1x1 conv
    "blocks.0.norm": "stem.bn",
    "blocks.5.pool.pre_conv": "head.conv5",
    "blocks.5.pool.pre_norm": "head.bn5",
    "blocks.5.pool.post_conv": "head.lin5",
    "blocks.5.proj": "head.fc",
}
_X3D_BLOCK = {
    "branch1_conv": "shortcut",
    "branch1_norm": "shortcut_bn",
    "branch2.conv_a": "conv_a",
    "branch2.norm_a": "bn_a",
    "branch2.conv_b": "conv_b",
    "branch2.norm_b.0": "bn_b",
    "branch2.norm_b.1.block.0": "se.fc1",
    "branch2.norm_b.1.block.2": "se.fc2",
    "branch2.conv_c": "conv_c",
    "branch2.norm_c": "bn_c",
}

# MViT-B: pytorchvideo module path (after "blocks.<i>.") -> torchvision's.
_MVIT_FIXED = {"patch_embed.patch_model": "conv_proj", "norm_embed": "norm", "head.proj": "head.1"}
_MVIT_BLOCK = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attn.proj": "attn.project.0",
    "attn.pool_q": "attn.pool_q.pool",
    "attn.pool_k": "attn.pool_k.pool",
    "attn.pool_v": "attn.pool_v.pool",
    "attn.norm_q": "attn.pool_q.norm_act.0",
    "attn.norm_k": "attn.pool_k.norm_act.0",
    "attn.norm_v": "attn.pool_v.norm_act.0",
    "mlp.fc1": "mlp.0",
    "mlp.fc2": "mlp.3",
    "proj": "project",
}
# pytorchvideo stores these as 1 x 1 x C or 1 x N x C; torchvision as C or N x C.
_MVIT_POS = {
    "cls_positional_encoding.cls_token": "pos_encoding.class_token",
    "cls_positional_encoding.pos_embed_class": "pos_encoding.class_pos",
    "cls_positional_encoding.pos_embed_spatial": "pos_encoding.spatial_pos",
    "cls_positional_encoding.pos_embed_temporal": "pos_encoding.temporal_pos",
}


def _rename(key: str, fixed: dict, block: dict, block_re: str, block_path) -> str:
    """Rename one key: its module path through ``fixed`` or, inside a block, through ``block``
    (``block_re`` matches the path with a ``rest`` group; ``block_path`` renames the block)."""
    path, _, param = key.rpartition(".")
    if path in fixed:
        return f"{fixed[path]}.{param}"
    match = re.fullmatch(block_re, path)
    if match and match["rest"] in block:
        return f"{block_path(match)}.{block[match['rest']]}.{param}"
    raise ConvertError(f"unexpected key {key!r}")


def _x3d_to_ours(theirs: StateDict) -> StateDict:
    block_re = r"blocks\.(?P<stage>[1-4])\.res_blocks\.(?P<index>\d+)\.(?P<rest>.+)"
    return {
        _rename(k, _X3D_FIXED, _X3D_BLOCK, block_re,
                lambda m: f"stages.{int(m['stage']) - 1}.{m['index']}"): v
        for k, v in theirs.items()
    }


def _x3d_to_theirs(ours: StateDict) -> StateDict:
    fixed = {v: k for k, v in _X3D_FIXED.items()}
    block = {v: k for k, v in _X3D_BLOCK.items()}
    block_re = r"stages\.(?P<stage>[0-3])\.(?P<index>\d+)\.(?P<rest>.+)"
    return {
        _rename(k, fixed, block, block_re,
                lambda m: f"blocks.{int(m['stage']) + 1}.res_blocks.{m['index']}"): v
        for k, v in ours.items()
    }


_MVIT_BLOCK_RE = r"(?P<block>blocks\.\d+)\.(?P<rest>.+)"


def _mvit_to_ours(theirs: StateDict) -> StateDict:
    ours: StateDict = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in theirs.items():
        if key in _MVIT_POS:
            # Class token and class position: 1 x 1 x C -> C; the others 1 x N x C -> N x C.
            keep = 1 if key.endswith(("cls_token", "pos_embed_class")) else 2
            ours[_MVIT_POS[key]] = value.reshape(value.shape[-keep:])
        elif re.fullmatch(r"blocks\.\d+\.attn\.[qkv]\.(weight|bias)", key):
            # torchvision computes q, k and v with one linear layer: stack them in that order.
            head, name, param = key.rsplit(".", 2)
            qkv.setdefault(f"{head}.qkv.{param}", {})[name] = value
        else:
            our_key = _rename(key, _MVIT_FIXED, _MVIT_BLOCK, _MVIT_BLOCK_RE, lambda m: m["block"])
            ours[our_key] = value
    for key, parts in qkv.items():
        if sorted(parts) != ["k", "q", "v"]:
            raise ConvertError(f"q, k and v are not all present for {key!r}")
        ours[key] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return ours


def _mvit_to_theirs(ours: StateDict) -> StateDict:
    theirs: StateDict = {}
    fixed = {v: k for k, v in _MVIT_FIXED.items()}
    block = {v: k for k, v in _MVIT_BLOCK.items()}
    pos = {v: k for k, v in _MVIT_POS.items()}
    for key, value in ours.items():
        if key in pos:
            theirs[pos[key]] = value.reshape((1,) * (3 - value.dim()) + tuple(value.shape))
        elif re.fullmatch(r"blocks\.\d+\.attn\.qkv\.(weight|bias)", key):
            head, _, param = key.rsplit(".", 2)
            for name, part in zip("qkv", value.chunk(3), strict=True):
                theirs[f"{head}.{name}.{param}"] = part.clone()
        else:
            theirs[_rename(key, fixed, block, _MVIT_BLOCK_RE, lambda m: m["block"])] = value
    return theirs


_TO_OURS = {"x3d_m": _x3d_to_ours, "mvit_b_16x4": _mvit_to_ours}
_TO_THEIRS = {"x3d_m": _x3d_to_theirs, "mvit_b_16x4": _mvit_to_theirs}


def from_pytorchvideo(name: str, state_dict: StateDict) -> StateDict:
    """pytorchvideo (or SlowFast) state dict of model ``name`` -> ours. Tensors are shared."""
    _check_name(name)
    return _TO_OURS[name](_unwrap(state_dict))


def to_pytorchvideo(name: str, state_dict: StateDict) -> StateDict:
    """Our state dict of model ``name`` -> pytorchvideo's key names and shapes."""
    _check_name(name)
    return _TO_THEIRS[name](_unwrap(state_dict))


def _unwrap(state_dict: StateDict) -> StateDict:
    """Drop the key prefixes of (Distributed)DataParallel and torch.compile wrappers."""
    unwrapped = {}
    for key, value in state_dict.items():
        for prefix in ("module.", "_orig_mod."):
            key = key.removeprefix(prefix)
        unwrapped[key] = value
    return unwrapped


def _check_name(name: str) -> None:
    if name not in _TO_OURS:
        raise ConvertError(f"unknown model {name!r}; valid models: {', '.join(_TO_OURS)}")


def load_state_dict(path: str) -> StateDict:
    """Tensors of a checkpoint file: ``{"model_state": ...}``, ``{"model": ...}`` or bare."""
    if not os.path.isfile(path):
        raise ConvertError(f"{path}: no such file; pass an existing checkpoint with --src")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for unreadable or unsafe files
        raise ConvertError(
            f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}); "
            "pass a file written by torch.save"
        ) from exc
    for wrapper in ("model_state", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConvertError(f"{path}: holds no state dict of tensors")
    return obj


def _save(obj: object, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConvertError(f"{path}: folder {folder} does not exist; create it or change --out")
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        print(f"error: {message} (see python -m models.convert --help)", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m models.convert", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("direction", choices=("import", "export"),
                        help="import: pytorchvideo/SlowFast -> ours; export: ours -> pytorchvideo")
    parser.add_argument("--model", required=True, choices=tuple(_TO_OURS))
    parser.add_argument("--src", required=True, help="checkpoint to read")
    parser.add_argument("--out", required=True, help="file to write")
    args = parser.parse_args(argv)
    try:
        state_dict = load_state_dict(args.src)
        if args.direction == "import":
            _save(from_pytorchvideo(args.model, state_dict), args.out)
        else:
            _save({"model_state": to_pytorchvideo(args.model, state_dict)}, args.out)
    except ConvertError as exc:
        message = str(exc)
        if not message.startswith((args.src, args.out)):
            origin = "a pytorchvideo or SlowFast" if args.direction == "import" else "our"
            message = f"{args.src}: {message}; is it {origin} {args.model} checkpoint?"
        print(f"error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {args.out}: cannot write ({exc.strerror})", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({len(state_dict)} tensors from {args.src})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
