"""Shared training loop: resume equality, NaN guard, split guard, model files."""

from __future__ import annotations

import json
import math
from typing import ClassVar

import pytest
import torch

from xmodseg.errors import ConfigError, TrainingDivergedError, TrainingIncompleteError
from xmodseg.methods.run import train_experiment
from xmodseg.methods.supervised import SourceOnly
from xmodseg.nn.networks import load_model
from xmodseg.preprocess import PreprocessConfig, preprocess_modality
from xmodseg.registry import load_dataset
from xmodseg.slices import load_slices, training_slices
from xmodseg.training.device import choose_device, choose_precision
from xmodseg.training.loop import LoopConfig, fit
from xmodseg.training.trainable import DataNeeds, TrainData

PARAMS = {
    "iterations": 6,
    "batch_size": 4,
    "lr": 1e-3,
    "checkpoint_every": 2,
    "log_every": 1,
    "network": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1},
}


@pytest.fixture
def caches(tiny_dataset, tmp_path):
    spec = load_dataset(tiny_dataset, "tiny")
    cfg = PreprocessConfig.from_dict({"spacing": [2.0, 2.0, 2.0], "slice_axis": "axial", "crop_size": [16, 16]})
    return {m: preprocess_modality(spec, m, cfg, tmp_path / "cache" / m) for m in ("mr", "ct")}


def _train(caches, tmp_path, tag, stop_at=None, params=PARAMS):
    return train_experiment(
        method_name="source_only",
        params=params,
        seed=3,
        source_cache=caches["mr"],
        target_cache=caches["ct"],
        model_path=tmp_path / tag / "model.pt",
        checkpoint_dir=tmp_path / tag / "ckpt",
        log_path=tmp_path / tag / "log.jsonl",
        stop_at=stop_at,
    )


def _weights(path):
    return torch.load(path, weights_only=False)["state_dict"]


