"""What the shared loop trains: networks + optimizers + one `train_step` (segmentation methods and
translators both build on `Trainable`)."""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from xmodseg.errors import ConfigError
from xmodseg.slices import SliceSet
from xmodseg.training.device import Precision

# `train` keys the shared loop reads for every method and translator (xmodseg.training.fit).
LOOP_PARAMS = frozenset({"iterations", "device", "amp", "checkpoint_every", "log_every", "max_minutes", "snapshots"})


def set_requires_grad(nets: Sequence[nn.Module], flag: bool) -> None:
    """Freeze/unfreeze networks, so an adversary's step cannot move the other player's weights."""
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


@dataclass
class TrainData:
    """The slices a method may see. Target labels are present only for methods that declare them."""

    source: SliceSet | None
    target: SliceSet | None


@dataclass(frozen=True)
class DataNeeds:
    source_images: bool = True
    source_labels: bool = False
    target_images: bool = False
    target_labels: bool = False  # only the oracle (upper bound) may set this


class Trainable(ABC):
    """Subclasses build their networks/optimizers in `__init__` and implement `train_step`.

    `param_names` lists the method's own `train` keys (besides LOOP_PARAMS): any other key is
    refused, because an ignored key would still be hashed and recorded in model.json as if used."""

    name: ClassVar[str]
    needs: ClassVar[DataNeeds]
    param_names: ClassVar[frozenset[str]] = frozenset()
    internal_params: ClassVar[frozenset[str]] = frozenset({"seed"})  # set by the runner, not by a config

    def __init__(self, params: Mapping[str, Any], num_classes: int, precision: Precision) -> None:
        self.check_params(params, f"{self.name} parameters", internal=True)
        self.params = dict(params)
        self.num_classes = num_classes
        self.precision = precision
        self.device = precision.device
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision.needs_scaler)

    @classmethod
    def valid_params(cls) -> list[str]:
        """The keys a `train` block for this method may hold."""
        return sorted(LOOP_PARAMS | cls.param_names)

    @classmethod
    def check_params(cls, params: Mapping[str, Any], where: str, *, internal: bool = False) -> None:
        """Raise ConfigError naming every key of `params` this method would not read (`where` names
        the block, e.g. `experiments.x.train`); `internal` also allows the runner's own keys."""
        valid = cls.valid_params()
        allowed = set(valid) | (cls.internal_params if internal else set())
        unknown = sorted(str(k) for k in params if k not in allowed)
        if not unknown:
            return
        hints = [f"{k!r} -> {m[0]!r}" for k in unknown if (m := difflib.get_close_matches(k, valid, n=1))]
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)} for '{cls.name}' (it would be ignored "
            f"but recorded as used); {'did you mean ' + ', '.join(hints) + '? ' if hints else ''}valid keys: {', '.join(valid)}"
        )

    @abstractmethod
    def networks(self) -> Mapping[str, nn.Module]: ...

    @abstractmethod
    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]: ...

    @abstractmethod
    def train_step(self, data: TrainData, sampler: torch.Generator, step: int) -> dict[str, float]:
        """One iteration; returns every loss term as a float (logged, checked for NaN/Inf)."""

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
