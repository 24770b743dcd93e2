"""The reference's protocol: the evaluation schedule, extra evaluations off the clock and
without effect on training, the original's top-1 and the val clip order."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import formats.results as results_format
import opts
from score.load import load_run
from tests.helpers.train import REPO, TINY, free_port, train_cli
from train import distributed
from train.data import build_data
from train.evaluate import batch_mean_top1, evaluate
from train.rundir import epochs
from train.schedule import scheduled_eval_epochs

TINY_MVIT = REPO / "configs" / "test_tiny_mvit.yaml"
MANIFEST = REPO / "preprocess" / "kinetics20_manifest.csv"


@pytest.fixture(scope="module")
def store(tiny_store: Path) -> Path:
    return tiny_store  # shared by the session (tests/conftest.py): read only


# ---- the metric ----------------------------------------------------------------------------

def test_batch_mean_top1_against_a_hand_computation():
    # 35 clips: batches of 16, 16 and 3. Hits: 4 of the first 16, 16 of the next, 1 of 3.
    hits = torch.zeros(35)
    hits[[0, 5, 9, 15]] = 1
    hits[16:32] = 1
    hits[33] = 1
    expected = 100 * (4 / 16 + 16 / 16 + 1 / 3) / 3  # each batch counts alike
    assert batch_mean_top1(hits, 16) == pytest.approx(expected, abs=1e-12)
    assert expected != pytest.approx(100 * 21 / 35)  # not the clip-weighted figure
    assert batch_mean_top1(hits, 35) == pytest.approx(100 * 21 / 35)
    assert batch_mean_top1(torch.zeros(0), 16) == 0.0


class PixelRule(torch.nn.Module):
    """A fixed 'model' whose prediction depends on the clip's pixels only, so every clip gets
    its own, reproducible class probabilities."""

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        # Channel means of the left half: right for some clips of the tiny store, not all.
        return clips[..., :16].mean(dim=(2, 3, 4)) * 10  # B x 3


def _evaluate_in_process(rank: int, world_size: int, port: int, store: str, workers: int,
                         out: str) -> None:
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    d = distributed.setup()
    try:
        config = {**opts.load_preset(TINY), "data": store, "workers": workers,
                  "batch_size": 4, "gpus": world_size}
        data = build_data(config, d)
        val = evaluate(PixelRule(), data.val_loader, d, 3, data.num_val_videos, False,
                       num_clips=len(data.val_set), first_clip=data.val_sampler.start,
                       batch_size=config["batch_size"],
                       prepare=lambda clips: data.model_input(clips, d.device))
        if d.is_main:
            Path(out).write_text(json.dumps([val.top1, val.top1_clips, val.top5,
                                             val.video_top1, val.clips, val.videos]))
    finally:
        distributed.shutdown(d)


def _evaluate(world_size: int, workers: int, store: Path, out: Path) -> list:
    mp.start_processes(_evaluate_in_process,
                       args=(world_size, free_port(), str(store), workers, str(out)),
                       nprocs=world_size, start_method="fork")
    return json.loads(out.read_text())


def _independent(store: Path) -> list:
    """The original's top-1 computed clip by clip in dataset order, batches of 4."""
    config = {**opts.load_preset(TINY), "data": str(store), "gpus": 1}
    data = build_data(config, distributed.Dist(0, 1, 0, torch.device("cpu")))
    hits = []
    with torch.no_grad():
        for i in range(len(data.val_set)):
            clip, label, _ = data.val_set[i]
            logits = PixelRule()(data.model_input(clip[None], torch.device("cpu")))[0]
            hits.append(int(logits.argmax()) == label)
    batches = [hits[i:i + 4] for i in range(0, len(hits), 4)]
    return [100 * sum(sum(b) / len(b) for b in batches) / len(batches),
            100 * sum(hits) / len(hits)]


def test_original_top1_is_the_same_for_1_2_4_processes_and_any_worker_count(store, tmp_path):
    expected = _independent(store)
    assert expected[0] != pytest.approx(expected[1])  # the two metrics differ on this data
    seen = {}
    for world_size, workers in ((1, 0), (2, 0), (4, 0), (2, 2)):
        seen[world_size, workers] = _evaluate(world_size, workers, store,
                                              tmp_path / f"{world_size}_{workers}.json")
    for values in seen.values():
        assert values == seen[1, 0]  # bit for bit: the same clips in the same batches
        assert values[:2] == pytest.approx(expected, abs=1e-9)
        assert values[4:] == [7, 3]


# ---- the val clip order ----------------------------------------------------------------------

