"""The device decision (train/device.py) on facts made up by hand: no GPU needed."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.helpers.device import GOOD, NO_GPU, OLD_DRIVER
from tests.helpers.train import TINY, train_cli
from train import TrainError
from train.device import (
    DeviceError,
    choose,
    decide,
    driver_cuda_from_table,
    gather_facts,
    parse_proc_version,
    parse_smi,
    torch_index_for,
    visible_gpus,
)
from train.distributed import choose_device


def test_auto_uses_usable_gpus_one_per_process():
    assert decide("auto", GOOD, local_rank=0) == torch.device("cuda", 0)
    assert decide("auto", GOOD, local_rank=3) == torch.device("cuda", 3)
    assert decide("cuda", GOOD, local_rank=2) == torch.device("cuda", 2)


def test_more_processes_than_gpus_is_refused():
    with pytest.raises(DeviceError, match="process 4 has no GPU .4 visible"):
        decide("auto", GOOD, local_rank=4)


def test_auto_without_gpus_trains_on_cpu():
    assert decide("auto", NO_GPU) == torch.device("cpu")


def test_cpu_when_asked_even_with_gpus():
    for facts in (GOOD, OLD_DRIVER, NO_GPU):
        assert decide("cpu", facts) == torch.device("cpu")


def test_gpus_present_but_unusable_stop_with_cause_and_fix():
    with pytest.raises(DeviceError) as e:
        decide("auto", OLD_DRIVER)
    line = str(e.value)
    assert "\n" not in line
    assert "driver 535.104.05 supports CUDA up to 12.2" in line
    assert "built for CUDA 13.0" in line
    assert "make clean-venv && make venv TORCH_INDEX=https://download.pytorch.org/whl/cu121" in line
    assert "--device cpu" in line
    assert isinstance(e.value, TrainError)  # the trainer prints it as one line and exits 2


def test_cuda_requested_but_unusable():
    with pytest.raises(DeviceError, match="device cuda: NVIDIA GPUs present.*driver 535"):
        decide("cuda", OLD_DRIVER)
    with pytest.raises(DeviceError, match="device cuda requested but this machine shows no"):
        decide("cuda", NO_GPU)


def test_driver_only_counts_as_present():
    # A container that sees the host's driver but was given no device file.
    facts = dataclasses.replace(NO_GPU, driver="580.82.07", driver_cuda="13.0")
    with pytest.raises(DeviceError, match="no /dev/nvidia<N> device file"):
        decide("auto", facts)
    # Device files without any driver information: still GPUs; the generic cause.
    facts = dataclasses.replace(NO_GPU, nvidia_devices=2, cuda_warning="CUDA init failed")
    with pytest.raises(DeviceError, match=r"is_available\(\) is false .*CUDA init failed"):
        decide("auto", facts)


def test_other_causes():
    cpu_build = dataclasses.replace(OLD_DRIVER, torch_cuda=None)
    with pytest.raises(DeviceError, match="PyTorch 2.14.1 is a CPU-only build.*whl/cu121"):
        decide("auto", cpu_build)
    hidden = dataclasses.replace(GOOD, cuda_available=False, device_count=0,
                                 visible_devices="")
    with pytest.raises(DeviceError, match=r"CUDA_VISIBLE_DEVICES='' hides every GPU \(it is "
                       r"empty\)"):
        decide("auto", hidden)
    ancient = dataclasses.replace(OLD_DRIVER, driver="470.57.02", driver_cuda=None)
    with pytest.raises(DeviceError, match="driver 470.57.02 is older than any CUDA build"):
        decide("auto", ancient)


# GPUs present, but CUDA_VISIBLE_DEVICES leaves PyTorch none (torch sees no CUDA device).
HIDDEN = dataclasses.replace(GOOD, cuda_available=False, device_count=0,
                             cuda_warning="CUDA initialization: no CUDA-capable device is "
                             "detected")


@pytest.mark.parametrize("value, why", [
    ("", "it is empty"),
    ("  ", "it is empty"),
    ("-1", "'-1' is not a GPU index"),
    ("abc", "'abc' is not a GPU index"),
    ("gpu0", "'gpu0' is not a GPU index"),
    ("7", "this machine has no GPU 7 (only 0 to 3)"),
    ("4,0", "this machine has no GPU 4 (only 0 to 3)"),
    ("0,0", "it names GPU 0 twice"),
    ("1,2,1", "it names GPU 1 twice"),
    ("GPU-8d3c,GPU-8d3c", "it names GPU-8d3c twice"),
    ("\x1b[2J" + "x" * 100, repr("\x1b[2J" + "x" * 26) + "...(104 characters) is not a GPU "
     "index"),  # a terminal escape and a long value: escaped and shortened
])
def test_a_visible_devices_value_that_hides_every_gpu_is_named(value, why):
    with pytest.raises(DeviceError) as e:
        decide("auto", dataclasses.replace(HIDDEN, visible_devices=value))
    line = str(e.value)
    shown = repr(value) if len(value) <= 40 else why.split(" is not")[0]
    assert f"CUDA_VISIBLE_DEVICES={shown} hides every GPU ({why}); unset " \
           "CUDA_VISIBLE_DEVICES or set it to GPU indices of this machine (e.g. 0 or 0,1; 0 to 3 " \
           "here), or pass --device cpu" in line
    assert "make venv" not in line and "\n" not in line and "\x1b" not in line


def test_a_visible_devices_value_that_cannot_be_checked_is_the_suspect():
    # UUIDs, or a list whose first entry looks usable: the variable is named, no reinstall.
    for value in ("GPU-00000000-bad", "0,abc", "MIG-1/2/3"):
        with pytest.raises(DeviceError) as e:
            decide("cuda", dataclasses.replace(HIDDEN, visible_devices=value))
        line = str(e.value)
        assert f"is false with CUDA_VISIBLE_DEVICES={value!r} (CUDA initialization: no " \
               "CUDA-capable device is detected); check that it names GPUs of this machine " \
               "(nvidia-smi -L lists them) or unset it" in line
        assert "make venv" not in line
    # Without the variable the same facts still point at the PyTorch build.
    with pytest.raises(DeviceError, match="make clean-venv && make venv"):
        decide("auto", HIDDEN)


def test_fewer_gpus_than_processes_names_where_the_list_stopped():
    facts = dataclasses.replace(GOOD, device_count=1, visible_devices="0,abc,1")
    with pytest.raises(DeviceError, match=r"^process 1 has no GPU \(1 visible with "
                       r"CUDA_VISIBLE_DEVICES='0,abc,1': CUDA reads no further: 'abc' is not a "
                       r"GPU index\); use at most one process per GPU"):
        decide("auto", facts, local_rank=1)
    assert decide("auto", facts, local_rank=0) == torch.device("cuda", 0)


def test_visible_gpus_follows_cuda_rules():
    assert visible_gpus("0,1", 4) == (["0", "1"], "")
    assert visible_gpus(" 2, 1", 4) == (["2", "1"], "")  # order kept, spaces skipped
    assert visible_gpus("0,2,-1,1", 4) == (["0", "2"], "CUDA reads no further: '-1' is not a "
                                                       "GPU index")
    assert visible_gpus("1gpu", 4) == (["1"], "")  # strtoul reads the leading digits
    assert visible_gpus("9", 0) == (["9"], "")  # device files unknown: no range check
    assert visible_gpus("GPU-a,GPU-b,0", 4)[0] == ["GPU-a", "GPU-b"]


@pytest.mark.parametrize("value", ["", "-1", "abc", "0,1", "2,1", "0,2,-1,1", "1gpu", "0,0",
                                   " 1, 2", "+1", "GPU-a,GPU-b", "GPU-a,GPU-a", "GPU-a,0",
                                   "MIG-x/1/2", "0,GPU-a"])
def test_visible_gpus_agrees_with_torchs_own_reading(value, monkeypatch):
    """torch.cuda mirrors CUDA's rules in a private helper; with no range to check (0 device
    files) both must list the same GPUs."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    expected = [str(x) for x in torch.cuda._parse_visible_devices()]
    assert visible_gpus(value, 0)[0] == expected


