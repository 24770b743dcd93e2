"""The reference a machine is scored against: a reference file or another results folder.

Reference file (YAML):
    description: how the numbers were measured
    machine: "4 x NVIDIA TITAN RTX"
    gpus: 4                      # GPU count of the reference runs
    t_ref_s: {X3D_M: 7456.88, MVIT_B_16x4: 7725.12}   # seconds, per config name
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
from score.stats import ModelResult, group_models, per_model_score


@dataclass
class Reference:
    source: str
    description: str
    machine: str
    # Per config: reference time to target (seconds) and the GPU count it was measured with.
    t_ref_s: dict[str, float]
    gpus: dict[str, int]


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
        source=str(path),
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
        source=shown(folder),
        description=f"aggregate t_bench of the compliant runs in {shown(folder)}: {described}",
        machine=" / ".join(sorted(set(machines.values()))),
        t_ref_s=t_ref_s,
        gpus=gpus,
    )


def apply_reference(
    results: list[ModelResult], reference: Reference, warnings: list[str]
) -> None:
    """Fill in t_ref, n_gpu_ref and the per-model score; configs without a reference warn once."""
    unknown = set()
    for result in results:
        if result.config not in reference.t_ref_s:
            unknown.add(result.config)
            result.notes.append("config not in reference: no score")
            continue
        result.t_ref_s = reference.t_ref_s[result.config]
        result.gpus_ref = reference.gpus[result.config]
        if result.t_bench_s is not None:
            result.score = per_model_score(
                result.t_ref_s, result.gpus_ref, result.t_bench_s, result.gpus
            )
    for config in sorted(unknown):
        folders = sorted({str(run.path.parent) for r in results if r.config == config
                          for run in r.runs})
        warnings.append(
            f"{folders[0]}: config '{config}' is not in reference {reference.source} "
            f"(has {', '.join(reference.t_ref_s)}); t_bench shown without a score"
        )
