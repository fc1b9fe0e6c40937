"""Typed `train` blocks: one frozen dataclass per method or translator, built from the config.

`TrainParams` holds the keys the shared loop reads for everything it trains; a method's `Params`
subclasses it with its own keys, types and defaults. Building one from a `train` block refuses any
key the class does not declare (an ignored key would still be hashed and recorded in model.json as if
used) and converts values as the methods always have (`float(...)`, `int(...)`), so a YAML `1e-3`
(a string in YAML 1.1) keeps working.

Example:
    >>> @dataclass(frozen=True, kw_only=True)
    ... class MyParams(TrainParams):
    ...     lr: float = field(default=1e-3, metadata=doc("Adam learning rate"))
    >>> MyParams.from_block({"iterations": 10, "lr": 1}).lr
    1.0
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

from xmodseg.errors import ConfigError

P = TypeVar("P", bound="TrainParams")


# Values of the shared loop's string switches (xmodseg.training.device reads them).
AMP_MODES = ("auto", "off", "bf16", "bf16_native", "fp16")
OPTIMIZER_IMPLS = ("default", "foreach", "fused")


def doc(help: str, *, runtime: bool = False, internal: bool = False, choices: tuple[str, ...] = ()) -> dict[str, Any]:
    """Field metadata: `runtime` keys do not change what is learned (kept out of the resume hash);
    `internal` keys are set by the runner (the seed), never by a config; `choices` are the only
    values a string key may take."""
    return {"help": help, "runtime": runtime, "internal": internal, "choices": choices}


@dataclass(frozen=True, kw_only=True)
class TrainParams:
    """The `train` keys the shared loop (xmodseg.training.fit) reads for every method and translator."""

    iterations: int = field(metadata=doc("training iterations (required)"))
    device: str = field(default="auto", metadata=doc("auto | cpu | cuda | cuda:N | mps", runtime=True))
    amp: str = field(
        default="auto",
        metadata=doc("mixed precision: auto (fp16 on CUDA, fp32 on CPU) | off | bf16 (CPU with bf16 instructions, CUDA) | bf16_native (bf16 where the CPU or GPU has native bf16, else fp32) | fp16 (CUDA)", choices=AMP_MODES),
    )
    # Opt-in speed switches (off by default: the default run's weights do not change). Each changes
    # the arithmetic's order or precision, so each is hashed when set.
    channels_last: bool = field(default=False, metadata=doc("channels-last memory format for the networks and image batches"))
    compile: bool = field(default=False, metadata=doc("torch.compile the networks (compile time is paid in the first iterations; eager with a warning if unavailable)"))
    optimizer_impl: str = field(
        default="default", metadata=doc("Adam kernels: default | foreach | fused (fused: faster, rounds differently)", choices=OPTIMIZER_IMPLS)
    )
    checkpoint_every: int = field(default=200, metadata=doc("iterations between checkpoints", runtime=True))
    log_every: int = field(default=20, metadata=doc("iterations between loss-log records", runtime=True))
    max_minutes: float | None = field(default=None, metadata=doc("wall-clock limit; stops early, checkpoint kept", runtime=True))
    snapshots: int = field(default=1, metadata=doc("keep the last k checkpoints' inference weights", runtime=True))
    seed: int | None = field(default=None, metadata=doc("the experiment seed, set by the runner", internal=True))

    def __getitem__(self, key: str) -> Any:
        """`p["lr"]` as `p.lr`, for callers written against the dict form."""
        if key not in self.field_names(internal=True):
            raise KeyError(key)
        return getattr(self, key)

    @classmethod
    def field_names(cls, *, internal: bool = False) -> list[str]:
        """The keys a `train` block may hold (with `internal`: also the runner's own)."""
        return sorted(f.name for f in dataclasses.fields(cls) if internal or not f.metadata.get("internal"))

    @classmethod
    def runtime_keys(cls) -> frozenset[str]:
        """Keys that do not change what is learned (on CPU): kept out of the resume hash."""
        return frozenset(f.name for f in dataclasses.fields(cls) if f.metadata.get("runtime"))

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every key with a default, and that default."""
        out = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        return out

    @classmethod
    def check_keys(cls, block: Mapping[str, Any], where: str, *, internal: bool = False, owner: str = "") -> None:
        """Raise ConfigError naming every key of `block` this class does not declare."""
        valid = cls.field_names()
        allowed = set(cls.field_names(internal=internal))
        unknown = sorted(str(k) for k in block if k not in allowed)
        if not unknown:
            return
        hints = [f"{k!r} -> {m[0]!r}" for k in unknown if (m := difflib.get_close_matches(k, valid, n=1))]
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)} for '{owner or cls.__name__}' (it would be ignored "
            f"but recorded as used); {'did you mean ' + ', '.join(hints) + '? ' if hints else ''}valid keys: {', '.join(valid)}"
        )

    @classmethod
    def from_block(cls: type[P], block: Mapping[str, Any], where: str = "train", *, internal: bool = False, owner: str = "") -> P:
        """Check the keys of `block`, fill in defaults, convert each value to its field's type."""
        cls.check_keys(block, where, internal=internal, owner=owner)
        if "iterations" not in block:
            raise ConfigError(f"{where}: 'iterations' is required (train.iterations)")
        hints = _type_hints(cls)
        values = {k: _convert(v, hints[k], f"{where}.{k}") for k, v in block.items()}
        choices: dict[str, tuple[str, ...]] = {f.name: f.metadata.get("choices", ()) for f in dataclasses.fields(cls)}
        for k, v in values.items():
            if choices.get(k) and v not in choices[k]:
                raise ConfigError(f"{where}.{k}: {v!r} is not one of {list(choices[k])}")
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(value: Any, hint: Any, where: str) -> Any:
    """The casts the methods applied when they read dicts (`float(p["lr"])`, ...), with an error
    naming the key instead of a traceback. Containers (`network`, `generator`, `image_size`) pass as given."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, args[0], where) if len(args) == 1 else value
    problem = ""
    if hint is bool and not isinstance(value, bool):
        problem = "not true/false"
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            number = float(value)  # 8.0, "8", "1e3"; not 8.5, true or "many"
            if isinstance(value, bool) or not number.is_integer():
                raise ValueError
            return int(number)
        except (TypeError, ValueError, OverflowError):
            problem = "not an integer"
    elif hint is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            problem = "not a number"
    elif hint is str and not isinstance(value, str):
        problem = "not a string"
    elif origin is dict and not isinstance(value, Mapping):
        problem = "not a mapping"
    elif origin is list and (isinstance(value, str) or not isinstance(value, Sequence)):
        problem = "not a list"
    if problem:
        raise ConfigError(f"{where}: {value!r} is {problem} (expected {getattr(hint, '__name__', hint)})")
    return value
