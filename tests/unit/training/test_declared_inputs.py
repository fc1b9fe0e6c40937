"""Issue 17, package side: declared inputs (hashed into the resume hash and the sidecar, roles
checked), label budgets (a deterministic, recorded subset of the training cases, never a test
case; target labels only for methods that declare them), typed params and the jobs' generated flags."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from xmodseg import jobs
from xmodseg.errors import ConfigError, SplitLeakError
from xmodseg.hashing import sha256_file, sha256_json
from xmodseg.methods import register
from xmodseg.methods.run import train_experiment
from xmodseg.methods.sifa import Sifa
from xmodseg.methods.supervised import Oracle, SourceOnly
from xmodseg.preprocess import PreprocessConfig, preprocess_modality
from xmodseg.registry import load_dataset
from xmodseg.training.budget import LabelBudget
from xmodseg.training.fit import RUNTIME_KEYS
from xmodseg.training.inputs import input_sha256, resolve_inputs
from xmodseg.training.trainable import DataNeeds, InputSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NET = {"channels": [4, 8], "strides": [2], "num_res_units": 0}
PARAMS = {"iterations": 2, "batch_size": 2, "lr": 1e-3, "checkpoint_every": 1, "log_every": 1, "network": NET}
ORACLE_NEEDS = Oracle.needs


class _Teacher(SourceOnly):
    """source_only with a required input (another experiment's model) and target images: the shape of
    a distillation method (MKD) for these tests."""

    name: ClassVar[str] = "_teacher_test_method"
    needs: ClassVar[DataNeeds] = DataNeeds(source_labels=True, target_images=True)
    inputs: ClassVar = {"teacher": InputSpec("experiment_model", description="a model to distil from")}
    built: ClassVar[list] = []

    def __init__(self, params, num_classes, precision, *, inputs=None):
        super().__init__(params, num_classes, precision, inputs=inputs)
        type(self).built.append(dict(self.input_paths))


register(_Teacher)


@pytest.fixture
def caches(tiny_dataset, tmp_path):
    spec = load_dataset(tiny_dataset, "tiny")
    cfg = PreprocessConfig.from_dict({"spacing": [2.0, 2.0, 2.0], "slice_axis": "axial", "crop_size": [16, 16]})
    return {m: preprocess_modality(spec, m, cfg, tmp_path / "cache" / m) for m in ("mr", "ct")}


def _train(caches, run: Path, method="source_only", params=PARAMS, **kw):
    return train_experiment(method_name=method, params=params, seed=3, source_cache=caches["mr"], target_cache=caches["ct"],
                            model_path=run / "model.pt", checkpoint_dir=run / "ckpt", log_path=run / "log.jsonl", **kw)


def _expected_hash(method, caches, params, **data):
    """The resume hash as fit_method has always formed it (runtime keys left out)."""
    ids = {"source": sha256_file(Path(caches["mr"]) / "manifest.json"), "target": sha256_file(Path(caches["ct"]) / "manifest.json"), **data}
    return sha256_json({"method": method, "params": {k: v for k, v in params.items() if k not in RUNTIME_KEYS}, "seed": 3, "data": ids})


# ------------------------------------------------------------------------------ declared inputs


def test_inputs_are_hashed_into_resume_hash_and_sidecar_and_reach_the_method(caches, tmp_path, monkeypatch):
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(b"weights v1")
    built: list = []
    monkeypatch.setattr(_Teacher, "built", built)
    side = _train(caches, tmp_path / "a", method=_Teacher.name, inputs={"teacher": teacher})
    assert side["inputs"] == {"teacher": {"path": str(teacher), "sha256": sha256_file(teacher)}}
    assert side["config_hash"] == _expected_hash(_Teacher.name, caches, PARAMS, teacher=sha256_file(teacher))
    assert built and built[0] == {"teacher": teacher}  # a path per role, not a train key
    assert "teacher" not in side["params"]
    # same input: the run resumes; a changed input file: a new run (its hash is part of the resume hash)
    _train(caches, tmp_path / "b", method=_Teacher.name, inputs={"teacher": teacher}, stop_at=1)
    assert _train(caches, tmp_path / "b", method=_Teacher.name, inputs={"teacher": teacher})["loop"]["resumed_from"] == 1
    _train(caches, tmp_path / "c", method=_Teacher.name, inputs={"teacher": teacher}, stop_at=1)
    teacher.write_bytes(b"weights v2")
    again = _train(caches, tmp_path / "c", method=_Teacher.name, inputs={"teacher": teacher})
    assert again["loop"]["resumed_from"] == 0 and again["config_hash"] != side["config_hash"]
    # a folder input (a translated cache) is hashed by its manifest
    assert input_sha256(caches["ct"]) == sha256_file(Path(caches["ct"]) / "manifest.json")


def test_sifa_warm_start_keeps_its_resume_hash_key(caches, tmp_path):
    """`warm_start` enters the data ids under "warm_start" exactly as before the redesign, so the
    shipped configs' config_hash values do not change."""
    from xmodseg.nn.layers import ResnetGenerator

    gen = {"ngf": 4, "n_blocks": 1, "skip": False}
    warm = tmp_path / "translator" / "model.pt"
    warm.parent.mkdir()
    torch.save({"architecture": {"kind": "resnet_generator", "kwargs": gen}, "state_dict": ResnetGenerator(**gen).state_dict(),
                "intensity_ranges": {"source": {"low": -1.0, "high": 2.0}, "target": {"low": -3.0, "high": 3.0}}}, warm)
    params = {"iterations": 1, "width": 0.125, "batch_size": 2, "ndf": 4, "d_layers": 2, "pool_size": 2, "amp": "off"}
    side = _train(caches, tmp_path / "s", method="sifa", params=params, inputs={"warm_start": warm})
    assert side["config_hash"] == _expected_hash("sifa", caches, params, warm_start=sha256_file(warm))
    assert side["inputs"]["warm_start"]["sha256"] == sha256_file(warm) and side["method_record"]["intensity_from_warm_start"]
    with pytest.raises(ConfigError, match="'warm_start'"):  # never a train key
        _train(caches, tmp_path / "t", method="sifa", params={**params, "warm_start": str(warm)})


def test_undeclared_missing_and_absent_inputs_are_refused(caches, tmp_path):
    f = tmp_path / "m.pt"
    f.write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"takes no input 'teacher' \(source_only declares no inputs\)"):
        _train(caches, tmp_path / "r", inputs={"teacher": f})
    with pytest.raises(ConfigError, match=r"takes no input 'warmstart' \(valid roles: warm_start\)"):
        resolve_inputs(Sifa, {"warmstart": f})
    with pytest.raises(ConfigError, match=r"requires input 'teacher' \(kind experiment_model; valid roles: teacher\)"):
        _train(caches, tmp_path / "r", method=_Teacher.name)
    with pytest.raises(ConfigError, match="teacher=.*nope.pt: no such file"):
        _train(caches, tmp_path / "r", method=_Teacher.name, inputs={"teacher": tmp_path / "nope.pt"})
    assert not (tmp_path / "r").exists()  # refused before anything was written
    with pytest.raises(TypeError, match="role 'source'"):  # a role may not shadow a data id
        type("_Bad", (SourceOnly,), {"name": "_bad", "inputs": {"source": InputSpec("experiment_model")}})


