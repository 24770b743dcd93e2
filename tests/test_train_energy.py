"""Energy to accuracy: the GPUs' energy follows the run clock, through the real code paths,
with a fake NVML (tests/helpers/fake_nvml) whose GPUs draw a known constant power."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.fake_nvml import pynvml as fake
from tests.helpers.faults import wait_until
from tests.helpers.train import ONE_THREAD_ENV, REPO, TINY, build_tiny_store, train_cli
from train import energy
from train.rundir import clock, epochs
from train.rundir.energy import TimedEnergy, attempt_energy, empty, resume_energy

FAKE_DIR = REPO / "tests" / "helpers" / "fake_nvml"
WATTS = (100.0, 250.0)
POWER = sum(WATTS)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return build_tiny_store(tmp_path_factory.mktemp("tiny") / "store")


def fake_env(**settings: str) -> dict:
    """The trainer's environment with the fake NVML first on the import path."""
    return {**ONE_THREAD_ENV, "PYTHONPATH": os.pathsep.join([str(FAKE_DIR), str(REPO)]),
            "FAKE_NVML_WATTS": ",".join(map(str, WATTS)), **settings}


def column(rows: list[dict], name: str) -> list[float | None]:
    return [float(r[name]) if r[name] != "" else None for r in rows]


def test_two_processes_count_the_timed_spans_only(store, tmp_path):
    # Scheduled evaluations after epochs 1 and 3; extra ones (off the clock) after 0 and 2.
    log = tmp_path / "nvml.log"
    done = train_cli("--config", str(TINY), "--data", str(store), "--out", str(tmp_path),
                     "--set", "epochs=4", "--set", "eval_period=2", "--set", "target_top1=0",
                     "--eval-every", "1", torchrun=2, env=fake_env(FAKE_NVML_LOG=str(log)))
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = (tmp_path / "test_tiny").iterdir()
    rows = epochs.read_epochs(run_dir)
    assert [r["eval"] for r in rows] == ["extra", "scheduled", "extra", "scheduled"]
    elapsed, joules = column(rows, "elapsed_s"), column(rows, "energy_j")
    eval_s = column(rows, "eval_s")
    # Epoch 2's span holds an extra evaluation long enough to tell whether it was counted.
    assert POWER * eval_s[2] > 20 * POWER * 0.003
    for e in (1, 2, 3):  # the counters' delta over the epoch's timed span, and nothing else
        assert joules[e] == pytest.approx(POWER * (elapsed[e] - elapsed[e - 1]),
                                          abs=POWER * 0.003)
    # Epoch 0: from the moment the reading starts (after Python's start-up) to its end.
    assert 0 < joules[0] < POWER * elapsed[0]
    assert all(v is None for v in column(rows, "cpu_energy_j"))  # no RAPL here
    run = json.loads((run_dir / "run.json").read_text())
    assert run["reached"] is True and run["energy_method"] == "counter"
    assert run["energy_to_target_j"] == pytest.approx(joules[0] + joules[1], abs=0.01)
    assert run["energy_j"] == pytest.approx(sum(joules), abs=0.01)
    assert run["energy_lost_j"] == 0.0 and run["cpu_energy_method"] is None
    # One reader: one process initialised NVML, once, and only it read the GPUs.
    lines = [line.split() for line in log.read_text().splitlines()]
    inits = [pid for pid, what, *_ in lines if what == "init"]
    readers = {pid for pid, what, *_ in lines if what == "read"}
    assert len(inits) == 1 and readers == set(inits)
    assert "GPU energy" in done.stdout and "kJ GPU energy" in done.stdout


