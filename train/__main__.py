"""``python -m train``: train one preset and record its results (see train/run.py)."""

import time

# The run clock starts here, before any heavy import (torch, the data pipeline, the models):
# everything after the launch is timed. Under torchrun, torchrun's own start is used instead.
OWN_START = time.time()

import sys  # noqa: E402


def one_line(error: Exception) -> str:
    """The message of ``error``; for one re-raised from a DataLoader worker (the worker's
    traceback in the text), the original message on its last line."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    if len(lines) <= 1:
        return str(error)
    return lines[-1].split(": ", 1)[-1] if lines[-1].startswith(type(error).__module__) \
        else lines[-1]


def this_process():
    """This process as torchrun's environment describes it (its device aside)."""
    import torch

    from train import TrainError
    from train.distributed import Dist, from_environment

    try:
        return from_environment(torch.device("cpu"))
    except TrainError:  # a malformed environment: the run itself will say so
        return Dist(0, 1, 0, torch.device("cpu"))


def rank_name() -> str | None:
    """How this process's messages are prefixed ("rank 1 on host-x"; None for one process)."""
    me = this_process()
    return me.name if me.active else None


def main(argv: list[str] | None = None) -> int:
    from train import signals

    with signals.handled():
        try:
            return _main(argv)
        except signals.Interrupted as e:  # a signal before training started
            return _stopped(e)


def _main(argv: list[str] | None) -> int:
    from train import errors

    me = this_process()
    rank, world, name = me.rank, me.world_size, rank_name()
    repeated = errors.repeated_user_error()
    if repeated is not None:  # torchrun restarted the workers after a user error
        line = errors.error_line("not restarted: the previous attempt stopped on a user "
                                 f"error that would stop this one too: {repeated}", name)
        print(line, file=sys.stderr, flush=True)
        errors.note_user_error(repeated)
        errors.write_error_file(line)
        return 2

    from opts import ConfigError, build_parser
    from train import TrainError

    args = build_parser().parse_args(argv)
    from datasets import StoreError
    from train import signals
    from train.data import LoaderTimeout
    from train.run import run
    from train.rundir import RunDiverged

    try:
        run(args, OWN_START)
    except (ConfigError, TrainError, StoreError) as e:
        line = errors.error_line(one_line(e), name)
        print(line, file=sys.stderr, flush=True)
        errors.write_error_file(line)
        errors.note_user_error(line)
        return 2
    except RunDiverged as e:
        if rank == 0:
            print(f"error: {e}", file=sys.stderr)
        return 1
    except signals.Interrupted as e:
        return _stopped(e)
    except LoaderTimeout as e:
        line = errors.error_line(
            f"timeout_s: {e} (a worker hung: stalled storage or a stopped process); the "
            "results so far are kept: resume the run (make resume RUN=<run dir>), and raise "
            "--timeout if the store is just slow", name)
        print(line, file=sys.stderr, flush=True)
        errors.write_error_file(line)
        return 1
    except RuntimeError as e:
        line = _failed_wait(e, rank, world, name)
        if line is None:
            raise
        print(line, file=sys.stderr, flush=True)
        errors.write_error_file(line, consequence=True)
        return 1
    return 0


def _failed_wait(error: RuntimeError, rank: int, world: int, name: str | None) -> str | None:
    """One line for a wait that failed (another process gone, a timeout), else None."""
    from train import distributed, errors

    text = one_line(error)
    if world == 1:
        return None
    # Collectives not named by train/distributed.py run inside the model's step.
    wait = distributed.last_wait() or "a collective of the model (DDP's gradients, BatchNorm " \
        "statistics)"
    if distributed.timed_out(error):
        return errors.error_line(
            f"timeout_s: waited {distributed.timeout_s() or 0:g} s for another process at "
            f"{wait} (one stopped, hung or fell far behind); the results so far are kept: "
            "resume the run (make resume RUN=<run dir>), and raise --timeout if a process is "
            "just slow", name)
    if not distributed.peer_lost(error):
        return None
    others = errors.peer_errors(rank, world)
    if others:  # their error, printed by them: resuming would stop on it again
        who = ", ".join(f"process {r}" for r in sorted(others))
        return errors.error_line(f"{who} stopped: see its error above", name)
    # Another process died (killed, out of memory): its own report says why. One line here
    # instead of this process's traceback through the collective that failed.
    return errors.error_line(
        f"lost another process of the run at {wait} ({text.split('. ')[0]}); the results "
        "so far are kept: resume with --resume <results>/<config>/<run id> and the same "
        "process count", name)


def _stopped(e) -> int:
    """The one line of a run stopped by a signal (rank 0 says it for all processes)."""
    from train import errors

    me = this_process()
    rank, world = me.rank, me.world_size
    others = errors.peer_errors(rank, world) if world > 1 else {}
    if others:  # torchrun stopping the others after one's error: that error is the cause
        if rank == 0:
            who = ", ".join(f"process {r}" for r in sorted(others))
            print(errors.error_line(f"{who} stopped: see its error above", rank_name()),
                  file=sys.stderr, flush=True)
        return 1
    if rank == 0:
        if e.run_dir is None:
            where = "before training started; nothing to resume"
        else:
            where = f"resume with make resume RUN={e.run_dir}" + (
                f" GPUS={world}" if world > 1 else "")
            if me.node_processes < world:  # several nodes: make resume is for one
                where = (f"resume with the same torchrun launch on every node, with --resume "
                         f"{e.run_dir} in place of --config")
        print(f"{e}; {where}", file=sys.stderr, flush=True)
    return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