# ------------------------------------------------------------------------------ label budgets


@pytest.mark.parametrize(("fraction", "n", "k"), [(0.25, 10, 3), (0.24, 10, 2), (0.01, 10, 1), (1.0, 7, 7), (0.5, 3, 2), (0.1, 4, 1)])
def test_subset_size_rounds_half_up_and_is_at_least_one(fraction, n, k):
    ids = [f"c{i:02d}" for i in range(n)]
    budget = LabelBudget.from_block({"target": "subset", "fraction": fraction, "seed": 5}, ORACLE_NEEDS, "oracle")
    drawn = budget.draw(ids, "cache")
    assert len(drawn) == k and set(drawn) <= set(ids) and list(drawn) == sorted(drawn)
    # the documented draw: the sorted ids permuted by numpy's default_rng(seed), the first k kept
    order = np.random.default_rng(5).permutation(n)
    assert drawn == tuple(sorted(ids[i] for i in order[:k]))
    assert budget.draw(list(reversed(ids)), "cache") == drawn  # manifest order does not matter


def test_subset_draw_is_deterministic_and_seeded():
    ids = [str(1000 + i) for i in range(16)]
    draw = lambda seed: LabelBudget.from_block({"target": "subset", "fraction": 0.25, "seed": seed}, ORACLE_NEEDS, "oracle").draw(ids, "c")
    assert draw(0) == draw(0) and len(draw(0)) == 4
    assert len({draw(s) for s in range(6)}) > 1


