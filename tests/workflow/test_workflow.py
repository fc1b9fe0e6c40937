"""End-to-end: the real Snakemake workflow on a tiny synthetic config in a temporary folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk
import yaml

from tests.conftest import make_tiny_project

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("slurm_controller")]  # slurm_controller: see tests/conftest.py

TRAIN = {"iterations": 4, "batch_size": 4, "checkpoint_every": 2, "log_every": 1, "network": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the `xmodseg` command
    return env


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/tiny.yaml", *args]
    proc = subprocess.run(cmd, cwd=workdir, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def job_counts(output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run."""
    counts: dict[str, int] = {}
    block = output.split("Job stats:", 1)[1] if "Job stats:" in output else ""
    for line in block.splitlines()[3:]:
        m = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    counts.pop("total", None)
    return counts


TRANSLATE = {"iterations": 3, "batch_size": 2, "ngf": 4, "ndf": 4, "n_blocks": 1, "d_layers": 2, "skip": True, "checkpoint_every": 1}
SIFA = {"iterations": 3, "batch_size": 2, "width": 0.125, "ndf": 4, "d_layers": 2, "pool_size": 2, "generator": {"ngf": 4, "n_blocks": 1}, "checkpoint_every": 1}
DISENTANGLE = {"iterations": 3, "batch_size": 2, "dim": 4, "n_res": 1, "ndf": 4, "d_layers": 2, "checkpoint_every": 1}


def write_config(workdir: Path, iterations_oracle: int = 4, iterations_t2s: int = 4) -> None:
    cfg = {
        "registry": "config/tiny_datasets.yaml",
        "dataset": "tiny_synth",
        "preprocess": {"spacing": [5.0, 5.0, 5.0], "slice_axis": "coronal", "crop_size": [32, 32]},
        "translators": {
            "cyclegan_mr2ct": {"translator": "cyclegan", "source": "mr", "target": "ct", "seeds": [0], "train": TRANSLATE},
            "disentangled_ct2mr": {"translator": "disentangled", "source": "ct", "target": "mr", "seeds": [0], "train": DISENTANGLE},
        },
        "experiments": {
            "source_only_mr2ct": {"method": "source_only", "source": "mr", "target": "ct", "seeds": [0], "train": TRAIN},
            "oracle_mr2ct": {"method": "oracle", "source": "mr", "target": "ct", "seeds": [0], "train": {**TRAIN, "iterations": iterations_oracle}},
            "t2s_cyclegan_mr2ct": {
                "method": "translate_then_segment",
                "source": "mr",
                "target": "ct",
                "translator": "cyclegan_mr2ct",
                "seeds": [0],
                "train": {**TRAIN, "iterations": iterations_t2s},
            },
            "t2s_disentangled_ct2mr": {
                "method": "translate_then_segment",
                "source": "ct",
                "target": "mr",
                "translator": "disentangled_ct2mr",
                "seeds": [0],
                "train": TRAIN,
            },
            # SIFA both directions: MR->CT warm-starts G_t from the CycleGAN translator
            "sifa_mr2ct": {"method": "sifa", "source": "mr", "target": "ct", "inputs": {"warm_start": "cyclegan_mr2ct"}, "seeds": [0], "train": SIFA},
            "sifa_ct2mr": {"method": "sifa", "source": "ct", "target": "mr", "seeds": [0], "train": SIFA},
        },
        "report": {"title": "tiny"},
    }
    (workdir / "config" / "tiny.yaml").write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    wd = make_tiny_project(tmp_path_factory.mktemp("workflow") / "project", {}, "unused.yaml")
    write_config(wd)
    snakemake(wd)
    return wd


