"""AD-GAN-style translator: GLUA's step A, global alignment (methods.md §3.4-3.6, §3.11 choice 1).

One encoder E(x, d) and one decoder G(c, d) shared by both domains (d = 0 source, 1 target; the
domain enters through AdaIN parameters, xmodseg.nn.adgan) and one domain-conditional PatchGAN D.
Per iteration, as the GLUA author's step-A class:

    c_A = E(x_A, 0), c_B = E(x_B, 1);  x_AB = G(c_A, 1), x_BA = G(c_B, 0)
    L_rec = |G(c_A, 0) - x_A|_1 + |G(c_B, 1) - x_B|_1                    (x lambda_rec = 20)
    L_cyc = |G(E(x_AB, 1), 0) - x_A|_1 + |G(E(x_BA, 0), 1) - x_B|_1     (x lambda_cyc = 20)
    L_fm  = |c_A - E(x_AB, 1)|_1 + |c_B - E(x_BA, 0)|_1                 (x lambda_fm = 1, content consistency)
    L_adv = mean (D([x_A, x_B], [0, 1]) - 0)^2 + mean (D([x_AB, x_BA], [1, 0]) - 1)^2

(real images pushed to "fake" in the generator term: AD-GAN's convention), then D on real images
(-> 1) and pooled fakes (-> 0). Adam (lr 2e-4, betas (beta1, 0.999), weight decay 1e-4); the
decoder is not frozen for the cycle terms (the author's class; AD-GAN's public trainer freezes it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from xmodseg.nn.adgan import AdganTranslator, DomainDiscriminator
from xmodseg.nn.gan_losses import l1, least_squares
from xmodseg.nn.pool import ImagePool
from xmodseg.training.device import Precision, compile_networks, optimizer_options, prepare_networks, to_device
from xmodseg.training.params import TrainParams, doc
from xmodseg.training.schedules import make_schedule
from xmodseg.translation.base import DataNeeds, TrainData, Translator, set_requires_grad
from xmodseg.translation.registry import register_translator

SOURCE, TARGET = 0, 1


@dataclass(frozen=True, kw_only=True)
class AdganParams(TrainParams):
    ngf: int = field(default=64, metadata=doc("encoder/decoder width (content code: 4 x ngf channels)"))
    n_res: int = field(default=4, metadata=doc("AdaIN residual blocks in the encoder and in the decoder"))
    mlp_dim: int = field(default=64, metadata=doc("hidden width of the domain -> AdaIN parameter MLPs"))
    ndf: int = field(default=64, metadata=doc("discriminator width"))
    lambda_rec: float = field(default=20.0, metadata=doc("within-domain reconstruction weight"))
    lambda_cycle: float = field(default=20.0, metadata=doc("cycle-consistency weight"))
    lambda_content: float = field(default=1.0, metadata=doc("content-code consistency weight (L_fm)"))
    pool_size: int = field(default=50, metadata=doc("image pools, in images"))
    lr: float = field(default=2e-4, metadata=doc("Adam learning rate"))
    beta1: float = field(default=0.5, metadata=doc("Adam beta1"))
    weight_decay: float = field(default=1e-4, metadata=doc("Adam weight decay"))
    lr_schedule: str = field(default="linear", metadata=doc("constant | linear (decay to 0 from decay_start x iterations; AD-GAN: 5k + 5k)"))
    decay_start: float = field(default=0.5, metadata=doc("linear schedule: fraction of the iterations before the decay"))
    batch_size: int = field(default=8, metadata=doc("slices per domain and iteration (AD-GAN: 8)"))
    intensity: str = field(default="auto", metadata=doc("intensity mapping to [-1, 1], read by xmodseg.translation.run"))


@register_translator
class Adgan(Translator):
    name: ClassVar[str] = "adgan"
    needs: ClassVar[DataNeeds] = DataNeeds(source_images=True, target_images=True)
    params_type: ClassVar[type[TrainParams]] = AdganParams
    params: AdganParams

    def __init__(self, params: Mapping[str, Any] | TrainParams, num_classes: int, precision: Precision, *, inputs: Mapping[str, Path] | None = None) -> None:
        super().__init__(params, num_classes, precision, inputs=inputs)
        p = self.params
        self._arch = {"kind": "adgan_translator", "kwargs": {"ngf": p.ngf, "n_res": p.n_res, "mlp_dim": p.mlp_dim}}
        self.translator = AdganTranslator(p.ngf, p.n_res, p.mlp_dim).to(self.device)
        self.disc = DomainDiscriminator(p.ndf).to(self.device)
        prepare_networks(self.networks().values(), channels_last=p.channels_last)
        kw = {"lr": p.lr, "betas": (p.beta1, 0.999), "weight_decay": p.weight_decay, **optimizer_options(p.optimizer_impl, self.device)}
        self.opt_g = torch.optim.Adam(self.translator.parameters(), **kw)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), **kw)
        if p.compile:
            compile_networks(self.networks().values(), self.device)
        self.sched = {k: make_schedule(o, p.lr_schedule, p.iterations, p.decay_start) for k, o in (("g", self.opt_g), ("d", self.opt_d))}
        seed = p.seed if p.seed is not None else 0
        self.pool_ab, self.pool_ba = ImagePool(p.pool_size, seed + 1), ImagePool(p.pool_size, seed + 2)
        self.batch_size = p.batch_size

    def networks(self) -> Mapping[str, nn.Module]:
        return {"translator": self.translator, "d": self.disc}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"g": self.opt_g, "d": self.opt_d}

    def schedulers(self) -> Mapping[str, torch.optim.lr_scheduler.LRScheduler]:
        return self.sched

    def extra_state(self) -> dict[str, Any]:
        return {"pool_ab": self.pool_ab.state_dict(), "pool_ba": self.pool_ba.state_dict()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        if state:
            self.pool_ab.load_state_dict(state["pool_ab"], self.device)
            self.pool_ba.load_state_dict(state["pool_ba"], self.device)

    def generator_losses(self, x_a: torch.Tensor, x_b: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Every E/G term (D only scores), and the translations for D's step."""
        p, enc, dec, d = self.params, self.translator.encoder, self.translator.decoder, self.disc
        c_a, c_b = enc(x_a, SOURCE), enc(x_b, TARGET)
        x_ab, x_ba = dec(c_a, TARGET), dec(c_b, SOURCE)
        c_ab, c_ba = enc(x_ab, TARGET), enc(x_ba, SOURCE)
        terms = {
            "rec": l1(dec(c_a, SOURCE), x_a) + l1(dec(c_b, TARGET), x_b),
            "cycle": l1(dec(c_ab, SOURCE), x_a) + l1(dec(c_ba, TARGET), x_b),
            "content": l1(c_ab, c_a) + l1(c_ba, c_b),
            "g_adv": least_squares(d(x_a, SOURCE), 0) + least_squares(d(x_b, TARGET), 0) + least_squares(d(x_ab, TARGET), 1) + least_squares(d(x_ba, SOURCE), 1),
        }
        terms["g_total"] = p.lambda_rec * terms["rec"] + p.lambda_cycle * terms["cycle"] + p.lambda_content * terms["content"] + terms["g_adv"]
        return terms, x_ab, x_ba

    def discriminator_losses(self, x_a: torch.Tensor, x_b: torch.Tensor, x_ab: torch.Tensor, x_ba: torch.Tensor) -> dict[str, torch.Tensor]:
        d = self.disc
        real = least_squares(d(x_a, SOURCE), 1) + least_squares(d(x_b, TARGET), 1)
        fake = least_squares(d(self.pool_ab.query(x_ab.detach()), TARGET), 0) + least_squares(d(self.pool_ba.query(x_ba.detach()), SOURCE), 0)
        return {"d_real": real, "d_fake": fake, "d_total": real + fake}

    def train_step(self, data: TrainData, sampler: torch.Generator, step: int) -> dict[str, torch.Tensor]:
        assert data.source is not None and data.target is not None
        x_a = to_device(data.source.sample(self.batch_size, sampler)[0], self.device, self.params.channels_last)
        x_b = to_device(data.target.sample(self.batch_size, sampler)[0], self.device, self.params.channels_last)
        set_requires_grad([self.disc], False)
        with self.precision.autocast():
            g_terms, x_ab, x_ba = self.generator_losses(x_a, x_b)
        self.backward_step(g_terms["g_total"], self.opt_g)
        set_requires_grad([self.disc], True)
        with self.precision.autocast():
            d_terms = self.discriminator_losses(x_a, x_b, x_ab, x_ba)
        self.backward_step(d_terms["d_total"], self.opt_d)
        for s in self.sched.values():
            s.step()
        return {k: v.detach() for k, v in {**g_terms, **d_terms}.items()}

    def inference_architecture(self) -> dict[str, Any]:
        return self._arch

    def inference_network(self) -> nn.Module:
        return self.translator  # forward(x) = G(E(x, source), target)

    def reconstruct(self, translated: torch.Tensor) -> torch.Tensor:
        """target-look -> source-look (the preview's reconstruction column)."""
        return self.translator(translated, TARGET, SOURCE)

