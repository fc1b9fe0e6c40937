"""CaDIS end to end on a tiny folder laid out like the release (VideoNN/Images|Labels/<frame>.png,
RGB frames, label PNGs with CaDIS class ids): the shipped config/cadis_semi.yaml with only its data
path, registry and scale changed; real Snakemake imports the frames, keeps their 3 channels through
preprocessing, trains supervised_subset and co_da on RGB and reports mIoU next to Dice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from tests.conftest import REPO, make_tiny_project
from tests.workflow.test_workflow import snakemake

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("slurm_controller")]  # slurm_controller: see tests/conftest.py

BIN = Path(sys.executable).parent
VIDEOS = {1: "train", 3: "train", 2: "test"}  # CaDIS's test videos include 2
FRAMES = (90, 100)
H, W = 36, 52


def cadis_frame(video: int, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """An RGB frame and its CaDIS label: skin (5) around a cornea (6) with iris (4) and pupil (0)
    discs, and an instrument (12) bar; colours differ per class, positions per frame."""
    yy, xx = np.mgrid[:H, :W]
    cy, cx = H // 2 + frame % 3, W // 2 + video
    r = np.hypot(yy - cy, xx - cx)
    label = np.full((H, W), 5, np.uint8)
    label[r < 15] = 6
    label[r < 10] = 4
    label[r < 5] = 0
    label[3:7, 5 + frame % 7 : 30] = 12
    colours = {5: (200, 150, 120), 6: (90, 90, 110), 4: (120, 70, 40), 0: (10, 10, 10), 12: (220, 220, 230)}
    rgb = np.zeros((H, W, 3), np.uint8)
    for k, c in colours.items():
        rgb[label == k] = c
    noise = np.random.default_rng(video * 1000 + frame).integers(0, 20, size=rgb.shape, dtype=np.uint8)
    return np.clip(rgb.astype(int) + noise, 0, 255).astype(np.uint8), label


def write_release(root: Path) -> list[str]:
    cases = []
    for video in VIDEOS:
        for frame in FRAMES:
            case = f"Video{video}_frame{frame:06d}"
            rgb, label = cadis_frame(video, frame)
            for sub, arr, vector in (("Images", rgb, True), ("Labels", label, False)):
                (root / f"Video{video:02d}" / sub).mkdir(parents=True, exist_ok=True)
                sitk.WriteImage(sitk.GetImageFromArray(arr, isVector=vector), str(root / f"Video{video:02d}" / sub / f"{case}.png"))
            cases.append(case)
    return cases


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("cadis")
    wd = make_tiny_project(base / "project", {}, "unused.yaml")
    cases = write_release(base / "CaDIS")
    registry = yaml.safe_load((REPO / "config" / "datasets.yaml").read_text())["datasets"]["cadis"]
    registry["root"] = "data/raw/tiny_cadis"
    (wd / "config" / "tiny_frames.txt").write_text("# tiny CaDIS\n" + "\n".join(cases) + "\n")
    registry["modalities"]["rgb"]["cases"] = {"file": "tiny_frames.txt"}
    registry["modalities"]["rgb"]["test"] = [c for c in cases if c.startswith("Video2_")]
    (wd / "config" / "tiny_cadis.yaml").write_text(yaml.safe_dump({"datasets": {"tiny_cadis": registry}}))
    cfg = yaml.safe_load((REPO / "config" / "cadis_semi.yaml").read_text())
    cfg.update(registry="config/tiny_cadis.yaml", dataset="tiny_cadis", data_path={"rgb": str(base / "CaDIS")})
    cfg["preprocess"]["crop_size"] = [16, 32]
    small = {"iterations": 3, "batch_size": 2, "checkpoint_every": 3, "log_every": 1, "network": {"in_channels": 3, "channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}}
    for name, exp in cfg["experiments"].items():
        exp["train"] = {**{k: v for k, v in exp["train"].items() if k in ("unlabelled_batch_size", "lambda_max", "rampup", "ensemble", "align", "filter")}, **small}
        if "labels" in exp:
            exp["labels"] = {"target": "subset", "fraction": 0.5, "seed": 0}
        if name.startswith("cps"):
            exp["train"]["unlabelled_batch_size"] = 2
    cfg["experiments"] = {k: v for k, v in cfg["experiments"].items() if k in ("supervised_subset_cadis", "co_da_cadis", "oracle_cadis")}
    cfg["report"]["comparisons"] = [["co_da_cadis", "supervised_subset_cadis"]]
    cfg["reference"] = {"co_da_cadis": cfg["reference"]["co_da_cadis"]}
    (wd / "config" / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(wd)
    return wd


def test_frames_keep_three_channels_and_their_video_split(workdir):
    raw = sitk.ReadImage(str(workdir / "data/raw/tiny_cadis/frames/Video1_frame000090_image.nii.gz"))
    assert raw.GetNumberOfComponentsPerPixel() == 3
    cache = workdir / "data/prepared/tiny_cadis/rgb"
    manifest = json.loads((cache / "manifest.json").read_text())
    by_case = {c["case"]: c for c in manifest["cases"]}
    assert {c for c, r in by_case.items() if r["split"] == "test"} == {"Video2_frame000090", "Video2_frame000100"}
    image = np.load(cache / by_case["Video1_frame000090"]["image"])
    assert image.shape == (1, 3, 16, 32) and image.dtype == np.float32
    label = np.load(cache / by_case["Video1_frame000090"]["label"])
    assert label.shape == (1, 16, 32) and set(np.unique(label)) <= {1, 5, 6, 7, 8} and 0 not in np.unique(label)  # CaDIS 0 (pupil) -> 1
    stats = json.loads((cache / "norm_stats.json").read_text())
    assert stats["kind"] == "rgb" and set(stats["cases"]) == {"Video1_frame000090", "Video1_frame000100", "Video3_frame000090", "Video3_frame000100"}


def test_rgb_models_are_evaluated_on_the_original_frames_with_miou(workdir):
    model = json.loads((workdir / "results/models/tiny_cadis/co_da_cadis/seed0/model.json").read_text())
    assert model["labels"]["n_labelled"] == 2 and model["labels"]["n_train"] == 4
    metrics = json.loads((workdir / "results/evaluation/tiny_cadis/co_da_cadis/seed0/metrics.json").read_text())
    assert metrics["class_names"] == ["pupil", "surgical_tape", "hand", "eye_retractors", "iris", "skin", "cornea", "instrument"]
    pred = sitk.ReadImage(str(workdir / metrics["cases"][0]["prediction"]))
    assert pred.GetSize() == (W, H, 1)  # back on the 52 x 36 frame
    iou = metrics["pooled"]["iou"]
    assert set(iou) == {*metrics["class_names"], "mean"} and all(0.0 <= v <= 1.0 for v in iou.values())
    # surgical tape (value 2) is absent from every test frame: its IoU is 1 exactly when no pixel is predicted as it
    predicted = [np.load(workdir / c["prediction_preprocessed"])["prediction"] for c in metrics["cases"]]
    assert iou["surgical_tape"] == (0.0 if any((p == 2).any() for p in predicted) else 1.0)
    summary = (workdir / "results/report/summary.md").read_text()
    assert "### Pooled IoU (mean = mIoU)" in summary and "mIoU 0.8515" in summary


def test_the_audit_recomputes_the_rgb_numbers_and_miou(workdir):
    """Not recorded into DVC here, so only the value checks are read: every summary cell and the
    pooled IoU of the seed file are recomputed from the stored predictions."""
    proc = subprocess.run([str(BIN / "xmodseg"), "audit", "results/report/summary.md"], cwd=workdir, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    value_rows = [line for line in out.splitlines() if "| value |" in line]
    assert value_rows and all("| ok |" in line for line in value_rows), out[-3000:]
    assert "| results/evaluation/tiny_cadis/co_da_cadis/seed0/metrics.json | value | ok |" in out, out[-3000:]
    # no DVC record and no git here: the values hold, nothing is broken, nothing is recorded either
    assert proc.returncode == 3 and out.startswith("UNRECORDED: all ") and "run `xmodseg record`" in out.splitlines()[0]
    assert out.splitlines()[-1] == "108 numbers, 0 ok, 0 broken, 108 unrecorded: UNRECORDED" and "| UNRECORDED: dvc.lock, git |" in out
    brief = subprocess.run([str(BIN / "xmodseg"), "audit", "results/report/summary.md", "--brief"], cwd=workdir, capture_output=True, text=True, timeout=300).stdout
    assert "## Reported numbers" not in brief and "| value | ok |" not in brief and "| dvc.lock | UNRECORDED |" in brief
