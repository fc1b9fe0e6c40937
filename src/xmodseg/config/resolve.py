"""Config names -> workflow paths: what each job reads, in one place.

Snakemake's input functions (workflow/rules/common.smk), the DVC stages (provenance/dvc_stages.py)
and the planning-time checks all call these, so a job's inputs are derived once and the DVC deps
cannot drift from the Snakemake DAG (tests/test_dvc_dag.py compares the two). Paths come from
`xmodseg.layout` (results) and the registry (raw files).

Example:
    >>> experiment_inputs(cfg, "toy_mr2ct")  # a method declaring {"teacher": InputSpec("experiment_model")}  # doctest: +SKIP
    {'source': 'data/prepared/synthetic/mr', 'target': 'data/prepared/synthetic/ct',
     'input_teacher': 'results/models/synthetic/supervised_mr2ct/seed0/model.pt'}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from xmodseg.config.models import ExperimentConfig, InputRef, WorkflowConfig
from xmodseg.errors import ConfigError
from xmodseg.layout import REPORT_FILES, Layout
from xmodseg.registry import SourceKind

INPUT_PREFIX = "input_"  # experiment_inputs' key of a declared input: "input_" + role


def layout(cfg: WorkflowConfig) -> Layout:
    return Layout(cfg.dataset.name)


# ---- data ------------------------------------------------------------------------------------------


def source_kind(cfg: WorkflowConfig, modality: str) -> SourceKind:
    return cfg.dataset.source_kind(modality)


def modalities_of_kind(cfg: WorkflowConfig, *kinds: SourceKind) -> list[str]:
    """The data set's modalities whose raw files come from one of `kinds` (registry order)."""
    return [m for m in cfg.dataset.modalities if source_kind(cfg, m) in kinds]


def fetched_modalities(cfg: WorkflowConfig) -> list[str]:
    """The modalities whose files are located or downloaded, then imported (SourceKind.fetched)."""
    return [m for m in cfg.dataset.modalities if source_kind(cfg, m).fetched]


def raw_files(cfg: WorkflowConfig, modality: str) -> list[str]:
    """Every image and label file of the modality, as the registry lays them out."""
    spec = cfg.dataset
    return [str(p) for c in spec.modality(modality).cases for p in (spec.image_path(modality, c), spec.label_path(modality, c))]


def raw_root(cfg: WorkflowConfig) -> str:
    return cfg.dataset.root.as_posix()


def dataset_card(cfg: WorkflowConfig, modality: str) -> str:
    """The card the phantom generator writes beside a modality's files (xmodseg.synth)."""
    return (cfg.dataset.root / modality / "dataset_card.md").as_posix()


def used_modalities(cfg: WorkflowConfig) -> list[str]:
    """The modalities some experiment or translator reads (registry order)."""
    used = {m for e in cfg.experiments.values() for m in (e.source, e.target, e.labels.assistant) if m}
    used |= {m for tr in cfg.translators.values() for m in (tr.source, tr.target)}
    return [m for m in cfg.dataset.modalities if m in used]


def check_data_paths(cfg: WorkflowConfig, configfile: str = "your workflow config") -> None:
    """Registration-gated or own data needs its folder or archive: a modality that is read, not yet
    imported and has no `data_path` (nor the registry's `source.path`), or one that does not exist,
    stops planning with the block to write (instead of planning every job and failing at the fetch)."""
    spec = cfg.dataset
    gated = [m for m in used_modalities(cfg) if source_kind(cfg, m) in (SourceKind.IMPORT, SourceKind.SIFA_RELEASE)]
    problems = []
    for m in gated:
        if Path(import_manifest(cfg, m)).is_file():
            continue  # imported already: the fetch does not run again
        given = cfg.data_path.get(m) or spec.source_of(m).get("path")
        if not given:
            problems.append(f"data_path.{m} is missing")
        elif not Path(os.path.expanduser(str(given))).exists():
            problems.append(f"data_path.{m}: {given} does not exist")
    if not problems:
        return
    shape = "data_path: {" + ", ".join(f"{m}: {cfg.data_path.get(m) or '/path/to/your/' + m + '/folder-or-archive'}" for m in gated) + "}"
    request = spec.source_of(gated[0]).get("request")
    raise ConfigError(
        f"{'; '.join(problems)}: data set '{spec.name}' imports {', '.join(repr(m) for m in gated)} from your files; "
        f"set `{shape}` in {configfile}" + (f" (get the data: {request})" if request else "")
    )


