"""Record and audit for real: git + DVC (local remote) + Snakemake on a tiny config in a temporary
repository; tampering with any link of the chain makes the audit fail naming that link; a fresh
clone restores with `dvc pull` and audits clean without retraining."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from tests.conftest import make_tiny_project
from tests.workflow.test_workflow import SIFA, TRAIN, TRANSLATE

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("slurm_controller")]  # slurm_controller: see tests/conftest.py

BIN = Path(sys.executable).parent
CONFIG = "config/tiny.yaml"
DS = "tiny_synth"


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e["DVC_NO_ANALYTICS"] = "1"
    e.setdefault("GIT_AUTHOR_NAME", "test")
    e.setdefault("GIT_AUTHOR_EMAIL", "test@example.org")
    e.setdefault("GIT_COMMITTER_NAME", "test")
    e.setdefault("GIT_COMMITTER_EMAIL", "test@example.org")
    return e


def run(cwd: Path, *cmd: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), cwd=cwd, env=env(), capture_output=True, text=True, timeout=900)
    if ok:
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def snakemake(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(cwd, sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", CONFIG, *args)


def xmodseg(cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run(cwd, str(BIN / "xmodseg"), *args, ok=ok)


def write_config(repo: Path, oracle_iterations: int = 4) -> None:
    cfg = {
        "registry": "config/tiny_datasets.yaml",
        "dataset": DS,
        "preprocess": {"spacing": [5.0, 5.0, 5.0], "slice_axis": "coronal", "crop_size": [32, 32]},
        "translators": {"cyclegan_mr2ct": {"translator": "cyclegan", "source": "mr", "target": "ct", "seeds": [0], "train": TRANSLATE}},
        "experiments": {
            "source_only_mr2ct": {"method": "source_only", "source": "mr", "target": "ct", "seeds": [0], "train": TRAIN},
            "oracle_mr2ct": {"method": "oracle", "source": "mr", "target": "ct", "seeds": [0, 1], "train": {**TRAIN, "iterations": oracle_iterations}},
            "t2s_cyclegan_mr2ct": {"method": "translate_then_segment", "source": "mr", "target": "ct", "translator": "cyclegan_mr2ct", "seeds": [0], "train": TRAIN},
            # snapshots: 2 -> the report adds the mean over iterations 2 and 3 (Dice, ASSD mm): 10 more numbers
            "sifa_mr2ct": {"method": "sifa", "source": "mr", "target": "ct", "inputs": {"warm_start": "cyclegan_mr2ct"}, "seeds": [0], "train": {**SIFA, "snapshots": 2}},
        },
        "report": {"title": "tiny"},
    }
    (repo / CONFIG).write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A project repository after `snakemake` and `xmodseg record`, with a local DVC remote."""
    base = tmp_path_factory.mktemp("provenance")
    repo = make_tiny_project(base / "project", {}, "unused.yaml", extra=("src", ".gitignore", ".dvcignore"))
    write_config(repo)
    run(repo, "git", "init", "-q", "-b", "main")
    run(repo, str(BIN / "dvc"), "init", "-q")
    run(repo, str(BIN / "dvc"), "remote", "add", "-d", "local", str(base / "dvc-remote"))
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "project")
    snakemake(repo)
    out = xmodseg(repo, "record", "--configfile", CONFIG)
    assert "recorded" in out.stdout
    return repo


