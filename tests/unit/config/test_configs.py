"""Every shipped config validates and plans (snakemake -n) without its data: the real-data
protocols need only data, not code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, make_tiny_project
from xmodseg.config import WorkflowConfig
from xmodseg.config import resolve as R
from xmodseg.errors import ConfigError
from xmodseg.methods import METHODS
from xmodseg.registry import load_dataset
from xmodseg.training.trainable import DataNeeds, InputSpec
from xmodseg.translation.registry import TRANSLATORS

pytestmark = pytest.mark.usefixtures("slurm_controller")  # Snakemake starts here: see tests/conftest.py

BIN = Path(sys.executable).parent
CONFIGS = sorted(p.name for p in (REPO / "config").glob("*.yaml") if p.name != "datasets.yaml")


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    return make_tiny_project(tmp_path_factory.mktemp("configs") / "p", {}, "unused.yaml")


def with_data_paths(copy: Path, text: str, name: str, folder: Path) -> Path:
    """A copy of a config whose registration-gated modalities point at `folder` (planning needs
    only that the data exist: the real-data protocols need nothing but their data paths)."""
    cfg = yaml.safe_load(text)
    spec = load_dataset(REPO / cfg["registry"], cfg["dataset"])
    gated = [m for m in spec.modalities if spec.source_kind(m).value in ("import", "sifa_release")]
    folder.mkdir(parents=True, exist_ok=True)
    cfg["data_path"] = {m: str(folder) for m in gated}
    out = copy / "config" / f"_data_{name}"
    out.write_text(yaml.safe_dump(cfg))
    return out


@pytest.mark.parametrize("name", [*CONFIGS, "mmwhs_sifa.yaml:mmwhs_sifa_release"])
def test_config_plans(copy, name, tmp_path):
    name, _, dataset = name.partition(":")
    text = (REPO / "config" / name).read_text()
    if dataset:  # the same protocol on the SIFA release: one line differs
        text = text.replace("dataset: mmwhs ", f"dataset: {dataset} ", 1)
    cfg = with_data_paths(copy, text, f"{dataset or 'x'}_{name}", tmp_path / "data")
    proc = subprocess.run([str(BIN / "snakemake"), "-n", "--configfile", str(cfg.relative_to(copy))], cwd=copy, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "rule all" in out or "localrule all" in out
    if name in ("mmwhs_sifa.yaml", "abdomen_sifa.yaml"):
        assert "rule fetch_source:" in out and "import_ct" in out
        # GLUA's rows need only data: step A (adgan) and step B (glua) in both directions
        assert out.count("xmodseg translate --translator adgan") == 2 and out.count("xmodseg train --method glua") == 2
        if name.startswith("mmwhs_sifa.yaml"):  # MKD's rows too: both directions, full budget, with their baselines
            assert out.count("xmodseg train --method mkd") == 2 and out.count("xmodseg train --method joint") == 2
            assert out.count("xmodseg train --method finetune") == 2 and "--assistant-cache data/prepared/" in out
        # one prepare_cache rule; the release's cache is built from its download (the marker), by source kind
        prepare = [line for line in out.splitlines() if "xmodseg prepare-cache" in line]
        assert len(prepare) == 2 and all(("--marker data/downloads/" in line) == bool(dataset) for line in prepare), prepare


# ---- planning-time checks of the typed config (xmodseg.config) ----------------------------------

SEG = {"iterations": 2}
CYCLEGAN = {"translator": "cyclegan", "source": "mr", "target": "ct", "seeds": [0], "train": {"iterations": 2}}


class _Toy:
    """A method declared only by its class attributes (what the planner reads)."""

    name = "toy"
    needs = DataNeeds(source_labels=True, target_images=True, target_labels=True, assistant_labels=True)
    inputs = {"teacher": InputSpec("experiment_model"), "translator": InputSpec("translator_model", optional=True, same_direction=False)}
    translated_source = False

    @classmethod
    def check_params(cls, params, where):
        return None


class _Supervised(_Toy):
    name = "supervised_twin"  # trained with all target labels, but not called "oracle"
    needs = DataNeeds(source_images=False, target_images=True, target_labels=True)
    inputs = {}


class _Assisted(_Supervised):
    name = "assisted_twin"
    needs = DataNeeds(source_images=False, target_images=True, target_labels=True, assistant_labels=True)


class _Methods:
    """The real methods plus the toys (the registry protocol: names() and get())."""

    extra = {c.name: c for c in (_Toy, _Supervised, _Assisted)}

    def names(self):
        return sorted([*METHODS.names(), *self.extra])

    def get(self, name):
        return self.extra.get(name) or METHODS.get(name)


def _plan(tiny_dataset, experiments, translators=None, report=None):
    raw = {"registry": str(tiny_dataset), "dataset": "tiny", "preprocess": {}, "experiments": experiments,
           "translators": translators if translators is not None else {"cyclegan_mr2ct": CYCLEGAN}, **({"report": report} if report else {})}
    return WorkflowConfig.from_dict(raw, methods=_Methods(), translators=TRANSLATORS)


def _exp(method, **extra):
    return {"method": method, "source": "mr", "target": "ct", "seeds": [0], "train": SEG, **extra}


def test_declared_inputs_resolve_to_paths_for_rules_and_dvc(tiny_dataset):
    cfg = _plan(tiny_dataset, {"twin": _exp("supervised_twin"), "toy": _exp("toy", inputs={"teacher": "twin", "translator": "cyclegan_mr2ct"},
                                                                            labels={"target": "subset", "fraction": 0.5, "assistant": "mr"})})
    assert R.input_paths(cfg, "toy") == {"teacher": "results/models/tiny/twin/seed0/model.pt", "translator": "results/translators/tiny/cyclegan_mr2ct/seed0/model.pt"}
    assert R.experiment_inputs(cfg, "toy") == {
        "source": "data/prepared/tiny/mr", "target": "data/prepared/tiny/ct", "assistant": "data/prepared/tiny/mr",
        "input_teacher": "results/models/tiny/twin/seed0/model.pt", "input_translator": "results/translators/tiny/cyclegan_mr2ct/seed0/model.pt",
    }
    assert cfg.experiments["toy"].labels.as_arg() == {"target": "subset", "fraction": 0.5, "assistant": "mr"}  # what --labels gets
    # the anatomy check's reference: the first experiment on the target with all its target labels, whatever its method is called
    assert R.anatomy_reference(cfg, "ct") == "results/models/tiny/twin/seed0/model.pt" and R.anatomy_reference(cfg, "mr") is None


@pytest.mark.parametrize(
    ("experiments", "key"),
    [
        ({"s": _exp("sifa", inputs={"warm_up": "cyclegan_mr2ct"})}, r"experiments\.s\.inputs\.warm_up: method sifa takes no input 'warm_up' \(it declares: warm_start\)"),
        ({"s": _exp("sifa", inputs={"warm_start": "nope"})}, r"experiments\.s\.inputs\.warm_start: 'nope' is not an entry of translators"),
        ({"s": _exp("sifa", inputs={"warm_start": "dis_mr2ct"})}, r"experiments\.s\.inputs\.warm_start: translators\.dis_mr2ct is a disentangled translator; this input takes cyclegan"),
        ({"s": _exp("sifa", source="ct", target="mr", inputs={"warm_start": "cyclegan_mr2ct"})}, r"experiments\.s\.inputs\.warm_start: 'cyclegan_mr2ct' goes mr->ct, the experiment ct->mr"),
        ({"s": _exp("source_only", inputs={"warm_start": "cyclegan_mr2ct"})}, r"experiments\.s\.inputs\.warm_start: method source_only takes no input .*declares no inputs"),
        ({"t": _exp("toy", labels={"target": "all", "assistant": "mr"})}, r"experiments\.t\.inputs\.teacher: required by method toy"),
        ({"t": _exp("toy", inputs={"teacher": "t"}, labels={"target": "all", "assistant": "mr"})}, r"experiments\.t\.inputs\.teacher: 't' is not another entry of experiments"),
        ({"a": _exp("toy", inputs={"teacher": "b"}, labels={"target": "all", "assistant": "mr"}), "b": _exp("toy", inputs={"teacher": "a"}, labels={"target": "all", "assistant": "mr"})},
         r"experiments\.a\.inputs: a cycle .*\(a -> b -> a\)"),
        ({"t": _exp("translate_then_segment")}, r"experiments\.t\.translator: required for method translate_then_segment"),
        ({"g": _exp("glua")}, r"experiments\.g\.translator: required for method glua \(it trains on a translator's translated source cache"),
    ],
)
def test_declared_input_mistakes_name_the_key(tiny_dataset, experiments, key):
    translators = {"cyclegan_mr2ct": CYCLEGAN, "dis_mr2ct": {**CYCLEGAN, "translator": "disentangled"}}
    with pytest.raises(ConfigError, match=key):
        _plan(tiny_dataset, experiments, translators)


@pytest.mark.parametrize(
    ("labels", "method", "key"),
    [
        ({"target": "subset", "fraction": 0.5}, "source_only", r"labels\.target: method source_only uses no target labels"),
        ({"target": "none"}, "oracle", r"labels\.target: method oracle trains on target labels"),
        ({"target": "subset"}, "oracle", r"labels: target: subset needs exactly one of `fraction`"),
        ({"target": "subset", "fraction": 0.5, "cases": ["1"]}, "oracle", r"labels: target: subset needs exactly one of"),
        ({"target": "all", "cases": ["1"]}, "oracle", r"labels: `fraction` / `cases` apply only with target: subset"),
        ({"target": "subset", "cases": ["4"]}, "oracle", r"labels\.cases: '4' is a test case of 'ct'"),
        ({"target": "subset", "cases": ["9"]}, "oracle", r"labels\.cases: '9' is not a case of modality 'ct'"),
        ({"assistant": "mr"}, "oracle", r"labels\.assistant: method oracle does not use a second labelled modality"),
        ({"target": "all", "assistant": "ct"}, "assisted_twin", r"labels\.assistant: 'ct' must be a modality of data set 'tiny' other than the target"),
        ({"target": "all", "assistant_volumes": 2}, "oracle", r"labels\.assistant_volumes: needs `assistant`"),
        ({"target": "all"}, "assisted_twin", r"labels\.assistant: method assisted_twin trains on a second labelled modality; name it \(one of \['mr'\]"),
        ({"target": "all", "assistant": "mr", "assistant_volumes": 4}, "assisted_twin", r"labels\.assistant_volumes: 4, but modality 'mr' has 3 training cases"),
    ],
)
def test_label_budget_mistakes_name_the_key(tiny_dataset, labels, method, key):
    with pytest.raises(ConfigError, match=rf"experiments\.e\.{key}"):
        _plan(tiny_dataset, {"e": _exp(method, labels=labels)})


def test_label_budget_defaults_follow_the_declared_needs(tiny_dataset):
    cfg = _plan(tiny_dataset, {"o": _exp("oracle"), "s": _exp("source_only"), "c": _exp("oracle", labels={"target": "subset", "cases": [1, "2"], "seed": 3})})
    assert cfg.experiments["o"].labels.target == "all" and cfg.experiments["s"].labels.target == "none"
    c = cfg.experiments["c"].labels
    assert (c.target, c.cases, c.seed, c.as_arg()["cases"]) == ("subset", ("1", "2"), 3, ["1", "2"])  # ids as strings


def test_label_cases_take_the_registry_format_product_form(tiny_dataset):
    """ACDC's labelled patients: both frames of each (the registry's {format, product} form)."""
    cases = {"format": "{0}", "product": [["1", "2"]]}
    cfg = _plan(tiny_dataset, {"c": _exp("oracle", labels={"target": "subset", "cases": cases})})
    assert cfg.experiments["c"].labels.cases == ("1", "2") and cfg.experiments["c"].labels.as_arg()["cases"] == ["1", "2"]
    with pytest.raises(ConfigError, match=r"experiments\.c\.labels\.cases: '4' is a test case"):
        _plan(tiny_dataset, {"c": _exp("oracle", labels={"target": "subset", "cases": {"format": "{0}", "product": [["1", "4"]]}})})


def test_acdc_semi_labels_14_training_patients_both_frames(copy, tmp_path):
    cfg = with_data_paths(copy, (REPO / "config" / "acdc_semi.yaml").read_text(), "acdc.yaml", tmp_path / "ACDC")
    proc = subprocess.run([str(BIN / "snakemake"), "-n", "-p", "--configfile", str(cfg.relative_to(copy))], cwd=copy, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if "xmodseg train --method co_da" in line]
    assert len(lines) == 1
    labels = json.loads(lines[0].split("--labels '")[1].split("'")[0])
    patients = {c.rsplit("_", 1)[0] for c in labels["cases"]}
    assert len(labels["cases"]) == 28 and len(patients) == 14 and all(f"{p}_ED" in labels["cases"] and f"{p}_ES" in labels["cases"] for p in patients)
    spec = load_dataset(REPO / "config" / "datasets.yaml", "acdc")
    assert not set(labels["cases"]) & set(spec.modality("mr").test_cases) and len(spec.modality("mr").test_cases) == 40
    groups = {(int(c[7:10]) - 1) // 20 for c in spec.modality("mr").test_cases}
    assert groups == {0, 1, 2, 3, 4}  # every ACDC pathology group is tested


def _co_da_job(copy: Path, config: str, modality: str, folder: Path) -> str:
    """A shipped protocol planned with only its data path (`folder`): the command line of its
    one co_da training job, after checking the data is fetched and imported first."""
    cfg = yaml.safe_load((REPO / "config" / config).read_text())
    cfg["data_path"] = {modality: str(folder)}
    folder.mkdir()
    (copy / "config" / f"_{config}").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([str(BIN / "snakemake"), "-n", "-p", "--configfile", f"config/_{config}"], cwd=copy, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rule fetch_source:" in proc.stdout and f"import_{modality}" in proc.stdout
    lines = [line for line in proc.stdout.splitlines() if "xmodseg train --method co_da" in line]
    assert len(lines) == 1
    return lines[0]


def test_la2018_semi_plans_with_only_its_data_path(copy, tmp_path):
    """UA-MT's protocol: the first 16 of the 80 training ids labelled, none of the 20 test ids."""
    line = _co_da_job(copy, "la2018_semi.yaml", "mr", tmp_path / "Training Set")
    labels = json.loads(line.split("--labels '")[1].split("'")[0])
    mr = load_dataset(REPO / "config" / "datasets.yaml", "la2018").modality("mr")
    assert labels["cases"] == list(mr.train_cases[:16]) and not set(labels["cases"]) & set(mr.test_cases)