@pytest.mark.parametrize(
    ("block", "needs", "match"),
    [
        ({"target": "all"}, DataNeeds(source_labels=True), "declares no target labels"),
        ({"target": "subset", "fraction": 0.5}, DataNeeds(source_labels=True, target_images=True), "declares no target labels"),
        ({"target": "none"}, ORACLE_NEEDS, "trains on target labels"),
        ({"target": "some"}, ORACLE_NEEDS, "'some' is not one of none, subset, all"),
        ({"target": "subset"}, ORACLE_NEEDS, "exactly one of 'fraction'"),
        ({"target": "subset", "fraction": 0.5, "cases": ["1"]}, ORACLE_NEEDS, "exactly one of 'fraction'"),
        ({"target": "all", "fraction": 0.5}, ORACLE_NEEDS, "only with target 'subset'"),
        ({"target": "subset", "fraction": 0}, ORACLE_NEEDS, r"in \(0, 1\]"),
        ({"target": "subset", "fraction": 1.5}, ORACLE_NEEDS, r"in \(0, 1\]"),
        ({"target": "subset", "cases": ["1", "1"]}, ORACLE_NEEDS, "duplicate"),
        ({"assistant": "mr"}, ORACLE_NEEDS, "declares no assistant"),
        ({"fracton": 0.5}, ORACLE_NEEDS, "unknown key.*'fracton'.*valid keys: target, fraction"),
    ],
)
def test_budget_rules(block, needs, match):
    with pytest.raises(ConfigError, match=match):
        LabelBudget.from_block(block, needs, "m")


def test_budget_defaults_follow_the_method():
    assert LabelBudget.from_block({}, ORACLE_NEEDS, "oracle").target == "all"
    assert LabelBudget.from_block(None, SourceOnly.needs, "source_only").target == "none"
    with pytest.raises(ConfigError, match="labels.assistant: method m trains on a second labelled modality"):
        LabelBudget.from_block({}, DataNeeds(assistant_labels=True), "m")