def _stop_after_lost_work(run_dir: Path, proc: subprocess.Popen, lost_s: float = 0.3) -> None:
    """Return with ``proc`` stopped (SIGSTOP) once its heartbeat is ``lost_s`` past its last
    epoch row: work a kill now would lose. A tiny epoch can end before the heartbeat's next
    write (once a second), so the run is first held still for longer than that: its next step
    then writes the heartbeat at once."""
    deadline = time.monotonic() + 180.0
    while time.monotonic() < deadline:
        rows = epochs.read_epochs(run_dir)
        proc.send_signal(signal.SIGSTOP)
        time.sleep(1.2)  # on the clock, as any stall of the machine would be
        proc.send_signal(signal.SIGCONT)
        while time.monotonic() < deadline:
            time.sleep(0.01)
            proc.send_signal(signal.SIGSTOP)
            now = epochs.read_epochs(run_dir)
            beat = clock.read_heartbeat(run_dir)
            if len(now) != len(rows):  # the epoch ended first: hold it again
                proc.send_signal(signal.SIGCONT)
                break
            if rows and beat is not None and beat > float(rows[-1]["elapsed_s"]) + lost_s:
                return
            proc.send_signal(signal.SIGCONT)
            assert proc.poll() is None, "the run ended before it could be killed"
    raise AssertionError("no heartbeat after the last checkpoint")


# Epochs enough that some epoch is still running a second after its checkpoint (the
# heartbeat's interval) however fast the machine is.
RESUMED_EPOCHS = 6


