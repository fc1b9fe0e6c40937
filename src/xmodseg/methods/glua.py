"""GLUA step B, local alignment (Su et al., JBHI 2023; the official code's training, methods.md §3.4-3.6).

A DeepLab-v2 segmenter (xmodseg.nn.deeplab) is trained on a translator's translated source slices
with the source labels (0.5 CE + 0.5 Dice) and aligned to real target slices by two least-squares
discriminators: D_f on the last backbone features and D_o on the softmax (each weighted 0.01 on the
segmenter side). Target features enter the head as (1 + M) * F with M = |tanh(D_f(F))| — the local
feature mask — in training and at inference, so the saved inference network carries D_f.

Per iteration, as the official code: the segmenter steps first (D_f and D_o frozen; gradients still
flow through M into the backbone), then D_f and D_o step together on detached features and
predictions. SGD (lr 0.01, 10x on the classifier, momentum 0.9, weight decay 5e-4) with a poly
decay whose horizon is `poly_horizon` (0: the run's iterations, so the decay happens; the official
code's 1,000,000 makes it constant), Adam 1e-4 (0.9, 0.99) for the discriminators on the same rule.

Ablation switches (the paper's rows): `output_discriminator` (D_o), `feature_discriminator` (D_f)
and `local_mask` (needs D_f). All off = "global alignment only" (the segmenter on translated source).
Step A (global alignment) is the translator named by the experiment's `translator:`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from xmodseg.errors import ConfigError
from xmodseg.methods import register
from xmodseg.methods.base import DataNeeds, SegmentationMethod, TrainData
from xmodseg.methods.glua_losses import adversarial_target, discriminator_loss, segmentation_loss
from xmodseg.nn.deeplab import RESNET101_BLOCKS, DeepLabV2, FeatureDiscriminator, MaskedSegmenter, OutputDiscriminator
from xmodseg.training.device import Precision, compile_networks, optimizer_options, prepare_networks, to_device
from xmodseg.training.params import TrainParams, doc
from xmodseg.training.schedules import make_schedule
from xmodseg.training.trainable import set_requires_grad


@dataclass(frozen=True, kw_only=True)
class GluaParams(TrainParams):
    batch_size: int = field(default=12, metadata=doc("translated source slices and target slices per iteration (official: 12 + 12)"))
    blocks: list[int] = field(default_factory=lambda: list(RESNET101_BLOCKS), metadata=doc("bottlenecks in layer1..layer5 (ResNet-101: 3, 4, 23, 2, 1)"))
    width: float = field(default=1.0, metadata=doc("x every channel count of the segmenter and D_f, D_o (paper: 1.0)"))
    aspp_branches: int = field(default=2, metadata=doc("dilated classifier branches summed (official code: 2 of 6/12/18/24)"))
    lr: float = field(default=0.01, metadata=doc("SGD learning rate of the backbone"))
    head_lr_multiplier: float = field(default=10.0, metadata=doc("x lr for the classifier"))
    momentum: float = field(default=0.9, metadata=doc("SGD momentum"))
    weight_decay: float = field(default=5e-4, metadata=doc("SGD weight decay"))
    poly_horizon: int = field(default=0, metadata=doc("poly decay (1 - t/H)^0.9 horizon H; 0: the run's iterations (official: 1000000, i.e. constant)"))
    d_lr: float = field(default=1e-4, metadata=doc("Adam learning rate of D_f and D_o"))
    d_betas: list[float] = field(default_factory=lambda: [0.9, 0.99], metadata=doc("Adam betas of D_f and D_o"))
    ce_weight: float = field(default=0.5, metadata=doc("cross-entropy weight of the segmentation loss"))
    dice_weight: float = field(default=0.5, metadata=doc("Dice weight of the segmentation loss"))
    lambda_adv_feature: float = field(default=0.01, metadata=doc("weight of D_f's adversarial term on target features"))
    lambda_adv_output: float = field(default=0.01, metadata=doc("weight of D_o's adversarial term on target predictions"))
    feature_discriminator: bool = field(default=True, metadata=doc("ablation: train D_f on the backbone features"))
    output_discriminator: bool = field(default=True, metadata=doc("ablation: train D_o on the softmax"))
    local_mask: bool = field(default=True, metadata=doc("ablation: scale target features by 1 + |tanh(D_f(F))| (needs feature_discriminator)"))


@register
class Glua(SegmentationMethod):
    """GLUA step B on a translator's translated source cache."""

    name: ClassVar[str] = "glua"
    needs: ClassVar[DataNeeds] = DataNeeds(source_labels=True, target_images=True)
    translated_source: ClassVar[bool] = True
    params_type: ClassVar[type[TrainParams]] = GluaParams
    params: GluaParams

    def __init__(self, params: Mapping[str, Any] | TrainParams, num_classes: int, precision: Precision, *, inputs: Mapping[str, Path] | None = None) -> None:
        super().__init__(params, num_classes, precision, inputs=inputs)
        p = self.params
        if p.local_mask and not p.feature_discriminator:
            raise ConfigError("glua: local_mask needs feature_discriminator: true (the mask is D_f's output)")
        self._arch = {"kind": "glua_deeplab", "kwargs": {
            "num_classes": num_classes, "blocks": [int(b) for b in p.blocks], "width": float(p.width),
            "aspp_branches": int(p.aspp_branches), "local_mask": bool(p.local_mask),
        }}
        self.segmenter = DeepLabV2(num_classes, blocks=p.blocks, width=p.width, aspp_branches=p.aspp_branches).to(self.device)
        self.d_feature = FeatureDiscriminator(self.segmenter.feature_channels, p.width).to(self.device) if p.feature_discriminator else None
        self.d_output = OutputDiscriminator(num_classes, p.width).to(self.device) if p.output_discriminator else None
        self.discriminators = [d for d in (self.d_feature, self.d_output) if d is not None]
        prepare_networks([self.segmenter, *self.discriminators], channels_last=p.channels_last)
        head = list(self.segmenter.classifier.parameters())
        head_ids = {id(q) for q in head}
        backbone = [q for q in self.segmenter.parameters() if id(q) not in head_ids]
        self.opt = torch.optim.SGD(
            [{"params": backbone, "lr": p.lr}, {"params": head, "lr": p.lr * p.head_lr_multiplier}],
            lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay, **optimizer_options(p.optimizer_impl, self.device),
        )
        horizon = p.poly_horizon or p.iterations
        self.sched = make_schedule(self.opt, "poly", horizon)
        self.d_opt = None
        self.d_sched = None
        if self.discriminators:
            d_params = [q for d in self.discriminators for q in d.parameters()]
            self.d_opt = torch.optim.Adam(d_params, lr=p.d_lr, betas=(p.d_betas[0], p.d_betas[1]), **optimizer_options(p.optimizer_impl, self.device))
            self.d_sched = make_schedule(self.d_opt, "poly", horizon)
        if p.compile:
            compile_networks([self.segmenter, *self.discriminators], self.device)
        self.batch_size = p.batch_size

    def networks(self) -> Mapping[str, nn.Module]:
        nets: dict[str, nn.Module] = {"segmenter": self.segmenter}
        if self.d_feature is not None:
            nets["d_feature"] = self.d_feature
        if self.d_output is not None:
            nets["d_output"] = self.d_output
        return nets

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"segmenter": self.opt, **({"discriminators": self.d_opt} if self.d_opt is not None else {})}

    def schedulers(self) -> Mapping[str, torch.optim.lr_scheduler.LRScheduler]:
        return {"segmenter": self.sched, **({"discriminators": self.d_sched} if self.d_sched is not None else {})}

    def train_step(self, data: TrainData, sampler: torch.Generator, step: int) -> dict[str, torch.Tensor]:
        assert data.source is not None and data.target is not None
        p = self.params
        xs, ys = data.source.sample(self.batch_size, sampler)
        xt, _ = data.target.sample(self.batch_size, sampler)
        assert ys is not None
        xs, xt = to_device(xs, self.device, p.channels_last), to_device(xt, self.device, p.channels_last)
        ys = ys.to(self.device)
        mask_net = self.d_feature if p.local_mask else None

        # (1) the segmenter: supervised on translated source, adversarial on target (D frozen)
        set_requires_grad(self.discriminators, False)
        with self.precision.autocast():
            src = self.segmenter(xs)
            tgt = self.segmenter(xt, mask_net)
        seg = segmentation_loss(src.logits.float(), ys, p.ce_weight, p.dice_weight)
        terms: dict[str, torch.Tensor] = {"seg": seg.detach()}
        total = seg
        if self.d_feature is not None:
            with self.precision.autocast():
                adv_f = adversarial_target(self.d_feature(tgt.features).float())
            total = total + p.lambda_adv_feature * adv_f
            terms["adv_feature"] = adv_f.detach()
        if self.d_output is not None:
            p_t = tgt.logits.float().softmax(1)  # D_o judges probabilities
            with self.precision.autocast():
                adv_o = adversarial_target(self.d_output(p_t).float())
            total = total + p.lambda_adv_output * adv_o
            terms["adv_output"] = adv_o.detach()
        self.backward_step(total, self.opt)
        self.sched.step()
        if tgt.mask is not None:
            terms["mask_mean"] = tgt.mask.detach().float().mean()

        # (2) the discriminators: source -> 0, target -> 1, on detached inputs
        if self.d_opt is not None and self.d_sched is not None:
            set_requires_grad(self.discriminators, True)
            d_total = torch.zeros((), device=self.device)
            with self.precision.autocast():
                if self.d_feature is not None:
                    d_f = discriminator_loss(self.d_feature(src.features.detach()).float(), self.d_feature(tgt.features.detach()).float())
                    d_total = d_total + d_f
                    terms["d_feature"] = d_f.detach()
                if self.d_output is not None:
                    p_s = src.logits.detach().float().softmax(1)
                    d_o = discriminator_loss(self.d_output(p_s).float(), self.d_output(p_t.detach()).float())
                    d_total = d_total + d_o
                    terms["d_output"] = d_o.detach()
            self.backward_step(d_total, self.d_opt)
            self.d_sched.step()
        return terms

    def inference_architecture(self) -> dict[str, Any]:
        return self._arch

    def inference_network(self) -> nn.Module:
        return MaskedSegmenter(self.segmenter, self.d_feature if self.params.local_mask else None)

    def record(self) -> dict[str, Any]:
        p = self.params
        return {
            "poly_horizon": p.poly_horizon or p.iterations,
            "ablation": {"feature_discriminator": p.feature_discriminator, "output_discriminator": p.output_discriminator, "local_mask": p.local_mask},
            "initialisation": "from scratch (N(0, 0.01) convolutions; no ImageNet weights ship with a package here)",
        }