def test_subset_oracle_trains_on_the_drawn_cases_only_records_them_and_evaluation_carries_them(caches, tiny_dataset, tmp_path, monkeypatch):
    from xmodseg.evaluation.evaluate import evaluate_model

    loaded = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda path, *a, **k: loaded.append(Path(path).name) or real_load(path, *a, **k))
    labels = {"target": "subset", "fraction": 0.34, "seed": 1}  # 0.34 x 3 training cases -> 1
    side = _train(caches, tmp_path / "o", method="oracle", labels=labels)
    (case,) = side["labels"]["cases"]
    assert side["labels"] == {"target": "subset", "cases": [case], "n_labelled": 1, "n_train": 3, "seed": 1, "fraction": 0.34, "assistant": None}
    assert case in {"1", "2", "3"}
    assert side["data"]["target"]["cases"] == [case] and side["data"]["target"]["labels_used"] is True
    rest = sorted({"1", "2", "3"} - {case})
    assert side["data"]["target_unlabelled"]["cases"] == rest and side["data"]["target_unlabelled"]["labels_used"] is False
    assert [n for n in loaded if n.endswith("_label.npy")] == [f"{case}_label.npy"], loaded  # no other case's labels, no test case at all
    assert "4_image.npy" not in loaded
    # the same budget draws the same case (deterministic), and it is part of the resume hash
    again = _train(caches, tmp_path / "o2", method="oracle", labels=labels)
    assert again["labels"]["cases"] == [case] and again["config_hash"] == side["config_hash"]
    other = next(s for s in range(20) if LabelBudget.from_block({**labels, "seed": s}, ORACLE_NEEDS, "o").draw(["1", "2", "3"], "c") != (case,))
    assert _train(caches, tmp_path / "o3", method="oracle", labels={**labels, "seed": other})["config_hash"] != side["config_hash"]
    # budget "all" keeps the resume hash of the time before budgets
    assert _train(caches, tmp_path / "o4", method="oracle", labels={})["config_hash"] == _expected_hash("oracle", caches, PARAMS)
    # a test case is never labelled: named explicitly it is refused
    with pytest.raises(ConfigError, match="'4' is a test case"):
        _train(caches, tmp_path / "x", method="oracle", labels={"target": "subset", "cases": ["4"]})
    with pytest.raises(ConfigError, match="'9' is not a training case"):
        _train(caches, tmp_path / "x", method="oracle", labels={"target": "subset", "cases": ["9"]})
    monkeypatch.setattr(np, "load", real_load)
    out = evaluate_model(model_path=tmp_path / "o" / "model.pt", target_cache=caches["ct"], spec=load_dataset(tiny_dataset, "tiny"),
                         predictions_dir=tmp_path / "pred", metrics_path=tmp_path / "m.json", experiment={"name": "o", "seed": 3, "labels": labels})
    assert out["provenance"]["label_budget"] == side["labels"]


def test_target_labels_never_loaded_for_methods_that_do_not_declare_them(caches, tmp_path, monkeypatch):
    import xmodseg.training.budget as budget_module

    calls = []
    real = budget_module.training_slices

    def spy(cache, *, with_labels, cases=None):
        calls.append((Path(cache).name, with_labels, cases))
        return real(cache, with_labels=with_labels, cases=cases)

    monkeypatch.setattr(budget_module, "training_slices", spy)
    _train(caches, tmp_path / "so", labels={})
    assert calls == [("mr", True, None)]  # source_only: the target cache's slices are not even read
    calls.clear()
    _train(caches, tmp_path / "t", method=_Teacher.name, inputs={"teacher": caches["ct"]})
    assert calls == [("mr", True, None), ("ct", False, None)]  # target images, never their labels
    with pytest.raises(ConfigError, match="declares no target labels"):
        _train(caches, tmp_path / "t2", method=_Teacher.name, inputs={"teacher": caches["ct"]}, labels={"target": "all"})
    # and below the budget, the split guard: a test case's slices cannot be selected for training
    with pytest.raises(SplitLeakError, match=r"\['4'\] are not 'train' cases"):
        real(caches["ct"], with_labels=True, cases=["4"])


# ------------------------------------------------------------------------------ typed params