def import_manifest(cfg: WorkflowConfig, modality: str) -> str:
    """The record the importer writes beside a modality's files (xmodseg.datasets)."""
    return (cfg.dataset.root / modality / "import_manifest.json").as_posix()


def prepare_cache_inputs(cfg: WorkflowConfig, modality: str) -> dict[str, Any]:
    """The raw files of a modality, and the download marker where the cache is built from a
    release (whose training slices are not raw files)."""
    inputs: dict[str, Any] = {"raw": raw_files(cfg, modality)}
    if source_kind(cfg, modality) is SourceKind.SIFA_RELEASE:
        inputs["marker"] = layout(cfg).download_marker(modality)
    return inputs


def prepare_cache_params(cfg: WorkflowConfig, modality: str) -> dict[str, Any]:
    """The `preprocess` block where it shapes the cache (not for a release, already preprocessed:
    a change there must not rebuild it)."""
    return {} if source_kind(cfg, modality) is SourceKind.SIFA_RELEASE else dict(cfg.preprocess)


def prepared(cfg: WorkflowConfig, modality: str) -> str:
    return layout(cfg).prepared(modality)


# ---- translators ------------------------------------------------------------------------------------


def translator_inputs(cfg: WorkflowConfig, tname: str) -> dict[str, str]:
    tr = cfg.translators[tname]
    return {"source": prepared(cfg, tr.source), "target": prepared(cfg, tr.target)}


def anatomy_reference(cfg: WorkflowConfig, target: str) -> str | None:
    """The model an anatomy check uses on `target`: the first experiment on that target trained
    with all its target labels (its first seed), or None."""
    for name, exp in cfg.experiments.items():
        if exp.target == target and exp.labels.target == "all":
            return layout(cfg).model(name, exp.seeds[0])
    return None


def translation_check_inputs(cfg: WorkflowConfig, tname: str, seed: int) -> dict[str, str]:
    tr = cfg.translators[tname]
    reference = anatomy_reference(cfg, tr.target)
    if reference is None:
        raise ConfigError(f"translators.{tname}: no anatomy check without an experiment on '{tr.target}' trained with all its target labels")
    return {"cache": layout(cfg).translated(tname, seed), "source": prepared(cfg, tr.source), "reference": reference}


def translator_outputs(cfg: WorkflowConfig, kind: str) -> list[str]:
    """quality.json of every translator and seed (kind "quality"), or anatomy.json of those whose
    target has an anatomy reference model (kind "anatomy")."""
    out = []
    L = layout(cfg)
    for name, tr in cfg.translators.items():
        if kind == "anatomy" and anatomy_reference(cfg, tr.target) is None:
            continue
        out += [L.path(f"translator_{kind}", tname=name, seed=s) for s in tr.seeds]
    return out


# ---- experiments ------------------------------------------------------------------------------------


def translated_cache(cfg: WorkflowConfig, exp_name: str) -> str:
    """The translated source cache an experiment trains on (its translator's chosen seed)."""
    exp = cfg.experiments[exp_name]
    if exp.translator is None or exp.translator_seed is None:
        raise ConfigError(f"experiments.{exp_name}: no `translator:`, so no translated cache")
    return layout(cfg).translated(exp.translator, exp.translator_seed)


def _input_path(cfg: WorkflowConfig, ref: InputRef) -> str:
    L = layout(cfg)
    if ref.kind == "translator_model":
        return L.translator_model(ref.name, ref.seed)
    if ref.kind == "translated_cache":
        return L.translated(ref.name, ref.seed)
    if ref.kind == "experiment_model":
        return L.model(ref.name, ref.seed)
    raise ConfigError(f"inputs.{ref.role}: unknown input kind '{ref.kind}'")


def input_paths(cfg: WorkflowConfig, exp_name: str) -> dict[str, str]:
    """Declared input role -> the file or folder it names (the named entry's first seed)."""
    return {role: _input_path(cfg, ref) for role, ref in cfg.experiments[exp_name].inputs.items()}


