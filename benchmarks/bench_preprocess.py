"""Time preprocessing at the SIFA protocol scale (1 mm, 256 x 256 coronal) on volumes of real size.

Real MM-WHS data are not on this machine, so the volumes are made here with MM-WHS-like sizes and
spacings (CT about 512 x 512 x 256 at 0.4 x 0.4 x 0.6 mm; MR about 320 x 320 x 160 at 0.9 x 0.9 x
1.0 mm) and the registry's raw label values. Prints seconds per case (reading, resampling,
cropping, normalising, writing the cache) and the peak memory of the process, the figures the
README uses to estimate a real data set's preprocessing time.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import yaml

from xmodseg.preprocess import PreprocessConfig, preprocess_modality
from xmodseg.registry import dataset_from_config, load_registry

SHAPES = {"ct": ((256, 512, 512), (0.4, 0.4, 0.6)), "mr": ((160, 320, 320), (0.9, 0.9, 1.0))}  # zyx, xyz


def write_case(root: Path, modality: str, case: str, seed: int) -> None:
    """A noisy volume with four nested blobs carrying MM-WHS's raw label values."""
    shape, spacing = SHAPES[modality]
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    r = ((z - shape[0] / 2) / shape[0]) ** 2 + ((y - shape[1] / 2) / shape[1]) ** 2 + ((x - shape[2] / 2) / shape[2]) ** 2
    label = np.select([r < 0.005, r < 0.01, r < 0.02, r < 0.04], [820, 500, 420, 205], 0).astype(np.int16)
    base = -800.0 if modality == "ct" else 50.0
    image = (base + label * 1.5 + rng.normal(0, 30, shape)).astype(np.float32)
    for arr, name in ((image, "image"), (label, "label")):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(spacing)
        path = root / modality / f"{case}_{name}.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(img, str(path), useCompression=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=4, help="cases per modality (one is a test case)")
    ap.add_argument("--config", default="config/mmwhs_sifa.yaml", help="workflow config whose `preprocess` block to time")
    args = ap.parse_args()
    cfg = PreprocessConfig.from_dict(yaml.safe_load(Path(args.config).read_text())["preprocess"])
    labels = load_registry("config/datasets.yaml")["mmwhs"]["labels"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cases = [str(1001 + i) for i in range(args.n)]
        modalities = {
            m: {"kind": m, "image": f"{m}/{{case}}_image.nii.gz", "label": f"{m}/{{case}}_label.nii.gz", "cases": cases, "test": cases[-1:]}
            for m in SHAPES
        }
        spec = dataset_from_config("bench", {"root": str(root / "raw"), "source": {"kind": "import"}, "labels": labels, "modalities": modalities})
        for m in SHAPES:
            for i, c in enumerate(cases):
                write_case(root / "raw", m, c, i)
            t0 = time.perf_counter()
            preprocess_modality(spec, m, cfg, root / f"cache_{m}")
            per_case = (time.perf_counter() - t0) / len(cases)
            slices = len(list((root / f"cache_{m}").rglob("*.npy")))
            print(f"{m}: {SHAPES[m][0][::-1]} voxels at {SHAPES[m][1]} mm -> {per_case:.1f} s/case, {len(cases)} cases, {slices} cache arrays")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory {peak_mb:.0f} MB (this process, making the volumes included)")


if __name__ == "__main__":
    main()