def test_colour_frames_need_three_channel_networks_said_at_planning(tiny_dataset):
    """A data set of kind rgb (CaDIS) trains only U-Net methods with network.in_channels: 3; a
    grey data set refuses in_channels 3. Each said while planning, naming the key."""
    reg = yaml.safe_load(tiny_dataset.read_text())
    reg["datasets"]["tiny"]["modalities"]["ct"]["kind"] = "rgb"
    tiny_dataset.write_text(yaml.safe_dump(reg))
    rgb = {"source": "ct", "target": "ct", "labels": {"target": "subset", "fraction": 0.5}}
    three = {"iterations": 2, "network": {"in_channels": 3}}
    cfg = _plan(tiny_dataset, {"c": {**_exp("co_da", **rgb), "train": three}}, translators={})
    assert cfg.experiments["c"].train["network"]["in_channels"] == 3
    with pytest.raises(ConfigError, match=r"experiments\.c\.train\.network\.in_channels: 'tiny' has colour \(rgb\) frames: set it to 3 \(now 1\)"):
        _plan(tiny_dataset, {"c": _exp("co_da", **rgb)}, translators={})
    with pytest.raises(ConfigError, match=r"experiments\.c: 'tiny' has colour \(rgb\) frames and method 'sifa' builds 1-channel networks only"):
        _plan(tiny_dataset, {"c": {**_exp("sifa"), "source": "ct", "target": "ct"}}, translators={})
    with pytest.raises(ConfigError, match=r"experiments\.c: one of source 'mr' and target 'ct' is colour"):
        _plan(tiny_dataset, {"c": _exp("oracle")}, translators={})
    with pytest.raises(ConfigError, match=r"experiments\.c\.train\.network\.in_channels: 3, but 'mr' of tiny has one channel"):
        _plan(tiny_dataset, {"c": {**_exp("oracle"), "source": "mr", "target": "mr", "train": three}}, translators={})


