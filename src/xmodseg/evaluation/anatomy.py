"""Evaluation-only check that translation keeps anatomy: the target oracle segments translated
source volumes, and its prediction is compared with the *source* labels (3D Dice per volume on
the preprocessed grid). Uses target labels only through the already-trained oracle, never to
train or select the translator."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from xmodseg.artifacts.cache import CaseRecord
from xmodseg.atomic import write_json
from xmodseg.evaluation import metrics
from xmodseg.evaluation.inference import predict_slices
from xmodseg.hashing import sha256_file
from xmodseg.nn.networks import load_model
from xmodseg.preprocess.pipeline import load_manifest
from xmodseg.training.device import choose_device


def _dice_per_case(net: Any, cache: Path, cases: list[CaseRecord], class_names: list[str], device: Any) -> list[dict[str, float]]:
    out = []
    for rec in cases:
        pred = predict_slices(net, np.load(cache / rec.image, mmap_mode="r"), device)
        per = metrics.per_class_metrics(pred, np.load(cache / rec.label), class_names, spacing=(1.0, 1.0, 1.0))
        out.append({c: v["dice"] for c, v in per.items()})
    return out


def anatomy_check(
    translated_cache: str | os.PathLike[str], source_cache: str | os.PathLike[str], oracle_model: str | os.PathLike[str], out: str | os.PathLike[str]
) -> dict[str, Any]:
    device = choose_device("auto")
    net, _ = load_model(str(oracle_model), device)
    manifest = load_manifest(translated_cache)
    class_names = manifest.class_names
    cases = manifest.cases_in("test")
    result: dict[str, Any] = {"cases": [c.case for c in cases], "oracle_model": str(oracle_model), "oracle_model_sha256": sha256_file(oracle_model)}
    for key, cache in (("translated", Path(translated_cache)), ("untranslated", Path(source_cache))):
        per_case = _dice_per_case(net, cache, cases, class_names, device)
        summary = {c: metrics.summarise([p[c] for p in per_case]) for c in class_names[1:]}
        summary["mean"] = metrics.summarise([float(np.mean([p[c] for c in class_names[1:]])) for p in per_case])
        result[key] = {"per_case": per_case, "summary": summary}
    write_json(out, result)
    return result
