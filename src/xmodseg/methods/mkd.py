"""MKD: multi-modal segmentation with an image alignment module and online mutual knowledge
distillation (Li, Yu, Wang, Heng, AAAI 2020; methods.md §4). Not adaptation: the target modality's
training labels (all, or a label-scarce subset) and a second, *assistant* modality's labels are both
used, and the target is segmented.

Data flow (the paper's Fig. 1, methods.md §4.3):
- IAM: a CycleGAN (G_a->t, G_t->a, D_t, D_a; LSGAN, cycle x10, identity x0.5 x10, pools) renders
  assistant slices x_a in the target look, x_at = G_a->t(x_a). It trains online: after `iam_warmup`
  IAM-only iterations, S_syn's supervised loss on x_at also reaches G_a->t (x `lambda_seg_to_generator`).
  `warm_start` (declared input): G_a->t starts from the translation stage's CycleGAN.
- S_real = DiceCE(S_real(x_t), y_t) + lambda_s2r KD(S_real(x_at) <- S_syn(x_at))  (on synthetic images)
  S_syn  = DiceCE(S_syn(x_at), y_a) + lambda_r2s KD(S_syn(x_t) <- S_real(x_t))    (on real target images)
  KD = KL of temperature-softened softmaxes x T^2, teacher detached (`methods.mkd_losses`), so each
  segmenter's optimiser sees only its own objective.
- Inference: the mean of both softmax maps on real target slices (`nn.mkd.SoftmaxEnsemble`);
  `ensemble: false` keeps S_real only.

Images: both domains are mapped to [-1, 1] (the IAM's range) with their training slices'
percentile ranges (or the warm start's), the target range stored in the inference network. The
IAM sees every target training image (labelled or not: images carry no labels); the supervised
terms see only the labelled ones.

Ablation switches: `iam: false` (the segmenters see raw assistant images), `lambda_s2r: 0`,
`lambda_r2s: 0`, `ensemble: false`. Choices where the paper is silent are methods.md §4.7's.
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
from xmodseg.methods.base import DataNeeds, InputSpec, SegmentationMethod, TrainData, set_requires_grad
from xmodseg.methods.mkd_losses import distillation_loss
from xmodseg.methods.supervised import DEFAULT_NETWORK
from xmodseg.methods.warm_start import cyclegan_generator
from xmodseg.nn import networks
from xmodseg.nn.gan_losses import l1, lsgan_discriminator, lsgan_generator
from xmodseg.nn.ignore_label import DiceCE
from xmodseg.nn.layers import PatchDiscriminator, ResnetGenerator
from xmodseg.nn.mkd import SoftmaxEnsemble
from xmodseg.nn.pool import ImagePool
from xmodseg.slices import SliceSet
from xmodseg.training.device import Precision, compile_networks, optimizer_options, prepare_networks, to_device
from xmodseg.training.intensity import MODES, UnitRange, unit_range_for
from xmodseg.training.params import TrainParams, doc
from xmodseg.training.schedules import make_schedule


@dataclass(frozen=True, kw_only=True)
class MkdParams(TrainParams):
    """MKD's `train` keys (methods.md §4.7 where the paper is silent)."""

    # segmenters (two identical U-Nets)
    network: dict[str, Any] = field(default_factory=dict, metadata=doc(f"MONAI UNet arguments over {DEFAULT_NETWORK}, both segmenters"))
    batch_size: int = field(default=8, metadata=doc("labelled target slices and assistant slices per iteration (each)"))
    lr: float = field(default=1e-3, metadata=doc("segmenters' Adam learning rate"))
    weight_decay: float = field(default=1e-5, metadata=doc("segmenters' Adam weight decay"))
    lr_schedule: str = field(default="poly", metadata=doc("segmenters: constant | linear | poly, over the iterations after the warm-up"))
    decay_start: float = field(default=0.5, metadata=doc("linear schedules: fraction of the iterations before the decay"))
    # distillation
    temperature: float = field(default=2.0, metadata=doc("KD temperature T (loss x T^2)"))
    lambda_s2r: float = field(default=1.0, metadata=doc("S_syn -> S_real distillation on x_at (0: ablation)"))
    lambda_r2s: float = field(default=1.0, metadata=doc("S_real -> S_syn distillation on x_t (0: ablation)"))
    ensemble: bool = field(default=True, metadata=doc("inference: mean softmax of S_real and S_syn; false: S_real only"))
    # image alignment module (CycleGAN defaults)
    iam: bool = field(default=True, metadata=doc("false: no IAM, the segmenters see raw assistant images (ablation)"))
    iam_warmup: int = field(default=0, metadata=doc("IAM-only iterations before the segmenters start (counted in `iterations`)"))
    lambda_seg_to_generator: float = field(default=1.0, metadata=doc("weight of S_syn's supervised loss in G_a->t's objective (online coupling)"))
    coupling_batch_size: int | None = field(default=None, metadata=doc("assistant slices whose S_syn loss reaches G_a->t (None: all of batch_size; fewer is cheaper)"))
    ngf: int = field(default=64, metadata=doc("IAM generator width (ignored with warm_start: its file's)"))
    n_blocks: int = field(default=9, metadata=doc("IAM generator residual blocks (ignored with warm_start)"))
    ndf: int = field(default=64, metadata=doc("IAM discriminator width"))
    d_layers: int = field(default=3, metadata=doc("IAM discriminator layers"))
    gan_batch_size: int = field(default=1, metadata=doc("slices per domain in the IAM's CycleGAN terms"))
    gan_lr: float = field(default=2e-4, metadata=doc("IAM Adam learning rate"))
    beta1: float = field(default=0.5, metadata=doc("IAM Adam beta1"))
    gan_lr_schedule: str = field(default="linear", metadata=doc("IAM: constant | linear | poly over all iterations"))
    lambda_cycle: float = field(default=10.0, metadata=doc("IAM cycle-consistency weight"))
    lambda_identity: float = field(default=0.5, metadata=doc("IAM identity weight, x lambda_cycle"))
    pool_size: int = field(default=50, metadata=doc("IAM image pools, in images"))
    intensity: str = field(default="auto", metadata=doc(f"mapping of both domains to [-1, 1]: one of {list(MODES)}"))


