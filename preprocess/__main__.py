"""Command line of the preprocessing stage:
``python -m preprocess {synth,frames,verify,check,data}``."""

from __future__ import annotations

import argparse
from pathlib import Path

from formats.store import FORMATS, StoreError
from preprocess.cli import guarded, run_main
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
                   help="raw (decoded frames) is made from a JPEG store: make frames "
                   "FORMAT=raw, or python -m datasets.decoded_store")
    f.add_argument("--short-side", type=int, default=320,
                   help="resize so the short side is this (never enlarges)")
    f.add_argument("--quality", type=int, default=90, help="JPEG quality 1..100")
    f.add_argument("--jobs", type=int, default=-1, help="parallel processes (-1: all cores)")
    f.add_argument("--strict", action="store_true", help="exit non-zero if any video fails")

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
                             "python -m datasets.decoded_store --jpeg-store STORE --out DECODED")
        opts = ExtractOptions(args.format, args.short_side, args.quality)
        summary = build_store(args.data, args.out, opts, jobs=args.jobs)
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


def main(argv: list[str] | None = None) -> int:
    return guarded(lambda: run(build_parser().parse_args(argv)), USER_ERRORS)


if __name__ == "__main__":
    run_main(main)
