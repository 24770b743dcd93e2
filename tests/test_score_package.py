"""make package: what a package holds, its manifest, and a tampered package's runs labelled."""

import hashlib
import json
import tarfile

import pytest

from score.__main__ import main as score_main
from score.compare import load_inputs
from score.package import main as package_main
from tests.helpers.compare import repack, unpack_plain, write_system
from tests.helpers.score import write_run


@pytest.fixture
def package(tmp_path):
    results = tmp_path / "results"
    write_system(results, "node-a", 300.0)
    write_system(results, "node-b", 250.0, gpus=8, machine="8 x NVIDIA A100")
    archive = tmp_path / "node-a.tar.gz"
    assert package_main(["--results", str(results), "--system", "node-a",
                         "--out", str(archive)]) == 0
    return archive


def _issues(archive) -> tuple[dict[str, list[str]], list[str]]:
    warnings: list[str] = []
    runs = load_inputs([archive], warnings)
    return {f"{run.config}/{run.run_id}": run.compliance_issues for run in runs}, warnings


def test_package_holds_the_system_runs_files_tables_logs_and_a_true_manifest(package, tmp_path):
    with tarfile.open(package) as tar:
        names = tar.getnames()
    assert all(name.startswith("node-a") for name in names)
    assert not any(name.endswith(("checkpoint.pt", "heartbeat")) for name in names)
    assert not any("node-b" in name for name in names)
    run_files = [n for n in names if n.startswith("node-a/runs/X3D_M/20261207T060000Z-node-a/")]
    assert sorted(n.rsplit("/", 1)[1] for n in run_files) == [
        "config.yaml", "epochs.csv", "run.json", "system.json", "system_description.json"]
    for name in ("score.md", "score.csv", "system_description.json", "manifest.sha256",
                 "mlperf/result_0.txt", "mlperf/result_3.txt"):
        assert f"node-a/{name}" in names
    assert "node-a/mlperf/result_4.txt" not in names  # 2 runs x 2 models
    root = unpack_plain(package, tmp_path / "plain")
    manifest = (root / "manifest.sha256").read_text().splitlines()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "manifest.sha256")
    assert len(manifest) == len(files)
    for line in manifest:
        digest, name = line.split("  ")
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest
    assert json.loads((root / "system_description.json").read_text())["storage"] == "local NVMe"


def test_an_intact_package_scores_compliant(package):
    issues, warnings = _issues(package)
    assert len(issues) == 4 and all(found == [] for found in issues.values())
    assert warnings == []


@pytest.mark.parametrize("tamper, label", [
    ("changed", "package check: epochs.csv changed"),
    ("missing", "package check: system.json missing"),
    ("extra", "package check: notes.txt extra"),
])
def test_a_tampered_run_file_labels_that_run_only(package, tmp_path, tamper, label):
    root = unpack_plain(package, tmp_path / "plain")
    run = root / "runs" / "X3D_M" / "20261207T060000Z-node-a"
    if tamper == "changed":
        text = (run / "epochs.csv").read_text().replace("150.0,", "140.0,")
        (run / "epochs.csv").write_text(text)
    elif tamper == "missing":
        (run / "system.json").unlink()
    else:
        (run / "notes.txt").write_text("faster than it was")
    issues, warnings = _issues(repack(root, tmp_path / "tampered.tar.gz"))
    assert issues["X3D_M/20261207T060000Z-node-a"] == [label]
    assert all(found == [] for key, found in issues.items()
               if key != "X3D_M/20261207T060000Z-node-a")
    assert len([w for w in warnings if "(manifest check)" in w]) == 1


def test_an_extra_run_or_a_changed_table_or_no_manifest_labels_runs(package, tmp_path):
    root = unpack_plain(package, tmp_path / "plain")
    write_run(root / "runs", "X3D_M", "smuggled", gpus=4, extra={"system": "node-a"},
              val_top1=[30.0], elapsed_s=[1.0])
    issues, _ = _issues(repack(root, tmp_path / "smuggled.tar.gz"))
    assert issues["X3D_M/smuggled"][0].startswith("package check: ")
    assert sum(found != [] for found in issues.values()) == 1

    root = unpack_plain(package, tmp_path / "plain2")
    (root / "score.md").write_text("node-a wins\n")
    issues, _ = _issues(repack(root, tmp_path / "table.tar.gz"))
    assert all(found == ["package check: score.md changed"] for found in issues.values())

    (root / "manifest.sha256").unlink()
    issues, warnings = _issues(repack(root, tmp_path / "bare.tar.gz"))
    assert all(found == ["package without manifest: unchecked"] for found in issues.values())
    assert any("no manifest.sha256" in w for w in warnings)


def test_a_tampered_package_is_scored_non_compliant_end_to_end(package, tmp_path, capsys):
    root = unpack_plain(package, tmp_path / "plain")
    for path in (root / "runs").rglob("epochs.csv"):
        path.write_text(path.read_text().replace(",2.5,", ",2.4,"))
    tampered = repack(root, tmp_path / "tampered.tar.gz")
    assert score_main(["--results", str(tampered), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr()
    assert "0 compliant" in out.out and "NON-COMPLIANT" in out.out
    assert out.err.count("(manifest check)") == 4


def test_packages_and_an_old_folder_score_together(package, tmp_path, capsys):
    old = tmp_path / "old"  # protocol 1, no system name: labelled with its host
    write_run(old, "X3D_M", "old-1", protocol=1, val_top1=[10.0, 25.0], elapsed_s=[50.0, 90.0])
    results = tmp_path / "results"
    assert score_main(["--results", str(package), str(results), str(old),
                       "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    table = text[text.index("Comparison of systems"):]
    for system in ("node-a", "node-b", "bench-host"):
        assert f"\n{system} " in table
    assert (tmp_path / "out" / "comparison.html").is_file()


def test_a_run_given_twice_counts_once_and_a_file_beside_the_top_folder_is_extra(
        package, tmp_path):
    warnings: list[str] = []
    runs = load_inputs([package, tmp_path / "results"], warnings)
    assert len(runs) == 8  # node-a's 4 runs once (package first), node-b's 4
    assert sum("counted once" in w for w in warnings) == 4
    assert all(str(run.path).startswith(str(package)) for run in runs if run.system == "node-a")

    root = unpack_plain(package, tmp_path / "plain")
    (root.parent / "README.txt").write_text("beside the package")
    with tarfile.open(tmp_path / "beside.tar.gz", "w:gz") as tar:
        tar.add(root, arcname=root.name)
        tar.add(root.parent / "README.txt", arcname="README.txt")
    issues, _ = _issues(tmp_path / "beside.tar.gz")
    assert all(found == ["package check: ../README.txt extra"] for found in issues.values())


def test_package_of_an_unknown_system_is_one_line(tmp_path, capsys):
    write_system(tmp_path / "results", "node-a", 300.0, runs=1)
    assert package_main(["--results", str(tmp_path / "results"), "--system", "node-z",
                         "--out", str(tmp_path / "z.tar.gz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "node-z" in err[0] and err[0].startswith("error: ")
    assert not (tmp_path / "z.tar.gz").exists()