@register
class Mkd(SegmentationMethod):
    name: ClassVar[str] = "mkd"
    needs: ClassVar[DataNeeds] = DataNeeds(source_images=False, target_images=True, target_labels=True, assistant_labels=True)
    params_type: ClassVar[type[TrainParams]] = MkdParams
    params: MkdParams
    inputs: ClassVar[Mapping[str, InputSpec]] = {
        "warm_start": InputSpec(
            "translator_model",
            optional=True,
            description="a CycleGAN translator's model.pt (assistant -> target): G_a->t starts from its generator and intensity ranges",
            translator_kinds=("cyclegan",),
        )
    }

    def __init__(self, params: Mapping[str, Any] | TrainParams, num_classes: int, precision: Precision, *, inputs: Mapping[str, Path] | None = None) -> None:
        super().__init__(params, num_classes, precision, inputs=inputs)
        p = self.params
        if p.intensity not in MODES:
            raise ConfigError(f"mkd: intensity '{p.intensity}' is not one of {list(MODES)}")
        if not 0 <= p.iam_warmup < p.iterations:
            raise ConfigError(f"mkd: iam_warmup {p.iam_warmup} must be in [0, iterations) (iterations {p.iterations})")
        if p.coupling_batch_size is not None and not p.gan_batch_size <= p.coupling_batch_size <= p.batch_size:
            raise ConfigError(f"mkd: coupling_batch_size {p.coupling_batch_size} must be in [gan_batch_size, batch_size] ([{p.gan_batch_size}, {p.batch_size}])")
        if not p.iam and (p.iam_warmup or "warm_start" in self.input_paths):
            raise ConfigError("mkd: iam: false has no image alignment module; remove iam_warmup and the warm_start input")
        self.unet = {**DEFAULT_NETWORK, **p.network, "num_classes": num_classes}
        self.s_real = networks.build({"kind": "monai_unet", "kwargs": self.unet}).to(self.device)
        self.s_syn = networks.build({"kind": "monai_unet", "kwargs": self.unet}).to(self.device)
        impl = optimizer_options(p.optimizer_impl, self.device)
        self.opts: dict[str, torch.optim.Optimizer] = {
            "s_real": torch.optim.Adam(self.s_real.parameters(), lr=p.lr, weight_decay=p.weight_decay, **impl),
            "s_syn": torch.optim.Adam(self.s_syn.parameters(), lr=p.lr, weight_decay=p.weight_decay, **impl),
        }
        seg_iterations = p.iterations - p.iam_warmup
        self.scheds = {k: make_schedule(o, p.lr_schedule, seg_iterations, p.decay_start) for k, o in self.opts.items()}
        self.warm_ranges: dict[str, UnitRange] | None = None
        self.g_at: nn.Module | None = None
        if p.iam:
            warm = self.input_paths.get("warm_start")
            if warm is not None:
                g_at, self.warm_ranges, gen = cyclegan_generator(warm, "mkd warm_start")
            else:
                gen = {"ngf": p.ngf, "n_blocks": p.n_blocks, "skip": False}
                g_at = ResnetGenerator(**gen)
            self.g_at = g_at.to(self.device)
            self.g_ta = ResnetGenerator(**gen).to(self.device)
            self.d_t = PatchDiscriminator(p.ndf, p.d_layers).to(self.device)
            self.d_a = PatchDiscriminator(p.ndf, p.d_layers).to(self.device)
            betas = (p.beta1, 0.999)
            self.opts["g"] = torch.optim.Adam([*self.g_at.parameters(), *self.g_ta.parameters()], lr=p.gan_lr, betas=betas, **impl)
            self.opts["d"] = torch.optim.Adam([*self.d_t.parameters(), *self.d_a.parameters()], lr=p.gan_lr, betas=betas, **impl)
            for k in ("g", "d"):
                self.scheds[k] = make_schedule(self.opts[k], p.gan_lr_schedule, p.iterations, p.decay_start)
            seed = p.seed if p.seed is not None else 0
            self.pool_t, self.pool_a = ImagePool(p.pool_size, seed + 1), ImagePool(p.pool_size, seed + 2)
        prepare_networks(self.networks().values(), channels_last=p.channels_last)
        if p.compile:
            compile_networks(self.networks().values(), self.device)
        self.members = [self.s_real, self.s_syn] if p.ensemble else [self.s_real]
        self.ensemble = SoftmaxEnsemble(self.members)
        self.loss = DiceCE()

    # -- data -------------------------------------------------------------------------------
    def prepare(self, data: TrainData) -> TrainData:
        """Both domains to [-1, 1] (percentile ranges of their training images, or the warm start's);
        the IAM's target pool gets every target training image, labelled or not."""
        assert data.target is not None and data.assistant is not None
        mode = self.params.intensity
        target_images = data.target.images if data.target_unlabelled is None else torch.cat([data.target.images, data.target_unlabelled.images])
        ranges = self.warm_ranges or {
            "source": unit_range_for(data.assistant.images, data.assistant.intensity_space, mode, f"assistant ({data.assistant.modality})"),
            "target": unit_range_for(target_images, data.target.intensity_space, mode, "target"),
        }
        self.ranges = ranges
        t = ranges["target"]
        self.ensemble.intensity_range.copy_(torch.tensor([t.low, t.high]))
        self.ensemble.intensity_mode = t.mode
        a, tg = data.assistant, data.target
        if tuple(a.images.shape[-2:]) != tuple(tg.images.shape[-2:]):
            raise ConfigError(f"mkd: assistant slices {tuple(a.images.shape[-2:])} and target slices {tuple(tg.images.shape[-2:])} differ in size (crop_size)")
        unlabelled = data.target_unlabelled
        return TrainData(
            source=None,
            target=SliceSet(t.to_unit(tg.images), tg.labels, tg.cases, tg.modality, tg.intensity_space),
            target_unlabelled=SliceSet(t.to_unit(target_images), None, tg.cases + (unlabelled.cases if unlabelled else ()), tg.modality, tg.intensity_space),
            assistant=SliceSet(ranges["source"].to_unit(a.images), a.labels, a.cases, a.modality, a.intensity_space),
        )

    # -- Method interface ---------------------------------------------------------------------
    def networks(self) -> Mapping[str, nn.Module]:
        nets: dict[str, nn.Module] = {"s_real": self.s_real, "s_syn": self.s_syn}
        if self.g_at is not None:
            nets.update(g_at=self.g_at, g_ta=self.g_ta, d_t=self.d_t, d_a=self.d_a)
        return nets

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return self.opts

    def schedulers(self) -> Mapping[str, torch.optim.lr_scheduler.LRScheduler]:
        return self.scheds

    def extra_state(self) -> dict[str, Any]:
        return {"pool_t": self.pool_t.state_dict(), "pool_a": self.pool_a.state_dict()} if self.g_at is not None else {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        if state and self.g_at is not None:
            self.pool_t.load_state_dict(state["pool_t"], self.device)
            self.pool_a.load_state_dict(state["pool_a"], self.device)

    def inference_architecture(self) -> dict[str, Any]:
        low, high = (float(v) for v in self.ensemble.intensity_range.tolist())
        kwargs = {"unet": self.unet, "members": len(self.members), "intensity_range": [low, high], "intensity_mode": self.ensemble.intensity_mode}
        return {"kind": "mkd_ensemble", "kwargs": kwargs}

    def inference_network(self) -> nn.Module:
        return self.ensemble

    def record(self) -> dict[str, Any]:
        ranges = getattr(self, "ranges", None) or {}
        return {
            "intensity": {("assistant" if k == "source" else k): r.to_dict() for k, r in ranges.items()},
            "intensity_from_warm_start": self.warm_ranges is not None,
            "inference": "mean softmax of S_real and S_syn" if self.params.ensemble else "S_real only",
        }

    # -- one iteration ------------------------------------------------------------------------
    def _iam_targets(self, data: TrainData, sampler: torch.Generator) -> torch.Tensor:
        """Target images for the IAM's CycleGAN terms: any target training slice (prepared into
        `target_unlabelled`, labels dropped)."""
        assert data.target_unlabelled is not None
        return to_device(data.target_unlabelled.sample(self.params.gan_batch_size, sampler)[0], self.device, self.params.channels_last)

    def _iam_step(self, x_a: torch.Tensor, x_t: torch.Tensor, seg_term: tuple[torch.Tensor, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        """CycleGAN generator update (plus S_syn's supervised loss on G_a->t(x_a) when `seg_term` =
        (assistant batch, labels)), then the discriminators on real images vs pooled fakes."""
        p = self.params
        assert self.g_at is not None
        b = p.gan_batch_size
        set_requires_grad([self.d_t, self.d_a, self.s_real, self.s_syn], False)
        t: dict[str, torch.Tensor] = {}
        with self.precision.autocast():
            if seg_term is None:
                x_at = self.g_at(x_a[:b])
                rest = x_a[:0]
            else:
                c = min(p.coupling_batch_size or len(x_a), len(x_a))
                x_at = self.g_at(x_a[:c])
                with torch.no_grad():  # the rest of the segmenters' synthetic batch, by the same (pre-update) G_a->t
                    rest = self.g_at(x_a[c:]) if c < len(x_a) else x_a[:0]
            fake_t, fake_a = x_at[:b], self.g_ta(x_t)
            t["g_adv_t"], t["g_adv_a"] = lsgan_generator(self.d_t(fake_t)), lsgan_generator(self.d_a(fake_a))
            t["cycle_a"], t["cycle_t"] = l1(self.g_ta(fake_t), x_a[:b]), l1(self.g_at(fake_a), x_t)
            total = t["g_adv_t"] + t["g_adv_a"] + p.lambda_cycle * (t["cycle_a"] + t["cycle_t"])
            if p.lambda_identity > 0:
                t["identity_t"], t["identity_a"] = l1(self.g_at(x_t), x_t), l1(self.g_ta(x_a[:b]), x_a[:b])
                total = total + p.lambda_identity * p.lambda_cycle * (t["identity_t"] + t["identity_a"])
        if seg_term is not None and p.lambda_seg_to_generator > 0:  # S_syn frozen: the gradient reaches G_a->t only
            with self.precision.autocast():
                logits = self.s_syn(x_at)
            t["g_seg_syn"] = self.loss(logits.float(), seg_term[1][: len(x_at)])
            total = total + p.lambda_seg_to_generator * t["g_seg_syn"]
        t["g_total"] = total
        self.backward_step(total, self.opts["g"])
        set_requires_grad([self.d_t, self.d_a], True)
        with self.precision.autocast():
            t["d_t"] = lsgan_discriminator(self.d_t(x_t), self.d_t(self.pool_t.query(fake_t.detach())))
            t["d_a"] = lsgan_discriminator(self.d_a(x_a[:b]), self.d_a(self.pool_a.query(fake_a.detach())))
        self.backward_step(t["d_t"] + t["d_a"], self.opts["d"])
        set_requires_grad([self.s_real, self.s_syn], True)
        self._x_at = torch.cat([x_at.detach(), rest])
        return t

    def train_step(self, data: TrainData, sampler: torch.Generator, step: int) -> dict[str, torch.Tensor]:
        assert data.target is not None and data.assistant is not None
        p = self.params
        cl = p.channels_last
        warming = self.g_at is not None and step < p.iam_warmup
        x_a, y_a = data.assistant.sample(p.gan_batch_size if warming else p.batch_size, sampler)
        assert y_a is not None
        x_a, y_a = to_device(x_a, self.device, cl), y_a.to(self.device)
        t: dict[str, torch.Tensor] = {}
        if self.g_at is not None:
            x_t_gan = self._iam_targets(data, sampler)
            t.update(self._iam_step(x_a, x_t_gan, None if warming else (x_a, y_a)))
            if warming:
                for k in ("g", "d"):
                    self.scheds[k].step()
                return {k: v.detach() for k, v in t.items()}
            x_syn = self._x_at  # G_a->t(x_a) of this step's generator, before its update (detached)
        else:
            x_syn = x_a
        x_t, y_t = data.target.sample(p.batch_size, sampler)
        assert y_t is not None
        x_t, y_t = to_device(x_t, self.device, cl), y_t.to(self.device)
        with self.precision.autocast():
            real_on_t, real_on_syn = self.s_real(x_t), self.s_real(x_syn)
            syn_on_syn, syn_on_t = self.s_syn(x_syn), self.s_syn(x_t)
        t["sup_real"] = self.loss(real_on_t.float(), y_t)
        t["sup_syn"] = self.loss(syn_on_syn.float(), y_a)
        t["kd_s2r"] = distillation_loss(real_on_syn, syn_on_syn, p.temperature, y_a)  # teacher S_syn, detached inside
        t["kd_r2s"] = distillation_loss(syn_on_t, real_on_t, p.temperature, y_t)  # teacher S_real, detached inside
        t["seg_real"] = t["sup_real"] + p.lambda_s2r * t["kd_s2r"]
        t["seg_syn"] = t["sup_syn"] + p.lambda_r2s * t["kd_r2s"]
        # one backward: the teachers are detached, so each segmenter's gradient is its own objective's
        self.backward_step(t["seg_real"] + t["seg_syn"], self.opts["s_real"], self.opts["s_syn"])
        for s in self.scheds.values():
            s.step()
        return {k: v.detach() for k, v in t.items()}
