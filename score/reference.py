"""The reference a machine is scored against: a reference file or another results folder.

Reference file (YAML):
    description: how the numbers were measured
    machine: "4 x NVIDIA TITAN RTX"
    gpus: 4                      # GPU count of the reference runs
    t_ref_s: {X3D_M: 7456.88, MVIT_B_16x4: 7725.12}   # seconds, per config name

Without --reference, every configs/reference*.yaml is read and each config is scored against
the file that lists it: the benchmark presets against configs/reference.yaml, the demo presets
against configs/reference_demo.yaml. The configs of one file form one benchmark score.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from formats.yaml_limits import YamlRefused, load_yaml_text
from score import ScoreError
from score.load import COMPLIANT, load_results
from score.readers import MAX_JSON_BYTES, read_regular, safe_text, shown
from score.record import is_number
from score.stats import (
    BenchmarkResult,
    ModelResult,
    benchmark_scores,
    group_models,
    per_model_score,
)

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
REFERENCE_GLOB = "reference*.yaml"

@dataclass
class Reference:
    source: str
    description: str
    machine: str
    # Per config: reference time to target (seconds) and the GPU count it was measured with.
    t_ref_s: dict[str, float]
    gpus: dict[str, int]


def display_path(path: Path) -> str:
    """`path` relative to the working folder when it is under it (configs/reference.yaml)."""
    try:
        return shown(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return shown(path)


def load_references(path: Path | None, warnings: list[str]) -> list[Reference]:
    """The reference given on the command line, or every reference file in configs/."""
    if path is not None:
        return [load_reference(path, warnings)]
    files = sorted(CONFIGS.glob(REFERENCE_GLOB))
    if not files:
        raise ScoreError(f"{display_path(CONFIGS)}: no {REFERENCE_GLOB} file; pass --reference "
                         "<file or results folder>")
    references = [read_reference_file(file, warnings) for file in files]
    owner: dict[str, str] = {}
    for reference in references:
        for config in list(reference.t_ref_s):
            if config in owner:  # the first file (in name order) keeps it
                warnings.append(f"{reference.source}: {config} is also in {owner[config]}; "
                                f"scored against {owner[config]}")
                del reference.t_ref_s[config]
            else:
                owner[config] = reference.source
    return [reference for reference in references if reference.t_ref_s]


def load_reference(path: Path, warnings: list[str]) -> Reference:
    """A folder is read as results measured on another machine, anything else as a YAML file."""
    if path.is_dir():
        return reference_from_results(path, warnings)
    return read_reference_file(path, warnings)


def read_reference_file(path: Path, warnings: list[str]) -> Reference:
    """Read a reference file such as configs/reference.yaml (format in the module doc)."""
    try:
        data = load_yaml_text(read_regular(path, MAX_JSON_BYTES).decode("utf-8"))
    except ScoreError as error:
        if os.path.lexists(path):
            raise
        raise ScoreError(f"{shown(path)}: reference file not found; pass --reference <file "
                         "or results folder>") from error
    except YamlRefused as error:  # too large a structure or number: no parser message
        raise ScoreError(f"{shown(path)}: reference file refused ({error})") from None
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ScoreError(f"{path}: reference file is not valid YAML ({first_line})") from error
    if not isinstance(data, dict):
        raise ScoreError(f"{path}: reference file must be a mapping with gpus and t_ref_s")
    gpus = data.get("gpus")
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise ScoreError(f"{path}: 'gpus' must be a positive whole number, found {gpus!r}")
    times = data.get("t_ref_s")
    if not isinstance(times, dict) or not times:
        raise ScoreError(f"{path}: 't_ref_s' must map config names to seconds")
    t_ref_s = {}
    for config, seconds in times.items():
        if not is_number(seconds) or seconds <= 0:
            warnings.append(f"{path}: t_ref_s of '{config}' is {seconds!r}, not a positive "
                            "number of seconds; ignored")
            continue
        t_ref_s[safe_text(config, 120)] = float(seconds)
    if not t_ref_s:
        raise ScoreError(f"{path}: no usable t_ref_s entry")
    return Reference(
        source=display_path(path),
        description=" ".join(str(data.get("description", "")).split()),
        machine=str(data.get("machine", "unknown machine")),
        t_ref_s=t_ref_s,
        gpus={config: gpus for config in t_ref_s},
    )


def reference_from_results(folder: Path, warnings: list[str]) -> Reference:
    """Use another machine's results: its compliant aggregate t_bench per config and its GPUs."""
    t_ref_s: dict[str, float] = {}
    gpus: dict[str, int] = {}
    machines: dict[str, str] = {}
    results = [r for r in group_models(load_results(folder, warnings))
               if r.compliance == COMPLIANT]
    for config in sorted({r.config for r in results}):
        usable = [r for r in results if r.config == config and r.t_bench_s is not None]
        if len(usable) > 1:
            found = "; ".join(f"{r.machine} with {r.hardware}" for r in usable)
            warnings.append(f"{shown(folder)}: reference results hold {config} from several "
                            f"machines ({found}); {config} has no reference")
        elif not usable:
            warnings.append(f"{shown(folder)}: no compliant {config} result with a t_bench; "
                            f"{config} has no reference")
        else:
            t_ref_s[config], gpus[config] = usable[0].t_bench_s, usable[0].gpus
            machines[config] = usable[0].machine
    if not t_ref_s:
        raise ScoreError(f"{shown(folder)}: no compliant run reaching its target; cannot be used "
                         "as a reference")
    described = ", ".join(f"{c} {t_ref_s[c]:.1f} s on {gpus[c]} GPU(s)" for c in t_ref_s)
    return Reference(
        source=display_path(folder),
        description=f"aggregate t_bench of the compliant runs in {shown(folder)}: {described}",
        machine=" / ".join(sorted(set(machines.values()))),
        t_ref_s=t_ref_s,
        gpus=gpus,
    )


