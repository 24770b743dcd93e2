"""A shortened `make demo` through the Makefile: synthetic data, frames, both models through
the torchrun launcher and the trainer, and the score table, as a newcomer runs it."""

import csv
import json
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_make_demo_runs_the_whole_pipeline(tmp_path):
    data, store, results = tmp_path / "synth", tmp_path / "store", tmp_path / "results"
    # 3 classes, 2 + 1 videos each, 1.2 s at 30 fps: 18 kept frames, two 8-frame clips a video.
    synth = "--classes 3 --train-per-class 2 --val-per-class 1 --duration 1.2"
    train = "--set num_classes=3 --set epochs=1 --set warmup_epochs=0 --set batch_size=4"
    proc = subprocess.run(
        ["make", "--no-print-directory", "demo", f"DEMO_DATA={data}", f"DEMO_STORE={store}",
         f"DEMO_RESULTS={results}", f"SYNTH_ARGS={synth}", f"DEMO_ARGS={train}"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    assert (store / "train_index.csv").is_file() and (store / "val_index.csv").is_file()
    for config in ("demo_X3D_M", "demo_MVIT_B_16x4"):
        runs = list((results / config).iterdir())
        assert len(runs) == 1, runs
        run = runs[0]
        with open(run / "epochs.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [r["epoch"] for r in rows] == ["0"]
        assert float(rows[0]["elapsed_s"]) > 0
        record = json.loads((run / "run.json").read_text())
        assert record["config"] == config and record["finished"] is True
        assert record["compliant"] is False  # the overrides above change the workload
        assert {"num_classes", "epochs", "batch_size"} <= set(record["changed_keys"])
        assert (run / "checkpoint.pt").is_file() and (run / "system.json").is_file()

    # The score table names both configs and its files are written.
    assert "demo_X3D_M" in proc.stdout and "demo_MVIT_B_16x4" in proc.stdout
    for name in ("score.csv", "score.md", "accuracy_vs_time.png", "throughput.png"):
        assert (results / name).stat().st_size > 0, name