def test_interrupted_and_resumed_equals_uninterrupted(caches, tmp_path):
    full = _train(caches, tmp_path, "full")
    partial = _train(caches, tmp_path, "resumed", stop_at=3)  # "killed" after iteration 3
    assert partial["loop"]["iterations_done"] == 3
    resumed = _train(caches, tmp_path, "resumed")
    assert resumed["loop"]["resumed_from"] == 3 and resumed["loop"]["iterations_done"] == 6
    a, b = _weights(tmp_path / "full" / "model.pt"), _weights(tmp_path / "resumed" / "model.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # byte-identical files: a retrained model has the same sha256, so provenance can compare them
    assert resumed["model_sha256"] == full["model_sha256"]
    lines = [json.loads(x) for x in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert {"event": "resumed", "iteration": 3} in lines


def test_a_log_file_gets_one_plain_line_per_interval_and_the_device_in_words(caches, tmp_path, caplog):
    """stderr is not a terminal here (pytest captures it): no progress bar, a plain line per
    `log_every` iterations, and "device: cpu (no GPU visible)" instead of GPU messages."""
    import logging

    caplog.set_level(logging.INFO)
    _train(caches, tmp_path, "plain", params={**PARAMS, "log_every": 2})
    lines = [r.getMessage() for r in caplog.records]
    steps = [m for m in lines if m.startswith("source_only iteration ")]
    assert [m.split(":")[0] for m in steps] == [f"source_only iteration {i}/6" for i in (2, 4, 6)]
    assert all(" s/it, seg " in m for m in steps)
    if not torch.cuda.is_available():
        assert "device: cpu (no GPU visible)" in lines and not any("GPU:" in m for m in lines)


def test_changed_config_does_not_resume(caches, tmp_path):
    _train(caches, tmp_path, "r", stop_at=2)
    out = _train(caches, tmp_path, "r", params={**PARAMS, "lr": 5e-4})
    assert out["loop"]["resumed_from"] == 0


def test_sidecar_and_model_reload(caches, tmp_path):
    side = _train(caches, tmp_path, "m")
    assert side["uses_target_labels_for_training"] is False
    assert side["data"]["target"] is None and side["data"]["source"]["labels_used"] is True
    assert side["data"]["source"]["cases"] == ["1", "2", "3"]  # test case 4 never loaded
    net, meta = load_model(str(tmp_path / "m" / "model.pt"))
    assert meta.method == "source_only"
    assert net(torch.zeros(1, 1, 16, 16)).shape == (1, 5, 16, 16)
    assert json.loads((tmp_path / "m" / "model.json").read_text())["model_sha256"] == side["model_sha256"]


def test_only_training_cases_are_loaded(caches):
    s = training_slices(caches["ct"], with_labels=True)
    assert s.cases == ("1", "2", "3")
    assert load_slices(caches["ct"], "test", with_labels=False).labels is None


class _Exploding(SourceOnly):
    name: ClassVar[str] = "_exploding_test_method"
    needs: ClassVar[DataNeeds] = DataNeeds(source_labels=True)

    def train_step(self, data: TrainData, sampler: torch.Generator, step: int) -> dict[str, float]:
        out = super().train_step(data, sampler, step)
        return {"seg": math.nan} if step == 3 else out



def test_nan_loss_stops_and_keeps_last_good_checkpoint(caches, tmp_path):
    precision = choose_precision(choose_device("cpu"), "off")
    method = _Exploding(PARAMS, 5, precision)
    data = TrainData(source=training_slices(caches["mr"], with_labels=True), target=None)
    with pytest.raises(TrainingDivergedError, match="iteration 4"):
        fit(method, data, LoopConfig(iterations=6, seed=0, checkpoint_every=1), checkpoint_dir=tmp_path / "c", log_path=tmp_path / "l.jsonl", config_hash="h")
    state = torch.load(tmp_path / "c" / "last.pt", weights_only=False)
    assert state["iteration"] == 3


def test_wall_clock_limit_keeps_checkpoint_and_writes_no_model(caches, tmp_path):
    from xmodseg.errors import TrainingIncompleteError

    with pytest.raises(TrainingIncompleteError, match="rerun resumes"):
        _train(caches, tmp_path, "t", params={**PARAMS, "max_minutes": 1e-9})
    assert not (tmp_path / "t" / "model.pt").exists()
    state = torch.load(tmp_path / "t" / "ckpt" / "last.pt", weights_only=False)
    assert state["iteration"] == 1
    # max_minutes is a run-time knob: the rerun without it resumes the same run.
    assert _train(caches, tmp_path, "t")["loop"]["resumed_from"] == 1


def test_evaluation_writes_metrics_and_refuses_changed_ground_truth(caches, tiny_dataset, tmp_path):
    import numpy as np

    from tests.conftest import write_volume
    from xmodseg.errors import InputDataError
    from xmodseg.evaluation.evaluate import evaluate_model

    _train(caches, tmp_path, "e")
    spec = load_dataset(tiny_dataset, "tiny")
    kwargs = {"model_path": tmp_path / "e" / "model.pt", "target_cache": caches["ct"], "spec": spec, "predictions_dir": tmp_path / "pred", "experiment": {"name": "x", "seed": 3}}
    out = evaluate_model(metrics_path=tmp_path / "m.json", **kwargs)
    assert [c["case"] for c in out["cases"]] == ["4"]  # only the test case
    assert set(out["summary"]["dice"]) == {"MYO", "LAC", "LVC", "AA", "mean"}
    assert all(0.0 <= v <= 1.0 for v in out["cases"][0]["dice"].values())
    assert out["provenance"]["model_sha256"] == json.loads((tmp_path / "e" / "model.json").read_text())["model_sha256"]
    assert (tmp_path / "overlay.npz").is_file()
    # GLUA's pooled numbers: with one test case, pooling equals that case's SIFA-compatible values
    assert out["pooled"]["cases"] == ["4"]
    for key in ("sifa_dice", "sifa_assd_vox"):
        for cls, v in out["cases"][0][key].items():
            assert out["pooled"][key][cls] == v or (np.isnan(v) and np.isnan(out["pooled"][key][cls]))
    lab = spec.label_path("ct", "4")
    import SimpleITK as sitk

    img = sitk.ReadImage(str(lab))
    write_volume(lab, np.zeros_like(sitk.GetArrayFromImage(img)), img.GetSpacing(), img.GetOrigin(), img.GetDirection())
    with pytest.raises(InputDataError, match="ground truth changed since preprocessing"):
        evaluate_model(metrics_path=tmp_path / "m2.json", **kwargs)
    assert not (tmp_path / "m2.json").exists()


def test_snapshots_of_the_last_k_checkpoints_are_kept_in_the_model_file(caches, tmp_path):
    """`snapshots: 3` with checkpoints every 2 of 6 iterations keeps iterations 2 and 4 beside the
    main (last) weights; each equals the weights of a run stopped there, also across a resume, and
    the resume hash is that of the run without snapshots (what is learned does not change)."""
    params = {**PARAMS, "snapshots": 3}
    side = _train(caches, tmp_path, "snap", params=params)
    assert side["snapshot_iterations"] == [2, 4, 6]
    payload = torch.load(tmp_path / "snap" / "model.pt", weights_only=True)
    assert [s["iteration"] for s in payload["snapshots"]] == [2, 4]
    plain = _train(caches, tmp_path, "plain")
    assert plain["config_hash"] == side["config_hash"]
    assert "snapshots" not in torch.load(tmp_path / "plain" / "model.pt", weights_only=True)
    for it, snap in zip((2, 4), payload["snapshots"]):
        try:  # a run stopped early writes a model only if its snapshots exist
            _train(caches, tmp_path, f"stop{it}", stop_at=it, params=params)
        except TrainingIncompleteError:
            assert it == 2
        ckpt = torch.load(tmp_path / f"stop{it}" / "ckpt" / "last.pt", weights_only=False)
        expected = ckpt["method"]["networks"]["segmenter"]
        assert all(torch.equal(snap["state_dict"][k], v) for k, v in expected.items())
    with pytest.raises(TrainingIncompleteError, match="snapshot of iteration 4 is missing"):
        _train(caches, tmp_path, "resumed", stop_at=3, params=params)
    _train(caches, tmp_path, "resumed", params=params)
    resumed = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)
    for a, b in zip(payload["snapshots"], resumed["snapshots"]):
        assert all(torch.equal(a["state_dict"][k], v) for k, v in b["state_dict"].items())
    with pytest.raises(ConfigError, match="train.snapshots"):
        _train(caches, tmp_path, "toomany", params={**PARAMS, "snapshots": 5})


class _Payload:
    """Pickles to a call of os.system: what a hostile model or checkpoint file would hold."""

    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("kind", ["checkpoint", "model"])
def test_hostile_pickles_are_refused_not_executed(tmp_path, monkeypatch, kind):
    import pickle

    from xmodseg.nn.networks import load_model
    from xmodseg.training.checkpoint import LAST, load_checkpoint

    monkeypatch.chdir(tmp_path)
    path = tmp_path / (LAST if kind == "checkpoint" else "model.pt")
    torch.save({"config_hash": "x", "state_dict": {}, "evil": _Payload()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(tmp_path, "x") if kind == "checkpoint" else load_model(str(path))
    assert not (tmp_path / "PWNED").exists()


def test_a_slurm_job_stops_with_a_checkpoint_before_its_time_limit(monkeypatch):
    """The time left (squeue's %L, asked from inside the job) less 5 % (>= 3 min), or max_minutes if
    that is sooner; outside SLURM, or with no limit, nothing changes."""
    from xmodseg.training.fit import scheduler_limit, slurm_duration_minutes, slurm_minutes_left

    assert [slurm_duration_minutes(s) for s in ("4:00:00", "59:30", "1-02:00:00", "UNLIMITED", "NOT_SET", "")] == [240, 59.5, 1560, None, None, None]
    assert scheduler_limit(None, None) is None and scheduler_limit(30.0, None) == 30.0
    assert scheduler_limit(None, 240.0) == 228.0 and scheduler_limit(30.0, 240.0) == 30.0 and scheduler_limit(500.0, 240.0) == 228.0
    assert scheduler_limit(None, 30.0) == 27.0 and scheduler_limit(None, 2.0) is None  # too short for a margin: SLURM's own limit applies
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert slurm_minutes_left() is None
