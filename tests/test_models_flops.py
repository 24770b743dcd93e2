"""perf/model_flops.py counts the same forward work as the reference models."""

import importlib.util
import pathlib
import warnings

import pytest

with warnings.catch_warnings():  # the reference warns about deprecated torch APIs
    warnings.simplefilter("ignore")
    from pytorchvideo.models.hub import mvit_base_16x4, x3d_m

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "perf" / "model_flops.py"


@pytest.fixture(scope="module")
def model_flops():
    spec = importlib.util.spec_from_file_location("model_flops", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("name", "hub_model"), [("x3d_m", x3d_m), ("mvit_b_16x4", mvit_base_16x4)])
def test_our_forward_gmacs_equal_the_reference_at_16x224(model_flops, name, hub_model):
    ours = model_flops.build_on_meta(name, 400, 16, 224)
    theirs = hub_model(pretrained=False).to("meta")
    our_gmacs = model_flops.forward_gmacs(ours, 16, 224)
    assert our_gmacs == model_flops.forward_gmacs(theirs, 16, 224)
    assert our_gmacs > 1.0


def test_script_prints_a_table(model_flops, capsys):
    assert model_flops.main() == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| model |") and len(lines) == 2 + len(model_flops.ROWS)
    assert "| x3d_m | 16x224x224 | 16x256x256 |" in lines[3]