def test_invalid_request():
    with pytest.raises(DeviceError, match="device='gpu' is invalid"):
        decide("gpu", GOOD)


def test_parsers():
    smi = ("| NVIDIA-SMI 535.104.05    Driver Version: 535.104.05    CUDA Version: 12.2     |")
    assert parse_smi(smi) == ("535.104.05", "12.2")
    assert parse_smi("garbage") == (None, None)
    proc = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 2023\n"
            "GCC version:  gcc version 12.2.0")
    assert parse_proc_version(proc) == "535.104.05"
    open_module = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.82.07  Release"
    assert parse_proc_version(open_module) == "580.82.07"
    assert driver_cuda_from_table("535.104.05") == "12.2"
    assert driver_cuda_from_table("580.82.07") == "13.0"
    assert driver_cuda_from_table("470.57.02") is None
    assert torch_index_for("12.2").endswith("/cu121")
    assert torch_index_for("13.1").endswith("/cu130")
    assert torch_index_for("11.8").endswith("/cu118")


def test_this_machine_and_the_trainers_entry_point():
    facts = gather_facts(ask_driver=True)
    assert facts.torch_cuda == torch.version.cuda
    expected = "cuda" if facts.usable else "cpu"
    if facts.nvidia_present and not facts.usable:
        with pytest.raises(DeviceError):
            choose("auto", facts=facts)
    else:
        assert choose("auto", facts=facts).type == expected
        assert choose_device(0).type == expected
    assert choose_device(0, requested="cpu") == torch.device("cpu")


def test_trainer_stops_with_one_line_when_the_device_cannot_be_used(tiny_store, tmp_path):
    """``python -m train --device cuda`` on a machine whose GPUs PyTorch cannot use (or that
    has none) stops before anything is written, with the decision's one line."""
    done = train_cli("--config", str(TINY), "--data", str(tiny_store), "--device", "cuda",
                     "--out", str(tmp_path / "results"), timeout=120)
    facts = gather_facts(ask_driver=True)
    if facts.usable:  # a GPU machine: the tiny run trains on its GPU
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: device cuda")
    assert ("no NVIDIA GPU" in lines[0]) != facts.nvidia_present
    assert not (tmp_path / "results").exists()
