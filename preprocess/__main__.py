"""Command line of the preprocessing stage:
``python -m preprocess {synth,frames,decode,verify,check,data}``."""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from formats.store import FORMATS, StoreError
from preprocess.getdata import DEFAULT_REPO, GetDataError, default_csv
from preprocess.kinetics import LayoutError
from preprocess.resample import parse_fps
from preprocess.synth import SynthError, SynthOptions

USER_ERRORS = (LayoutError, StoreError, SynthError, GetDataError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m preprocess", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = SynthOptions()

    s = sub.add_parser("synth", help="write a synthetic dataset in the Kinetics layout")
    s.add_argument("--out", type=Path, required=True, help="dataset folder to create")
    s.add_argument("--classes", type=int, default=d.classes)
    s.add_argument("--train-per-class", type=int, default=d.train_per_class)
    s.add_argument("--val-per-class", type=int, default=d.val_per_class)
    s.add_argument("--duration", type=float, default=d.duration, help="seconds per video")
    s.add_argument("--width", type=int, default=d.width)
    s.add_argument("--height", type=int, default=d.height)
    s.add_argument("--fps", default=d.fps, help="frame rate, e.g. 30, 25, 29.97 (=30000/1001)")
    s.add_argument("--seed", type=int, default=d.seed)
    s.add_argument("--colour-cue", action="store_true",
                   help="draw each class's shape in its own hue (an easy cue, for the demo)")
    s.add_argument("--clutter", type=float, default=d.clutter,
                   help="background clutter relative to the default (0: none)")
    s.add_argument("--jobs", type=int, default=-1, help="parallel processes (-1: all cores)")

    f = sub.add_parser("frames", help="decode videos into a frame store")
    f.add_argument("--data", type=Path, required=True, help="dataset folder (Kinetics layout)")
    f.add_argument("--out", type=Path, required=True, help="frame store folder")
    f.add_argument("--format", choices=FORMATS, default="jpg",
                   help="raw (decoded frames) is made from a JPEG store: see `decode`")
    f.add_argument("--short-side", type=int, default=320,
                   help="resize so the short side is this (never enlarges)")
    f.add_argument("--quality", type=int, default=90, help="JPEG quality 1..100")
    f.add_argument("--jobs", type=int, default=-1, help="parallel processes (-1: all cores)")
    f.add_argument("--strict", action="store_true", help="exit non-zero if any video fails")

    r = sub.add_parser("decode", help="decode a JPEG store into a decoded-frame store (raw): "
                       "same clips, no JPEG decoding while training")
    r.add_argument("--jpeg-store", type=Path, required=True,
                   help="the JPEG frame store (jpg or hdf5) to decode")
    r.add_argument("--out", type=Path, required=True, help="decoded-frame store folder")
    r.add_argument("--jobs", type=int, default=-1, help="parallel processes (-1: all cores)")
    r.add_argument("--strict", action="store_true", help="exit non-zero if any video fails")

    v = sub.add_parser("verify", help="check a frame store against its index")
    v.add_argument("--store", type=Path, required=True)
    v.add_argument("--jobs", type=int, default=-1, help="parallel processes (-1: all cores)")

    manifest = dict(type=Path, help="reference list split,class,file "
                    "(default: preprocess/kinetics20_manifest.csv)")
    c = sub.add_parser("check", help="compare a dataset folder with the Kinetics-20 manifest "
                       "(exit 1 if it differs)")
    c.add_argument("--data", type=Path, required=True, help="dataset folder (Kinetics layout)")
    c.add_argument("--csv", type=Path, help="where to write the differences "
                   "(default: <data>_check.csv beside the folder)")
    c.add_argument("--manifest", **manifest)

    g = sub.add_parser("data", help="get the benchmark's Kinetics-20, then check it")
    g.add_argument("--out", type=Path, default=Path("data/kinetics20"))
    g.add_argument("--k400", type=Path, help="assemble it from this Kinetics-400 copy (files "
                   "found by name at any depth) instead of fetching it with git")
    g.add_argument("--repo", default=DEFAULT_REPO, help="git repository with data/kinetics20")
    g.add_argument("--csv", type=Path, help="where the check writes the differences")
    g.add_argument("--manifest", **manifest)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.command == "synth":
        from preprocess.synth import make_dataset

        try:
            fps = str(parse_fps(args.fps))
        except ValueError as e:
            raise SynthError(f"--fps: {e}") from None
        opts = SynthOptions(args.classes, args.train_per_class, args.val_per_class,
                            args.duration, args.width, args.height, fps, args.seed,
                            args.colour_cue, args.clutter)
        plan = make_dataset(opts, args.out, args.jobs)
        print(f"wrote {len(plan)} videos of {opts.classes} classes to {args.out}")
        return 0
    if args.command == "frames":
        from preprocess.extract import ExtractOptions
        from preprocess.frames import build_store

        if args.format == "raw":
            raise StoreError("--format raw: a decoded store is made from a JPEG store; run "
                             "make frames FORMAT=raw, or build a jpg store and then "
                             "python -m preprocess decode --jpeg-store STORE --out DECODED")
        opts = ExtractOptions(args.format, args.short_side, args.quality)
        summary = build_store(args.data, args.out, opts, jobs=args.jobs)
        return 1 if args.strict and summary.failed else 0
    if args.command == "decode":
        from preprocess.decoded import build_decoded_store

        summary = build_decoded_store(args.jpeg_store, args.out, jobs=args.jobs)
        return 1 if args.strict and summary.failed else 0
    if args.command == "check":
        from preprocess.dataset_check import run_check

        return 0 if run_check(args.data, args.csv or default_csv(args.data),
                              args.manifest).matches else 1
    if args.command == "data":
        from preprocess.getdata import get_data

        return 0 if get_data(args.out, args.k400, args.repo, args.csv,
                             args.manifest).matches else 1
    from preprocess.verify import verify_store

    problems = verify_store(args.store, jobs=args.jobs)
    return 1 if problems else 0


def stop_workers() -> None:
    """Kill joblib's worker processes (idle by now, or stranded by a failed run).

    Asking loky to shut its executor down is not enough: a worker killed from outside (say
    by the out-of-memory killer) can die holding the lock of the queue it shares with the
    other workers, which then wait on that lock for ever, and loky's shutdown (and its exit
    handler) waits for them. Every finished video is already renamed into place, so nothing
    a worker still holds is needed."""
    import multiprocessing
    import signal

    for worker in multiprocessing.active_children():
        try:
            os.kill(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Terminated(KeyboardInterrupt):
    """SIGTERM (a `kill`, a job scheduler, a container stop): handled like Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


# joblib's resource tracker (a process of its own, which outlives this one) warns about each
# lock the killed workers still had registered, then finds it already gone: two lines of
# noise after the one-line stop message. It still cleans up; only its warnings are off.
TRACKER_QUIET = "ignore::UserWarning:joblib.externals.loky.backend.resource_tracker"


def main(argv: list[str] | None = None) -> int:
    import signal

    warning_filters = os.environ.get("PYTHONWARNINGS", "")
    if TRACKER_QUIET not in warning_filters:  # read by the tracker when joblib starts it
        os.environ["PYTHONWARNINGS"] = ",".join(filter(None, (warning_filters, TRACKER_QUIET)))
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return run(args)
    except Terminated:
        print("stopped (SIGTERM); run the same command again to resume", file=sys.stderr)
        return 128 + signal.SIGTERM
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenProcessPool:  # e.g. a worker killed by the system for lack of memory
        print("error: a worker process died (killed, out of memory or crashed); the videos "
              "finished so far are kept: run the same command again to resume "
              "(with fewer --jobs if memory is short)", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    try:
        code = main()
    finally:
        stop_workers()
    sys.exit(code)