def test_params_are_typed_with_the_old_defaults_and_casts():
    from xmodseg.methods.sifa import SifaParams
    from xmodseg.methods.supervised import SupervisedParams
    from xmodseg.translation.cyclegan import CycleGANParams

    p = SupervisedParams.from_block({"iterations": 4, "lr": "2e-3", "batch_size": 4.0})  # YAML 1.1 reads 2e-3 as a string
    assert (p.lr, p.batch_size, p.weight_decay, p.lr_schedule, p.decay_start, p.network) == (2e-3, 4, 1e-5, "constant", 0.5, {})
    assert isinstance(p.batch_size, int) and SifaParams.from_block({"iterations": 1, "width": 1}).width == 1.0
    assert CycleGANParams.defaults()["lambda_identity"] == 0.5 and CycleGANParams.defaults()["n_blocks"] == 9
    with pytest.raises(ConfigError, match=r"x\.batch_size: 'many' is not an integer"):
        SupervisedParams.from_block({"iterations": 4, "batch_size": "many"}, "x")
    with pytest.raises(ConfigError, match=r"align_predictions: 'no' is not true/false"):
        SifaParams.from_block({"iterations": 4, "align_predictions": "no"})
    with pytest.raises(ConfigError, match="'seed'"):  # the runner's key, never a config's
        SupervisedParams.check_keys({"iterations": 4, "seed": 1}, "experiments.x.train")
    with pytest.raises(ConfigError, match="'iterations' is required"):
        SupervisedParams.from_block({"lr": 1.0})
    assert set(RUNTIME_KEYS) == {"device", "max_minutes", "checkpoint_every", "log_every", "snapshots"}


# ------------------------------------------------------------------------------ jobs


def _subparser(command: str) -> argparse.ArgumentParser:
    from xmodseg.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


JOBS = {
    "train": jobs.TrainJob(method="sifa", params={"iterations": 3, "lr": 0.1}, seed=2, source_cache="a b/c", target_cache="t",
                           model="m.pt", checkpoint_dir="ck", train_log="l.jsonl", inputs={"warm_start": "w=x.pt", "other": "o"},
                           labels={"target": "subset", "cases": ["1"]}, assistant_cache="as", gpu_slots=2, stop_at=1),
    "translate": jobs.TranslateJob(translator="cyclegan", params={"iterations": 1}, seed=0, source_cache="s", target_cache="t", model="m",
                                   checkpoint_dir="c", train_log="l", out_cache="o", quality="q", preview="p"),
    "evaluate": jobs.EvaluateJob(dataset="tiny", model="m.pt", target_cache="t", predictions="p", metrics="x.json", overlay="o.npz",
                                 experiment={"name": "e", "seed": 1}, batch_size=4, gpu=1),
}
JOB_TYPES = {"train": jobs.TrainJob, "translate": jobs.TranslateJob, "evaluate": jobs.EvaluateJob}


@pytest.mark.parametrize("command", sorted(JOBS))
def test_job_flags_round_trip(command):
    job = JOBS[command]
    argv = jobs.job_argv(job)
    assert jobs.job_from_args(JOB_TYPES[command], _subparser(command).parse_args(argv)) == job


def test_job_flags_match_the_callees_and_the_rules():
    """Every generated keyword is a parameter of the function the command runs; every flag a rule
    passes to train/translate/evaluate exists; --warm-start is gone (--input warm_start=PATH)."""
    import inspect

    from xmodseg.evaluation.evaluate import evaluate_model
    from xmodseg.translation.run import train_translator

    for job, fn, extra in ((JOBS["train"], train_experiment, set()), (JOBS["translate"], train_translator, set()), (JOBS["evaluate"], evaluate_model, {"spec"})):
        assert set(jobs.call_kwargs(job)) | extra <= set(inspect.signature(fn).parameters), type(job).__name__
    for command in JOBS:
        options = {o for a in _subparser(command)._actions for o in a.option_strings}
        used: set[str] = set()
        for rule in (REPO / "workflow" / "rules").glob("*.smk"):
            for shell in re.findall(rf"xmodseg {command} (.*?)(?:>|$)", rule.read_text(), flags=re.S):
                used |= set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", shell))
        assert {"--model", "--target-cache"} <= used, command  # the rule's command line was found
        assert used <= options, (command, used - options)
    assert "--warm-start" not in {o for a in _subparser("train")._actions for o in a.option_strings}


