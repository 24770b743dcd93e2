"""``python -m probe --quick`` end to end on a tiny store: it measures, prints the table and
the verdicts, and writes probe.json whose prediction follows from its measured rates by the
arithmetic worked out by hand below."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from probe.__main__ import main
from probe.predict import Plan, Rates, predict
from tests.helpers.train import REPO


@pytest.fixture(scope="module")
def quick(tiny_store, tmp_path_factory):
    return tmp_path_factory.mktemp("probe"), tiny_store


def _shared_clip_s(demand: float, loader: float, threads: int, cores: int) -> float:
    """One process, one worker on the CPU: the slower side, or the cores' share."""
    return max(1 / demand, 1 / loader, (min(threads, cores) / demand + 1 / loader) / cores)


def test_quick_probe_predicts_from_its_measured_rates(quick, capsys):
    root, store = quick
    results = root / "results"
    code = main(["--quick", "--gpus", "1", "--workers", "1", "--store", str(store),
                 "--results", str(results), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "X3D_M" in out and "MVIT_B_16x4" in out and "predicted score" in out
    assert "PREDICTION, not a result" in out
    record = json.loads((results / "probe.json").read_text())
    assert record["quick"] and record["system"]["device"] == "cpu"
    assert "git_commit" in record["system"] and "machine" in record["system"]
    names = [c["name"] for c in record["checks"]]
    assert names == ["devices", "backend", "shm", "store", "disk"]
    for m in record["models"]:
        assert m["shapes"] == {"clip_len": 4, "train_crop": 32, "val_crop": 32}
        rates, plan, p = m["rates"], m["plan"], m["prediction"]
        # The tiny store: 12 training clips, 7 val clips of 4 frames (tests/test_train_helpers).
        assert (plan["train_clips"], plan["val_clips"]) == (12, 7)
        assert plan["epochs"] == 20 and plan["eval_epochs"] == [9, 19]
        assert rates["loader_procs"] == 1 and m["per_process_batch"] == 4
        threads, cores = plan["threads"], plan["cores"]
        train, evals, loader = (rates["train_per_process"], rates["eval_per_process"],
                                rates["loader"])
        clip_s = _shared_clip_s(train, loader, threads, cores)
        eval_clip_s = _shared_clip_s(evals, loader, threads, cores)
        assert p["clip_s"] == pytest.approx(clip_s)
        assert p["epoch_train_s"] == pytest.approx(12 * clip_s)
        assert p["eval_s"] == pytest.approx(7 * eval_clip_s)
        total = (plan["startup_s"] + 20 * (12 * clip_s + plan["checkpoint_s"])
                 + 2 * 7 * eval_clip_s)
        assert p["total_s"] == pytest.approx(total)
        t_ref = {"X3D_M": 7456.88, "MVIT_B_16x4": 7725.12}[m["name"]]  # configs/reference.yaml
        assert p["score"] == pytest.approx(t_ref / total * 4 / 1)
        assert p["bound"] in ("compute", "cores", "data")
        # Forced: a loader at a quarter of what training eats is called data-bound.
        slow = dataclasses.replace(Rates(**rates), loader=train / 4)
        forced = predict(slow, Plan(**{**plan, "eval_epochs": tuple(plan["eval_epochs"])}))
        assert forced.bound == "data" and forced.margin == pytest.approx(4.0)
        assert math.isfinite(forced.total_s) and forced.total_s > p["total_s"]


def test_quick_probe_config_error_is_one_line(quick, capsys):
    root, store = quick
    code = main(["--gpus", "3", "--store", str(store), "--results",
                 str(root / "r3"), "--configs", str(REPO / "configs" / "X3D_M.yaml")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "GPU count that divides" in err
    assert len(err.strip().splitlines()) == 1
