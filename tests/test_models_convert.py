"""Checkpoint interop: pytorchvideo and SlowFast checkpoints in, pytorchvideo keys out."""

import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn as nn

import models
from models.convert import ConvertError, from_pytorchvideo, main, to_pytorchvideo

with warnings.catch_warnings():  # the reference warns about deprecated torch APIs
    warnings.simplefilter("ignore")
    from pytorchvideo.models.hub import mvit_base_16x4
    from pytorchvideo.models.x3d import create_x3d

SIZES = {"x3d_m": (4, 64), "mvit_b_16x4": (4, 64)}


def reference(name: str) -> nn.Module:
    """A reference model with random weights (so that no tensor is a constant)."""
    clip_len, crop = SIZES[name]
    if name == "x3d_m":
        model = create_x3d(input_clip_length=clip_len, input_crop_size=crop, depth_factor=2.2,
                           model_num_class=20)
    else:
        model = mvit_base_16x4(pretrained=False, temporal_size=clip_len, spatial_size=crop,
                               head_num_classes=20)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def reference_states() -> dict[str, dict[str, torch.Tensor]]:
    """One random reference state per model, shared: building MViT-B takes seconds."""
    return {name: reference(name).state_dict() for name in SIZES}


def ours(name: str) -> nn.Module:
    clip_len, crop = SIZES[name]
    return models.build(name, 20, clip_len=clip_len, crop_size=crop)


def assert_same_state(actual: dict, expected: dict) -> None:
    assert list(actual) == list(expected) or set(actual) == set(expected)
    for key, tensor in expected.items():
        assert actual[key].shape == tensor.shape, key
        assert torch.equal(actual[key], tensor), key


@pytest.mark.parametrize("name", list(SIZES))
def test_round_trips_are_exact(name, reference_states):
    theirs = reference_states[name]
    converted = from_pytorchvideo(name, theirs)
    model = ours(name)
    model.load_state_dict(converted)  # strict: every key present, no extra ones
    assert_same_state(to_pytorchvideo(name, model.state_dict()), theirs)
    assert_same_state(from_pytorchvideo(name, to_pytorchvideo(name, converted)), converted)


@pytest.mark.parametrize("name", list(SIZES))
def test_cli_imports_slowfast_and_pytorchvideo_files_and_exports(name, reference_states,
                                                                 tmp_path):
    theirs = reference_states[name]
    # pytorchvideo's hub files hold {"model_state": ...}; SlowFast's add a DDP "module." prefix.
    if name == "x3d_m":
        torch.save({"model_state": theirs}, tmp_path / "pytorchvideo.pyth")
    torch.save({"model_state": {f"module.{k}": v for k, v in theirs.items()}, "epoch": 3},
               tmp_path / "slowfast.pyth")
    for source in sorted(p.name for p in tmp_path.glob("*.pyth")):
        out = tmp_path / f"ours_from_{source}.pt"
        assert main(["import", "--model", name, "--src", str(tmp_path / source),
                     "--out", str(out)]) == 0
        model = ours(name)
        model.load_state_dict(torch.load(out, weights_only=True))
        assert_same_state(model.state_dict(), from_pytorchvideo(name, theirs))

    back = tmp_path / "back.pyth"
    assert main(["export", "--model", name, "--src", str(out), "--out", str(back)]) == 0
    exported = torch.load(back, weights_only=True)["model_state"]
    assert_same_state(exported, theirs)
    assert not list(tmp_path.glob("*.tmp"))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "models.convert", *args],
                          capture_output=True, text=True, check=False)


def test_cli_errors_are_one_line(reference_states, tmp_path, capsys):
    missing = run_cli("import", "--model", "x3d_m", "--src", str(tmp_path / "nope.pyth"),
                      "--out", str(tmp_path / "out.pt"))
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.startswith("error: ") and missing.stderr.count("\n") == 1
    assert "nope.pyth" in missing.stderr

    torch.save({"model_state": reference_states["x3d_m"]}, tmp_path / "x3d.pyth")
    (tmp_path / "text.pyth").write_text("not a checkpoint")
    cases = [
        ("import", "mvit_b_16x4", "x3d.pyth", "pytorchvideo or SlowFast mvit_b_16x4 checkpoint"),
        ("export", "x3d_m", "text.pyth", "not a readable PyTorch checkpoint"),
    ]
    for direction, name, source, expected in cases:
        code = main([direction, "--model", name, "--src", str(tmp_path / source),
                     "--out", str(tmp_path / "out.pt")])
        err = capsys.readouterr().err
        assert code == 2
        assert err.startswith("error: ") and err.count("\n") == 1
        assert source in err and expected in err
    assert not (tmp_path / "out.pt").exists()


def test_unexpected_and_incomplete_keys_are_reported(reference_states):
    theirs = reference_states["x3d_m"]
    with pytest.raises(ConvertError, match="unexpected key 'blocks.9.extra.weight'"):
        from_pytorchvideo("x3d_m", {**theirs, "blocks.9.extra.weight": torch.zeros(1)})
    mvit = dict(reference_states["mvit_b_16x4"])
    del mvit["blocks.0.attn.k.weight"]
    with pytest.raises(ConvertError, match="q, k and v"):
        from_pytorchvideo("mvit_b_16x4", mvit)
