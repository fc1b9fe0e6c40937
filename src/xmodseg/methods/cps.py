"""Semi-supervised co-training on one modality (methods.md §5): `cps` (cross pseudo supervision,
the main baseline) and `co_da` (CPS + class-wise distribution alignment + over-expectation
filtering, Co-DA's recommended reading, §5.5).

Data: the labelled target training cases (`labels: {target: subset, ...}`) and the other training
cases' images as unlabelled data (`target_unlabelled`; with every case labelled, the labelled
images double as unlabelled ones). Two U-Nets of one architecture, A (Kaiming-normal init) and B
(Xavier-normal init), each per iteration:

    L_k = DiceCE(f_k(x_l), y_l) + lambda(t) * CE_masked(f_k(x_u), pseudo-label of the other model)

The supervised term is the same Dice + CE (MONAI) as `supervised_subset`/`oracle`, so with
lambda = 0 each model trains exactly as the supervised baseline does. CPS's weight: SSL4MIS uses
0.1 against 0.5 x (CE + Dice), i.e. 0.2 against our CE + Dice (`lambda_max` 0.2), ramped up with
`sigmoid_rampup` over `rampup` x iterations. Pseudo-labels are argmax of the other model's
(aligned, for Co-DA) softmax, detached; Co-DA's mask keeps pixels whose confidence reaches the
running class-wise expectation. Inference: the mean softmax of A and B (`ensemble: false`: A only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from xmodseg.errors import ConfigError
from xmodseg.methods import register
from xmodseg.methods.base import DataNeeds, SegmentationMethod, TrainData
from xmodseg.methods.co_da_alignment import ClassMarginals, ExpectationFilter, align, sigmoid_rampup
from xmodseg.methods.supervised import DEFAULT_NETWORK, SupervisedParams
from xmodseg.nn import networks
from xmodseg.nn.ensemble import MeanSoftmax
from xmodseg.nn.ignore_label import DiceCE
from xmodseg.slices import SliceSet
from xmodseg.training.device import Precision, compile_networks, optimizer_options, prepare_networks, to_device
from xmodseg.training.params import TrainParams, doc
from xmodseg.training.schedules import make_schedule

MODELS = ("a", "b")


def init_weights(net: nn.Module, scheme: str) -> nn.Module:
    """Every convolution's weights from `scheme` ("kaiming" | "xavier" normal), biases zero: the
    two co-trained models differ from the first iteration (SSL4MIS CPS)."""
    fill = nn.init.kaiming_normal_ if scheme == "kaiming" else nn.init.xavier_normal_
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            fill(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


@dataclass(frozen=True, kw_only=True)
class CpsParams(SupervisedParams):
    unlabelled_batch_size: int | None = field(default=None, metadata=doc("unlabelled slices per iteration (None: batch_size)"))
    lambda_max: float = field(default=0.2, metadata=doc("weight of the cross pseudo-supervision term after the ramp-up"))
    rampup: float = field(default=1.0, metadata=doc("ramp-up length as a fraction of the iterations (sigmoid ramp, SSL4MIS)"))
    ensemble: bool = field(default=True, metadata=doc("inference: mean softmax of models A and B; false: model A only (same training)"))


@register
class Cps(SegmentationMethod):
    """Cross pseudo supervision: each model's argmax pseudo-labels supervise the other."""

    name: ClassVar[str] = "cps"
    needs: ClassVar[DataNeeds] = DataNeeds(source_images=False, target_images=True, target_labels=True)
    params_type: ClassVar[type[TrainParams]] = CpsParams
    params: CpsParams

    def __init__(self, params: Mapping[str, Any] | TrainParams, num_classes: int, precision: Precision, *, inputs: Mapping[str, Path] | None = None) -> None:
        super().__init__(params, num_classes, precision, inputs=inputs)
        p = self.params
        if not 0 <= p.rampup <= 1:
            raise ConfigError(f"{self.name}: rampup {p.rampup} must be a fraction of the iterations in [0, 1]")
        if p.lambda_max < 0:
            raise ConfigError(f"{self.name}: lambda_max {p.lambda_max} must be >= 0")
        self.unet = {**DEFAULT_NETWORK, **p.network, "num_classes": num_classes}
        self.nets = {
            "a": init_weights(networks.build({"kind": "monai_unet", "kwargs": self.unet}), "kaiming").to(self.device),
            "b": init_weights(networks.build({"kind": "monai_unet", "kwargs": self.unet}), "xavier").to(self.device),
        }
        prepare_networks(self.nets.values(), channels_last=p.channels_last)
        impl = optimizer_options(p.optimizer_impl, self.device)
        self.opts = {k: torch.optim.Adam(net.parameters(), lr=p.lr, weight_decay=p.weight_decay, **impl) for k, net in self.nets.items()}
        self.scheds = {k: make_schedule(o, p.lr_schedule, p.iterations, p.decay_start) for k, o in self.opts.items()}
        if p.compile:
            compile_networks(self.nets.values(), self.device)
        self.members = [self.nets["a"], self.nets["b"]] if p.ensemble else [self.nets["a"]]
        self.ensemble = MeanSoftmax(self.members)
        self.loss = DiceCE()
        self.unlabelled_batch_size = p.unlabelled_batch_size or p.batch_size

    # -- Method interface ---------------------------------------------------------------------
    def networks(self) -> Mapping[str, nn.Module]:
        return self.nets

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return self.opts

    def schedulers(self) -> Mapping[str, torch.optim.lr_scheduler.LRScheduler]:
        return self.scheds

    def inference_architecture(self) -> dict[str, Any]:
        return {"kind": "unet_ensemble", "kwargs": {"unet": self.unet, "members": len(self.members)}}

    def inference_network(self) -> nn.Module:
        return self.ensemble

    def record(self) -> dict[str, Any]:
        return {"inference": "mean softmax of models A and B" if self.params.ensemble else "model A only", "init": {"a": "kaiming_normal", "b": "xavier_normal"}}

    # -- one iteration ------------------------------------------------------------------------
    def unlabelled(self, data: TrainData) -> SliceSet:
        assert data.target is not None
        return data.target_unlabelled if data.target_unlabelled is not None else data.target

    def pseudo_labels(self, model: str, probs_l: torch.Tensor, probs_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`model`'s pseudo-labels on the unlabelled batch and the mask of pixels kept (None: all)."""
        return probs_u.argmax(dim=1), None

    def train_step(self, data: TrainData, sampler: torch.Generator, step: int) -> dict[str, torch.Tensor | float]:
        assert data.target is not None
        p = self.params
        x_l, y_l = data.target.sample(p.batch_size, sampler)
        x_u, _ = self.unlabelled(data).sample(self.unlabelled_batch_size, sampler)
        assert y_l is not None
        x = to_device(torch.cat([x_l, x_u]), self.device, p.channels_last)
        y_l = y_l.to(self.device)
        n_l = x_l.shape[0]
        logits = {}
        with self.precision.autocast():
            for k, net in self.nets.items():
                logits[k] = net(x).float()
        sup = {k: self.loss(out[:n_l], y_l) for k, out in logits.items()}
        with torch.no_grad():
            pseudo = {k: self.pseudo_labels(k, torch.softmax(out[:n_l], 1), torch.softmax(out[n_l:], 1)) for k, out in logits.items()}
        weight = p.lambda_max * sigmoid_rampup(step, round(p.rampup * p.iterations))
        cps = {}
        for k, other in (("a", "b"), ("b", "a")):
            target, mask = pseudo[other]
            ce = F.cross_entropy(logits[k][n_l:], target, reduction="none")
            cps[k] = ce.mean() if mask is None else (ce * mask).sum() / mask.sum().clamp_min(1.0)
        loss = sup["a"] + sup["b"] + weight * (cps["a"] + cps["b"])
        self.backward_step(loss, *self.opts.values())
        for sched in self.scheds.values():
            sched.step()
        out: dict[str, torch.Tensor | float] = {"seg_a": sup["a"].detach(), "seg_b": sup["b"].detach(), "cps_a": cps["a"].detach(), "cps_b": cps["b"].detach(), "cps_weight": weight}
        masks = [m for _, m in pseudo.values() if m is not None]
        if masks:
            out["kept"] = torch.stack([m.mean() for m in masks]).mean()
        return out


@dataclass(frozen=True, kw_only=True)
class CoDaParams(CpsParams):
    align: bool = field(default=True, metadata=doc("class-wise distribution alignment of unlabelled to labelled marginals before pseudo-labelling"))
    filter: bool = field(default=True, metadata=doc("over-expectation filter: keep pixels whose confidence reaches the class-wise expectation"))
    momentum: float = field(default=0.999, metadata=doc("EMA momentum of the marginals and the expectations (USB / FreeMatch)"))


@register
class CoDa(Cps):
    """Co-DA: CPS whose pseudo-labels come from class-wise aligned predictions, filtered by the
    over-expectation mask (each switch off alone gives the ablation; both off is `cps`)."""

    name: ClassVar[str] = "co_da"
    params_type: ClassVar[type[TrainParams]] = CoDaParams
    params: CoDaParams

    def __init__(self, params: Mapping[str, Any] | TrainParams, num_classes: int, precision: Precision, *, inputs: Mapping[str, Path] | None = None) -> None:
        super().__init__(params, num_classes, precision, inputs=inputs)
        m = self.params.momentum
        if not 0 <= m < 1:
            raise ConfigError(f"co_da: momentum {m} must be in [0, 1)")
        self.marginals = {k: {"labelled": ClassMarginals(num_classes, m), "unlabelled": ClassMarginals(num_classes, m)} for k in MODELS}
        self.filters = {k: ExpectationFilter(num_classes, m) for k in MODELS}

    def pseudo_labels(self, model: str, probs_l: torch.Tensor, probs_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.params.align:
            pi_l = self.marginals[model]["labelled"].update(probs_l)
            pi_u = self.marginals[model]["unlabelled"].update(probs_u)
            probs_u = align(probs_u, pi_l, pi_u)
        confidence, pseudo = probs_u.max(dim=1)
        if not self.params.filter:
            return pseudo, None
        self.filters[model].update(confidence, pseudo)
        return pseudo, self.filters[model].mask(confidence, pseudo)

    def record(self) -> dict[str, Any]:
        return super().record() | {"align": self.params.align, "filter": self.params.filter}

    def extra_state(self) -> dict[str, Any]:
        return {
            "marginals": {k: {role: em.state_dict() for role, em in roles.items()} for k, roles in self.marginals.items()},
            "filters": {k: f.state_dict() for k, f in self.filters.items()},
        }

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        if not state:
            return
        for k, roles in self.marginals.items():
            for role, em in roles.items():
                em.load_state_dict(state["marginals"][k][role], self.device)
        for k, f in self.filters.items():
            f.load_state_dict(state["filters"][k], self.device)
