"""Typed models of the workflow config (`experiments`, `translators`, label budgets, declared inputs).

Built once from the schema-validated dict (Snakemake's `validate()` has already checked types and
names), they hold every planning-time check that needs more than the schema: a method's declared
inputs and data needs, the registry's modalities and splits, the translators an experiment names.
A mistake is a ConfigError naming the key (`experiments.<name>.inputs.<role>`, ...) before any job
runs, not after hours of training.

This module sits below `methods/` and `translation/`, so it never imports them: the caller hands in
the two registries (`xmodseg.methods.METHODS`, `xmodseg.translation.registry.TRANSLATORS`), whose
classes are read through the small protocols below. Planning hands in their `.declared` views (the
same attributes, cached as data by xmodseg.plugins), so that it imports no method module and no torch.

Example:
    >>> from xmodseg.methods import METHODS
    >>> from xmodseg.translation.registry import TRANSLATORS
    >>> cfg = WorkflowConfig.from_dict(validated, methods=METHODS.declared, translators=TRANSLATORS.declared)  # doctest: +SKIP
    >>> cfg.experiments["toy_mr2ct"].inputs["teacher"]  # doctest: +SKIP
    InputRef(role='teacher', name='supervised_mr2ct', kind='experiment_model', seed=0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from xmodseg.config.presets import expand_presets
from xmodseg.errors import ConfigError
from xmodseg.registry import DatasetSpec, check_has_test_cases, load_dataset, parse_cases

LABEL_TARGETS = ("none", "subset", "all")
INPUT_KINDS = ("translator_model", "translated_cache", "experiment_model")


class InputDecl(Protocol):
    """What `training.trainable.InputSpec` offers (read, never imported: it lives a layer above)."""

    kind: str
    optional: bool
    same_direction: bool


class TrainableDecl(Protocol):
    """The class attributes of a method or translator the planner reads."""

    name: str

    @classmethod
    def check_params(cls, params: Mapping[str, Any], where: str) -> None: ...


class Registry(Protocol):
    def names(self) -> list[str]: ...

    def get(self, name: str) -> Any: ...


@dataclass(frozen=True)
class InputRef:
    """One declared input of an experiment: `role` (the method's name for it), the config entry it
    names, and the kind of artifact (which says where its file is: see `config.resolve`)."""

    role: str
    name: str
    kind: str
    seed: int  # the named entry's first seed: the artifact used


@dataclass(frozen=True)
class LabelBudget:
    """Which labels an experiment may see. `target`: none | subset | all target labels (the default
    follows the method's declared needs); a subset is `fraction` or `cases` of the target's training
    cases, drawn with `seed` by the training job; `assistant`: a second labelled modality."""

    target: str
    fraction: float | None = None
    cases: tuple[str, ...] | None = None
    seed: int = 0
    assistant: str | None = None
    assistant_volumes: int | None = None  # how many of the assistant's training volumes are labelled (None: all)
    given: Mapping[str, Any] = field(default_factory=dict)  # the block as written (cases as strings)

    def as_arg(self) -> dict[str, Any]:
        """What `xmodseg train --labels` receives: the block as written (`{}` when absent)."""
        return dict(self.given)


@dataclass(frozen=True)
class TranslatorConfig:
    name: str
    translator: str
    source: str
    target: str
    seeds: tuple[int, ...]
    train: Mapping[str, Any]
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    method: str
    source: str
    target: str
    seeds: tuple[int, ...]
    train: Mapping[str, Any]
    translator: str | None  # `translator:`: the translated source cache it trains on
    translator_seed: int | None  # that translator's seed (resolved: its first by default)
    inputs: Mapping[str, InputRef]
    labels: LabelBudget
    adaptation: bool  # target images without target labels: the long jobs, started first
    raw: Mapping[str, Any]  # the block as written (recorded in metrics provenance)


@dataclass(frozen=True)
class WorkflowConfig:
    registry: str
    dataset: DatasetSpec
    preprocess: Mapping[str, Any]
    experiments: Mapping[str, ExperimentConfig]
    translators: Mapping[str, TranslatorConfig]
    evaluation: Mapping[str, Any]
    report: Mapping[str, Any]
    comparisons: tuple[tuple[str, str], ...]
    sweeps: tuple[dict[str, Any], ...]
    data_path: Mapping[str, str]
    raw: Mapping[str, Any]

    @property
    def name(self) -> str:
        return self.dataset.name

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, methods: Registry, translators: Registry, spec: DatasetSpec | None = None) -> WorkflowConfig:
        """The typed config of a schema-validated dict; every check that needs the registry or a
        method's declarations runs here (ConfigError naming the key). `spec`: the data set, if the
        caller already loaded it (default: from `raw["registry"]`)."""
        raw = expand_presets(raw)  # `train: {preset: NAME, ...}` -> the block itself (idempotent)
        spec = spec if spec is not None else load_dataset(raw["registry"], raw["dataset"])
        trs = {name: _translator(name, dict(block), spec, translators) for name, block in (raw.get("translators") or {}).items()}
        exps_raw: Mapping[str, Any] = raw["experiments"]
        exps = {name: _experiment(name, dict(block), spec, methods, trs, exps_raw) for name, block in exps_raw.items()}
        _check_input_cycles(exps)
        return cls(
            registry=str(raw["registry"]),
            dataset=spec,
            preprocess=dict(raw["preprocess"]),
            experiments=exps,
            translators=trs,
            evaluation=dict(raw.get("evaluation") or {}),
            report=dict(raw.get("report") or {}),
            comparisons=_comparisons(raw, exps),
            sweeps=_sweeps(raw, exps),
            data_path=dict(raw.get("data_path") or {}),
            raw=raw,
        )


def _get(registry: Registry, name: str, key: str, what: str) -> Any:
    if name not in registry.names():
        raise ConfigError(f"{key}: '{name}' is not one of the registered {what}s {registry.names()}")
    return registry.get(name)


def _translator(name: str, block: dict[str, Any], spec: DatasetSpec, translators: Registry) -> TranslatorConfig:
    key = f"translators.{name}"
    cls = _get(translators, block["translator"], f"{key}.translator", "translator")
    cls.check_params(block["train"], f"{key}.train")  # an unknown key would be ignored but recorded
    for role in ("source", "target"):
        _modality(spec, block[role], f"{key}.{role}")
    return TranslatorConfig(name, block["translator"], block["source"], block["target"], tuple(block["seeds"]), block["train"], block)


def _modality(spec: DatasetSpec, modality: str, key: str) -> None:
    if modality not in spec.modalities:
        raise ConfigError(f"{key}: data set '{spec.name}' has no modality '{modality}' (has: {sorted(spec.modalities)})")


def _experiment(
    name: str, block: dict[str, Any], spec: DatasetSpec, methods: Registry, trs: Mapping[str, TranslatorConfig], exps: Mapping[str, Any]
) -> ExperimentConfig:
    key = f"experiments.{name}"
    cls = _get(methods, block["method"], f"{key}.method", "method")
    cls.check_params(block["train"], f"{key}.train")
    for role in ("source", "target"):
        _modality(spec, block[role], f"{key}.{role}")
    check_has_test_cases(spec, block["target"], key)  # before any job, not after training
    _check_channels(key, block, cls, spec)
    translator, translator_seed = _translated_source(key, block, cls, trs)
    needs = cls.needs
    return ExperimentConfig(
        name=name,
        method=block["method"],
        source=block["source"],
        target=block["target"],
        seeds=tuple(block["seeds"]),
        train=block["train"],
        translator=translator,
        translator_seed=translator_seed,
        inputs=_inputs(name, block, cls, trs, exps),
        labels=_labels(key, block, cls, spec),
        adaptation=bool(needs.target_images and not needs.target_labels),
        raw=block,
    )


def _check_channels(key: str, block: Mapping[str, Any], cls: Any, spec: DatasetSpec) -> None:
    """Colour frames (modality kind `rgb`) need networks with 3 input channels, which only the
    methods built on the configurable MONAI U-Net (`train.network`) have; said at planning, not as
    a shape error after the data is prepared."""
    rgb = [spec.modality(block[role]).kind == "rgb" for role in ("source", "target")]
    if rgb[0] != rgb[1]:
        raise ConfigError(f"{key}: one of source '{block['source']}' and target '{block['target']}' is colour (rgb), the other is not")
    given = (block["train"].get("network") or {}).get("in_channels", 1)
    if not rgb[0]:
        if given != 1:
            raise ConfigError(f"{key}.train.network.in_channels: {given}, but '{block['target']}' of {spec.name} has one channel: remove it")
        return
    declared = getattr(cls, "params", None)  # a declaration's train keys, or the class's parameter type
    keys = declared if isinstance(declared, tuple) else cls.params_type.field_names()
    if "network" not in keys:
        raise ConfigError(f"{key}: '{spec.name}' has colour (rgb) frames and method '{block['method']}' builds 1-channel networks only; use a method with train.network (oracle, supervised_subset, cps, co_da)")
    if given != 3:
        raise ConfigError(f"{key}.train.network.in_channels: '{spec.name}' has colour (rgb) frames: set it to 3 (now {given})")


def _translated_source(key: str, block: Mapping[str, Any], cls: Any, trs: Mapping[str, TranslatorConfig]) -> tuple[str | None, int | None]:
    if "translator" not in block:
        if getattr(cls, "translated_source", False):
            raise ConfigError(f"{key}.translator: required for method {cls.name} (it trains on a translator's translated source cache; name a `translators` entry)")
        if "translator_seed" in block:
            raise ConfigError(f"{key}.translator_seed: set without `translator:`; remove it or name a translator")
        return None, None
    tr = trs.get(block["translator"])
    if tr is None:
        raise ConfigError(f"{key}.translator: '{block['translator']}' is not in translators ({sorted(trs)})")
    if (tr.source, tr.target) != (block["source"], block["target"]):
        raise ConfigError(f"{key}.translator: '{tr.name}' goes {tr.source}->{tr.target}, the experiment {block['source']}->{block['target']}")
    seed = int(block.get("translator_seed", tr.seeds[0]))
    if seed not in tr.seeds:
        raise ConfigError(f"{key}.translator_seed: {seed} is not one of translators.{tr.name}.seeds {list(tr.seeds)}")
    return tr.name, seed


def _inputs(own: str, block: Mapping[str, Any], cls: Any, trs: Mapping[str, TranslatorConfig], exps: Mapping[str, Any]) -> dict[str, InputRef]:
    """The experiment's `inputs:` checked against the method's declaration (`cls.inputs`)."""
    key = f"experiments.{own}"
    declared: Mapping[str, Any] = getattr(cls, "inputs", {}) or {}
    given: Mapping[str, str] = block.get("inputs") or {}
    for role in given:
        if role not in declared:
            valid = f"it declares: {', '.join(sorted(declared))}" if declared else "it declares no inputs"
            raise ConfigError(f"{key}.inputs.{role}: method {cls.name} takes no input '{role}' ({valid})")
    refs: dict[str, InputRef] = {}
    for role, decl in declared.items():
        where = f"{key}.inputs.{role}"
        if role not in given:
            if not decl.optional:
                raise ConfigError(f"{where}: required by method {cls.name} (a {decl.kind.replace('_', ' ')}); name the entry to use")
            continue
        refs[role] = _input(where, role, given[role], decl, block, trs, {n: e for n, e in exps.items() if n != own})
    return refs


def _input(where: str, role: str, name: str, decl: Any, block: Mapping[str, Any], trs: Mapping[str, TranslatorConfig], exps: Mapping[str, Any]) -> InputRef:
    if decl.kind not in INPUT_KINDS:
        raise ConfigError(f"{where}: the method declares kind '{decl.kind}', which the planner does not know ({', '.join(INPUT_KINDS)})")
    if decl.kind == "experiment_model":
        if name not in exps:
            raise ConfigError(f"{where}: '{name}' is not another entry of experiments ({sorted(exps)})")
        entry = exps[name]
        direction = (entry["source"], entry["target"])
        seed = entry["seeds"][0]
    else:
        tr = trs.get(name)
        if tr is None:
            raise ConfigError(f"{where}: '{name}' is not an entry of translators ({sorted(trs)})")
        kinds = tuple(getattr(decl, "translator_kinds", ()) or ())
        if kinds and tr.translator not in kinds:
            raise ConfigError(f"{where}: translators.{name} is a {tr.translator} translator; this input takes {' or '.join(kinds)}")
        direction = (tr.source, tr.target)
        seed = tr.seeds[0]
    if decl.same_direction and direction != (block["source"], block["target"]):
        raise ConfigError(f"{where}: '{name}' goes {direction[0]}->{direction[1]}, the experiment {block['source']}->{block['target']}")
    return InputRef(role=role, name=name, kind=decl.kind, seed=int(seed))


def _labels(key: str, block: Mapping[str, Any], cls: Any, spec: DatasetSpec) -> LabelBudget:
    """The label budget (rules: see the contract in the schema's `labels` description)."""
    key = f"{key}.labels"
    given = dict(block.get("labels") or {})
    needs = cls.needs
    target = given.get("target", "all" if needs.target_labels else "none")
    if target not in LABEL_TARGETS:
        raise ConfigError(f"{key}.target: '{target}' is not one of {LABEL_TARGETS}")
    if target != "none" and not needs.target_labels:
        raise ConfigError(f"{key}.target: method {cls.name} uses no target labels (its declared data needs); use target: none or remove the key")
    if target == "none" and needs.target_labels:
        raise ConfigError(f"{key}.target: method {cls.name} trains on target labels; give it `subset` (with fraction or cases) or `all`")
    fraction, cases = given.get("fraction"), given.get("cases")
    mod = spec.modality(block["target"])
    if target == "subset":
        if (fraction is None) == (cases is None):
            raise ConfigError(f"{key}: target: subset needs exactly one of `fraction` (of the training cases) or `cases` (ids)")
        if not mod.train_cases:
            raise ConfigError(f"{key}: modality '{mod.name}' has no training cases to draw a labelled subset from")
    elif fraction is not None or cases is not None:
        raise ConfigError(f"{key}: `fraction` / `cases` apply only with target: subset (here target: {target})")
    if cases is not None:
        cases = parse_cases(cases, f"{key}.cases")  # a list, or the registry's {format, product} form
        given["cases"] = list(cases)
        for case in cases:
            if case not in mod.cases:
                raise ConfigError(f"{key}.cases: '{case}' is not a case of modality '{mod.name}' (datasets.{spec.name}.modalities.{mod.name}.cases)")
            if case in mod.test_cases:
                raise ConfigError(f"{key}.cases: '{case}' is a test case of '{mod.name}'; a labelled subset comes from the training cases only")
        if len(set(cases)) != len(cases):
            raise ConfigError(f"{key}.cases: duplicate case ids")
    assistant = given.get("assistant")
    if assistant is None and getattr(needs, "assistant_labels", False):
        others = sorted(m for m in spec.modalities if m != block["target"])
        raise ConfigError(f"{key}.assistant: method {cls.name} trains on a second labelled modality; name it (one of {others}, the experiment's source)")
    if assistant is not None:
        if not getattr(needs, "assistant_labels", False):
            raise ConfigError(f"{key}.assistant: method {cls.name} does not use a second labelled modality (its declared data needs)")
        if assistant == block["target"] or assistant not in spec.modalities:
            others = sorted(m for m in spec.modalities if m != block["target"])
            raise ConfigError(f"{key}.assistant: '{assistant}' must be a modality of data set '{spec.name}' other than the target ({others})")
        if assistant != block["source"]:
            raise ConfigError(
                f"{key}.assistant: '{assistant}' differs from the experiment's source '{block['source']}'; the assistant modality is the "
                f"source (the report's direction, a warm start's translator), so set source: {assistant}"
            )
    volumes = given.get("assistant_volumes")
    if volumes is not None:
        if assistant is None:
            raise ConfigError(f"{key}.assistant_volumes: needs `assistant` (the second labelled modality)")
        available = len(spec.modality(assistant).train_cases)
        if volumes > available:
            raise ConfigError(f"{key}.assistant_volumes: {volumes}, but modality '{assistant}' has {available} training cases")
    return LabelBudget(
        target=target, fraction=fraction, cases=cases, seed=int(given.get("seed", 0)), assistant=assistant, assistant_volumes=volumes, given=given
    )


def _check_input_cycles(exps: Mapping[str, ExperimentConfig]) -> None:
    """Experiments that consume each other's models would be a cycle Snakemake reports obscurely."""
    deps = {n: [r.name for r in e.inputs.values() if r.kind == "experiment_model"] for n, e in exps.items()}
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            loop = path[path.index(n) :] + [n]
            raise ConfigError(f"experiments.{loop[0]}.inputs: a cycle of experiments consuming each other's models ({' -> '.join(loop)})")
        state[n] = 1
        for d in deps[n]:
            visit(d, [*path, n])
        state[n] = 2

    for n in exps:
        visit(n, [])


SWEEP_AXES = ("n_assistant", "n_labelled")


def _sweeps(raw: Mapping[str, Any], exps: Mapping[str, ExperimentConfig]) -> tuple[dict[str, Any], ...]:
    """`report.sweeps` ({title, x, lines: {name: [experiments]}}), checked while planning: every
    experiment exists and one sweep has one target (its points are the same test volumes)."""
    out = []
    for i, sweep in enumerate((raw.get("report") or {}).get("sweeps") or []):
        where = f"report.sweeps[{i}]"
        if sweep["x"] not in SWEEP_AXES:
            raise ConfigError(f"{where}.x: '{sweep['x']}' is not one of {SWEEP_AXES}")
        targets = set()
        for line, names in sweep["lines"].items():
            for name in names:
                if name not in exps:
                    raise ConfigError(f"{where}.lines.{line}: '{name}' is not in experiments ({sorted(exps)})")
                targets.add(exps[name].target)
        if len(targets) > 1:
            raise ConfigError(f"{where}: experiments with different targets ({sorted(targets)}); a sweep compares one target's test volumes")
        out.append({"title": str(sweep["title"]), "x": str(sweep["x"]), "lines": {str(k): [str(n) for n in v] for k, v in sweep["lines"].items()}})
    return tuple(out)


def _comparisons(raw: Mapping[str, Any], exps: Mapping[str, ExperimentConfig]) -> tuple[tuple[str, str], ...]:
    """`report.comparisons`, checked while planning (not after hours of training)."""
    pairs = (raw.get("report") or {}).get("comparisons") or []
    for i, (a, b) in enumerate(pairs):
        for name in (a, b):
            if name not in exps:
                raise ConfigError(f"report.comparisons[{i}]: '{name}' is not in experiments ({sorted(exps)})")
        if exps[a].target != exps[b].target:
            raise ConfigError(f"report.comparisons[{i}]: {a} and {b} have different targets; paired differences need the same test volumes")
        if not set(exps[a].seeds) & set(exps[b].seeds):
            raise ConfigError(f"report.comparisons[{i}]: {a} and {b} have no seed in common; pairs are (test volume, seed)")
    return tuple((str(a), str(b)) for a, b in pairs)
