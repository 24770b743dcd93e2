"""Options: presets carry the workload, overrides are validated, compliance is computed."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import opts

REPO = Path(__file__).resolve().parent.parent
WORKLOAD = {  # WORKLOAD.md, read independently of opts.KEYS
    "num_classes": 20, "clip_len": 16, "train_short_side": [256, 320], "train_crop": 224,
    "flip_p": 0.5, "mean": [0.45] * 3, "std": [0.225] * 3, "val_short_side": 256,
    "epochs": 20, "batch_size": 16, "lr": 0.01, "momentum": 0.94, "dampening": 0.0,
    "nesterov": True, "weight_decay": 5e-4, "warmup_epochs": 5, "warmup_start_factor": 0.1,
    "cosine_t_max": 25, "eta_min": 1e-5, "seed": 0, "stop_at_target": True,
    "precision": "fp32", "channels_last": False, "compile": False,
}


@pytest.mark.parametrize("preset, expected", [
    ("X3D_M", {"model": "x3d_m", "target_top1": 20.11, "val_crop": 256, "head_softmax": True,
               "stage2_shortcut_bn": False, "dropout": 0.5}),
    ("MVIT_B_16x4", {"model": "mvit_b_16x4", "target_top1": 20.59, "val_crop": 224,
                     "dropout": 0.5, "drop_path": 0.0}),
])
def test_benchmark_presets_state_the_workload_explicitly(preset, expected):
    path = REPO / "configs" / f"{preset}.yaml"
    raw = yaml.safe_load(path.read_text())
    config = opts.load_preset(path)
    for key, value in {**WORKLOAD, **expected, "name": preset}.items():
        assert key in raw, f"{preset} should state {key} itself"
        assert config[key] == value, key
    # Only the resource knobs are left to the command line.
    assert set(config) - set(raw) == set(opts.RESOURCE_KNOBS)


def test_unknown_key_lists_valid_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: X\nmodel: x3d_m\ntarget_top1: 1\nval_crop: 32\nlearning_rate: 0.1\n")
    with pytest.raises(opts.ConfigError) as e:
        opts.load_preset(path)
    message = str(e.value)
    assert "\n" not in message and "learning_rate" in message and "weight_decay" in message


@pytest.mark.parametrize("key, value, words", [
    ("lr", "fast", "a number"),
    ("precision", "fp8", "fp32, bf16, fp16"),
    ("epochs", 0, ">= 1"),
    ("nesterov", "yes", "true or false"),
    ("train_short_side", [320, 256], "low <= high"),
    ("drop_path", 0.1, "does not apply to model x3d_m"),
])
def test_bad_values_are_one_line_errors(key, value, words):
    raw = opts.read_preset(REPO / "configs" / "X3D_M.yaml")
    with pytest.raises(opts.ConfigError) as e:
        opts.resolve({**raw, key: value}, "X3D_M.yaml")
    assert words in str(e.value) and "\n" not in str(e.value)


def parse(*argv):
    return opts.config_from_args(opts.build_parser().parse_args(list(argv)))


def test_resource_knobs_keep_a_run_compliant():
    config, changed = parse("--config", "configs/X3D_M.yaml", "--gpus", "4", "--workers", "2",
                            "--data", "/tmp/store", "--out", "/tmp/out", "--no-stop-at-target")
    assert changed == []
    assert (config["gpus"], config["workers"], config["data"]) == (4, 2, "/tmp/store")
    assert config["stop_at_target"] is False


def test_workload_and_speed_changes_are_listed():
    config, changed = parse("--config", "configs/X3D_M.yaml", "--seed", "3",
                            "--set", "precision=bf16", "--set", "lr=2e-2")
    assert changed == ["lr", "precision", "seed"]
    assert math.isclose(config["lr"], 0.02)


def test_a_copy_of_a_frozen_preset_is_judged_against_the_original(tmp_path):
    raw = yaml.safe_load((REPO / "configs" / "X3D_M.yaml").read_text())
    copy = tmp_path / "X3D_M.yaml"
    copy.write_text(yaml.safe_dump({**raw, "epochs": 40}))
    _, changed = parse("--config", str(copy))
    assert changed == ["epochs"]


def test_batch_must_divide_over_gpus():
    with pytest.raises(opts.ConfigError, match="does not divide"):
        parse("--config", "configs/X3D_M.yaml", "--gpus", "3")


def test_cli_bad_config_exits_2_with_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "train", "--config", "configs/X3D_M.yaml", "--set", "lr=-1",
         "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert "lr=-1" in done.stderr
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("key, value, words", [
    ("lr", float("nan"), "lr=nan is invalid; expected a finite number >= 0"),
    ("target_top1", float("nan"),
     "target_top1=nan is invalid; expected a finite number in [0, 100]"),
    ("lr", float("inf"), "lr=inf is invalid; expected a finite number"),
    ("lr", "1e400", "lr=inf is invalid"),  # YAML 1.1 reads it as a string
    ("timeout_s", float("-inf"), "timeout_s=-inf is invalid; expected a finite number in [1, "),
    ("mean", [0.45, float("nan"), 0.45], "mean=[0.45, nan, 0.45] is invalid; expected a list of "
     "three finite numbers (one per RGB channel)"),
    ("flip_p", 5, "flip_p=5 is invalid; expected a finite number in [0, 1]"),
    ("flip_p", -0.1, "in [0, 1]"),
    ("dropout", 1.5, "dropout=1.5 is invalid; expected a finite number in [0, 1]"),
    ("std", [0, 0, 0], "std=[0, 0, 0] is invalid; expected a list of three finite numbers > 0"),
    ("std", [0.2, -0.1, 0.2], "finite numbers > 0"),
    ("warmup_start_factor", 0,
     "warmup_start_factor=0 is invalid; expected a finite number in (0, 1]"),
    ("workers", 100000, "workers=100000 is invalid; expected an integer in [0, 256]"),
    ("seed", 2**32, "seed=4294967296 is invalid; expected an integer in [0, 4294967295]"),
    ("lr", 10**400, "lr=100000000000000000000000...(401 characters) is invalid; expected a "
     "finite number >= 0"),
    ("epochs", 2**63, "epochs=9223372036854775808 is invalid; expected an integer >= 1 that "
     "fits in 64 bits"),
    ("train_short_side", [256, 2**64], "two 64-bit integers"),
    ("train_crop", 300, "train_crop 300 is larger than the smallest train short side 256; "
     "expected train_crop <= 256"),
    ("val_crop", 288, "val_crop 288 is larger than val_short_side 256; expected val_crop <= 256"),
])
def test_values_outside_their_meaning_are_refused_naming_key_and_range(key, value, words):
    raw = opts.read_preset(REPO / "configs" / "X3D_M.yaml")
    with pytest.raises(opts.ConfigError) as e:
        opts.resolve({**raw, key: value}, "X3D_M.yaml")
    assert words in str(e.value) and "\n" not in str(e.value)


def test_bounds_themselves_are_accepted():
    raw = opts.read_preset(REPO / "configs" / "MVIT_B_16x4.yaml")
    config = opts.resolve({**raw, "flip_p": 1, "dropout": 0.0, "drop_path": 1.0,
                           "warmup_start_factor": 1, "workers": 256, "seed": 2**32 - 1,
                           "epochs": 2**63 - 1, "target_top1": 100, "std": [1e-9] * 3},
                          "MVIT_B_16x4.yaml")
    assert config["flip_p"] == 1.0 and isinstance(config["flip_p"], float)
    assert config["epochs"] == 2**63 - 1 and config["seed"] == 2**32 - 1


@pytest.mark.parametrize("name", ["../../x", "a/b", "a\\b", "..", ".", ".hidden", "a\nb",
                                  "tab\there", "\x7f", "bad\udc80", "x" * 256, ""])
def test_name_must_be_a_plain_file_name(name):
    raw = opts.read_preset(REPO / "configs" / "X3D_M.yaml")
    with pytest.raises(opts.ConfigError) as e:
        opts.resolve({**raw, "name": name}, "X3D_M.yaml")
    message = str(e.value)
    assert message.startswith("X3D_M.yaml: name=") and "\n" not in message
    assert "plain file name" in message or "non-empty string" in message


def test_plain_names_are_accepted():
    raw = opts.read_preset(REPO / "configs" / "X3D_M.yaml")
    for name in ("X3D_M", "my run 2", "crème-brûlée.v2", "日本"):
        assert opts.resolve({**raw, "name": name}, "X3D_M.yaml")["name"] == name


def test_a_number_too_long_to_read_is_one_line(tmp_path):
    with pytest.raises(opts.ConfigError, match=r"^--set lr: value is not valid YAML or too "
                       r"large a number$"):
        opts.parse_set(["lr=" + "1" * 5000])
    path = tmp_path / "big.yaml"
    path.write_text("name: X\nmodel: x3d_m\nlr: " + "1" * 5000 + "\n")
    with pytest.raises(opts.ConfigError,
                       match=r"big.yaml: refused \(line 3: an integer of 5000 characters"):
        opts.read_preset(path)


def test_cli_name_outside_out_exits_2_with_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "train", "--config", "configs/X3D_M.yaml", "--set",
         "name=../../escape", "--out", str(tmp_path / "a" / "b")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "name='../../escape' is invalid" in done.stderr
    assert not any(tmp_path.iterdir())  # nothing written, inside --out or outside
