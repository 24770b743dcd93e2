"""The probe's arithmetic (probe/predict.py) and checks (probe/checks.py), on numbers and
facts given by hand; the expected values are worked out in the comments."""

from __future__ import annotations

import dataclasses

import pytest

from probe.checks import (
    FAIL,
    OK,
    WARN,
    check_backend,
    check_device,
    check_disk,
    check_shm,
    check_store,
)
from probe.predict import KINETICS20_CLIPS, Plan, Rates, eval_epochs, predict
from probe.table import table, verdict
from tests.helpers.device import GOOD, NO_GPU, OLD_DRIVER

GPU_PLAN = Plan(device="cuda", gpus=2, workers=1, cores=8, threads=1, train_clips=100,
                val_clips=9, epochs=20, eval_epochs=(9, 19), startup_s=5.0, checkpoint_s=1.0,
                t_ref_s=1000.0, gpus_ref=4)


def _record(rates: Rates, plan: Plan) -> dict:
    return {"name": "X3D_M", "device": plan.device, "per_process_batch": 8,
            "rates": dataclasses.asdict(rates), "plan": dataclasses.asdict(plan),
            "prediction": dataclasses.asdict(predict(rates, plan))}


def test_eval_schedule():
    assert eval_epochs(20, 10) == (9, 19)
    assert eval_epochs(8, 1) == tuple(range(8))
    assert eval_epochs(5, 10) == (4,)
    assert eval_epochs(25, 10) == (9, 19, 24)


def test_balanced_gpu_run_by_hand():
    # 2 processes x 10 clips/s = 20; loader 20 clips/s over 2 procs = 10 per process, and the
    # run starts 2 x 1 = 2: 20 clips/s. A clip takes max(1/20, 1/20) = 0.05 s.
    p = predict(Rates(10.0, 40.0, 20.0, 2), GPU_PLAN)
    assert p.demand == 20.0 and p.eval_demand == 80.0 and p.supply == 20.0
    assert p.bound == "compute" and p.margin == pytest.approx(1.0)
    assert p.min_workers == 1 and p.cores_needed is None
    assert p.clip_s == pytest.approx(0.05)
    assert p.epoch_train_s == pytest.approx(50 * 2 * 0.05)  # 5.0 s
    # 9 val clips: the larger share is 5 clips, so 10 clip slots at max(1/80, 1/20) s.
    assert p.eval_s == pytest.approx(10 * 0.05)
    # 5 s start-up + 20 x (5 s + 1 s checkpoint) + 2 x 0.5 s = 126 s.
    assert p.total_s == pytest.approx(126.0)
    assert p.score == pytest.approx(1000 / 126 * 4 / 2)  # 15.873


def test_data_bound_gpu_run_needs_more_cores_than_it_has():
    plan = dataclasses.replace(GPU_PLAN, gpus=4, workers=3, cores=16,
                               train_clips=KINETICS20_CLIPS[0], val_clips=KINETICS20_CLIPS[1])
    # Demand 4 x 100 = 400 clips/s; 10 clips/s per loader process x min(4 x 3, 16) = 120.
    rates = Rates(100.0, 400.0, 30.0, 3)
    p = predict(rates, plan)
    assert p.supply == pytest.approx(120.0)
    assert p.bound == "data" and p.margin == pytest.approx(400 / 120)
    # 400 / 10 = 40 loader processes = 10 per GPU: 40 > 16 cores, so none; 40 + 4 cores.
    assert p.min_workers is None and p.cores_needed == 44
    assert p.epoch_train_s == pytest.approx(11484 / 120)  # 2871 clips per process x 4
    assert p.eval_s == pytest.approx(900 / 120)
    line = verdict(_record(rates, plan))
    assert "DATA-BOUND" in line and "3.33x" in line
    assert "no WORKERS keeps the GPUs fed on 16 cores: it would take about 44 cores" in line
    # With enough cores, the smallest WORKERS that feeds 400 clips/s is 10.
    assert predict(rates, dataclasses.replace(plan, cores=64)).min_workers == 10


def test_forced_data_bound_is_called_data_bound():
    rates = Rates(10.0, 40.0, 5.0, 1)  # the loader gives a quarter of what 2 GPUs eat
    plan = dataclasses.replace(GPU_PLAN, workers=1, cores=2)
    p = predict(rates, plan)
    assert p.bound == "data" and p.margin == pytest.approx(20 / 10)
    # 5 clips/s per loader process: 20 clips/s take 4 processes, 2 per GPU > 2 cores.
    assert p.min_workers is None and p.cores_needed == 4 + 2


