"""Multi-modal supervised baselines for MKD's setting (methods.md §4.6): the target's labelled
slices plus a labelled *assistant* modality, under the same label budget as MKD.

- `joint`: one segmenter trained on both modalities at once (each iteration `batch_size` target
  slices and `batch_size` assistant slices, one Dice + CE over the concatenated batch).
- `finetune`: pretrain on the assistant for `pretrain_iterations`, then fine-tune on the target for
  the rest with a fresh optimiser (`finetune_lr`), each phase with its own schedule.

The target-only baseline is `oracle` with the same `labels:` budget. Both see the caches as they
are (each modality z-scored with its own training statistics), like the other supervised baselines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from xmodseg.errors import ConfigError
from xmodseg.methods import register
from xmodseg.methods.base import DataNeeds, TrainData
from xmodseg.methods.supervised import SupervisedParams, SupervisedSegmentation
from xmodseg.slices import SliceSet
from xmodseg.training.device import Precision, optimizer_options
from xmodseg.training.params import TrainParams, doc
from xmodseg.training.schedules import make_schedule

TARGET_AND_ASSISTANT = DataNeeds(source_images=False, target_images=True, target_labels=True, assistant_labels=True)


@register
class Joint(SupervisedSegmentation):
    """One segmenter on labelled target and assistant slices together."""

    name: ClassVar[str] = "joint"
    needs: ClassVar[DataNeeds] = TARGET_AND_ASSISTANT

    def labelled_set(self, data: TrainData) -> SliceSet:
        assert data.target is not None
        return data.target

    def batch(self, data: TrainData, sampler: torch.Generator, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`batch_size` target slices, then `batch_size` assistant slices."""
        assert data.target is not None and data.assistant is not None
        x_t, y_t = data.target.sample(self.batch_size, sampler)
        x_a, y_a = data.assistant.sample(self.batch_size, sampler)
        assert y_t is not None and y_a is not None
        return torch.cat([x_t, x_a]), torch.cat([y_t, y_a])


@dataclass(frozen=True, kw_only=True)
class FinetuneParams(SupervisedParams):
    pretrain_iterations: int = field(metadata=doc("iterations on the assistant before fine-tuning on the target (within `iterations`)"))
    finetune_lr: float | None = field(default=None, metadata=doc("fine-tuning Adam learning rate (a fresh optimiser); None: `lr`"))


@register
class Finetune(SupervisedSegmentation):
    """Pretrain on the assistant modality, then fine-tune on the labelled target slices."""

    name: ClassVar[str] = "finetune"
    needs: ClassVar[DataNeeds] = TARGET_AND_ASSISTANT
    params_type: ClassVar[type[TrainParams]] = FinetuneParams
    params: FinetuneParams

    def __init__(self, params: Mapping[str, Any] | TrainParams, num_classes: int, precision: Precision, *, inputs: Mapping[str, Path] | None = None) -> None:
        super().__init__(params, num_classes, precision, inputs=inputs)
        p = self.params
        if not 0 < p.pretrain_iterations < p.iterations:
            raise ConfigError(f"finetune: pretrain_iterations {p.pretrain_iterations} must be in (0, iterations) (iterations {p.iterations})")
        self.sched = make_schedule(self.opt, p.lr_schedule, p.pretrain_iterations, p.decay_start)
        lr = p.finetune_lr if p.finetune_lr is not None else p.lr
        self.opt_finetune = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=p.weight_decay, **optimizer_options(p.optimizer_impl, self.device))
        self.sched_finetune = make_schedule(self.opt_finetune, p.lr_schedule, p.iterations - p.pretrain_iterations, p.decay_start)

    def labelled_set(self, data: TrainData) -> SliceSet:
        assert data.target is not None
        return data.target

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"pretrain": self.opt, "finetune": self.opt_finetune}

    def schedulers(self) -> Mapping[str, torch.optim.lr_scheduler.LRScheduler]:
        return {"pretrain": self.sched, "finetune": self.sched_finetune}

    def train_step(self, data: TrainData, sampler: torch.Generator, step: int) -> dict[str, torch.Tensor]:
        pretraining = step < self.params.pretrain_iterations
        slices = data.assistant if pretraining else data.target
        assert slices is not None
        images, labels = slices.sample(self.batch_size, sampler)
        assert labels is not None
        opt, sched = (self.opt, self.sched) if pretraining else (self.opt_finetune, self.sched_finetune)
        loss = self.seg_step(images, labels, opt)
        sched.step()
        return {"seg_assistant" if pretraining else "seg_target": loss}