def test_val_clips_in_the_original_order(store):
    """Class folders by name, videos by name within a class, clips in time order."""
    config = {**opts.load_preset(TINY), "data": str(store), "gpus": 1}
    val = build_data(config, distributed.Dist(0, 1, 0, torch.device("cpu"))).val_set
    order = [(val.records[v].video_id, int(s)) for v, s in zip(val.clip_video, val.clip_start,
                                                                strict=True)]
    expected = sorted(order, key=lambda o: (o[0].split("/")[0], o[0].split("/")[1], o[1]))
    assert order == expected
    assert [r.label for r in val.records] == sorted(r.label for r in val.records)


def test_kinetics20_names_sort_alike_as_files_and_as_stems():
    """The index keeps stems; the original sorted file names. For the benchmark's videos the
    two orders are the same within every class."""
    by_class: dict[tuple[str, str], list[str]] = {}
    with open(MANIFEST, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            by_class.setdefault((row["split"], row["class"]), []).append(row["file"])
    assert sum(len(v) for v in by_class.values()) == 1376
    for files in by_class.values():
        stems = [Path(name).stem for name in sorted(files)]
        assert stems == sorted(stems)


# ---- the schedule and extra evaluations ----------------------------------------------------------

def _train(store: Path, out: Path, preset: Path, *extra: str) -> Path:
    done = train_cli("--config", str(preset), "--data", str(store), "--out", str(out),
                     "--set", "epochs=3", "--set", "eval_period=3", "--set", "target_top1=1",
                     "--set", "stop_at_target=true", *extra)
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = (out / opts.load_preset(preset)["name"]).iterdir()
    return run_dir


@pytest.mark.parametrize("preset", [TINY, TINY_MVIT], ids=["x3d_m", "mvit_b"])
def test_extra_evaluations_change_nothing_and_are_off_the_clock(store, tmp_path, preset):
    # A target of 1 % is reached at the first evaluation, yet only a scheduled one may count:
    # both runs must train all 3 epochs and reach it at the end of epoch 2.
    plain = _train(store, tmp_path / "plain", preset)
    curves = _train(store, tmp_path / "curves", preset, "--eval-every", "1")
    plain_rows, curve_rows = epochs.read_epochs(plain), epochs.read_epochs(curves)
    assert [r["eval"] for r in plain_rows] == ["", "", "scheduled"]
    assert [r["eval"] for r in curve_rows] == ["extra", "extra", "scheduled"]
    assert plain_rows[0]["val_top1"] == "" and curve_rows[0]["val_top1"] != ""
    for a, b in zip(plain_rows, curve_rows, strict=True):
        assert a["train_loss"] == b["train_loss"] and a["train_top1"] == b["train_top1"]
        assert a["lr"] == b["lr"]
    assert plain_rows[2]["val_top1"] == curve_rows[2]["val_top1"]
    weights = [torch.load(run / results_format.CHECKPOINT_FILE, weights_only=True)["model"]
               for run in (plain, curves)]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
    # The extra evaluations' time is recorded and left out of the clock.
    untimed = [float(r["untimed_s"]) for r in curve_rows]
    assert untimed[0] == pytest.approx(float(curve_rows[0]["eval_s"]), rel=0.05, abs=0.05)
    assert untimed[2] == untimed[1] > untimed[0] > 0
    assert all(float(r["untimed_s"]) == 0 for r in plain_rows)
    for run, rows in ((plain, plain_rows), (curves, curve_rows)):
        info = json.loads((run / results_format.RUN_FILE).read_text())
        assert info["reached"] is True and info["epochs_done"] == 3
        assert info["t_target_s"] == pytest.approx(float(rows[2]["elapsed_s"]), abs=1e-3)
        assert info["eval_epochs"] == [2] and info["protocol"] == results_format.PROTOCOL_VERSION
        # The scorer finds the folder consistent with itself (score/consistency.py).
        issues = load_run(run, []).compliance_issues
        assert not [i for i in issues if i.startswith(("epochs.csv", "run.json", "config.yaml"))]
    assert json.loads((curves / "run.json").read_text())["untimed_s"] == pytest.approx(
        untimed[2], abs=1e-3)


def test_workload_presets_evaluate_after_epochs_10_and_20_only():
    for name in ("X3D_M", "MVIT_B_16x4"):
        config = opts.load_preset(REPO / "configs" / f"{name}.yaml")
        assert scheduled_eval_epochs(config) == [9, 19]
        assert config["eval_period"] == 10 and config["eval_every"] == 0
        changed = opts.changed_keys({**config, "eval_period": 1}, config)
        assert changed == ["eval_period"]  # the schedule is part of the workload
        assert opts.changed_keys({**config, "eval_every": 1}, config) == []
