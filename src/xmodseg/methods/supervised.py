"""Supervised 2D segmentation baselines: `source_only` (lower bound) and `oracle` (upper bound).

Both train the same segmenter with Dice + cross-entropy (MONAI `DiceCELoss`); they differ only in
whose labels they see: source labels for `source_only`, target training labels for `oracle`.
Later baselines (translate_then_segment) reuse this module on translated source slices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from xmodseg.methods import register
from xmodseg.methods.base import DataNeeds, SegmentationMethod, TrainData
from xmodseg.nn import networks
from xmodseg.nn.ignore_label import DiceCE
from xmodseg.slices import SliceSet
from xmodseg.training.device import Precision, compile_networks, optimizer_options, prepare_networks, to_device
from xmodseg.training.params import TrainParams, doc
from xmodseg.training.schedules import make_schedule

DEFAULT_NETWORK: dict[str, Any] = {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2}


@dataclass(frozen=True, kw_only=True)
class SupervisedParams(TrainParams):
    lr: float = field(default=1e-3, metadata=doc("Adam learning rate"))
    weight_decay: float = field(default=1e-5, metadata=doc("Adam weight decay"))
    batch_size: int = field(default=8, metadata=doc("labelled slices per iteration"))
    lr_schedule: str = field(default="constant", metadata=doc("constant | linear | poly (xmodseg.training.schedules)"))
    decay_start: float = field(default=0.5, metadata=doc("linear schedule: fraction of the iterations before the decay"))
    network: dict[str, Any] = field(default_factory=dict, metadata=doc(f"MONAI UNet arguments over {DEFAULT_NETWORK}"))


class SupervisedSegmentation(SegmentationMethod):
    """A segmenter trained on one labelled slice set (chosen by `labelled_set`)."""

    params_type: ClassVar[type[TrainParams]] = SupervisedParams
    params: SupervisedParams

    def __init__(self, params: Mapping[str, Any] | TrainParams, num_classes: int, precision: Precision, *, inputs: Mapping[str, Path] | None = None) -> None:
        super().__init__(params, num_classes, precision, inputs=inputs)
        p = self.params
        net_kwargs = {**DEFAULT_NETWORK, **p.network, "num_classes": num_classes}
        self._arch = {"kind": "monai_unet", "kwargs": net_kwargs}
        self.net = networks.build(self._arch).to(self.device)
        prepare_networks([self.net], channels_last=p.channels_last)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=p.lr, weight_decay=p.weight_decay, **optimizer_options(p.optimizer_impl, self.device))
        if p.compile:
            compile_networks([self.net], self.device)
        self.loss = DiceCE()  # MONAI DiceCELoss; IGNORE_INDEX pixels excluded
        self.batch_size = p.batch_size
        self.sched = make_schedule(self.opt, p.lr_schedule, p.iterations, p.decay_start)

    def labelled_set(self, data: TrainData) -> SliceSet:
        raise NotImplementedError

    def networks(self) -> Mapping[str, nn.Module]:
        return {"segmenter": self.net}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"segmenter": self.opt}

    def schedulers(self) -> Mapping[str, torch.optim.lr_scheduler.LRScheduler]:
        return {"segmenter": self.sched}

    def batch(self, data: TrainData, sampler: torch.Generator, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This iteration's labelled images and labels (CPU); `labelled_set` by default."""
        images, labels = self.labelled_set(data).sample(self.batch_size, sampler)
        assert labels is not None
        return images, labels

    def seg_step(self, images: torch.Tensor, labels: torch.Tensor, opt: torch.optim.Optimizer) -> torch.Tensor:
        """One Dice + CE update of the segmenter with `opt`; returns the detached loss."""
        images, labels = to_device(images, self.device, self.params.channels_last), labels.to(self.device)
        with self.precision.autocast():
            logits = self.net(images)
        loss = self.loss(logits.float(), labels)
        self.backward_step(loss, opt)
        return loss.detach()

    def train_step(self, data: TrainData, sampler: torch.Generator, step: int) -> dict[str, torch.Tensor]:
        loss = self.seg_step(*self.batch(data, sampler, step), self.opt)
        self.sched.step()
        return {"seg": loss}

    def inference_architecture(self) -> dict[str, Any]:
        return self._arch

    def inference_network(self) -> nn.Module:
        return self.net


@register
class SourceOnly(SupervisedSegmentation):
    """Trained on labelled source slices only; evaluated on the target (no adaptation)."""

    name: ClassVar[str] = "source_only"
    needs: ClassVar[DataNeeds] = DataNeeds(source_labels=True)

    def labelled_set(self, data: TrainData) -> SliceSet:
        assert data.source is not None
        return data.source


@register
class Oracle(SupervisedSegmentation):
    """Trained on labelled *target* training slices: the upper bound adaptation methods chase."""

    name: ClassVar[str] = "oracle"
    needs: ClassVar[DataNeeds] = DataNeeds(source_images=False, target_images=True, target_labels=True)

    def labelled_set(self, data: TrainData) -> SliceSet:
        assert data.target is not None
        return data.target


@register
class SupervisedSubset(Oracle):
    """The semi-supervised lower bound: the oracle's training on the labelled target subset only
    (`labels: {target: subset, ...}`); the unlabelled training cases are never loaded."""

    name: ClassVar[str] = "supervised_subset"
    needs: ClassVar[DataNeeds] = DataNeeds(source_images=False, target_images=False, target_labels=True)


@register
class TranslateThenSegment(SupervisedSegmentation):
    """Two-stage baseline (the "CycleGAN" row of the SIFA tables): the segmenter is trained on
    source slices translated to the target look (a translator's cache), with the source labels."""

    name: ClassVar[str] = "translate_then_segment"
    needs: ClassVar[DataNeeds] = DataNeeds(source_labels=True)
    translated_source: ClassVar[bool] = True

    def labelled_set(self, data: TrainData) -> SliceSet:
        assert data.source is not None
        return data.source
