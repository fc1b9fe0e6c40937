"""The parameters of the `train`, `translate` and `evaluate` jobs, each written once.

A job is a frozen dataclass; its fields generate the command's argparse flags (`source_cache` ->
`--source-cache`; the help text is in the field's metadata) and map onto the keyword arguments of
the function the command runs (`call` renames, `call=None` keeps a field for the command line only,
e.g. the GPU lease). A new job parameter is then one field here and one flag in the rule.

Flag forms, from the field's type:
    int, float, str          --name VALUE           (`X | None` with default None: optional)
    bool                     --name                 (store_true)
    dict (`json=True`)       --name JSON
    dict (`pairs=True`)      --name KEY=VALUE, repeatable (e.g. `--input teacher=PATH`)

Example:
    >>> p = argparse.ArgumentParser()
    >>> add_job_arguments(p, TrainJob)
    >>> job = job_from_args(TrainJob, p.parse_args(["--method", "oracle", "--params", "{}", "--seed", "0", "--source-cache", "a",
    ...     "--target-cache", "b", "--model", "m.pt", "--checkpoint-dir", "c", "--train-log", "l", "--input", "x=y.pt"]))
    >>> job.inputs
    {'x': 'y.pt'}
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

from xmodseg.errors import ConfigError

J = TypeVar("J")
_UNSET: Any = dataclasses.MISSING


def arg(
    help: str,
    *,
    default: Any = _UNSET,
    default_factory: Any = _UNSET,
    flag: str | None = None,
    call: str | None = "",
    json: bool = False,
    pairs: bool = False,
    hidden: bool = False,
    metavar: str | None = None,
) -> Any:
    """A job field: `flag` overrides the generated flag name, `call` the callee's keyword (None: not
    passed on), `json` / `pairs` the dict forms, `hidden` keeps it out of --help (test hooks)."""
    meta = {"help": help, "flag": flag, "call": call, "json": json, "pairs": pairs, "hidden": hidden, "metavar": metavar}
    if default_factory is not _UNSET:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True, kw_only=True)
class TrainJob:
    """`xmodseg train`: one experiment (method x direction x seed) -> `xmodseg.methods.run.train_experiment`."""

    method: str = arg("training method (a registered name)", call="method_name")
    params: dict[str, Any] = arg("the experiment's `train` block as JSON", json=True)
    seed: int = arg("experiment seed")
    source_cache: str = arg("source slice cache (or a translator's translated cache)")
    target_cache: str = arg("target slice cache")
    model: str = arg("model file to write (sidecar: same name, .json)", call="model_path", metavar="MODEL_PT")
    checkpoint_dir: str = arg("resumable checkpoints (kept outside the rule's outputs)")
    train_log: str = arg("JSONL loss log", call="log_path", metavar="LOSS_JSONL")
    inputs: dict[str, str] = arg(
        "a declared input of the method (its `inputs` roles), ROLE=PATH; repeatable",
        default_factory=dict, flag="--input", pairs=True, metavar="ROLE=PATH",
    )
    labels: dict[str, Any] = arg("the experiment's `labels` block (label budget) as JSON; {}: the method's default", default_factory=dict, json=True)
    assistant_cache: str | None = arg("the assistant modality's slice cache (with labels.assistant)", default=None)
    gpu_slots: int | None = arg(
        "GPU slots to lease from (the N of Snakemake's --resources gpu=N; default: $XMODSEG_GPU_SLOTS, else none)", default=None, call=None
    )
    stop_at: int | None = arg("stop after this iteration (tests of resume)", default=None, hidden=True)


@dataclass(frozen=True, kw_only=True)
class TranslateJob:
    """`xmodseg translate`: one translator (direction x seed) -> `xmodseg.translation.run.train_translator`."""

    translator: str = arg("translator (a registered name: cyclegan, disentangled, ...)")
    params: dict[str, Any] = arg("the translator's `train` block as JSON", json=True)
    seed: int = arg("translator seed")
    source_cache: str = arg("source slice cache")
    target_cache: str = arg("target slice cache")
    model: str = arg("model file to write (sidecar: same name, .json)", call="model_path", metavar="MODEL_PT")
    checkpoint_dir: str = arg("resumable checkpoints (kept outside the rule's outputs)")
    train_log: str = arg("JSONL loss log", call="log_path", metavar="LOSS_JSONL")
    out_cache: str = arg("translated cache folder to write", metavar="CACHE_DIR")
    quality: str = arg("translation-quality JSON to write", call="quality_path", metavar="QUALITY_JSON")
    preview: str = arg("preview grid PNG to write", call="preview_path", metavar="PREVIEW_PNG")
    inputs: dict[str, str] = arg(
        "a declared input of the translator, ROLE=PATH (repeatable)", default_factory=dict, flag="--input", pairs=True, metavar="ROLE=PATH"
    )
    gpu_slots: int | None = arg(
        "GPU slots to lease from (the N of Snakemake's --resources gpu=N; default: $XMODSEG_GPU_SLOTS, else none)", default=None, call=None
    )
    stop_at: int | None = arg("stop after this iteration (tests of resume)", default=None, hidden=True)


@dataclass(frozen=True, kw_only=True)
class EvaluateJob:
    """`xmodseg evaluate`: one model on the target test volumes -> `xmodseg.evaluation.evaluate.evaluate_model`
    (`registry` + `dataset` become its `spec`)."""

    registry: str = arg("data-set registry YAML", default="config/datasets.yaml", call=None, metavar="REGISTRY_YAML")
    dataset: str = arg("registry entry name", call=None)
    model: str = arg("model.pt to evaluate", call="model_path", metavar="MODEL_PT")
    target_cache: str = arg("target slice cache (its test cases are evaluated)")
    predictions: str = arg("folder for NIfTI predictions on the original grids", call="predictions_dir", metavar="PREDICTION_DIR")
    metrics: str = arg("metrics.json to write", call="metrics_path", metavar="SEED_METRICS_JSON")
    overlay: str | None = arg("overlay.npz to write (default: next to --metrics)", default=None, call="overlay_path", metavar="OVERLAY_NPZ")
    experiment: dict[str, Any] = arg("resolved experiment config (recorded)", default_factory=dict, json=True)
    batch_size: int = arg("slices per forward pass", default=32)
    gpu: int = arg("GPUs the rule declared (>0: lease one, see xmodseg.gpu_lease)", default=0, call=None)
    gpu_slots: int | None = arg(
        "GPU slots to lease from (the N of Snakemake's --resources gpu=N; default: $XMODSEG_GPU_SLOTS, else none)", default=None, call=None
    )


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _flag(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _scalar(hint: Any) -> type:
    """int / float / str of `hint`, `X | None` unwrapped."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0]
    return hint if hint in (int, float, str, bool) else str


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def add_job_arguments(parser: argparse.ArgumentParser, job: type[Any]) -> None:
    """One flag per field of the job dataclass `job`."""
    hints = typing.get_type_hints(job)
    for f in dataclasses.fields(job):
        m = f.metadata
        kwargs: dict[str, Any] = {"dest": f.name, "help": argparse.SUPPRESS if m.get("hidden") else m.get("help")}
        if m.get("metavar"):
            kwargs["metavar"] = m["metavar"]
        if m.get("pairs"):
            kwargs.update(type=_pair, action="append", default=[])
        elif m.get("json"):
            kwargs.update(type=_json_object, required=_required(f), metavar=m.get("metavar") or "JSON")
            if not _required(f):
                kwargs["default"] = None  # filled from the field's default in job_from_args
        elif _scalar(hints[f.name]) is bool:
            kwargs.update(action="store_true")
        else:
            kwargs.update(type=_scalar(hints[f.name]), required=_required(f))
            if not _required(f):
                kwargs["default"] = f.default
        parser.add_argument(_flag(f), **kwargs)


