"""Typed on-disk contracts (xmodseg.artifacts): every file written by the real writers reads back and
is written again byte for byte; a missing or unknown key is an error naming the file and the key;
metric keys come from one place."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.unit.datasets.test_tfrecord import example, release_slices, write_tfrecord
from xmodseg.artifacts.cache import MANIFEST, CacheManifest, CaseRecord
from xmodseg.artifacts.metrics import CASE_METRICS, LAST_K, METRIC_KEYS, ExperimentMetrics, MetricsDoc
from xmodseg.artifacts.model_file import ModelFile, RefusedModelFileError, Sidecar
from xmodseg.errors import InputDataError
from xmodseg.preprocess import PreprocessConfig, preprocess_modality
from xmodseg.registry import dataset_from_config, load_dataset

CFG = {"spacing": [2.0, 2.0, 2.0], "slice_axis": "axial", "crop_size": [16, 16]}
PARAMS = {
    "iterations": 4,
    "batch_size": 4,
    "lr": 1e-3,
    "checkpoint_every": 2,
    "snapshots": 2,
    "log_every": 1,
    "network": {"channels": [4, 8], "strides": [2], "num_res_units": 1},
}


def _resaved(tmp_path: Path, path: Path, cls) -> bytes:
    out = tmp_path / "resaved" / path.name
    cls.load(path).save(out)
    return out.read_bytes()


def _keys(path: Path) -> tuple[list[str], list[str]]:
    doc = json.loads(path.read_text())
    return list(doc), list(doc["cases"][-1])


# ---- cache manifests ----------------------------------------------------------------------------


@pytest.mark.parametrize("in_plane", ["fixed_spacing", "whole_slice"])
def test_preprocessing_manifest_reads_back_and_writes_the_same_bytes(tiny_dataset, tmp_path, in_plane):
    spec = load_dataset(tiny_dataset, "tiny")
    cache = preprocess_modality(spec, "ct", PreprocessConfig.from_dict({**CFG, "in_plane": in_plane}), tmp_path / "cache")
    path = cache / MANIFEST
    assert _resaved(tmp_path, path, CacheManifest) == path.read_bytes()
    top, case = _keys(path)  # the layout the writer has always used (what the recorded sha256s cover)
    spacing = ["slice_spacing"] if in_plane == "fixed_spacing" else []
    assert top == ["format", "dataset", "modality", "kind", "class_names", "slice_axis", *spacing, "intensity_space", "preprocess", "norm_stats_sha256", "cases"]
    assert case == [
        "case", "split", "source_image", "source_label", "source_image_sha256", "source_label_sha256", "original_geometry", "resampled_geometry",
        "crop_start_zyx", "crop_extent_zyx", "slice_spacing", "label_crop_loss", "image", "label", "shape", "image_sha256", "label_sha256", "classes_present",
    ]  # fmt: skip
    m = CacheManifest.load_dir(cache)
    assert [c.case for c in m.cases_in("test")] == ["4"] and m.image_space == "zscore" and m.cases[0].has_source


def _release(tmp_path: Path) -> tuple[Path, Path]:
    """A SIFA release cache (tfrecord training slices, one test volume) and a tfrecords-only cache."""
    import SimpleITK as sitk

    from xmodseg.datasets.sifa_release import build_cache
    from xmodseg.datasets.tfrecord import tfrecords_to_cache

    rng = np.random.default_rng(1)
    files = [write_tfrecord(tmp_path / f"s{i}.tfrecords", [example(*s) for s in release_slices(rng, 2)]) for i in range(2)]
    spec = dataset_from_config(
        "rel",
        {
            "root": str(tmp_path / "raw"),
            "source": {"kind": "sifa_release"},
            "labels": {"classes": ["background", "MYO", "LAC", "LVC", "AA"], "mapping": {i: i for i in range(5)}, "ignore": [5]},
            "modalities": {"ct": {"kind": "ct", "image": "{case}_image.nii.gz", "label": "{case}_label.nii.gz", "cases": [1003], "test": [1003]}},
        },
    )
    for arr, path in ((rng.normal(size=(4, 9, 8)).astype(np.float32), spec.image_path("ct", "1003")), (rng.integers(0, 6, size=(4, 9, 8)).astype(np.uint8), spec.label_path("ct", "1003"))):
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    release = build_cache(spec, "ct", files, tmp_path / "release", slices_per_case=3)
    tfrecords_to_cache(files, tmp_path / "tf", dataset="rel", modality="ct", slices_per_case=3)
    return release, tmp_path / "tf"


def test_release_and_tfrecord_manifests_read_back_and_write_the_same_bytes(tmp_path):
    release, tf = _release(tmp_path)
    for cache in (release, tf):
        assert _resaved(tmp_path / cache.name, cache / MANIFEST, CacheManifest) == (cache / MANIFEST).read_bytes()
    top, case = _keys(release / MANIFEST)
    assert top[5:11] == ["slice_axis", "preprocess", "intensity_space", "intensity", "norm_stats_sha256", "training_tfrecords"]  # SIFA's order
    assert case[-8:] == ["ignored_label_voxels", "image", "label", "shape", "image_sha256", "label_sha256", "classes_present", "ignored_pixels"]
    m = CacheManifest.load_dir(release)
    assert [c.split for c in m.cases] == ["train", "train", "test"] and not m.cases[0].has_source and m.cases[-1].has_source
    assert m.test_ignored_label_voxels == {"1003": m.cases[-1].ignored_label_voxels}


def test_translated_manifest_is_the_source_manifest_plus_what_translation_adds(tiny_dataset, tmp_path):
    """The old writer built {**source manifest, intensity_space, cases with new image sha256s,
    translated, source_manifest_sha256}: the typed one gives that dict, key for key in order."""
    from xmodseg.hashing import sha256_file
    from xmodseg.training.intensity import UnitRange
    from xmodseg.translation.apply import translate_cache

    spec = load_dataset(tiny_dataset, "tiny")
    src = preprocess_modality(spec, "mr", PreprocessConfig.from_dict(CFG), tmp_path / "mr")
    unit = UnitRange(mode="percentile", low=-3.0, high=3.0)
    out = translate_cache(lambda x: -x, src, tmp_path / "translated", unit, unit, torch.device("cpu"), {"translator": "t", "seed": 0}, "sifa_unit")
    before = json.loads((src / MANIFEST).read_text())
    cases = [{**c, "image_sha256": sha256_file(out / c["image"])} for c in before["cases"]]
    expected = {**before, "intensity_space": "sifa_unit", "cases": cases, "translated": {"translator": "t", "seed": 0}, "source_manifest_sha256": sha256_file(src / MANIFEST)}
    written = json.loads((out / MANIFEST).read_text())
    assert written == expected and list(written) == list(expected)
    assert _resaved(tmp_path, out / MANIFEST, CacheManifest) == (out / MANIFEST).read_bytes()
    again = translate_cache(lambda x: -x, out, tmp_path / "twice", unit, unit, torch.device("cpu"), {"translator": "u", "seed": 1}, "zscore")
    assert list(json.loads((again / MANIFEST).read_text())) == list(expected)  # a translated cache translated again


def test_a_missing_or_unknown_manifest_key_names_the_file_and_the_key(tiny_dataset, tmp_path):
    spec = load_dataset(tiny_dataset, "tiny")
    path = preprocess_modality(spec, "ct", PreprocessConfig.from_dict(CFG), tmp_path / "cache") / MANIFEST
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in doc.items() if k != "slice_axis"}))
    with pytest.raises(InputDataError, match=rf"{path}: missing key\(s\) slice_axis \(rebuild the cache"):
        CacheManifest.load(path)
    path.write_text(json.dumps({**doc, "slice_axsi": "axial"}))
    with pytest.raises(InputDataError, match=rf"{path}: unknown key\(s\) slice_axsi; known: format, "):
        CacheManifest.load(path)
    case = {k: v for k, v in doc["cases"][2].items() if k != "label_sha256"}
    path.write_text(json.dumps({**doc, "cases": [*doc["cases"][:2], case]}))
    with pytest.raises(InputDataError, match=rf"{path} cases\[2\]: missing key\(s\) label_sha256"):
        CacheManifest.load(path)
    with pytest.raises(InputDataError, match=rf"{tmp_path / 'nowhere' / MANIFEST}: no preprocessing manifest"):
        CacheManifest.load_dir(tmp_path / "nowhere")
    with pytest.raises(InputDataError, match="case record 9: missing key"):
        CaseRecord.from_dict({"case": "9"}, "case record 9")


# ---- model file, sidecar, metrics: one tiny trained and evaluated model ------------------------------


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, one_torch_thread):
    """source_only trained for 4 iterations keeping 2 snapshots, evaluated, aggregated."""
    from tests.conftest import tiny_dataset as make_dataset
    from xmodseg.evaluation.evaluate import evaluate_model
    from xmodseg.methods.run import train_experiment
    from xmodseg.reporting.report import aggregate_seeds

    tmp = tmp_path_factory.mktemp("evaluated")
    registry = make_dataset.__wrapped__(tmp)  # the function-scoped fixture's body: one trained model for this module
    spec = load_dataset(registry, "tiny")
    caches = {m: preprocess_modality(spec, m, PreprocessConfig.from_dict(CFG), tmp / "cache" / m) for m in ("mr", "ct")}
    model = tmp / "m" / "model.pt"
    sidecar = train_experiment(
        method_name="source_only", params=PARAMS, seed=3, source_cache=caches["mr"], target_cache=caches["ct"],
        model_path=model, checkpoint_dir=tmp / "m" / "ckpt", log_path=tmp / "m" / "log.jsonl",
    )  # fmt: skip
    metrics = tmp / "eval" / "seed3" / "metrics.json"
    doc = evaluate_model(
        model_path=model, target_cache=caches["ct"], spec=spec, predictions_dir=tmp / "eval" / "pred", metrics_path=metrics,
        experiment={"name": "so", "dataset": "tiny", "method": "source_only", "source": "mr", "target": "ct", "seed": 3},
    )  # fmt: skip
    aggregate_seeds([metrics], tmp / "so.json")
    return {"tmp": tmp, "model": model, "sidecar": sidecar, "metrics": metrics, "doc": doc, "aggregate": tmp / "so.json"}


def test_model_file_reads_back_and_writes_the_same_bytes(evaluated, tmp_path):
    model = evaluated["model"]
    assert _resaved(tmp_path, model, ModelFile) == model.read_bytes()
    m = ModelFile.load(model)
    assert list(m.to_payload()) == ["architecture", "state_dict", "config_hash", "method", "class_names", "snapshots"]
    assert m.role == "method" and m.method == "source_only" and m.config_hash == evaluated["sidecar"]["config_hash"]
    assert [s.iteration for s in m.snapshots or []] == [2]
    from xmodseg.nn.networks import load_model

    net, again = load_model(str(model))
    assert again.config_hash == m.config_hash and net(torch.zeros(1, 1, 16, 16)).shape == (1, 5, 16, 16)
    assert all(torch.equal(v, m.state_dict[k]) for k, v in net.state_dict().items())


def test_a_translator_model_file_reads_back_and_writes_the_same_bytes(tmp_path):
    from xmodseg.training.checkpoint import save_torch

    payload = {  # as training.fit.write_model writes a translator's
        "architecture": {"kind": "resnet_generator", "kwargs": {"ngf": 4, "n_blocks": 1}},
        "state_dict": {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.zeros(2)},
        "config_hash": "c" * 64,
        "translator": "cyclegan",
        "intensity_ranges": {"source": {"mode": "percentile", "low": -1.5, "high": 2.0}, "target": {"mode": "sifa_fixed", "low": -1.0, "high": 1.0}},
    }
    save_torch(payload, tmp_path / "model.pt")
    assert _resaved(tmp_path, tmp_path / "model.pt", ModelFile) == (tmp_path / "model.pt").read_bytes()
    m = ModelFile.load(tmp_path / "model.pt")
    assert m.role == "translator" and m.architecture.kind == "resnet_generator" and m.snapshots is None


def test_model_file_errors_name_the_file(tmp_path):
    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "PWNED",))

    torch.save({"config_hash": "x", "state_dict": {}, "evil": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(RefusedModelFileError, match=rf"{tmp_path / 'evil.pt'}: refused") as err:
        ModelFile.load(tmp_path / "evil.pt")
    assert isinstance(err.value, pickle.UnpicklingError) and isinstance(err.value, InputDataError)
    assert not (tmp_path / "PWNED").exists()
    with pytest.raises(InputDataError, match=rf"{tmp_path / 'none.pt'}: no model file"):
        ModelFile.load(tmp_path / "none.pt")
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 not a whole zip")
    with pytest.raises(InputDataError, match=rf"{tmp_path / 'cut.pt'}: unreadable model file"):
        ModelFile.load(tmp_path / "cut.pt")
    torch.save({"architecture": {"kind": "monai_unet", "kwargs": {}}, "state_dict": {}, "config_hash": "x", "methd": "oracle"}, tmp_path / "typo.pt")
    with pytest.raises(InputDataError, match=rf"{tmp_path / 'typo.pt'}: unknown key\(s\) methd"):
        ModelFile.load(tmp_path / "typo.pt")
    torch.save({"architecture": {"kind": "monai_unet"}, "state_dict": {}, "config_hash": "x"}, tmp_path / "arch.pt")
    with pytest.raises(InputDataError, match=rf"{tmp_path / 'arch.pt'} architecture: missing key\(s\) kwargs"):
        ModelFile.load(tmp_path / "arch.pt")


def test_sidecar_reads_back_keeps_unknown_keys_and_writes_the_same_bytes(evaluated, tmp_path):
    path = evaluated["model"].with_suffix(".json")
    assert _resaved(tmp_path, path, Sidecar) == path.read_bytes()
    side = Sidecar.of_model(evaluated["model"])
    assert side.method == "source_only" and side.model_sha256 == evaluated["sidecar"]["model_sha256"]
    # an older sidecar (no inputs, a retired key) with a key this class does not know: both kept as they are
    old = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("inputs", "labels")}
    old = {"method": old.pop("method"), "retired_field": None, **old, "new_field": {"x": 1}}
    (tmp_path / "old.json").write_text(json.dumps(old, indent=2) + "\n")
    side = Sidecar.load(tmp_path / "old.json")
    assert side.extra == {"retired_field": None, "new_field": {"x": 1}} and side.inputs == {} and side.to_dict() == old and list(side.to_dict()) == list(old)
    (tmp_path / "bad.json").write_text(json.dumps({k: v for k, v in old.items() if k != "config_hash"}))
    with pytest.raises(InputDataError, match=rf"{tmp_path / 'bad.json'}: missing key\(s\) config_hash"):
        Sidecar.load(tmp_path / "bad.json")


def test_metrics_documents_read_back_and_write_the_same_bytes(evaluated, tmp_path):
    metrics, aggregate = evaluated["metrics"], evaluated["aggregate"]
    assert _resaved(tmp_path, metrics, MetricsDoc) == metrics.read_bytes()
    assert _resaved(tmp_path, aggregate, ExperimentMetrics) == aggregate.read_bytes()
    doc = MetricsDoc.load(metrics)
    assert json.dumps(doc.to_dict()) == json.dumps(evaluated["doc"])  # what evaluate_model returned (NaN != NaN)
    assert doc.path == str(metrics) and doc.name == "so" and doc.seed == 3
    assert list(doc.summary) == [*CASE_METRICS, *(k for k in METRIC_KEYS if k.endswith(LAST_K))]  # snapshots: the last-k keys too
    agg = ExperimentMetrics.load(aggregate)
    assert list(agg.metrics) == list(METRIC_KEYS) and agg.metrics_files == [str(metrics)]


def test_a_missing_metrics_key_names_the_file(evaluated, tmp_path):
    doc = json.loads(evaluated["metrics"].read_text())
    bad = tmp_path / "metrics.json"
    bad.write_text(json.dumps({k: v for k, v in doc.items() if k != "summary"}))
    with pytest.raises(InputDataError, match=rf"{bad}: not a per-seed metrics.json: missing key\(s\) summary \(written by `xmodseg evaluate`"):
        MetricsDoc.load(bad)
    bad.write_text(json.dumps({**doc, "sumary": {}}))
    with pytest.raises(InputDataError, match=rf"{bad}: unknown key\(s\) sumary"):
        MetricsDoc.load(bad)
    agg = json.loads(evaluated["aggregate"].read_text())
    bad.write_text(json.dumps({**agg, "dice_last_3": {}}))
    with pytest.raises(InputDataError, match=rf"{bad}: unknown key\(s\) dice_last_3; known: experiment, seeds, metrics_files, dice, "):
        ExperimentMetrics.load(bad)


def test_metric_keys_are_defined_once():
    from xmodseg.evaluation import evaluate
    from xmodseg.provenance import audit
    from xmodseg.reporting import compare, report

    assert report.METRIC_KEYS is METRIC_KEYS and audit.METRIC_KEYS is CASE_METRICS
    assert evaluate.LAST_K is LAST_K and {k: t for k, (t, _) in compare.METRICS.items()} == {k: METRIC_KEYS[k] for k in compare.METRICS}
    assert list(METRIC_KEYS) == ["dice", "assd_mm", "sifa_dice", "sifa_assd_vox", "dice_last_k", "assd_mm_last_k"]
    assert METRIC_KEYS["assd_mm_last_k"] == "ASSD (mm), mean over the last k checkpoints"
