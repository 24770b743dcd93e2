"""Training on a decoded-frame store: the same run as on its JPEG store (same losses and
accuracies, epoch by epoch), run.json says which format it read, and a decoded store larger
than the machine's memory gives one warning line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import opts
from datasets.decoded_store import build_decoded_store
from tests.helpers.datasets import mark_built
from tests.helpers.train import TINY, build_tiny_store, one_thread
from train import distributed
from train.__main__ import main as train_main
from train.data import build_data, decoded_store_warning


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("tiny")
    jpeg = mark_built(build_tiny_store(base / "jpg"))
    build_decoded_store(jpeg, base / "raw", jobs=1, quiet=True)
    return jpeg, base / "raw"


def _run(store: Path, out: Path) -> tuple[dict, list[dict]]:
    with one_thread():
        assert train_main(["--config", str(TINY), "--data", str(store), "--out", str(out),
                           "--workers", "1"]) == 0
    (run_dir,) = (out / "test_tiny").iterdir()
    with open(run_dir / "epochs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return json.loads((run_dir / "run.json").read_text()), rows


def test_a_run_on_the_decoded_store_is_the_run_on_the_jpeg_store(stores, tmp_path, capsys):
    jpeg, raw = stores
    run_jpeg, rows_jpeg = _run(jpeg, tmp_path / "jpg")
    run_raw, rows_raw = _run(raw, tmp_path / "raw")
    assert "decoded store is" not in capsys.readouterr().err  # it fits in memory
    assert (run_jpeg["store"]["format"], run_raw["store"]["format"]) == ("jpg", "raw")
    assert run_raw["store"]["fingerprint"] == run_jpeg["store"]["fingerprint"]
    assert run_raw["compliance_issues"] == run_jpeg["compliance_issues"]
    same = ("train_loss", "train_top1", "val_top1", "val_top5", "val_video_top1")
    assert [{k: r[k] for k in same} for r in rows_raw] == \
        [{k: r[k] for k in same} for r in rows_jpeg]


def test_a_decoded_store_larger_than_memory_warns_once(stores, capsys, monkeypatch):
    jpeg, raw = stores
    config = {**opts.load_preset(TINY), "data": str(raw), "gpus": 1}
    d = distributed.Dist(0, 1, 0, torch.device("cpu"))
    data = build_data(config, d)
    assert capsys.readouterr().err == ""
    size = sum((raw / r.location).stat().st_size
               for ds in (data.train_set, data.val_set) for r in ds.records)
    assert decoded_store_warning(data.train_set, data.val_set, memory=size) is None
    monkeypatch.setattr("train.data.memory_bytes", lambda: size - 1)
    build_data(config, d)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: {raw}: the decoded store is ")
    assert "more than this machine's" in err[0]
    jpeg_data = build_data({**config, "data": str(jpeg)}, d)  # JPEG stores: no such warning
    assert decoded_store_warning(jpeg_data.train_set, jpeg_data.val_set, memory=1) is None