def audit(repo: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = xmodseg(repo, "audit", *args, ok=False)
    assert (proc.returncode == 0) == ok, f"audit exit {proc.returncode}:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_record_commits_lineage_and_pushes(repo):
    assert run(repo, "git", "status", "--porcelain", "--untracked-files=no").stdout.strip() == ""
    log = run(repo, "git", "log", "--format=%s").stdout.splitlines()
    assert log[0] == f"xmodseg record: {CONFIG}"
    tracked = run(repo, "git", "ls-files").stdout.split()
    assert {"dvc.lock", "dvc.yaml", f"results/metrics/{DS}/oracle_mr2ct.json", "results/provenance/report.html.dvc"} <= set(tracked)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    exp = lock["experiment-sifa_mr2ct"]
    assert exp["params"][CONFIG]["experiments.sifa_mr2ct"]["inputs"]["warm_start"] == "cyclegan_mr2ct"
    deps = {d["path"] for d in exp["deps"]}
    assert f"results/translators/{DS}/cyclegan_mr2ct/seed0/model.pt" in deps and f"data/prepared/{DS}/ct" in deps
    assert {d["path"] for d in lock["experiment-t2s_cyclegan_mr2ct"]["deps"]} >= {f"data/translated/{DS}/cyclegan_mr2ct/seed0"}
    assert json.loads(run(repo, str(BIN / "dvc"), "status", "--json").stdout or "{}") == {}
    remote_files = [p for p in (repo.parent / "dvc-remote").rglob("*") if p.is_file()]
    assert len(remote_files) > 20
    # The HTML report names the code commit and the dvc.lock it describes.
    meta = yaml.safe_load((repo / "results/provenance/report_metadata.yaml").read_text())
    assert meta["Git commit"] == run(repo, "git", "rev-parse", "HEAD~1").stdout.strip()
    html = (repo / "results/provenance/report.html").read_text(errors="replace")
    assert meta["Git commit"] in html and len(html) > 100_000


def test_audit_passes_for_report_experiment_and_seed(repo):
    out = audit(repo, "results/report/summary.md").stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and line.endswith(" ok |")]
    assert len(rows) == 4 * 4 * 5 + 2 * 5  # experiments x metrics x (4 classes + mean), + SIFA's last-k means
    assert "90 numbers, 90 ok, 0 broken: PASS" in out
    md = (repo / "results/report/summary.md").read_text()
    assert "## Dice, mean over the last k checkpoints" in md and "- sifa_mr2ct: iterations 2, last" in md
    out = audit(repo, "oracle_mr2ct", "--reinfer").stdout
    assert "20 numbers, 20 ok" in out and "re-predicted identically" in out
    audit(repo, f"results/evaluation/{DS}/sifa_mr2ct/seed0/metrics.json")


def _tamper_model(repo: Path) -> Path:
    p = repo / f"results/models/{DS}/oracle_mr2ct/seed1/model.pt"
    p.write_bytes(p.read_bytes() + b"\0")
    return p


def _tamper_prediction(repo: Path) -> Path:
    p = repo / f"results/evaluation/{DS}/oracle_mr2ct/seed0/predictions/1003_pred.nii.gz"
    img = sitk.ReadImage(str(p))
    arr = sitk.GetArrayFromImage(img)
    arr[arr.shape[0] // 2, :, :] = 1  # one slab relabelled
    new = sitk.GetImageFromArray(arr)
    new.CopyInformation(img)
    sitk.WriteImage(new, str(p))
    return p


def _tamper_metrics_value(repo: Path) -> Path:
    p = repo / f"results/metrics/{DS}/oracle_mr2ct.json"
    doc = json.loads(p.read_text())
    doc["dice"]["MYO"]["mean"] = round(doc["dice"]["MYO"]["mean"] + 0.05, 6)
    p.write_text(json.dumps(doc, indent=2))
    return p


def _tamper_raw_data(repo: Path) -> Path:
    p = repo / f"data/raw/{DS}/ct_train/ct_train_1003_label.nii.gz"
    img = sitk.ReadImage(str(p))
    arr = sitk.GetArrayFromImage(img)
    arr[0, 0, 0] = 205  # one voxel of a test ground truth
    new = sitk.GetImageFromArray(arr)
    new.CopyInformation(img)
    sitk.WriteImage(new, str(p))
    return p


@pytest.mark.parametrize(
    ("tamper", "probe", "link", "n_broken"),
    [
        # a model or prediction of one oracle seed breaks that experiment's 20 numbers only
        (_tamper_model, f"results/models/{DS}/oracle_mr2ct/seed1/model.pt", "model", 20),
        (_tamper_prediction, f"results/evaluation/{DS}/oracle_mr2ct/seed0/predictions/1003_pred.nii.gz", "predictions", 20),
        # an edited number: its value and its file's dvc.lock record break (the file holds 20 numbers)
        (_tamper_metrics_value, f"results/metrics/{DS}/oracle_mr2ct.json", "value", 20),
        # every model was evaluated on that CT test volume
        (_tamper_raw_data, f"data/raw/{DS}/ct_train/ct_train_1003_label.nii.gz", "data", 90),
    ],
)
def test_tampering_breaks_the_named_link(repo, tamper, probe, link, n_broken):
    original = (repo / probe).read_bytes()
    try:
        tamper(repo)
        out = audit(repo, "results/report/summary.md", ok=False).stdout
        assert out.splitlines()[-1] == f"90 numbers, {90 - n_broken} ok, {n_broken} broken: FAIL"
        rows = [line for line in out.splitlines() if "| BROKEN: " in line]
        assert len(rows) == n_broken
        named = "dvc.lock" if tamper is _tamper_metrics_value else link  # see below for the edited value
        assert all(named in line.split("BROKEN:")[1] for line in rows), rows[:3]
        chain = [line for line in out.splitlines() if f"| {link} | BROKEN |" in line]
        assert chain and any(Path(probe).name in line for line in chain), out[:4000]
        if tamper is _tamper_metrics_value:
            assert any(line.startswith(f"| {probe} | dvc.lock | BROKEN |") for line in out.splitlines())
            assert sum("value" in line.split("BROKEN:")[1] for line in rows) == 1  # only the edited number
    finally:
        (repo / probe).write_bytes(original)
    audit(repo, "results/report/summary.md")  # restored: clean again


def _snapshot(repo: Path, paths: list[str], keep: Path) -> None:
    """Copy files or folders (with their mtimes, so Snakemake sees no change once restored)."""
    for rel in paths:
        src, dst = repo / rel, keep / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)


