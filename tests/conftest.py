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