def test_a_resumed_run_counts_the_lost_work_once(store, tmp_path):
    out = tmp_path / "results"
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "train", "--config", str(TINY), "--data", str(store),
             "--out", str(out), "--set", f"epochs={RESUMED_EPOCHS}"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=fake_env())
        try:
            parent = out / "test_tiny"
            wait_until(parent.exists, proc, what=str(parent))
            wait_until(lambda: any(parent.glob("*/checkpoint.pt")), proc, what="a checkpoint")
            _stop_after_lost_work(next(parent.iterdir()), proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    (run_dir,) = parent.iterdir()
    killed = json.loads((run_dir / "run.json").read_text())
    assert killed["epochs_done"] < RESUMED_EPOCHS, "the run finished before the kill"
    done = train_cli("--resume", str(run_dir), "--data", str(store), env=fake_env())
    assert done.returncode == 0, done.stderr[-2000:]
    rows = epochs.read_epochs(run_dir)
    elapsed, joules = column(rows, "elapsed_s"), column(rows, "energy_j")
    run = json.loads((run_dir / "run.json").read_text())
    assert run["resumed"] is True and run["lost_s"] > 0.2
    # The lost work's energy is its time at the GPUs' power (heartbeat against checkpoint;
    # the checkpoint is written a moment after the epoch's energy is read).
    assert run["energy_lost_j"] == pytest.approx(POWER * run["lost_s"], abs=POWER * 0.1)
    assert run["energy_j"] == pytest.approx(sum(joules), abs=0.01)
    first = killed["epochs_done"]  # the first epoch of the resumed attempt holds the loss
    assert joules[first] > run["energy_lost_j"]
    for e in range(first + 1, RESUMED_EPOCHS):
        assert joules[e] == pytest.approx(POWER * (elapsed[e] - elapsed[e - 1]),
                                          abs=POWER * 0.003)
    # Counted once: never more than the clock's time at full power.
    assert run["energy_j"] < POWER * elapsed[-1]


def test_a_gpu_failing_mid_run_is_one_warning_and_the_run_goes_on(store, tmp_path):
    # Sampled fallback (no counter): GPU 1 stops answering once epoch 0's row is written.
    env = fake_env(FAKE_NVML_NO_COUNTER="1",
                   FAKE_NVML_FAIL_WHEN=str(tmp_path / "test_tiny" / "*" / "epochs.csv"))
    done = train_cli("--config", str(TINY), "--data", str(store), "--out", str(tmp_path),
                     env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: energy")]
    assert warnings == ["warning: energy: GPU 1: NVML failed (GPU is lost); the run goes on, "
                        "its GPU energy is not measured from here on"]
    (run_dir,) = (tmp_path / "test_tiny").iterdir()
    rows = epochs.read_epochs(run_dir)
    joules = column(rows, "energy_j")
    assert joules[0] is not None and 0 < joules[0] < POWER * float(rows[0]["elapsed_s"])
    assert joules[1] is None  # a sum missing a GPU is not written
    run = json.loads((run_dir / "run.json").read_text())
    assert run["state"] == "finished" and run["energy_j"] is None
    assert run["energy_method"] is None


def test_the_sampled_fallback_integrates_a_known_power_curve_within_one_percent(monkeypatch):
    now = [0.0]

    def watts(gpu: int, t: float) -> float:
        return (150.0 + 100.0 * gpu) + 80.0 * math.sin(2 * math.pi * t / 3.0 + gpu)

    monkeypatch.setitem(fake.CONFIG, "counter", False)
    monkeypatch.setitem(fake.CONFIG, "watts", watts)
    monkeypatch.setitem(fake.CONFIG, "clock", lambda: now[0])
    reader = energy.Reader(fake, [0, 1], [], hz=10, thread=False, clock=lambda: now[0])
    assert reader.method == energy.METHOD_SAMPLED
    while now[0] < 10.0:  # ten seconds at 10 Hz, as the thread would poll
        now[0] = round(now[0] + 0.1, 6)
        reader.poll(now[0])
    now[0] = 10.05  # a read between polls adds a sample of its own
    gpu_j, cpu_j = reader.read()

    def exact(gpu: int, t: float) -> float:  # the integral of watts(gpu, .) from 0 to t
        w = 2 * math.pi / 3.0
        return (150.0 + 100.0 * gpu) * t - 80.0 / w * (math.cos(w * t + gpu) - math.cos(gpu))

    assert gpu_j == pytest.approx(exact(0, 10.05) + exact(1, 10.05), rel=0.01)
    assert cpu_j is None


def test_timed_energy_stops_with_the_clock_and_counters_are_exact(monkeypatch):
    now = [1000.0]
    monkeypatch.setitem(fake.CONFIG, "clock", lambda: now[0])
    meter = TimedEnergy(energy.Reader(fake, [0, 1], [], thread=False))
    assert meter.reader.method == energy.METHOD_COUNTER
    now[0] += 2.0
    meter.pause()
    now[0] += 5.0  # an extra evaluation
    meter.resume()
    now[0] += 1.0
    assert meter.so_far() == (pytest.approx(3.0 * POWER), None)


def test_cpu_package_energy_from_rapl_with_its_wrap_around(tmp_path):
    for name, value in (("intel-rapl:0", 900_000_000), ("intel-rapl:0:0", 5)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "energy_uj").write_text(f"{value}\n")
        (tmp_path / name / "max_energy_range_uj").write_text("1000000000\n")
    packages = energy.rapl_packages(tmp_path)
    assert len(packages) == 1  # subdomains are parts of their package
    reader = energy.Reader(None, [], packages, thread=False)
    assert reader.method is None and reader.cpu_method == energy.METHOD_RAPL
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("50000000\n")  # wrapped
    assert reader.read() == (None, pytest.approx(150.0))
    assert energy.rapl_packages(tmp_path / "nothing") == []


def test_nothing_is_measured_on_a_machine_without_nvml_or_rapl(store, tmp_path):
    assert energy.load_nvml() is None  # this machine: the bindings, but no driver
    reader = energy.Reader(energy.load_nvml(), [], energy.rapl_packages())
    assert (reader.method, reader.cpu_method, reader.read()) == (None, None, (None, None))
    assert TimedEnergy(reader).so_far() == (None, None)
    done = train_cli("--config", str(TINY), "--data", str(store), "--out", str(tmp_path),
                     "--set", "epochs=1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning" not in done.stderr
    (run_dir,) = (tmp_path / "test_tiny").iterdir()
    rows = epochs.read_epochs(run_dir)
    assert rows[0]["energy_j"] == "" and rows[0]["cpu_energy_j"] == ""
    run = json.loads((run_dir / "run.json").read_text())
    assert run["energy_method"] is None and run["energy_j"] is None
    assert run["energy_to_target_j"] is None
    system = json.loads((run_dir / "system.json").read_text())
    assert system["driver"] is None
    score = subprocess.run([sys.executable, "-m", "score", "--results", str(tmp_path)],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert score.returncode == 0, score.stderr
    assert "not measured" in score.stdout


def test_resume_rule_for_energy_matches_the_clock_rule():
    point = {**empty(), "gpu_j": 1000.0, "cpu_j": None, "gpu_lost_j": 30.0}
    # Killed 50 s after a checkpoint at clock 100 s; the heartbeat saw 1400 J by then.
    carried = resume_energy(point, 100.0, 150.0, (1400.0, None))
    assert (carried["gpu_j"], carried["gpu_lost_j"]) == (1400.0, 430.0)
    assert carried["cpu_j"] is None and carried["cpu_lost_j"] is None
    # Killed right after the checkpoint, or no heartbeat: nothing was lost.
    assert resume_energy(point, 100.0, 90.0, (900.0, None))["gpu_j"] == 1000.0
    assert resume_energy(point, 100.0, None, None)["gpu_lost_j"] == 30.0
    # Work lost, but the heartbeat has no energy (a multi-node run): unknown, never a guess.
    assert resume_energy(point, 100.0, 150.0, None)["gpu_j"] is None
    # A checkpoint written before energy was recorded: not measured.
    assert resume_energy({}, 100.0, None, None)["gpu_j"] is None


def test_attempt_energy_for_new_runs_and_restarts(tmp_path):
    assert attempt_energy(None, None, None, False, {}) == empty()
    (tmp_path / "heartbeat").write_text("12.000 640.500 -\n")
    restarted = attempt_energy(None, 12.0, tmp_path, True, {"energy_lost_j": 100.0})
    assert (restarted["gpu_j"], restarted["gpu_lost_j"]) == (640.5, 640.5)
    assert restarted["cpu_j"] is None
    assert attempt_energy(None, None, None, True, {})["gpu_j"] is None


def test_gpu_facts_and_power_limits_through_nvml(monkeypatch):
    monkeypatch.setattr(energy, "_nvml", fake)
    monkeypatch.setattr(energy, "_nvml_tried", True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    facts, driver = energy.gpu_facts()
    assert driver == "550.54.15-fake"
    assert facts == [{"index": 1, "name": "Fake GPU 1", "power_limit_w": 350.0,
                      "default_power_limit_w": 350.0, "max_sm_clock_mhz": 1980,
                      "max_memory_clock_mhz": 2619}]
    assert energy.power_limits_line() == ("GPU power limits (NVML, driver 550.54.15-fake): "
                                          "GPU 1 Fake GPU 1 350 W")


def test_system_json_gets_each_gpus_power_limit_and_clocks_from_nvml(monkeypatch):
    import torch

    from train.rundir import system

    class Properties:  # what torch reports of a GPU (this machine has none)
        name, total_memory = "Fake GPU", 80 * 2**30

    monkeypatch.setattr(energy, "_nvml", fake)
    monkeypatch.setattr(energy, "_nvml_tried", True)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Properties())
    node = system.node_description(torch.device("cuda"), 2)
    assert node["driver"] == "550.54.15-fake"
    assert [g["power_limit_w"] for g in node["gpus"]] == [300.0, 350.0]
    assert node["gpus"][1] == {"name": "Fake GPU", "memory_mb": 81920, "index": 1,
                               "power_limit_w": 350.0, "default_power_limit_w": 350.0,
                               "max_sm_clock_mhz": 1980, "max_memory_clock_mhz": 2619}
