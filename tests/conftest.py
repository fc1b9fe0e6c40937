"""Shared fixtures: small synthetic volumes written to temporary folders (no downloads)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "msd-spleen-ct-crop"


def write_volume(
    path: Path,
    array: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    direction: Sequence[float] = (1, 0, 0, 0, 1, 0, 0, 0, 1),
) -> Path:
    """Write a [z, y, x] array as NIfTI with the given geometry."""
    img = sitk.GetImageFromArray(array)
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(o) for o in origin])
    img.SetDirection([float(d) for d in direction])
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))
    return path


def blob_case(rng: np.random.Generator, shape=(24, 28, 28), kind: str = "ct", scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A body ellipsoid with two labelled spheres (raw values 205 and 500) and noise."""
    z, y, x = np.indices(shape)
    c = np.array(shape) / 2
    body = ((z - c[0]) / (shape[0] * 0.45)) ** 2 + ((y - c[1]) / (shape[1] * 0.45)) ** 2 + ((x - c[2]) / (shape[2] * 0.45)) ** 2 < 1
    label = np.zeros(shape, np.uint16)
    off = rng.integers(-2, 3, size=3)
    s1 = ((z - c[0] - off[0]) ** 2 + (y - c[1] + 4) ** 2 + (x - c[2] - off[2]) ** 2) < 16
    s2 = ((z - c[0]) ** 2 + (y - c[1] - 5 - off[1]) ** 2 + (x - c[2]) ** 2) < 9
    label[s1] = 205
    label[s2] = 500
    if kind == "ct":
        img = np.where(body, 40.0, -1000.0) + np.where(label > 0, 250.0, 0.0) + rng.normal(0, 10, shape)
    else:
        img = (np.where(body, 0.4, 0.0) + np.where(label > 0, 0.6, 0.0)) * scale + np.abs(rng.normal(0, 0.02 * scale, shape))
    return img.astype(np.float32), label


@pytest.fixture
def tiny_dataset(tmp_path: Path):
    """A registry with one data set of 4 CT + 4 MR blob cases (1 test case each)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "raw"
    for mod, spacing in (("ct", (1.0, 1.0, 1.0)), ("mr", (1.2, 1.2, 2.0))):
        for i, case in enumerate(["1", "2", "3", "4"]):
            img, lab = blob_case(rng, kind=mod, scale=100.0 * (i + 1))
            write_volume(root / mod / f"{case}_image.nii.gz", img, spacing)
            write_volume(root / mod / f"{case}_label.nii.gz", lab, spacing)
    registry = {
        "datasets": {
            "tiny": {
                "root": str(root),
                "source": {"kind": "local"},
                "labels": {"classes": ["background", "MYO", "LAC", "LVC", "AA"], "mapping": {0: 0, 205: 1, 420: 2, 500: 3, 820: 4}},
                "modalities": {
                    m: {"kind": m, "image": m + "/{case}_image.nii.gz", "label": m + "/{case}_label.nii.gz", "cases": ["1", "2", "3", "4"], "test": ["4"]}
                    for m in ("ct", "mr")
                },
            }
        }
    }
    reg_path = tmp_path / "datasets.yaml"
    reg_path.write_text(yaml.safe_dump(registry))
    return reg_path


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules of tiny networks: intra-op threads only cost time (a lot when other jobs share the cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY_PHANTOM = {
    "ct_spacing_mm": [2.5, 2.5, 2.5],
    "ct_fov_mm": [170.0, 170.0, 160.0],
    "mr_spacing_mm": [3.0, 3.0, 6.0],
    "mr_fov_mm": [190.0, 180.0, 168.0],
}


def make_tiny_project(dest: Path, config: dict, name: str = "tiny.yaml", extra: tuple[str, ...] = ()) -> Path:
    """A copy of the workflow with a 3-case synthetic data set (`tiny_synth`) and `config/<name>`."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for item in ("Snakefile", "workflow", "config", "envs", "profiles", *extra):
        src = REPO / item
        (shutil.copytree(src, dest / item, ignore=ignore) if src.is_dir() else shutil.copy(src, dest / item))
    registry = yaml.safe_load((REPO / "config" / "datasets.yaml").read_text())
    entry = registry["datasets"]["synthetic"]
    entry["root"] = "data/raw/tiny_synth"
    entry["source"]["params"] = TINY_PHANTOM
    for mod in entry["modalities"].values():
        mod["cases"], mod["test"] = "1001-1003", [1003]
    (dest / "config" / "tiny_datasets.yaml").write_text(yaml.safe_dump({"datasets": {"tiny_synth": entry}}))
    (dest / "config" / name).write_text(yaml.safe_dump({"registry": "config/tiny_datasets.yaml", "dataset": "tiny_synth", **config}))
    return dest


@pytest.fixture(scope="session")
def slurm_controller():
    """Single-node SLURM, up for the rest of the session where it can run (tests/slurm/slurm_cluster.py).
    Opt-in: tests/slurm needs it, and so does every test module that starts Snakemake (they say
    `pytestmark = pytest.mark.usefixtures("slurm_controller")`), because with SLURM's client tools
    installed every Snakemake start asks the controller for its config (the executor plugin) and
    stalls ~10 s when none answers. Yields None, or why SLURM is off."""
    from tests.slurm import slurm_cluster

    reason = slurm_cluster.unavailable_reason()
    if reason is not None:
        yield reason
        return
    started = slurm_cluster.start()
    try:
        yield None
    finally:
        if started:  # daemons another session started are that session's to stop
            slurm_cluster.stop()


@pytest.fixture(scope="session")
def gpu_local_run(tmp_path_factory) -> Path:
    """The tiny GPU workflow run locally with --resources gpu=2 (shared by the GPU and SLURM tests)."""
    from tests.workflow.gpu_workflow import run_local

    return run_local(tmp_path_factory.mktemp("gpu") / "project")
