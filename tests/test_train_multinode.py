"""Many nodes, tested on one machine: the README's multi-node launch as 2 nodes x 2 processes
(two torchrun launchers, c10d rendezvous on 127.0.0.1, gloo) against 4 processes on one node;
system.json describing every node; the numerics flags recorded."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from tests.helpers.train import (
    ONE_THREAD_ENV,
    REPO,
    TINY,
    free_port,
    kill_tree,
    multinode_cmd,
    train_cli,
)
from train.rundir import epochs, system

COMPARED = ("epoch", "lr", "train_loss", "train_top1", "eval", "val_top1", "val_top1_clips",
            "val_top5", "val_video_top1")


@pytest.fixture(scope="module")
def store(tiny_store: Path) -> Path:
    return tiny_store  # shared by the session (tests/conftest.py): read only


def _two_nodes(store: Path, out: Path) -> list[subprocess.CompletedProcess]:
    port = free_port()
    args = ("--config", str(TINY), "--data", str(store), "--out", str(out))
    launchers = [subprocess.Popen(multinode_cmd(2, 2, rank, port, *args), cwd=REPO,
                                  env=ONE_THREAD_ENV, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    done = []
    try:
        for p in launchers:
            stdout, stderr = p.communicate(timeout=400)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    finally:
        for p in launchers:
            if p.poll() is None:  # a hang: stop it and its workers, then fail
                kill_tree(p.pid)
                p.wait()
    return done


def test_two_nodes_of_two_train_like_four_processes_on_one_node(store, tmp_path):
    nodes = _two_nodes(store, tmp_path / "nodes")
    for node, done in enumerate(nodes):
        assert done.returncode == 0, f"node {node}: {done.stderr[-3000:]}"
    one = train_cli("--config", str(TINY), "--data", str(store), "--out",
                    str(tmp_path / "one"), torchrun=4, timeout=400)
    assert one.returncode == 0, one.stderr[-3000:]

    (run_dir,) = (tmp_path / "nodes" / "test_tiny").iterdir()  # one results folder
    (one_dir,) = (tmp_path / "one" / "test_tiny").iterdir()
    rows = epochs.read_epochs(run_dir)
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert [{k: r[k] for k in COMPARED} for r in rows] == \
        [{k: r[k] for k in COMPARED} for r in epochs.read_epochs(one_dir)]

    info = json.loads((run_dir / "system.json").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    assert info["node_count"] == 2 and [n["node"] for n in info["nodes"]] == [0, 1]
    for n in info["nodes"]:
        assert n["processes"] == 2 and n["gpus"] == [] and n["host"]
        assert n["cpu"]["model"] and n["cpu"]["cores"] >= 1
    cpu = info["nodes"][0]["cpu"]
    assert info["machine"] == f"2 nodes x 2 processes, cpu: {cpu['model']} ({cpu['cores']} cores)"
    assert run["nodes"] == 2 and run["gpus"] == 4 and run["machine"] == info["machine"]
    single = json.loads((one_dir / "system.json").read_text())
    assert single["node_count"] == 1 and single["nodes"][0]["processes"] == 4
    assert single["machine"] == f"cpu: {cpu['model']} ({cpu['cores']} cores)"
    assert json.loads((one_dir / "run.json").read_text())["nodes"] == 1


def _node(node: int, gpus: list[str], processes: int = 4, cpu: str = "Xeon") -> dict:
    return {"node": node, "host": f"host-{node}", "processes": processes,
            "cpu": {"model": cpu, "cores": 64}, "memory_gb": 512.0, "driver": "550.54",
            "gpus": [{"name": g, "memory_mb": 81920} for g in gpus]}


def test_machine_labels_name_nodes_gpus_and_processes():
    a100 = ["NVIDIA A100"] * 4
    assert system.machine_label("cuda", [_node(0, a100)]) == "4 x NVIDIA A100"
    assert system.machine_label("cuda", [_node(0, a100), _node(1, a100)]) == \
        "2 nodes x 4 x NVIDIA A100"
    assert system.machine_label("cuda", [_node(0, a100), _node(1, a100[:2], 2)]) == \
        "2 nodes x 4/2 x NVIDIA A100"
    assert system.machine_label("cpu", [_node(0, [], 2)]) == "cpu: Xeon (64 cores)"
    assert system.machine_label("cpu", [_node(0, [], 2), _node(1, [], 2)]) == \
        "2 nodes x 2 processes, cpu: Xeon (64 cores)"


def test_system_json_lists_the_gpus_of_every_node():
    info_nodes = [_node(0, ["NVIDIA A100"] * 4), _node(1, ["NVIDIA A100"] * 4)]
    info = system.describe(torch.device("cpu"), info_nodes)
    assert info["gpu_count"] == 8 and [g["node"] for g in info["gpus"]] == [0] * 4 + [1] * 4
    assert info["nodes"] == info_nodes and info["node_count"] == 2


def test_numerics_flags_in_force_are_recorded_and_fp32_keeps_the_defaults(store, tmp_path):
    # PyTorch's defaults, which an fp32 run leaves as they are.
    defaults = {"matmul_allow_tf32": False, "cudnn_allow_tf32": True,
                "float32_matmul_precision": "highest", "cudnn_benchmark": False,
                "cudnn_deterministic": False}
    done = train_cli("--config", str(TINY), "--data", str(store), "--out", str(tmp_path),
                     "--set", "epochs=1")
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "test_tiny").iterdir()
    assert json.loads((run_dir / "system.json").read_text())["numerics"] == defaults
    # What is recorded is what holds, whatever set it.
    before = system.numerics()
    try:
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
        now = system.numerics()
        assert now["cudnn_benchmark"] is True and now["float32_matmul_precision"] == "high"
        assert now["matmul_allow_tf32"] is True  # "high" is how PyTorch turns TF32 on
    finally:
        torch.backends.cudnn.benchmark = before["cudnn_benchmark"]
        torch.set_float32_matmul_precision(before["float32_matmul_precision"])
