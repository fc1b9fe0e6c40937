"""CycleGAN (Zhu et al., ICCV 2017) for unpaired MR <-> CT translation.

Generators G (source -> target) and F (target -> source): ResNet generators; discriminators D_t
and D_s: PatchGANs. Per iteration (reference order): one generator update on
    L_G = LSGAN(D_t(G(x_s))) + LSGAN(D_s(F(x_t)))
          + lambda_cycle * (|F(G(x_s)) - x_s|_1 + |G(F(x_t)) - x_t|_1)
          + lambda_identity * lambda_cycle * (|G(x_t) - x_t|_1 + |F(x_s) - x_s|_1)
with the discriminators frozen, then one discriminator update on real images vs pooled fakes
(image pools of `pool_size`). Adam(lr, beta1=0.5); optional linear decay over the second half.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from xmodseg.nn.gan_losses import l1, lsgan_discriminator, lsgan_generator
from xmodseg.nn.layers import PatchDiscriminator, ResnetGenerator
from xmodseg.nn.pool import ImagePool
from xmodseg.training.device import Precision, compile_networks, optimizer_options, prepare_networks, to_device
from xmodseg.training.params import TrainParams, doc
from xmodseg.training.schedules import make_schedule
from xmodseg.translation.base import DataNeeds, TrainData, Translator, set_requires_grad
from xmodseg.translation.registry import register_translator


@dataclass(frozen=True, kw_only=True)
class CycleGANParams(TrainParams):
    ngf: int = field(default=64, metadata=doc("generator width"))
    ndf: int = field(default=64, metadata=doc("discriminator width"))
    n_blocks: int = field(default=9, metadata=doc("generator residual blocks"))
    d_layers: int = field(default=3, metadata=doc("discriminator layers"))
    skip: bool = field(default=False, metadata=doc("generator outputs tanh(x + G(x))"))
    lambda_cycle: float = field(default=10.0, metadata=doc("cycle-consistency weight"))
    lambda_identity: float = field(default=0.5, metadata=doc("identity weight, x lambda_cycle (CycleGAN's convention)"))
    pool_size: int = field(default=50, metadata=doc("image pools, in images"))
    lr: float = field(default=2e-4, metadata=doc("Adam learning rate"))
    beta1: float = field(default=0.5, metadata=doc("Adam beta1"))
    lr_schedule: str = field(default="constant", metadata=doc("constant | linear (decay to 0 from decay_start x iterations)"))
    decay_start: float = field(default=0.5, metadata=doc("linear schedule: fraction of the iterations before the decay"))
    batch_size: int = field(default=1, metadata=doc("slices per domain and iteration"))
    intensity: str = field(default="auto", metadata=doc("intensity mapping to [-1, 1], read by xmodseg.translation.run"))


@register_translator
class CycleGAN(Translator):
    name: ClassVar[str] = "cyclegan"
    needs: ClassVar[DataNeeds] = DataNeeds(source_images=True, target_images=True)
    params_type: ClassVar[type[TrainParams]] = CycleGANParams
    params: CycleGANParams

    def __init__(self, params: Mapping[str, Any] | TrainParams, num_classes: int, precision: Precision, *, inputs: Mapping[str, Path] | None = None) -> None:
        super().__init__(params, num_classes, precision, inputs=inputs)
        p = self.params
        gen: dict[str, Any] = {"ngf": p.ngf, "n_blocks": p.n_blocks, "skip": p.skip}
        self._arch = {"kind": "resnet_generator", "kwargs": gen}
        self.g_st = ResnetGenerator(**gen).to(self.device)  # source -> target (the product)
        self.g_ts = ResnetGenerator(**gen).to(self.device)  # target -> source
        self.d_t = PatchDiscriminator(p.ndf, p.d_layers).to(self.device)
        self.d_s = PatchDiscriminator(p.ndf, p.d_layers).to(self.device)
        prepare_networks(self.networks().values(), channels_last=p.channels_last)
        betas, impl = (p.beta1, 0.999), optimizer_options(p.optimizer_impl, self.device)
        self.opt_g = torch.optim.Adam([*self.g_st.parameters(), *self.g_ts.parameters()], lr=p.lr, betas=betas, **impl)
        self.opt_d = torch.optim.Adam([*self.d_t.parameters(), *self.d_s.parameters()], lr=p.lr, betas=betas, **impl)
        if p.compile:
            compile_networks(self.networks().values(), self.device)
        iters = p.iterations
        self.sched = {k: make_schedule(o, p.lr_schedule, iters, p.decay_start) for k, o in (("g", self.opt_g), ("d", self.opt_d))}
        seed = p.seed if p.seed is not None else 0
        self.pool_t, self.pool_s = ImagePool(p.pool_size, seed + 1), ImagePool(p.pool_size, seed + 2)
        self.batch_size = p.batch_size

    def networks(self) -> Mapping[str, nn.Module]:
        return {"g_st": self.g_st, "g_ts": self.g_ts, "d_t": self.d_t, "d_s": self.d_s}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"g": self.opt_g, "d": self.opt_d}

    def schedulers(self) -> Mapping[str, torch.optim.lr_scheduler.LRScheduler]:
        return self.sched

    def extra_state(self) -> dict[str, Any]:
        return {"pool_t": self.pool_t.state_dict(), "pool_s": self.pool_s.state_dict()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        if state:
            self.pool_t.load_state_dict(state["pool_t"], self.device)
            self.pool_s.load_state_dict(state["pool_s"], self.device)

    def generator_losses(self, x_s: torch.Tensor, x_t: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """All generator-side terms (discriminators only scored), plus the fakes for the D step."""
        p = self.params
        fake_t, fake_s = self.g_st(x_s), self.g_ts(x_t)
        terms = {
            "g_adv_t": lsgan_generator(self.d_t(fake_t)),
            "g_adv_s": lsgan_generator(self.d_s(fake_s)),
            "cycle_s": l1(self.g_ts(fake_t), x_s),
            "cycle_t": l1(self.g_st(fake_s), x_t),
        }
        total = terms["g_adv_t"] + terms["g_adv_s"] + p.lambda_cycle * (terms["cycle_s"] + terms["cycle_t"])
        if p.lambda_identity > 0:
            terms["identity_t"] = l1(self.g_st(x_t), x_t)
            terms["identity_s"] = l1(self.g_ts(x_s), x_s)
            total = total + p.lambda_identity * p.lambda_cycle * (terms["identity_t"] + terms["identity_s"])
        terms["g_total"] = total
        return terms, fake_t, fake_s

    def discriminator_losses(self, x_s: torch.Tensor, x_t: torch.Tensor, fake_t: torch.Tensor, fake_s: torch.Tensor) -> dict[str, torch.Tensor]:
        d_t = lsgan_discriminator(self.d_t(x_t), self.d_t(self.pool_t.query(fake_t.detach())))
        d_s = lsgan_discriminator(self.d_s(x_s), self.d_s(self.pool_s.query(fake_s.detach())))
        return {"d_t": d_t, "d_s": d_s, "d_total": d_t + d_s}

    def train_step(self, data: TrainData, sampler: torch.Generator, step: int) -> dict[str, torch.Tensor]:
        assert data.source is not None and data.target is not None
        x_s = to_device(data.source.sample(self.batch_size, sampler)[0], self.device, self.params.channels_last)
        x_t = to_device(data.target.sample(self.batch_size, sampler)[0], self.device, self.params.channels_last)
        set_requires_grad([self.d_t, self.d_s], False)
        with self.precision.autocast():
            g_terms, fake_t, fake_s = self.generator_losses(x_s, x_t)
        self.backward_step(g_terms["g_total"], self.opt_g)
        set_requires_grad([self.d_t, self.d_s], True)
        with self.precision.autocast():
            d_terms = self.discriminator_losses(x_s, x_t, fake_t, fake_s)
        self.backward_step(d_terms["d_total"], self.opt_d)
        for s in self.sched.values():
            s.step()
        return {k: v.detach() for k, v in {**g_terms, **d_terms}.items()}  # read by the loop once per logging interval

    def inference_architecture(self) -> dict[str, Any]:
        return self._arch

    def inference_network(self) -> nn.Module:
        return self.g_st

    def reconstruct(self, translated: torch.Tensor) -> torch.Tensor:
        """target-look -> source-look (for the preview's reconstruction column)."""
        return self.g_ts(translated)
