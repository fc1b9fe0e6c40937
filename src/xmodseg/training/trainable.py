"""What the shared loop trains: networks + optimizers + one `train_step` (segmentation methods and
translators both build on `Trainable`), and what a trainable declares: its typed `Params`, the data
it may see (`DataNeeds`) and the artifacts it consumes (`inputs`)."""

from __future__ import annotations

import dataclasses
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from xmodseg.errors import ConfigError
from xmodseg.training.params import TrainParams

if TYPE_CHECKING:  # annotations only: importing a declaration (planning, the report) imports no torch
    import torch
    from torch import nn

    from xmodseg.slices import SliceSet
    from xmodseg.training.device import Precision

# Keys of the resume hash's data ids besides the input roles: a role may not take one of them.
DATA_ID_KEYS = frozenset({"source", "target", "assistant", "labels"})


def set_requires_grad(nets: Sequence[nn.Module], flag: bool) -> None:
    """Freeze/unfreeze networks, so an adversary's step cannot move the other player's weights."""
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


@dataclass
class TrainData:
    """The slices a method may see. Target labels are present only for methods that declare them,
    and with a label budget `subset` only for the labelled cases: `target` then holds those (with
    labels), `target_unlabelled` the other training cases' images. `assistant`: a second labelled
    modality's training slices (methods that declare `assistant_labels`)."""

    source: SliceSet | None
    target: SliceSet | None
    target_unlabelled: SliceSet | None = None
    assistant: SliceSet | None = None


@dataclass(frozen=True)
class DataNeeds:
    source_images: bool = True
    source_labels: bool = False
    target_images: bool = False
    target_labels: bool = False  # the oracle (upper bound) and semi-supervised methods (label budget: subset | all)
    assistant_labels: bool = False  # a second labelled modality (`labels.assistant` names it)


@dataclass(frozen=True)
class InputSpec:
    """An artifact a method or translator consumes besides its caches. The experiment config names
    it under `inputs: {role: entry}`; the training job receives it as `--input ROLE=PATH`, hashes it
    into the resume hash and the sidecar (xmodseg.training.inputs) and hands the method the path.
    `translator_kinds`: which translators a `translator_model` / `translated_cache` may come from
    (empty: any)."""

    kind: Literal["translator_model", "translated_cache", "experiment_model"]
    optional: bool = False
    same_direction: bool = True  # the named entry must go source->target like the experiment
    description: str = ""
    translator_kinds: tuple[str, ...] = ()


