"""``python -m train.campaign --runs N -- <launch> -m train <args>``: the rule's N runs of one
preset on one system, one after another (``make bench-cnn RUNS=5``).

Run k (0-based) of a campaign has seed k and records ``campaign_run: k`` and
``campaign_runs: N`` in its config: the runs are N samples of the same workload, so the seed
rule keeps them compliant (opts.is_campaign_seed). The same command continues a campaign that
stopped: finished runs are kept (a run that reached the target, finished below it or stopped on
a NaN loss is a result, counted by the scorer), the run that was in progress is resumed as
``make resume`` would (its own config and store), and the missing ones are started.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import opts
from formats.results import CHECKPOINT_FILE, CONFIG_FILE, RUN_FILE, STATE_DIVERGED
from formats.yaml_limits import load_yaml_file
from train.rundir.attempts import RUN_LOCK_FILE

INTERRUPTED_CODES = (130, 143)  # a launch stopped by SIGINT or SIGTERM


def _call(command: list[str]) -> int:
    """Run one launch to its end. Ctrl-C reaches it through the terminal's process group; a
    SIGTERM sent to this process (Slurm, kill) is passed on, and the launch decides how to
    stop (at its next agreed point, checkpoint complete)."""
    child = subprocess.Popen(command)

    def forward(signum: int, frame) -> None:
        if signum == signal.SIGTERM:
            child.send_signal(signum)

    before = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
        return 128 - code if code < 0 else code  # killed by a signal: as a shell reports it
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def _discard(run_dir: Path) -> None:
    """Remove a run folder, unless a process still holds it (its lock)."""
    fd = os.open(run_dir / RUN_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"error: {run_dir}: in use by another process; wait for it to end, "
                         "then run the campaign again") from None
    finally:
        os.close(fd)
    shutil.rmtree(run_dir)


def _option(args: list[str], name: str) -> str | None:
    """The value of ``name`` in ``args`` (``--name value`` or ``--name=value``)."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _system(args: list[str]) -> str | None:
    values = opts.parse_set([a for i, a in enumerate(args[1:]) if args[i] == "--set"])
    return values.get("system")


def _split(command: list[str]) -> tuple[list[str], list[str]]:
    """(launcher, trainer arguments) of ``<launcher> -m train <arguments>``."""
    for i in range(len(command) - 1, 0, -1):
        if command[i - 1] == "-m" and command[i] == "train":
            return command[:i - 1], command[i + 1:]
    raise SystemExit("error: the command after -- must run the trainer: <launcher> -m train ...")


def find_runs(out: Path, name: str, system: str | None, runs: int) -> dict[int, Path]:
    """This campaign's run folders by run index (the newest one of an index)."""
    found: dict[int, Path] = {}
    for config_file in sorted((out / name).glob(f"*/{CONFIG_FILE}")):
        try:
            config = load_yaml_file(config_file)
        except (OSError, ValueError):
            continue  # not a run of ours (the scorer reports unreadable folders)
        if (isinstance(config, dict) and config.get("campaign_runs") == runs
                and config.get("system") == system and (config_file.parent / RUN_FILE).is_file()):
            found[int(config.get("campaign_run") or 0)] = config_file.parent
    return found


def _state(run_dir: Path | None) -> tuple[bool, str]:
    """(ended, state) of a run folder: ended runs are results, the others are resumed."""
    if run_dir is None:
        return False, ""
    try:
        run = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, "unreadable"
    state = str(run.get("state"))
    return bool(run.get("finished")) or state == STATE_DIVERGED, state


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.campaign", description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, required=True, help="runs in the campaign (the rule: 5)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- <launcher> -m train <args>")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not 1 <= args.runs <= 1000:
        p.error("--runs must be 1 to 1000")
    launcher, train_args = _split(command)
    if args.runs == 1:  # a single run is not a campaign
        return _call([*launcher, "-m", "train", *train_args])
    config_path = _option(train_args, "--config")
    if config_path is None:
        p.error("the trainer's arguments need --config")
    try:
        name = opts.read_preset(Path(config_path)).get("name")
    except opts.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(_option(train_args, "--out") or "results")
    system = _system(train_args)
    runs = find_runs(out, str(name), system, args.runs)
    where = f"{name} on {system or 'this host'}"
    for k in range(args.runs):
        run_dir = runs.get(k)
        ended, state = _state(run_dir)
        if ended:
            print(f"campaign {where}: run {k + 1} of {args.runs} (seed {k}) done earlier "
                  f"({state}): {run_dir}", flush=True)
            continue
        if run_dir is not None and not (run_dir / CHECKPOINT_FILE).is_file():
            # Stopped before its first epoch ended: it holds no result and cannot be resumed.
            _discard(run_dir)
            print(f"campaign {where}: {run_dir} stopped before its first checkpoint; removed, "
                  "the run starts again", flush=True)
            run_dir = None
        if run_dir is not None:
            workers = _option(train_args, "--workers")
            trainer = ["--resume", str(run_dir), *(["--workers", workers] if workers else [])]
            how = f"resuming {run_dir}"
        else:
            trainer = [*train_args, "--seed", str(k), "--set", f"campaign_run={k}",
                       "--set", f"campaign_runs={args.runs}"]
            how = "starting"
        print(f"campaign {where}: run {k + 1} of {args.runs} (seed {k}), {how}", flush=True)
        code = _call([*launcher, "-m", "train", *trainer])
        if code in INTERRUPTED_CODES or code == 2:  # stopped, or a user error: not a result
            print(f"campaign {where}: stopped at run {k + 1} of {args.runs}; run the same "
                  "command again to continue it", file=sys.stderr, flush=True)
            return code
        if code != 0 and not _state(find_runs(out, str(name), system, args.runs).get(k))[0]:
            print(f"campaign {where}: run {k + 1} of {args.runs} failed (exit {code}); fix "
                  "the cause and run the same command again to continue", file=sys.stderr,
                  flush=True)
            return code
    print(f"campaign {where}: all {args.runs} runs done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