def test_outputs_exist_and_are_consistent(workdir):
    report = workdir / "results" / "report"
    for name in ("summary.md", "summary.csv", "dice_bar.png", "overlay_source_only_mr2ct.png", "overlay_oracle_mr2ct.png", "overlay_t2s_cyclegan_mr2ct.png"):
        assert (report / name).stat().st_size > 0, name
    md = (report / "summary.md").read_text()
    assert "| source_only | MR→CT |" in md and "| oracle | MR→CT |" in md
    assert "| translate_then_segment (cyclegan) | MR→CT |" in md and "| translate_then_segment (disentangled) | CT→MR |" in md
    assert "## Image translation" in md and "cyclegan_mr2ct (cyclegan)" in md and "disentangled_ct2mr (disentangled)" in md
    assert "| sifa | MR→CT |" in md and "| sifa | CT→MR |" in md
    sifa = json.loads((workdir / "results/models/tiny_synth/sifa_mr2ct/seed0/model.json").read_text())
    warm = sifa["inputs"]["warm_start"]
    assert warm["path"] == "results/translators/tiny_synth/cyclegan_mr2ct/seed0/model.pt"
    assert warm["sha256"] == json.loads((workdir / "results/translators/tiny_synth/cyclegan_mr2ct/seed0/model.json").read_text())["model_sha256"]
    assert sifa["uses_target_labels_for_training"] is False and sifa["data"]["target"]["labels_used"] is False
    assert json.loads((workdir / "results/models/tiny_synth/sifa_ct2mr/seed0/model.json").read_text())["inputs"] == {}
    losses = [json.loads(line) for line in (workdir / "logs/train/tiny_synth/sifa_ct2mr/seed0.jsonl").read_text().splitlines()]
    assert {"g_total", "d_t", "seg_main", "seg_aux", "u_total", "d_s_main", "d_s_aux", "d_p1", "d_p2"} <= set(losses[-1])
    # The translators' previews and anatomy checks exist (anatomy needs the CT oracle: only MR->CT).
    tr = workdir / "results/translators/tiny_synth"
    assert (tr / "cyclegan_mr2ct/seed0/preview.png").stat().st_size > 0
    assert (tr / "cyclegan_mr2ct/seed0/anatomy.json").is_file() and not (tr / "disentangled_ct2mr/seed0/anatomy.json").exists()
    t2s = json.loads((workdir / "results/models/tiny_synth/t2s_cyclegan_mr2ct/seed0/model.json").read_text())
    assert t2s["data"]["source"]["cache"] == "data/translated/tiny_synth/cyclegan_mr2ct/seed0"
    metrics = json.loads((workdir / "results/evaluation/tiny_synth/oracle_mr2ct/seed0/metrics.json").read_text())
    assert [c["case"] for c in metrics["cases"]] == ["1003"]
    assert set(metrics["summary"]["dice"]) == {"MYO", "LAC", "LVC", "AA", "mean"}
    prov = metrics["provenance"]
    for key in ("git", "versions", "config", "config_sha256", "seed", "device", "data_manifest_sha256", "model_sha256"):
        assert key in prov, key
    # The prediction is on the original CT grid (viewable on top of the scan).
    pred = sitk.ReadImage(str(workdir / metrics["cases"][0]["prediction"]))
    img = sitk.ReadImage(str(workdir / "data/raw/tiny_synth/ct_train/ct_train_1003_image.nii.gz"))
    assert pred.GetSize() == img.GetSize()
    assert pred.GetSpacing() == pytest.approx(img.GetSpacing())
    assert pred.GetDirection() == pytest.approx(img.GetDirection())
    assert pred.GetOrigin() == pytest.approx(img.GetOrigin())
    # The oracle trained on CT labels; the source-only model never saw them.
    side = json.loads((workdir / "results/models/tiny_synth/source_only_mr2ct/seed0/model.json").read_text())
    assert side["uses_target_labels_for_training"] is False and side["data"]["target"] is None
    agg = json.loads((workdir / "results/metrics/tiny_synth/oracle_mr2ct.json").read_text())
    assert agg["seeds"] == 1 and "MYO" in agg["dice"]
    # Every rule left a benchmark record.
    assert (workdir / "results/benchmarks/train/tiny_synth/oracle_mr2ct/seed0.tsv").is_file()


def test_second_dry_run_has_nothing_to_do(workdir):
    out = snakemake(workdir, "-n")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_changing_a_segmenter_reuses_the_translated_cache(workdir):
    translator = workdir / "results/translators/tiny_synth/cyclegan_mr2ct/seed0/model.pt"
    before = translator.stat().st_mtime_ns
    write_config(workdir, iterations_t2s=5)
    out = snakemake(workdir, "-n")
    assert job_counts(out.stdout) == {"train": 1, "evaluate": 1, "aggregate": 1, "report": 1, "all": 1}
    assert "exp=t2s_cyclegan_mr2ct" in out.stdout and "rule translate:" not in out.stdout
    snakemake(workdir)
    assert translator.stat().st_mtime_ns == before
    write_config(workdir)  # back to the original config for the next test
    snakemake(workdir)


def test_changing_one_experiment_reruns_only_its_jobs(workdir):
    other_model = workdir / "results/models/tiny_synth/source_only_mr2ct/seed0/model.pt"
    before = other_model.stat().st_mtime_ns
    write_config(workdir, iterations_oracle=5)
    out = snakemake(workdir, "-n")
    # the oracle also feeds the translator's (evaluation-only) anatomy check
    assert job_counts(out.stdout) == {"train": 1, "evaluate": 1, "aggregate": 1, "translation_check": 1, "report": 1, "all": 1}
    assert "oracle_mr2ct" in out.stdout and "exp=source_only_mr2ct" not in out.stdout
    snakemake(workdir)
    assert other_model.stat().st_mtime_ns == before
    side = json.loads((workdir / "results/models/tiny_synth/oracle_mr2ct/seed0/model.json").read_text())
    assert side["loop"]["iterations_done"] == 5
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(snakemake(workdir, "-n"))


def test_lint_passes(workdir):
    snakemake(workdir, "--lint")