def _restore(repo: Path, paths: list[str], keep: Path) -> None:
    for rel in paths:
        src, dst = keep / rel, repo / rel
        if src.is_dir():
            shutil.rmtree(dst)
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)


def test_a_consistently_rehashed_wrong_value_is_caught_only_by_recomputation(repo, tmp_path):
    """One per-case Dice changed in a per-seed metrics.json, and everything downstream made
    consistent with it: the seed summary, the experiment metrics file and summary.csv/md
    regenerated by the workflow itself, dvc.lock re-committed (`dvc status` clean). Every hash
    and md5 then matches, so only recomputing the value from the stored predictions finds it
    (an audit that copied the stored values instead of recomputing them would pass here)."""
    from xmodseg.atomic import write_json
    from xmodseg.evaluation.evaluate import summarise_cases

    seed_file = f"results/evaluation/{DS}/oracle_mr2ct/seed0/metrics.json"
    exp_file = f"results/metrics/{DS}/oracle_mr2ct.json"
    touched = [seed_file, exp_file, "results/report", "dvc.lock"]
    _snapshot(repo, touched, tmp_path / "keep")
    try:
        doc = json.loads((repo / seed_file).read_text())
        case = doc["cases"][0]
        honest = case["dice"]["MYO"]
        forged = round(honest - 0.05 if honest >= 0.05 else honest + 0.05, 6)
        case["dice"]["MYO"] = forged
        doc["summary"]["dice"] = summarise_cases(doc["cases"], "dice", doc["class_names"])
        write_json(repo / seed_file, doc)
        jobs = snakemake(repo)  # reruns what depends on the seed file: aggregate and report
        assert "aggregate" in jobs.stderr + jobs.stdout and "report" in jobs.stderr + jobs.stdout
        assert json.loads((repo / exp_file).read_text())["dice"]["MYO"]["mean"] != json.loads((tmp_path / "keep" / exp_file).read_text())["dice"]["MYO"]["mean"]
        run(repo, str(BIN / "dvc"), "commit", "--force", "-q")
        assert json.loads(run(repo, str(BIN / "dvc"), "status", "--json").stdout or "{}") == {}

        out = audit(repo, "results/report/summary.md", ok=False).stdout
        lines = out.splitlines()
        assert lines[-1] == "90 numbers, 88 ok, 2 broken: FAIL", out[-3000:]
        broken_rows = [line for line in lines if "| BROKEN: " in line]
        assert [line.split(" | ")[:3] for line in broken_rows] == [["| oracle_mr2ct", "dice", "MYO"], ["| oracle_mr2ct", "dice", "mean"]]
        assert all(line.endswith("| BROKEN: value |") for line in broken_rows)
        broken_links = [line.split(" | ")[:2] for line in lines if " | BROKEN | " in line]
        assert {link for _, link in broken_links} == {"value"}, broken_links
        assert {f.lstrip("| ") for f, _ in broken_links} == {seed_file, exp_file, "results/report/summary.csv"}
        seed_value = next(line for line in lines if line.startswith(f"| {seed_file} | value | BROKEN |"))
        assert f"case {case['case']} dice MYO states {forged}, recomputed {honest}" in seed_value
        for f in (seed_file, exp_file, "results/report/summary.csv"):
            assert f"| {f} | dvc.lock | ok |" in out
        for link in ("data", "model", "predictions"):
            assert f"| {seed_file} | {link} | ok |" in out
    finally:
        _restore(repo, touched, tmp_path / "keep")
    audit(repo, "results/report/summary.md")  # restored: clean again