def experiment_inputs(cfg: WorkflowConfig, exp_name: str) -> dict[str, str]:
    """What a train job reads: {"source", "target", ["assistant"], "input_<role>"...} (the train
    rule's inputs and the DVC stage's deps)."""
    exp = cfg.experiments[exp_name]
    source = translated_cache(cfg, exp_name) if exp.translator else prepared(cfg, exp.source)
    inputs = {"source": source, "target": prepared(cfg, exp.target)}
    if exp.labels.assistant:
        inputs["assistant"] = prepared(cfg, exp.labels.assistant)
    inputs.update({INPUT_PREFIX + role: path for role, path in input_paths(cfg, exp_name).items()})
    return inputs


def declared_inputs(inputs: dict[str, str]) -> dict[str, str]:
    """role -> path of the declared inputs among `experiment_inputs` (for `--input ROLE=PATH`)."""
    return {k[len(INPUT_PREFIX) :]: v for k, v in inputs.items() if k.startswith(INPUT_PREFIX)}


def evaluate_inputs(cfg: WorkflowConfig, exp_name: str, seed: int) -> dict[str, str]:
    exp = cfg.experiments[exp_name]
    return {"model": layout(cfg).model(exp_name, seed), "target": prepared(cfg, exp.target)}


def train_priority(cfg: WorkflowConfig, exp_name: str) -> int:
    """Adaptation methods (target images, no target labels) run for many minutes: start them before
    the one-minute segmenters so they do not end up alone on the critical path."""
    return 5 if cfg.experiments[exp_name].adaptation else 0


def experiment_record(cfg: WorkflowConfig, exp_name: str, seed: int) -> dict[str, Any]:
    """The resolved experiment, recorded in metrics.json provenance."""
    exp: ExperimentConfig = cfg.experiments[exp_name]
    translator = {"translator_kind": cfg.translators[exp.translator].translator} if exp.translator else {}
    return {"name": exp_name, "dataset": cfg.dataset.name, "seed": int(seed), "preprocess": cfg.raw["preprocess"], **exp.raw, **translator}


def seed_metrics(cfg: WorkflowConfig, exp_name: str) -> list[str]:
    return [layout(cfg).seed_metrics(exp_name, s) for s in cfg.experiments[exp_name].seeds]


def all_seed_metrics(cfg: WorkflowConfig) -> list[str]:
    return [m for exp in cfg.experiments for m in seed_metrics(cfg, exp)]


def all_overlays(cfg: WorkflowConfig) -> list[str]:
    """The overlay of every experiment and seed, in the order of `all_seed_metrics` (paired)."""
    L = layout(cfg)
    return [L.overlay(exp, s) for exp, e in cfg.experiments.items() for s in e.seeds]


def experiment_metrics(cfg: WorkflowConfig) -> list[str]:
    return [layout(cfg).experiment_metrics(exp) for exp in cfg.experiments]


# ---- report ------------------------------------------------------------------------------------------


def report_inputs(cfg: WorkflowConfig) -> dict[str, list[str]]:
    return {
        "metrics": all_seed_metrics(cfg),
        "overlays": all_overlays(cfg),
        "translation": translator_outputs(cfg, "quality"),
        "anatomy": translator_outputs(cfg, "anatomy"),
        # read by the report through each metrics file's provenance (training time, learning curves)
        "sidecars": [layout(cfg).sidecar(exp, s) for exp, e in cfg.experiments.items() for s in e.seeds],
    }


def report_outputs(cfg: WorkflowConfig) -> list[str]:
    L = layout(cfg)
    return [L.path(k) for k in REPORT_FILES]


def report_sweeps(cfg: WorkflowConfig) -> list[str]:
    """The sweep figure, declared only when `report.sweeps` names some."""
    return [layout(cfg).path("report_sweeps")] if cfg.sweeps else []


def report_grids(cfg: WorkflowConfig) -> list[str]:
    """One comparison grid per direction of the experiments."""
    directions = dict.fromkeys((e.source, e.target) for e in cfg.experiments.values())
    return [layout(cfg).path("report_grid", source=s, target=t) for s, t in directions]


def report_overlays(cfg: WorkflowConfig) -> list[str]:
    return [layout(cfg).report_overlay(exp) for exp in cfg.experiments]