class Trainable(ABC):
    """Subclasses build their networks/optimizers in `__init__` and implement `train_step`.

    `params_type` is the method's frozen `Params` dataclass (a `TrainParams` subclass): a `train`
    block with any other key is refused, because an ignored key would still be hashed and recorded
    in model.json as if used. `inputs` declares the artifacts it consumes (role -> InputSpec); the
    resolved paths arrive as `inputs=` (role -> Path) and are kept in `self.input_paths`."""

    name: ClassVar[str]
    needs: ClassVar[DataNeeds]
    params_type: ClassVar[type[TrainParams]] = TrainParams
    inputs: ClassVar[Mapping[str, InputSpec]] = {}
    translated_source: ClassVar[bool] = False  # trains on a translator's translated source cache (`translator:`)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for role in cls.__dict__.get("inputs", {}):
            if not re.fullmatch(r"[a-z][a-z0-9_]*", role) or role in DATA_ID_KEYS:
                raise TypeError(f"{cls.__name__}.inputs: role '{role}' must be a lower-case identifier other than {sorted(DATA_ID_KEYS)}")

    def __init__(
        self, params: Mapping[str, Any] | TrainParams, num_classes: int, precision: Precision, *, inputs: Mapping[str, Path] | None = None
    ) -> None:
        if isinstance(params, TrainParams):
            if not isinstance(params, self.params_type):
                raise ConfigError(f"{self.name}: parameters of type {type(params).__name__}, expected {self.params_type.__name__}")
            self.params = params
        else:
            self.params = self.params_type.from_block(params, f"{self.name} parameters", internal=True, owner=self.name)
        self.input_paths: dict[str, Path] = check_roles(type(self), inputs or {}, f"{self.name} inputs")
        self.num_classes = num_classes
        self.precision = precision
        self.device = precision.device
        import torch

        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision.needs_scaler)

    @classmethod
    def valid_params(cls) -> list[str]:
        """The keys a `train` block for this method may hold."""
        return cls.params_type.field_names()

    @classmethod
    def check_params(cls, params: Mapping[str, Any], where: str, *, internal: bool = False) -> None:
        """Raise ConfigError naming every key of `params` this method would not read (`where` names
        the block, e.g. `experiments.x.train`); `internal` also allows the runner's own keys."""
        cls.params_type.check_keys(params, where, internal=internal, owner=cls.name)

    @classmethod
    def declaration(cls) -> dict[str, Any]:
        """What planning reads of this class, as plain JSON data: xmodseg.plugins caches it, so that
        planning (the Snakefile, `xmodseg dvc-yaml`) and the report import no method module (no torch).
        `own_checks`: `check_params` or `Params.check_keys` is overridden, so the planner must call it."""
        own_checks = cls.check_params.__func__ is not Trainable.check_params.__func__  # type: ignore[attr-defined]
        own_checks |= cls.params_type.check_keys.__func__ is not TrainParams.check_keys.__func__  # type: ignore[attr-defined]
        return {
            "name": cls.name,
            "needs": dataclasses.asdict(cls.needs),
            "inputs": {role: dataclasses.asdict(spec) for role, spec in cls.inputs.items()},
            "translated_source": bool(cls.translated_source),
            "params": cls.params_type.field_names(),
            "internal_params": cls.params_type.field_names(internal=True),
            "own_checks": bool(own_checks),
        }

    @abstractmethod
    def networks(self) -> Mapping[str, nn.Module]: ...

    @abstractmethod
    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]: ...

    @abstractmethod
    def train_step(self, data: TrainData, sampler: torch.Generator, step: int) -> Mapping[str, float | torch.Tensor]:
        """One iteration; returns every loss term (logged, checked for NaN/Inf), as a detached 0-d
        tensor or a float: the loop reads tensors once per logging interval, not once per term."""

    @abstractmethod
    def inference_architecture(self) -> dict[str, Any]:
        """{"kind", "kwargs"} of the network applied to target images at test time."""

    @abstractmethod
    def inference_network(self) -> nn.Module: ...

    def schedulers(self) -> Mapping[str, torch.optim.lr_scheduler.LRScheduler]:
        """Learning-rate schedulers (checkpointed with the optimizers); none by default."""
        return {}

    def prepare(self, data: TrainData) -> TrainData:
        """Called once before training: a method may re-express the data (intensity range, size)."""
        return data

    def prepare_inference(self, data: TrainData) -> None:
        """Called once after training, before the inference network is saved (no-op by default)."""
        return None

    def record(self) -> dict[str, Any]:
        """Method-specific facts for the model sidecar (intensity mapping, ...); none by default."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """Anything else a bit-identical resume needs (image pools, ...)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Counterpart of `extra_state`."""
        return None

    def backward_step(self, loss: torch.Tensor, *optimizers: torch.optim.Optimizer) -> None:
        """Backward + step with the AMP scaler (a no-op wrapper in fp32/bf16)."""
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        for opt in optimizers:
            self.scaler.step(opt)
        self.scaler.update()

    def train(self) -> None:
        for net in self.networks().values():
            net.train()

    def state_dict(self) -> dict[str, Any]:
        return {
            "networks": {k: v.state_dict() for k, v in self.networks().items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers().items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers().items()},
            "scaler": self.scaler.state_dict(),
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for k, net in self.networks().items():
            net.load_state_dict(state["networks"][k])
        for k, opt in self.optimizers().items():
            opt.load_state_dict(state["optimizers"][k])
        for k, sched in self.schedulers().items():
            sched.load_state_dict(state["schedulers"][k])
        self.scaler.load_state_dict(state["scaler"])
        self.load_extra_state(state.get("extra", {}))


def check_roles(cls: type[Trainable], given: Mapping[str, Any], where: str) -> dict[str, Path]:
    """`given` (role -> path) against `cls.inputs`: an undeclared role, or a missing required one,
    is a ConfigError naming the role and the declared ones."""
    declared = cls.inputs
    valid = f"valid roles: {', '.join(sorted(declared))}" if declared else f"{cls.name} declares no inputs"
    for role in given:
        if role not in declared:
            raise ConfigError(f"{where}: '{cls.name}' takes no input '{role}' ({valid})")
    for role, spec in declared.items():
        if role not in given and not spec.optional:
            raise ConfigError(f"{where}: '{cls.name}' requires input '{role}' (kind {spec.kind}; {valid})")
    return {role: Path(path) for role, path in given.items()}