def test_pooled_numbers_are_recomputed_in_the_seed_file_and_in_the_report(repo, tmp_path):
    """GLUA's pooled block: a forged pooled Dice in a seed file, or a forged pooled cell in
    summary.md, each breaks the value link of the file that states it, naming the number."""
    seed_file = f"results/evaluation/{DS}/sifa_mr2ct/seed0/metrics.json"
    md = "results/report/summary.md"
    touched = [seed_file, md]
    _snapshot(repo, touched, tmp_path / "keep")
    try:
        doc = json.loads((repo / seed_file).read_text())
        honest = doc["pooled"]["sifa_dice"]["MYO"]
        doc["pooled"]["sifa_dice"]["MYO"] = round(honest + 0.1 if honest < 0.5 else honest - 0.1, 6)
        (repo / seed_file).write_text(json.dumps(doc, indent=2))
        out = audit(repo, md, ok=False).stdout
        value = next(line for line in out.splitlines() if line.startswith(f"| {seed_file} | value | BROKEN |"))
        assert f"pooled sifa_dice MYO states {doc['pooled']['sifa_dice']['MYO']}, recomputed {honest}" in value
        _restore(repo, [seed_file], tmp_path / "keep")
        audit(repo, md)

        text = (repo / md).read_text()
        section = text[text.index("## Pooled over test volumes"):]
        row = next(line for line in section.splitlines() if line.startswith("| sifa") and "MR→CT" in line)
        cells = row.split(" | ")
        cells[4] = "0.999 ± –"  # the first class column of the pooled Dice table
        (repo / md).write_text(text.replace(row, " | ".join(cells), 1))
        out = audit(repo, md, ok=False).stdout
        report_value = next(line for line in out.splitlines() if line.startswith("| results/report/summary.csv | value | BROKEN |"))
        assert "Pooled Dice sifa" in report_value and "0.999 ± –" in report_value
    finally:
        _restore(repo, touched, tmp_path / "keep")
    audit(repo, md)  # restored: clean again


def test_report_answers_adaptation_questions_and_the_audit_checks_its_tables(repo, tmp_path):
    """The headline (Dice, ± over what, interval, gap closed), per-volume values, training time,
    learning curves and one comparison grid per direction; a forged headline cell or per-volume value
    breaks the report's value link, naming it."""
    from PIL import Image

    report = repo / "results/report"
    md = (report / "summary.md").read_text()
    headline = md[md.index("## Headline"):].split("\n## ")[0]
    rows = {line.split(" | ")[-1].rstrip(" |"): line.split(" | ") for line in headline.splitlines() if line.startswith("| MR→CT |")}
    assert set(rows) == {"source_only_mr2ct", "oracle_mr2ct", "t2s_cyclegan_mr2ct", "sifa_mr2ct"}
    dice = {e: json.loads((repo / f"results/metrics/{DS}/{e}.json").read_text())["dice"]["mean"]["mean"] for e in rows}
    so, oracle = dice["source_only_mr2ct"], dice["oracle_mr2ct"]
    for e, cells in rows.items():  # gap closed: (Dice - source_only) / (oracle - source_only), undefined unless oracle > source_only
        assert cells[9] == (f"{100 * (dice[e] - so) / (oracle - so):.0f} %" if oracle > so else "–"), (e, cells)
        assert cells[5] == f"{dice[e]:.3f}"
    n_volumes = int(rows["oracle_mr2ct"][4])
    assert rows["oracle_mr2ct"][3] == "2" and rows["oracle_mr2ct"][7] == "seeds" and rows["sifa_mr2ct"][7] == "volumes"
    low, high = (float(x) for x in rows["oracle_mr2ct"][8].strip("[]").split(", "))  # 2 seeds: at least 2 values
    assert low <= float(rows["oracle_mr2ct"][5]) <= high
    per_case = (report / "per_case.csv").read_text().splitlines()
    assert per_case[0] == "experiment,seed,source,target,case,metric,class,value" and len(per_case) == 1 + 5 * n_volumes * 4 * 5  # 5 seed runs x volumes x 4 metrics x (4 classes + mean)
    assert "## Per test volume: Dice (class mean)" in md and "| worst |" in md
    time_rows = [line for line in md[md.index("## Training time"):].splitlines() if line.startswith("| oracle_mr2ct |")]
    assert time_rows and time_rows[0].split(" | ")[1:3] == ["2", "4"] and time_rows[0].rstrip(" |").endswith("cpu")
    assert "(4 experiments)" in md[md.index("## Learning curves"):]
    sidecar = json.loads((repo / f"results/models/{DS}/sifa_mr2ct/seed0/model.json").read_text())
    assert sidecar["loss_curve"]["iterations"][-1] == sidecar["loop"]["iterations_done"] and sidecar["loss_curve"]["terms"]
    for png in ("learning_curves.png", "grid_mr2ct.png"):
        with Image.open(report / png) as im:
            assert im.size[0] > 200 and im.size[1] > 200, png
    volumes = sorted({line.split(",")[4] for line in per_case[1:]})
    assert f"MR→CT: median volume {volumes[0]}" in md if n_volumes == 1 else "MR→CT: median volume" in md and ", worst volume" in md

    touched = ["results/report/summary.md", "results/report/per_case.csv"]
    _snapshot(repo, touched, tmp_path / "keep")
    try:
        cells = rows["sifa_mr2ct"].copy()
        cells[5] = "0.999"
        (report / "summary.md").write_text(md.replace(" | ".join(rows["sifa_mr2ct"]), " | ".join(cells), 1))
        out = audit(repo, "results/report/summary.md", ok=False).stdout
        value = next(line for line in out.splitlines() if line.startswith("| results/report/summary.csv | value | BROKEN |"))
        assert "Headline" in value and "0.999" in value
        _restore(repo, ["results/report/summary.md"], tmp_path / "keep")
        forged = [per_case[0], *per_case[1:]]
        forged[1] = ",".join([*forged[1].split(",")[:-1], "0.123456"])
        (report / "per_case.csv").write_text("\n".join(forged) + "\n")
        out = audit(repo, "results/report/summary.md", ok=False).stdout
        assert "per_case.csv line 2: states" in out and "0.123456" in out
    finally:
        _restore(repo, touched, tmp_path / "keep")
    audit(repo, "results/report/summary.md")  # restored: clean again