def test_repeated_input_role_and_bad_pairs_are_refused(capsys):
    p = _subparser("train")
    req = ["--method", "m", "--params", "{}", "--seed", "0", "--source-cache", "s", "--target-cache", "t", "--model", "m",
           "--checkpoint-dir", "c", "--train-log", "l"]
    with pytest.raises(ConfigError, match="--input a=...: given twice"):
        jobs.job_from_args(jobs.TrainJob, p.parse_args([*req, "--input", "a=1", "--input", "a=2"]))
    with pytest.raises(SystemExit):
        p.parse_args([*req, "--input", "no-equals-sign"])
    assert "'no-equals-sign' is not KEY=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        p.parse_args([*req, "--labels", "[1, 2]"])  # a JSON object, not a list
    assert "expected a JSON object" in capsys.readouterr().err


def test_cli_train_takes_inputs_and_labels(caches, tmp_path, monkeypatch, capsys):
    from xmodseg import cli

    monkeypatch.delenv("XMODSEG_GPU_SLOTS", raising=False)
    run = tmp_path / "cli"
    argv = ["train", "--method", "oracle", "--params", json.dumps(PARAMS), "--seed", "3", "--source-cache", str(caches["mr"]),
            "--target-cache", str(caches["ct"]), "--model", str(run / "model.pt"), "--checkpoint-dir", str(run / "ckpt"),
            "--train-log", str(run / "log.jsonl"), "--labels", json.dumps({"target": "subset", "cases": ["2"]})]
    assert cli.main(argv) == 0
    assert json.loads((run / "model.json").read_text())["labels"]["cases"] == ["2"]
    assert cli.main([*argv, "--input", f"warm_start={run / 'model.pt'}"]) == 2
    assert "takes no input 'warm_start'" in capsys.readouterr().err


def test_assistant_volumes_are_a_seeded_nested_draw_recorded_and_hashed(caches, tmp_path, monkeypatch):
    """`assistant_volumes` labels that many assistant training volumes: the same seed draws the same
    ones, a smaller draw is inside a larger one, only their labels are read, and the count joins the
    resume hash and the report's label column."""
    budget = {"target": "subset", "cases": ["1"], "assistant": "mr"}
    needs = DataNeeds(source_images=False, target_images=True, target_labels=True, assistant_labels=True)
    one, two = (LabelBudget.from_block({**budget, "assistant_volumes": n, "seed": 5}, needs, "joint").draw_assistant(["1", "2", "3"], "c") for n in (1, 2))
    assert len(one) == 1 and len(two) == 2 and set(one) <= set(two)
    loaded = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda path, *a, **k: loaded.append(str(path)) or real_load(path, *a, **k))
    side = _train(caches, tmp_path / "j1", method="joint", labels={**budget, "assistant_volumes": 1, "seed": 5}, assistant_cache=caches["mr"])
    monkeypatch.setattr(np, "load", real_load)
    assert side["labels"]["assistant_cases"] == list(one) and (side["labels"]["n_assistant"], side["labels"]["n_assistant_train"]) == (1, 3)
    assert side["data"]["assistant"]["cases"] == list(one)
    mr_labels = sorted(Path(p).name for p in loaded if "/mr/" in p and p.endswith("_label.npy"))
    assert mr_labels == [f"{one[0]}_label.npy"]  # no other assistant case's labels were read
    full = _train(caches, tmp_path / "j2", method="joint", labels={**budget, "seed": 5}, assistant_cache=caches["mr"])
    assert full["labels"]["n_assistant"] == 3 and full["config_hash"] != side["config_hash"]
    with pytest.raises(ConfigError, match="assistant_volumes: 4 but .* has 3 training cases"):
        _train(caches, tmp_path / "j3", method="joint", labels={**budget, "assistant_volumes": 4}, assistant_cache=caches["mr"])
    with pytest.raises(ConfigError, match="assistant_volumes: needs `assistant`"):
        LabelBudget.from_block({"target": "all", "assistant_volumes": 2}, ORACLE_NEEDS, "oracle")
