"""Data-parallel training: torchrun end to end, and 1 vs 2 processes computing the same thing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml
from torch.nn.modules.batchnorm import _BatchNorm

import opts
from formats.results import EPOCH_COLUMNS
from tests.helpers.train import (
    TINY,
    VAL_CLIPS,
    agent_store,
    one_thread,
    train_cli,
)
from train import distributed
from train.data import build_data
from train.evaluate import evaluate
from train.loop import loss_function, train_step
from train.model import build_model, build_trainee, check_world, seed_everything
from train.rundir import epochs
from train.schedule import config_lr


@pytest.fixture(scope="module")
def store(tiny_store: Path) -> Path:
    return tiny_store  # shared by the session (tests/conftest.py): read only


def test_torchrun_two_processes_train_two_epochs(store, tmp_path):
    done = train_cli("--config", str(TINY), "--data", str(store), "--out", str(tmp_path),
                     torchrun=2)
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = (tmp_path / "test_tiny").iterdir()
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["gpus"] == 2 and config["data"] == str(store)
    rows = epochs.read_epochs(run_dir)
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert tuple(rows[0]) == EPOCH_COLUMNS
    elapsed = [float(r["elapsed_s"]) for r in rows]
    assert 0 < elapsed[0] < elapsed[1]
    for epoch, r in enumerate(rows):
        assert float(r["lr"]) == pytest.approx(config_lr(config, epoch))
        assert float(r["train_s"]) > 0 and float(r["eval_s"]) > 0
        assert float(r["clips_per_s"]) == pytest.approx(12 / float(r["train_s"]), rel=1e-2)
        assert 0.0 <= float(r["data_wait_frac"]) <= 1.0
        assert float(r["peak_mem_mb"]) > 0
        # Accuracies on 7 clips / 3 videos take only these values; the original's top-1 is
        # the mean of two batches' accuracies (4 clips and 3 clips, batch_size 4).
        assert r["eval"] == "scheduled"
        assert round(float(r["val_top1_clips"]) * 7 / 100, 3) in {float(k) for k in range(8)}
        assert round(float(r["val_top1"]), 2) in {
            round(100 * (a / 4 + b / 3) / 2, 2) for a in range(5) for b in range(4)}
        assert round(float(r["val_video_top1"]) * 3 / 100, 3) in {0.0, 1.0, 2.0, 3.0}
        assert float(r["val_top5"]) == 100.0  # 3 classes: the top 5 hold all of them
    run = json.loads((run_dir / "run.json").read_text())
    assert run["gpus"] == 2 and run["epochs_done"] == 2 and run["finished"] is True
    assert run["config"] == "test_tiny" and run["run_id"] == run_dir.name
    assert run["reached"] is False and run["t_target_s"] is None
    assert run["changed_keys"] == [] and run["resumed"] is False and run["lost_s"] == 0.0
    # The tiny store is not the workload's (its own compliance issue); a dirty tree is another.
    assert run["compliant"] == (not run["compliance_issues"]) and not run["compliant"]
    assert ("git dirty" in run["compliance_issues"]) == run["git_dirty"]
    system = json.loads((run_dir / "system.json").read_text())
    assert system["device"] == "cpu" and system["machine"] == run["machine"]
    assert f"({VAL_CLIPS} clips, 3 videos)" in done.stdout


# ---- 1 vs 2 processes --------------------------------------------------------------------
# BatchNorm in training mode normalises each process's batch with that batch's own statistics
# (per-GPU BatchNorm, as in the reference run), so a step on 2 x 2 clips is not the same
# computation as a step on 4 clips. With BatchNorm on its running statistics and dropout 0,
# every clip's loss is independent of the others: the mean of the two processes' losses must
# equal the one-process loss, and DDP's averaged gradient the full-batch gradient, so the
# loss after one update must agree as well.

def _measure(rank: int, world_size: int, rendezvous: dict, store: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      **rendezvous)
    torch.set_num_threads(1)
    d = distributed.setup()
    try:
        config = check_world({**opts.load_preset(TINY), "data": store, "dropout": 0.0}, d)
        data = build_data(config, d)
        trainee = build_trainee(config, d)  # the trainer's model, DDP wrapper and optimiser
        module = trainee.module

        def prepare(clips):
            return data.model_input(clips, d.device)

        val = evaluate(module, data.val_loader, d, config["num_classes"], data.num_val_videos,
                       outputs_are_probabilities=True, num_clips=len(data.val_set),
                       first_clip=data.val_sampler.start, batch_size=config["batch_size"],
                       prepare=prepare)
        shards = distributed.gather_objects(d, list(data.val_sampler))
        trainee.model.train()
        for m in module.modules():
            if isinstance(m, _BatchNorm):
                m.eval()
        data.set_epoch(0)
        initial = torch.nn.utils.parameters_to_vector(module.parameters()).detach().clone()
        losses = []
        for _, (clips, labels, _) in zip(range(2), data.train_loader, strict=False):
            loss, _ = train_step(trainee.model, trainee.optimizer, prepare(clips), labels,
                                 loss_function(), scaler=trainee.scaler)
            n = torch.tensor(float(len(labels)), dtype=torch.float64)
            total = torch.stack([loss.double() * n, n])
            distributed.all_reduce_sum(d, total)
            losses.append(float(total[0] / total[1]))
        update = torch.nn.utils.parameters_to_vector(module.parameters()).detach() - initial
        if d.is_main:
            torch.save(update, Path(out).with_suffix(".pt"))
            Path(out).write_text(json.dumps({
                "losses": losses, "shards": shards,
                "val": [val.top1, val.top1_clips, val.top5, val.video_top1, val.clips,
                        val.videos]}))
    finally:
        distributed.shutdown(d)


def _run(world_size: int, store: Path, out: Path) -> dict:
    if world_size == 1:
        with one_thread():
            _measure(0, 1, {}, str(store), str(out))
    else:  # fork: the children start with torch and the code already imported
        with agent_store() as rendezvous:
            mp.start_processes(_measure, args=(world_size, rendezvous, str(store), str(out)),
                               nprocs=world_size, start_method="fork")
    return {**json.loads(out.read_text()), "update": torch.load(out.with_suffix(".pt"))}


def _reference_eval(store: Path) -> list[float]:
    """Top-1/top-5/video accuracy of the untrained model, clip by clip in one loop."""
    config = {**opts.load_preset(TINY), "data": str(store), "dropout": 0.0, "gpus": 1}
    seed_everything(config["seed"])
    data = build_data(config, distributed.Dist(0, 1, 0, torch.device("cpu")))
    model = build_model(config).eval()
    top1 = top5 = 0
    hits = []
    per_video: dict[int, list] = {}
    with torch.no_grad():
        for i in range(len(data.val_set)):
            clip, label, video = data.val_set[i]
            probs = model(data.model_input(clip[None], torch.device("cpu")))[0]
            hits.append(int(probs.argmax() == label))
            top1 += hits[-1]
            top5 += int(label in probs.topk(min(5, len(probs))).indices)
            per_video.setdefault(video, [label, torch.zeros_like(probs)])[1] += probs
    videos = sum(int(p.argmax() == label) for label, p in per_video.values())
    n = len(data.val_set)
    # The original's top-1: batches of the global batch size in clip order, unweighted mean.
    size = config["batch_size"]
    batches = [hits[i:i + size] for i in range(0, n, size)]
    per_batch = sum(sum(b) / len(b) for b in batches) / len(batches)
    return [100 * per_batch, 100 * top1 / n, 100 * top5 / n, 100 * videos / len(per_video), n,
            len(per_video)]


def test_one_and_two_processes_step_and_evaluate_alike(store, tmp_path, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    one = _run(1, store, tmp_path / "one.json")
    two = _run(2, store, tmp_path / "two.json")
    # X3D-M's loss is taken on softmax outputs, so it stays near ln(3) and says little by
    # itself; the parameter update of two SGD steps shows the gradients agree.
    assert one["losses"] == pytest.approx(two["losses"], rel=1e-6)
    difference = (one["update"] - two["update"]).norm() / one["update"].norm()
    assert one["update"].norm() > 0 and difference < 1e-4
    # Every val clip is scored exactly once: 7 clips over 2 processes is 3 + 4, no padding.
    assert [len(s) for s in two["shards"]] == [3, 4]
    assert sorted(sum(two["shards"], [])) == list(range(VAL_CLIPS)) == one["shards"][0]
    reference = _reference_eval(store)
    assert one["val"][4:] == two["val"][4:] == [VAL_CLIPS, 3]
    assert one["val"] == pytest.approx(reference) and two["val"] == pytest.approx(reference)
