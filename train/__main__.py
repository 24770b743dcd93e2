"""``python -m train``: train one preset and record its results (see train/run.py)."""

import time

# The run clock starts here, before any heavy import (torch, the data pipeline, the models):
# everything after the launch is timed. Under torchrun, torchrun's own start is used instead.
OWN_START = time.time()

import os  # noqa: E402
import sys  # noqa: E402


def one_line(error: Exception) -> str:
    """The message of ``error``; for one re-raised from a DataLoader worker (the worker's
    traceback in the text), the original message on its last line."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    if len(lines) <= 1:
        return str(error)
    return lines[-1].split(": ", 1)[-1] if lines[-1].startswith(type(error).__module__) \
        else lines[-1]


def main(argv: list[str] | None = None) -> int:
    from opts import ConfigError, build_parser
    from train import TrainError

    args = build_parser().parse_args(argv)
    is_main = os.environ.get("RANK", "0") == "0"
    from datasets import StoreError
    from train.run import RunStopped, run

    try:
        run(args, OWN_START)
    except (ConfigError, TrainError, StoreError) as e:
        if is_main:
            print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except RunStopped as e:
        if is_main:
            print(f"error: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:
        from train.distributed import peer_lost

        if os.environ.get("WORLD_SIZE", "1") == "1" or not peer_lost(e):
            raise
        # Another process died (killed, out of memory): its own report says why. One line
        # here instead of this process's traceback through the collective that failed.
        print(f"error: process {os.environ.get('RANK')} lost another process of the run "
              f"({one_line(e).split('. ')[0]}); the results so far are kept: resume with "
              "--resume <results>/<config>/<run id> and the same process count",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