def test_sifa_numbers_follow_medpy_0_4_and_an_old_protocol_is_named(repo):
    """The stored sifa_* values of an honest run are medpy 0.4's (directed means averaged, Dice 0
    when both masks are empty), checked here independently of score_case; a metrics file that
    states another protocol version is refused by the value link, naming the protocol."""
    binary = pytest.importorskip("medpy.metric.binary", reason="medpy not installed")
    from xmodseg.evaluation.evaluate import PROTOCOL, load_prediction_grid

    checked = differs = 0
    for seed_file in sorted((repo / "results/evaluation" / DS).glob("*/seed*/metrics.json")):
        doc = json.loads(seed_file.read_text())
        assert doc["protocol"]["name"] == PROTOCOL["name"] == "xmodseg-eval-v2"
        for case in doc["cases"]:
            pred = load_prediction_grid(repo / case["prediction_preprocessed"])
            gt = np.load(repo / case["ground_truth_preprocessed"])
            for idx, cls in enumerate(doc["class_names"], start=1):
                p, g = pred == idx, gt == idx
                n = int(p.sum() + g.sum())
                assert case["sifa_dice"][cls] == pytest.approx(2 * (p & g).sum() / n if n else 0.0, rel=1e-12)
                if p.any() and g.any():
                    ref = float(np.mean((binary.asd(p, g), binary.asd(g, p))))  # medpy 0.4 assd
                    assert case["sifa_assd_vox"][cls] == pytest.approx(ref, rel=1e-9)
                    differs += ref != pytest.approx(binary.assd(p, g), rel=1e-9)  # medpy >= 0.5: pooled
                    checked += 1
                else:
                    assert math.isnan(case["sifa_assd_vox"][cls])
    assert checked > 0 and differs > 0  # the run really exercises where the definitions differ

    seed_file = f"results/evaluation/{DS}/oracle_mr2ct/seed0/metrics.json"
    original = (repo / seed_file).read_bytes()
    try:
        doc = json.loads(original)
        doc["protocol"]["name"] = "xmodseg-eval-v1"
        (repo / seed_file).write_text(json.dumps(doc, indent=2))
        out = audit(repo, seed_file, ok=False).stdout
        value = next(line for line in out.splitlines() if line.startswith(f"| {seed_file} | value | BROKEN |"))
        assert "evaluated under protocol xmodseg-eval-v1, this code computes xmodseg-eval-v2" in value
    finally:
        (repo / seed_file).write_bytes(original)