def test_cadis_semi_plans_with_only_its_data_path(copy, tmp_path):
    """24 % of the 3,550 training frames labelled, RGB networks, the 586 test frames never labelled."""
    line = _co_da_job(copy, "cadis_semi.yaml", "rgb", tmp_path / "CaDIS")
    assert json.loads(line.split("--labels '")[1].split("'")[0]) == {"target": "subset", "fraction": 0.24, "seed": 0}
    assert json.loads(line.split("--params '")[1].split("'")[0])["network"]["in_channels"] == 3
    rgb = load_dataset(REPO / "config" / "datasets.yaml", "cadis").modality("rgb")
    assert (rgb.kind, len(rgb.train_cases), len(rgb.test_cases)) == ("rgb", 3550, 586)
    assert {c.split("_")[0] for c in rgb.test_cases} == {"Video2", "Video12", "Video22"}
    assert not {c.split("_")[0] for c in rgb.train_cases} & {"Video2", "Video12", "Video22", "Video5", "Video7", "Video16"}


def test_missing_or_half_data_paths_stop_planning_with_the_block_to_write(copy, tmp_path):
    """No dry run of 36 jobs and a fetch failing three times: planning names the missing modality and
    the data_path block to write; an imported modality needs no path any more."""
    cfg = yaml.safe_load((REPO / "config" / "mmwhs_sifa.yaml").read_text())
    (tmp_path / "mr").mkdir()
    for data_path, message in (
        ({}, "data_path.mr is missing; data_path.ct is missing: data set 'mmwhs' imports 'mr', 'ct' from your files; set `data_path: {mr: /path/to/your/mr/folder-or-archive, ct: /path/to/your/ct/folder-or-archive}` in config/_half.yaml (get the data:"),
        ({"mr": str(tmp_path / "mr")}, f"data_path.ct is missing: data set 'mmwhs' imports 'mr', 'ct' from your files; set `data_path: {{mr: {tmp_path / 'mr'}, ct: /path/to/your/ct/folder-or-archive}}`"),
        ({"mr": str(tmp_path / "mr"), "ct": str(tmp_path / "nowhere")}, f"data_path.ct: {tmp_path / 'nowhere'} does not exist"),
    ):
        cfg["data_path"] = data_path
        (copy / "config" / "_half.yaml").write_text(yaml.safe_dump(cfg))
        proc = subprocess.run([str(BIN / "snakemake"), "-n", "--configfile", "config/_half.yaml"], cwd=copy, capture_output=True, text=True, timeout=300)
        assert proc.returncode != 0 and message in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
        assert "Job stats" not in proc.stdout
    (tmp_path / "ct").mkdir()  # layered: the shipped protocol as it is, the paths in a second file
    (copy / "config" / "_paths.yaml").write_text(yaml.safe_dump({"data_path": {"mr": str(tmp_path / "mr"), "ct": str(tmp_path / "ct")}}))
    (copy / "config" / "_mmwhs.yaml").write_text((REPO / "config" / "mmwhs_sifa.yaml").read_text())
    proc = subprocess.run([str(BIN / "snakemake"), "-n", "--configfile", "config/_mmwhs.yaml", "config/_paths.yaml"], cwd=copy, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Job stats" in proc.stdout, (proc.stdout + proc.stderr)[-3000:]
    manifest = copy / "data/raw/mmwhs/ct/import_manifest.json"  # ct imported already: only mr's path is needed
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{}")
    try:
        proc = subprocess.run([str(BIN / "snakemake"), "-n", "--configfile", "config/_half.yaml"], cwd=copy, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    finally:
        manifest.unlink()


def test_a_bad_input_stops_snakemake_while_planning(copy):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["experiments"]["sifa_mr2ct"]["inputs"] = {"warm_start": "cyclegan_ct2mr"}
    (copy / "config" / "_bad.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([str(BIN / "snakemake"), "-n", "--configfile", "config/_bad.yaml"], cwd=copy, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "experiments.sifa_mr2ct.inputs.warm_start: 'cyclegan_ct2mr' goes ct->mr, the experiment mr->ct" in proc.stdout + proc.stderr


def test_presets_are_referenced_by_name_with_overrides():
    """`train: {preset: NAME, ...}` is the preset's block with the overrides (nested blocks merged
    key by key), the same experiment as the block written out; a wrong name or a circle is named."""
    from xmodseg.config.presets import expand_presets, referenced

    base = {"iterations": 4, "batch_size": 2, "network": {"channels": [4, 8, 16], "strides": [2, 2]}}
    presets = {"seg": base, "seg_long": {"preset": "seg", "iterations": 8}}
    raw = {"presets": presets, "experiments": {"a": {"train": {"preset": "seg_long", "network": {"channels": [8, 16, 32]}}}, "b": {"train": dict(base)}}}
    out = expand_presets(raw)
    assert out["experiments"]["a"]["train"] == {"iterations": 8, "batch_size": 2, "network": {"channels": [8, 16, 32], "strides": [2, 2]}}
    assert out["presets"]["seg_long"]["iterations"] == 8 and raw["presets"]["seg_long"] == {"preset": "seg", "iterations": 8}  # the input is not changed
    assert expand_presets(out) == out and referenced(raw, raw["experiments"]["a"]["train"]) == ["seg_long", "seg"]
    with pytest.raises(ConfigError, match=r"experiments\.a\.train\.preset: 'segg' is not one of the presets \['seg', 'seg_long'\]"):
        expand_presets({**raw, "experiments": {"a": {"train": {"preset": "segg"}}}})
    with pytest.raises(ConfigError, match=r"presets refer to each other in a circle \(p -> q -> p\)"):
        expand_presets({"presets": {"p": {"preset": "q"}, "q": {"preset": "p"}}, "experiments": {}})


def test_a_preset_by_name_plans_the_same_job_as_the_block_written_out(copy):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["experiments"] = {"oracle_mr2ct": cfg["experiments"]["oracle_mr2ct"]}
    cfg["translators"] = {}
    cfg.pop("report", None)
    lines = []
    for train in (cfg["experiments"]["oracle_mr2ct"]["train"], {"preset": "segmentation"}):
        cfg["experiments"]["oracle_mr2ct"]["train"] = train
        (copy / "config" / "_preset.yaml").write_text(yaml.safe_dump(cfg))
        proc = subprocess.run([str(BIN / "snakemake"), "-n", "-p", "--configfile", "config/_preset.yaml"], cwd=copy, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        lines.append([line for line in proc.stdout.splitlines() if "xmodseg train --method oracle" in line])
    assert lines[0] and lines[0] == lines[1]