def test_cpu_shares_cores_between_training_and_loading():
    plan = Plan(device="cpu", gpus=1, workers=1, cores=2, threads=2, train_clips=640,
                val_clips=160, epochs=8, eval_epochs=eval_epochs(8, 1))
    # Compute 2 clips/s on both cores; the loader 50 clips/s on one core (0.02 core-s/clip).
    # A clip: max(1/2, 1/50, (2 cores x 0.5 s + 0.02 core-s) / 2 cores) = 0.51 s.
    p = predict(Rates(2.0, 8.0, 50.0, 1), plan)
    assert p.clip_s == pytest.approx(0.51)
    assert p.bound == "compute"  # 2% over compute alone: below the 5% that names the cores
    assert p.epoch_train_s == pytest.approx(640 * 0.51)
    # Evaluation: max(1/8, 1/50, (2 x 0.125 + 0.02) / 2) = 0.135 s a clip.
    assert p.eval_s == pytest.approx(160 * 0.135)
    assert p.total_s == pytest.approx(8 * 640 * 0.51 + 8 * 160 * 0.135)
    assert p.score is None
    # A slow loader (0.2 core-s/clip): (1 + 0.2) / 2 = 0.6 s, 1.2x compute alone.
    p = predict(Rates(2.0, 8.0, 5.0, 1), plan)
    assert p.bound == "cores" and p.margin == pytest.approx(1.2)
    assert "CPU-BOUND" in verdict(_record(Rates(2.0, 8.0, 5.0, 1), plan))


def test_cpu_processes_share_the_cores():
    # torchrun gives each of 4 CPU processes one thread; 2 cores run 2 of them at a time.
    plan = Plan(device="cpu", gpus=4, workers=0, cores=2, threads=1, train_clips=64,
                val_clips=16, epochs=1, eval_epochs=(0,))
    p = predict(Rates(3.0, 9.0, 30.0, 0), plan)
    assert p.demand == 6.0
    # No workers: each process loads its own batches, so the times add: 1/6 + 1/60.
    assert p.supply == pytest.approx(30.0 * 2)
    assert p.clip_s == pytest.approx(1 / 6 + 1 / 60)


def test_no_store_means_no_supply_verdict():
    p = predict(Rates(10.0, 40.0, None, 2), GPU_PLAN)
    assert p.supply is None and p.bound == "unknown" and p.min_workers is None
    assert p.clip_s == pytest.approx(1 / 20)
    record = _record(Rates(10.0, 40.0, None, 2), GPU_PLAN)
    assert "loader not measured" in verdict(record)
    text = table([record])
    # Evaluation at compute speed: 10 clip slots / 80 clips/s; 5 + 20 x 6 + 2 x 0.125 s.
    assert p.total_s == pytest.approx(125.25)
    assert "not measured" in text and f"{1000 / 125.25 * 4 / 2:.2f}" in text


def test_device_check_uses_the_device_decision():
    check, device = check_device("auto", OLD_DRIVER, gpus=4)
    assert device is None and check.status == FAIL and "TORCH_INDEX=" in check.message
    check, device = check_device("auto", GOOD, gpus=4)
    assert check.status == OK and device.type == "cuda"
    check, device = check_device("auto", GOOD, gpus=8)  # more processes than GPUs
    assert device is None and "process 7 has no GPU" in check.message
    check, device = check_device("auto", NO_GPU, gpus=1)
    assert check.status == OK and device.type == "cpu"
    assert check_backend(device, 1).status == OK
    assert check_backend(device, 2).status == OK  # gloo on the CPU


def test_shm_store_and_disk_checks(tmp_path):
    batch = 4 * 16 * 224 * 224 * 3
    assert check_shm(4, 8, batch, 2, path=str(tmp_path)).status in (OK, FAIL)
    huge = check_shm(4, 8, 2**50, 2, path=str(tmp_path))
    assert huge.status == FAIL and "lower WORKERS" in huge.message
    assert check_shm(4, 8, batch, 2, path=str(tmp_path / "none")).status == WARN
    assert check_store(None).status == WARN
    missing = check_store(tmp_path / "nostore")
    assert missing.status == FAIL and "make frames" in missing.message
    assert check_disk(tmp_path / "results" / "new", 1000).status == OK
    full = check_disk(tmp_path, 2**60)
    assert full.status == FAIL and "RESULTS=" in full.message
    assert all("\n" not in c.line() for c in (huge, missing, full))