def test_checkpoint_values_are_recomputed_too(repo):
    """The mean over the last k checkpoints is audited like any number: a stored value of an earlier
    checkpoint that its predictions do not give breaks the value link, naming the checkpoint."""
    seed_file = f"results/evaluation/{DS}/sifa_mr2ct/seed0/metrics.json"
    original = (repo / seed_file).read_bytes()
    try:
        doc = json.loads(original)
        assert doc["checkpoints"]["iterations"] == [2] and "dice_last_k" in doc["summary"]
        case = doc["checkpoints"]["per_iteration"][0]["cases"][0]
        case["dice"]["MYO"] = round(case["dice"]["MYO"] + 0.05, 6) if case["dice"]["MYO"] < 0.9 else 0.5
        (repo / seed_file).write_text(json.dumps(doc, indent=2))
        out = audit(repo, seed_file, ok=False).stdout
        value = next(line for line in out.splitlines() if line.startswith(f"| {seed_file} | value | BROKEN |"))
        assert f"checkpoint 2 case {case['case']} dice MYO" in value
        broken = [line for line in out.splitlines() if "| BROKEN: " in line]  # all of the file's numbers: its dvc.lock md5
        by_value = [line for line in broken if "value" in line.split("BROKEN:")[1]]
        assert by_value and all(line.split(" | ")[1] == "dice_last_k" for line in by_value), broken
    finally:
        (repo / seed_file).write_bytes(original)


def test_fresh_clone_restores_and_audits_without_retraining(repo, tmp_path):
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    assert not (clone / "results/models").exists()
    out = xmodseg(clone, "restore", "--configfile", CONFIG)
    assert "nothing to do" in out.stdout
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(snakemake(clone, "-n"))
    # Nothing ran: every executed job writes a benchmark record, training writes checkpoints.
    assert not (clone / "results/benchmarks").exists() and not (clone / "results/checkpoints").exists()
    out = audit(clone, "results/report/summary.md").stdout
    assert "90 numbers, 90 ok, 0 broken: PASS" in out
    # A restored workspace with a stale file is not blessed by --touch.
    (clone / f"results/metrics/{DS}/sifa_mr2ct.json").write_text("{}\n")
    refused = xmodseg(clone, "restore", "--no-pull", "--configfile", CONFIG, ok=False)
    assert refused.returncode == 2 and "dvc status" in refused.stderr and "refusing" in refused.stderr


def test_record_refuses_a_dirty_workspace_or_unfinished_run_then_compares_two_runs(repo):
    rule = repo / "workflow/rules/report.smk"
    original = rule.read_text()
    rule.write_text(original + "\n# local edit\n")
    out = xmodseg(repo, "record", "--configfile", CONFIG, ok=False)
    assert out.returncode == 2 and "uncommitted changes" in out.stderr and "workflow/rules/report.smk" in out.stderr
    rule.write_text(original)
    # A new hyperparameter, committed but not yet run: Snakemake still has work.
    write_config(repo, oracle_iterations=6)
    run(repo, "git", "commit", "-q", "-am", "oracle: 6 iterations")
    out = xmodseg(repo, "record", "--configfile", CONFIG, ok=False)
    assert out.returncode == 2 and "Snakemake still has work" in out.stderr and "train" in out.stderr
    snakemake(repo)
    xmodseg(repo, "record", "--configfile", CONFIG)
    dvc = str(BIN / "dvc")
    params = run(repo, dvc, "params", "diff", "HEAD~2", "HEAD", "--md").stdout
    assert "experiments.oracle_mr2ct.train.iterations" in params and "| 4 " in params and "| 6 " in params
    metrics = run(repo, dvc, "metrics", "diff", "HEAD~2", "HEAD", "--md").stdout
    assert f"results/metrics/{DS}/oracle_mr2ct.json" in metrics and "dice.MYO.mean" in metrics
    assert f"results/metrics/{DS}/sifa_mr2ct.json" not in metrics  # unchanged experiments do not show
    shown = run(repo, dvc, "metrics", "show", "--md").stdout
    assert "dice.mean.mean" in shown and f"results/metrics/{DS}/sifa_mr2ct.json" in shown
    audit(repo, "results/report/summary.md")