def apply_reference(
    results: list[ModelResult], reference: Reference, warnings: list[str]
) -> None:
    """apply_references with one reference for every config."""
    apply_references(results, [reference], warnings)


def apply_references(
    results: list[ModelResult], references: list[Reference], warnings: list[str]
) -> None:
    """Fill in t_ref, n_gpu_ref and the per-model score from the reference listing each
    config; the configs no reference lists are named once, in one warning."""
    unknown: dict[str, str] = {}  # config -> a folder holding its runs
    for result in results:
        reference = next((r for r in references if result.config in r.t_ref_s), None)
        if reference is None:
            unknown.setdefault(result.config, shown(result.runs[0].path.parent))
            continue
        result.reference = reference.source
        result.t_ref_s = reference.t_ref_s[result.config]
        result.gpus_ref = reference.gpus[result.config]
        if result.t_bench_s is not None:
            result.score = per_model_score(
                result.t_ref_s, result.gpus_ref, result.t_bench_s, result.gpus
            )
    if unknown:
        named = [f"'{config}' ({folder})" for config, folder in sorted(unknown.items())]
        more = f" and {len(named) - 3} more" if len(named) > 3 else ""
        sources = ", ".join(r.source for r in references)
        warnings.append(f"no reference lists config {', '.join(named[:3])}{more} (references: "
                        f"{sources}); t_bench shown without a score")


def benchmarks_by_reference(
    results: list[ModelResult], references: list[Reference], everyone: bool
) -> list[tuple[Reference, list[BenchmarkResult]]]:
    """Each reference with the benchmark scores over its configs; without `everyone`, only the
    references that list a config of some result (a reference file for the demo adds nothing
    to a results folder holding no demo run)."""
    chosen = []
    for reference in references:
        if everyone or any(r.config in reference.t_ref_s for r in results):
            rows = benchmark_scores(results, list(reference.t_ref_s))
            for row in rows:
                row.reference = reference.source
            chosen.append((reference, rows))
    return chosen
