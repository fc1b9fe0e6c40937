"""Issue 16, "failures that tell the truth" (training): unknown `train` keys are refused, a corrupt
checkpoint is set aside instead of blocking every rerun, and the loss log keeps its whole history
across a kill and resume."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import yaml

from tests.conftest import REPO, make_tiny_project
from xmodseg.errors import ConfigError
from xmodseg.methods import available_methods, get_method, register
from xmodseg.methods.run import train_experiment
from xmodseg.methods.supervised import SourceOnly
from xmodseg.preprocess import PreprocessConfig, preprocess_modality
from xmodseg.registry import load_dataset
from xmodseg.training.checkpoint import LAST, PREVIOUS
from xmodseg.training.fit import fit_method
from xmodseg.training.loop import HISTORY
from xmodseg.training.trainable import DataNeeds, TrainData
from xmodseg.translation.registry import available_translators, get_translator

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.usefixtures("slurm_controller")]  # slurm_controller: see tests/conftest.py

NET = {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}
PARAMS = {"iterations": 6, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 2, "log_every": 1, "network": NET}
SHIPPED = sorted(p for p in (REPO / "config").glob("*.yaml") if p.name != "datasets.yaml")


@pytest.fixture
def caches(tiny_dataset, tmp_path):
    spec = load_dataset(tiny_dataset, "tiny")
    cfg = PreprocessConfig.from_dict({"spacing": [2.0, 2.0, 2.0], "slice_axis": "axial", "crop_size": [16, 16]})
    return {m: preprocess_modality(spec, m, cfg, tmp_path / "cache" / m) for m in ("mr", "ct")}


def _train(caches, run: Path, method: str = "source_only", params=PARAMS, stop_at=None):
    return train_experiment(
        method_name=method,
        params=params,
        seed=3,
        source_cache=caches["mr"],
        target_cache=caches["ct"],
        model_path=run / "model.pt",
        checkpoint_dir=run / "ckpt",
        log_path=run / "log.jsonl",
        stop_at=stop_at,
    )


# ------------------------------------------------------------------------------ unknown train keys


@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_train_block_is_accepted(config):
    """Every experiment's and translator's `train` block of every shipped config uses only keys
    its method reads; every preset fits at least one method or translator."""
    cfg = yaml.safe_load(config.read_text())
    for name, exp in cfg["experiments"].items():
        get_method(exp["method"]).check_params(exp["train"], f"experiments.{name}.train")
    for name, tr in (cfg.get("translators") or {}).items():
        get_translator(tr["translator"]).check_params(tr["train"], f"translators.{name}.train")
    classes = [get_method(m) for m in available_methods()] + [get_translator(t) for t in available_translators()]
    for name, block in (cfg.get("presets") or {}).items():
        fits = []
        for cls in classes:
            try:
                cls.check_params(block, name)
                fits.append(cls.name)
            except ConfigError:
                pass
        assert fits, f"{config.name}: preset {name} fits no method or translator"


@pytest.mark.parametrize("kind,name", [*(("method", m) for m in ("source_only", "oracle", "translate_then_segment", "sifa")),
                                       *(("translator", t) for t in ("cyclegan", "disentangled"))])
def test_unknown_key_is_refused_naming_it_and_the_valid_ones(kind, name):
    cls = get_method(name) if kind == "method" else get_translator(name)
    with pytest.raises(ConfigError, match=r"experiments\.x\.train: unknown key\(s\) 'learning_rate'.*valid keys: .*\blr\b") as err:
        cls.check_params({"iterations": 4, "learning_rate": 0.5}, "experiments.x.train")
    assert "iterations" in str(err.value).split("valid keys:")[1]
    with pytest.raises(ConfigError, match="did you mean 'lr_shedule' -> 'lr_schedule'"):
        cls.check_params({"iterations": 4, "lr_shedule": "linear"}, "t")
    with pytest.raises(ConfigError, match="'learning_rate'"):  # also when built directly (plugins, tests)
        cls({"iterations": 4, "learning_rate": 0.5}, 3, None)  # type: ignore[arg-type]


def test_train_refuses_unknown_key_before_training(caches, tmp_path, monkeypatch, capsys):
    from xmodseg import cli

    monkeypatch.delenv("XMODSEG_GPU_SLOTS", raising=False)
    run = tmp_path / "r"
    argv = ["train", "--method", "source_only", "--params", json.dumps({**PARAMS, "learning_rate": 0.5}), "--seed", "0",
            "--source-cache", str(caches["mr"]), "--target-cache", str(caches["ct"]), "--model", str(run / "model.pt"),
            "--checkpoint-dir", str(run / "ckpt"), "--train-log", str(run / "log.jsonl")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "'learning_rate'" in err and "valid keys:" in err and "lr_schedule" in err
    assert not run.exists()  # refused before anything was trained or written
    # a sifa-only key on a supervised method, and warm_start smuggled into a train block
    with pytest.raises(ConfigError, match="'lambda_cycle'"):
        _train(caches, run, params={**PARAMS, "lambda_cycle": 5})
    with pytest.raises(ConfigError, match="'warm_start'"):
        _train(caches, run, method="sifa", params={"iterations": 2, "warm_start": "x.pt"})


def test_translate_refuses_unknown_key_before_training(caches, tmp_path):
    from xmodseg.translation.run import train_translator

    run = tmp_path / "t"
    with pytest.raises(ConfigError, match="translator cyclegan: unknown key.*'lamda_cycle'.*did you mean"):
        train_translator(
            translator="cyclegan", params={"iterations": 2, "lamda_cycle": 3.0}, seed=0, source_cache=caches["mr"],
            target_cache=caches["ct"], model_path=run / "m.pt", checkpoint_dir=run / "c", log_path=run / "l.jsonl",
            out_cache=run / "cache", quality_path=run / "q.json", preview_path=run / "p.png",
        )
    assert not run.exists()


def test_workflow_refuses_unknown_key_at_planning(tmp_path):
    train = {"iterations": 2, "learning_rate": 0.5}
    config = {
        "preprocess": {"spacing": [4.0, 4.0, 4.0], "crop_size": [16, 16], "slice_axis": "axial"},
        "experiments": {"so_mr2ct": {"method": "source_only", "source": "mr", "target": "ct", "seeds": [0], "train": train}},
    }
    project = make_tiny_project(tmp_path / "p", config)
    proc = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-n", "--configfile", "config/tiny.yaml"],
                          cwd=project, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "experiments.so_mr2ct.train" in out and "'learning_rate'" in out and "valid keys" in out


# ------------------------------------------------------------------------------ corrupt checkpoints


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


def _aside(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f"{name}.corrupt-*"))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_last_checkpoint_falls_back_to_previous(caches, tmp_path, caplog, damage):
    full = _train(caches, tmp_path / "full")
    run = tmp_path / "run"
    _train(caches, run, stop_at=4)  # checkpoints at 2 and 4: last.pt = 4, previous.pt = 2
    ckpt = run / "ckpt"
    assert torch.load(ckpt / PREVIOUS, weights_only=True)["iteration"] == 2
    good = _bytes(ckpt / LAST)
    bad = {"garbage": b"\x00not a checkpoint\xff" * 50, "truncated": good[: len(good) // 2], "empty": b""}[damage]
    (ckpt / LAST).write_bytes(bad)
    with caplog.at_level(logging.WARNING):
        side = _train(caches, run)
    assert side["loop"]["resumed_from"] == 2 and side["loop"]["iterations_done"] == 6
    assert side["model_sha256"] == full["model_sha256"]  # same weights as never interrupted
    (kept,) = _aside(ckpt, LAST)
    assert _bytes(kept) == bad  # set aside, never deleted
    text = caplog.text
    assert str(ckpt / LAST) in text and str(kept) in text and "resuming from" in text and str(ckpt / PREVIOUS) in text


def test_corrupt_only_checkpoint_restarts_from_scratch(caches, tmp_path, caplog):
    full = _train(caches, tmp_path / "full")
    run = tmp_path / "run"
    _train(caches, run, params={**PARAMS, "checkpoint_every": 100}, stop_at=3)  # one checkpoint (3), no previous
    ckpt = run / "ckpt"
    assert not (ckpt / PREVIOUS).exists()
    data = _bytes(ckpt / LAST)
    (ckpt / LAST).write_bytes(data[:-100])  # short by fewer bytes than any header
    with caplog.at_level(logging.WARNING):
        side = _train(caches, run, params={**PARAMS, "checkpoint_every": 100})
    assert side["loop"]["resumed_from"] == 0 and side["loop"]["iterations_done"] == 6
    assert side["model_sha256"] == full["model_sha256"]  # checkpoint_every is not part of what is learned
    assert _bytes(_aside(ckpt, LAST)[0]) == data[:-100]
    assert str(ckpt / LAST) in caplog.text and "restarts from iteration 0" in caplog.text


def test_readable_but_wrong_checkpoint_is_set_aside_and_training_rebuilds(caches, tmp_path, caplog):
    """A checkpoint that loads but does not fit the method (half-applied) must not leave a
    half-loaded method behind: it is set aside and the method is built afresh."""
    full = _train(caches, tmp_path / "full")
    run = tmp_path / "run"
    _train(caches, run, stop_at=4)
    ckpt = run / "ckpt"
    state = torch.load(ckpt / LAST, weights_only=True)
    net = state["method"]["networks"]["segmenter"]
    net.pop(sorted(net)[-1])  # a missing tensor: load_state_dict fails after nothing or part was copied
    torch.save(state, ckpt / LAST)
    with caplog.at_level(logging.WARNING):
        side = _train(caches, run)
    assert side["loop"]["resumed_from"] == 2 and side["model_sha256"] == full["model_sha256"]
    assert len(_aside(ckpt, LAST)) == 1 and "does not fit source_only" in caplog.text


def test_translator_resume_survives_a_corrupt_checkpoint(tmp_path, caplog):
    from xmodseg.translation.cyclegan import CycleGAN

    g = torch.Generator().manual_seed(0)
    data = TrainData(source=_slices(g, "mr"), target=_slices(g, "ct"))
    params = {"ngf": 4, "ndf": 4, "n_blocks": 1, "d_layers": 2, "batch_size": 2, "iterations": 4, "pool_size": 3,
              "checkpoint_every": 1, "log_every": 1, "device": "cpu"}

    def run(tag, stop_at=None):
        return fit_method(CycleGAN, name="cyclegan", params=params, seed=1, data=data, data_ids={"source": "s", "target": "t"},
                          num_classes=0, checkpoint_dir=tmp_path / tag, log_path=tmp_path / f"{tag}.jsonl", stop_at=stop_at)

    full = run("full")
    run("r", stop_at=3)
    (tmp_path / "r" / LAST).write_bytes(b"PK\x03\x04 broken zip")
    with caplog.at_level(logging.WARNING):
        resumed = run("r")
    assert resumed.result.resumed_from == 2
    a, b = full.method.inference_network().state_dict(), resumed.method.inference_network().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert str(tmp_path / "r" / LAST) in caplog.text and len(_aside(tmp_path / "r", LAST)) == 1


def test_unreadable_warm_start_and_snapshot_name_the_file(tmp_path):
    from xmodseg.errors import InputDataError, TrainingIncompleteError
    from xmodseg.methods.sifa import Sifa
    from xmodseg.training.device import choose_device, choose_precision
    from xmodseg.training.snapshots import collect_snapshots

    bad = tmp_path / "translator.pt"
    bad.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    tiny = {"iterations": 2, "width": 0.125, "batch_size": 2, "ndf": 4}
    with pytest.raises(InputDataError, match=f"{bad}.*unreadable"):
        Sifa(tiny, 3, choose_precision(choose_device("cpu"), "off"), inputs={"warm_start": bad})
    snap = tmp_path / "snapshot_00000002.pt"
    snap.write_bytes(b"garbage")
    with pytest.raises(TrainingIncompleteError, match=f"{snap}.*unreadable"):
        collect_snapshots(tmp_path, (2,), "h")


def _slices(g: torch.Generator, modality: str):
    from xmodseg.slices import SliceSet

    return SliceSet(torch.rand(4, 1, 16, 16, generator=g) * 2 - 1, None, ("a", "b"), modality)


# ------------------------------------------------------------------------------ loss-log history


class _Killed(Exception):
    pass


class _Killable(SourceOnly):
    """source_only that dies (like SIGKILL) before iteration `kill_at`, after earlier records were logged."""

    name: ClassVar[str] = "_killable_test_method"
    needs: ClassVar[DataNeeds] = DataNeeds(source_labels=True)
    kill_at: ClassVar[int | None] = None

    def train_step(self, data: TrainData, sampler: torch.Generator, step: int) -> dict[str, float]:
        if type(self).kill_at is not None and step + 1 == type(self).kill_at:
            raise _Killed
        return super().train_step(data, sampler, step)


register(_Killable)


def _records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_loss_log_keeps_the_whole_history_across_a_kill(caches, tmp_path, monkeypatch):
    name = _Killable.name
    full = _train(caches, tmp_path / "full", method=name)
    run = tmp_path / "run"
    monkeypatch.setattr(_Killable, "kill_at", 6)  # dies in iteration 6: records 1-5 logged, last checkpoint at 4
    with pytest.raises(_Killed):
        _train(caches, run, method=name)
    assert [r["iteration"] for r in _records(run / "log.jsonl")] == [1, 2, 3, 4, 5]
    (run / "log.jsonl").write_text("")  # Snakemake empties the log: files of a restarted job
    monkeypatch.setattr(_Killable, "kill_at", None)
    side = _train(caches, run, method=name)
    assert side["loop"]["resumed_from"] == 4 and side["model_sha256"] == full["model_sha256"]

    def losses(path):
        return [{k: v for k, v in r.items() if k != "s_per_it"} for r in _records(path) if "event" not in r]

    expected = losses(tmp_path / "full" / "log.jsonl")
    assert [r["iteration"] for r in expected] == [1, 2, 3, 4, 5, 6]
    assert losses(run / "log.jsonl") == expected  # every iteration once, with the uninterrupted run's values
    assert losses(run / "ckpt" / HISTORY) == expected
    assert {"event": "resumed", "iteration": 4} in _records(run / "log.jsonl")
    # a fresh start of a changed configuration does not inherit the old history
    _train(caches, run, method=name, params={**PARAMS, "iterations": 2, "lr": 5e-4})
    assert [r["iteration"] for r in _records(run / "log.jsonl")] == [1, 2]