def job_from_args(job: type[J], args: argparse.Namespace) -> J:
    """The job of parsed flags (repeated KEY=VALUE pairs -> dict; a repeated key is an error)."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(job):  # type: ignore[arg-type]
        value = getattr(args, f.name)
        if f.metadata.get("pairs"):
            out: dict[str, str] = {}
            for key, item in value or []:
                if key in out:
                    raise ConfigError(f"{_flag(f)} {key}=...: given twice ({out[key]!r} and {item!r})")
                out[key] = item
            value = out
        elif value is None and f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        values[f.name] = value
    return job(**values)


def call_kwargs(job: Any) -> dict[str, Any]:
    """The job as keyword arguments of the function its command runs (`call` names; `call=None` left out)."""
    out = {}
    for f in dataclasses.fields(job):
        name = f.metadata.get("call", "")
        if name is None:
            continue
        out[name or f.name] = getattr(job, f.name)
    return out


def job_argv(job: Any) -> list[str]:
    """The flags that give `job` back (inverse of `job_from_args`; defaults are left out)."""
    hints = typing.get_type_hints(type(job))
    argv: list[str] = []
    for f in dataclasses.fields(job):
        value = getattr(job, f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if not _required(f) and value == default:
            continue
        flag = _flag(f)
        if f.metadata.get("pairs"):
            argv += [x for k, v in value.items() for x in (flag, f"{k}={v}")]
        elif f.metadata.get("json"):
            argv += [flag, json.dumps(value, sort_keys=True)]
        elif _scalar(hints[f.name]) is bool:
            argv += [flag] if value else []
        else:
            argv += [flag, str(value)]
    return argv
