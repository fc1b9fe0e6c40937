"""Content/style disentangled translation (MUNIT, Huang et al. ECCV 2018; DRIT, Lee et al. ECCV 2018).

An image x of either domain is split into a *content* code c = E_c(x) (a spatial feature map: the
anatomy) and a *style* code s = E_s^dom(x) (a `style_dim` vector: the modality's appearance). A
decoder G_dom(c, s) re-renders content in a domain, the style entering through AdaIN.

Networks
    E_c       ONE content encoder shared by both domains: c7s1-dim, `n_down` 4x4 stride-2 convs
              (channels doubling), `n_res` instance-norm residual blocks. MUNIT has one content
              encoder per domain (DRIT shares only its last layers); sharing it entirely puts MR
              and CT content codes in one space, which is what the local alignment of GLUA builds
              on later.
    E_s^src, E_s^tgt
              style encoders: c7s1-dim and `n_down + 2` 4x4 stride-2 convs (no normalisation,
              which would remove exactly the statistics that make up style), global average
              pooling, 1x1 conv -> `style_dim`.
    G_src, G_tgt
              `n_res` residual blocks with AdaIN whose per-channel scale and bias come from a
              3-layer MLP (width `mlp_dim`) of the style code, `n_down` x (nearest upsampling,
              5x5 conv, layer norm, ReLU), c7s1-1, tanh. Layer norm (GroupNorm with one group)
              rather than instance norm after the AdaIN blocks, as in MUNIT, so the injected
              style statistics are not normalised away. AdaIN's scale is 1 + gamma(s) (MUNIT uses
              gamma(s) itself): with the N(0, 0.02) initialisation used throughout, the decoder
              then starts as a plain instance-norm ResNet instead of with near-zero AdaIN gains.
    D_src, D_tgt
              70x70 PatchGANs (`layers.PatchDiscriminator`; MUNIT uses multi-scale ones).
    All convolutions are reflection-padded; weights N(0, 0.02), zero biases (MUNIT initialises its
    generators with Kaiming instead).

Losses per iteration, with x_s, x_t real, c_s = E_c(x_s), c_t = E_c(x_t), s_s = E_s^src(x_s),
s_t = E_s^tgt(x_t), random styles z_s, z_t ~ N(0, I) (drawn from a generator owned by the method
and checkpointed), x_st = G_tgt(c_s, z_t), x_ts = G_src(c_t, z_s):

    weight          key              term
    lambda_x = 10   recon_x_s        |G_src(c_s, s_s) - x_s|_1
                    recon_x_t        |G_tgt(c_t, s_t) - x_t|_1
    lambda_c = 1    recon_c_s        |E_c(x_st) - c_s|_1
                    recon_c_t        |E_c(x_ts) - c_t|_1
    lambda_s = 1    recon_style_t    |E_s^tgt(x_st) - z_t|_1
                    recon_style_s    |E_s^src(x_ts) - z_s|_1
    lambda_cycle    cycle_s          |G_src(E_c(x_st), s_s) - x_s|_1
      = 10          cycle_t          |G_tgt(E_c(x_ts), s_t) - x_t|_1
    lambda_gan = 1  g_adv_t          LSGAN_gen(D_tgt(x_st))
                    g_adv_s          LSGAN_gen(D_src(x_ts))
                    g_total          the weighted sum: one update of all generator-side networks
                                     with the discriminators frozen
    1               d_t              LSGAN_disc(D_tgt(x_t), D_tgt(pool_t(x_st)))
    1               d_s              LSGAN_disc(D_src(x_s), D_src(pool_s(x_ts)))
                    d_total          d_t + d_s: one update of both discriminators (pooled fakes)

(|.|_1 is the mean absolute difference.) Why these terms and weights:
  * within-domain reconstruction (MUNIT's recon_x_w = 10): (content, style) must be a complete code
    of the image; this auto-encoding is the backbone that makes the codes meaningful;
  * latent content reconstruction (recon_c_w = 1): translating must keep the content code;
  * latent style reconstruction (recon_s_w = 1): the decoder must actually use the style code
    (otherwise every z gives the same image) and the style encoder learns to invert it; drawing
    the translation styles from the prior N(0, I) keeps the style space matched to it;
  * cross-cycle reconstruction (DRIT's cross-cycle consistency; MUNIT's optional recon_x_cyc_w,
    here 10 like lambda_x): the latent content loss alone compares feature maps and can be met by
    codes that lose detail; requiring the image itself to come back from its translation's content
    pins the anatomy pixel-for-pixel, which matters because segmentation labels are carried over
    unchanged to the translated images;
  * adversarial (gan_w = 1, LSGAN as MUNIT's gan_type "lsgan"): translations must look like the
    other modality.
Optimisers are MUNIT's: Adam(lr 1e-4, betas (0.5, 0.999), weight decay 1e-4), one for every
generator-side parameter (E_c, both E_s, both G), one for both discriminators; the learning-rate
schedule is `lr_schedule` ("constant" by default). Image pools of `pool_size` as in CycleGAN.

Inference (the product) is `DisentangledTranslator`, which holds every generator-side network and
translates deterministically: G_tgt(E_c(x_s), target_style), `target_style` being a buffer with the
mean style code of the target training images (`set_reference_styles`, called by
`xmodseg.translation.run` after training and before the model is saved; zeros, the prior's mean,
until then). `reconstruct` maps
back likewise with the mean source style.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from xmodseg.nn.disentangled import DisentangledTranslator
from xmodseg.nn.gan_losses import l1, lsgan_discriminator, lsgan_generator
from xmodseg.nn.layers import PatchDiscriminator
from xmodseg.nn.pool import ImagePool
from xmodseg.training.device import Precision, compile_networks, optimizer_options, prepare_networks, to_device
from xmodseg.training.params import TrainParams, doc
from xmodseg.training.schedules import make_schedule
from xmodseg.translation.base import DataNeeds, TrainData, Translator, set_requires_grad
from xmodseg.translation.registry import register_translator


@dataclass(frozen=True, kw_only=True)
class DisentangledParams(TrainParams):
    dim: int = field(default=64, metadata=doc("content encoder width"))
    n_res: int = field(default=4, metadata=doc("residual blocks (content encoder, decoders)"))
    n_down: int = field(default=2, metadata=doc("content encoder downsamplings"))
    style_dim: int = field(default=8, metadata=doc("style code length"))
    mlp_dim: int = field(default=256, metadata=doc("AdaIN MLP width"))
    ndf: int = field(default=64, metadata=doc("discriminator width"))
    d_layers: int = field(default=3, metadata=doc("discriminator layers"))
    lambda_x: float = field(default=10.0, metadata=doc("within-domain reconstruction"))
    lambda_c: float = field(default=1.0, metadata=doc("content-code reconstruction"))
    lambda_s: float = field(default=1.0, metadata=doc("style-code reconstruction"))
    lambda_cycle: float = field(default=10.0, metadata=doc("cross-cycle reconstruction (DRIT)"))
    lambda_gan: float = field(default=1.0, metadata=doc("adversarial terms"))
    pool_size: int = field(default=50, metadata=doc("image pools, in images"))
    lr: float = field(default=1e-4, metadata=doc("Adam learning rate"))
    beta1: float = field(default=0.5, metadata=doc("Adam beta1"))
    weight_decay: float = field(default=1e-4, metadata=doc("Adam weight decay"))
    lr_schedule: str = field(default="constant", metadata=doc("constant | linear (decay to 0 from decay_start x iterations)"))
    decay_start: float = field(default=0.5, metadata=doc("linear schedule: fraction of the iterations before the decay"))
    batch_size: int = field(default=1, metadata=doc("slices per domain and iteration"))
    intensity: str = field(default="auto", metadata=doc("intensity mapping to [-1, 1], read by xmodseg.translation.run"))




@register_translator
class Disentangled(Translator):
    name: ClassVar[str] = "disentangled"
    needs: ClassVar[DataNeeds] = DataNeeds(source_images=True, target_images=True)
    params_type: ClassVar[type[TrainParams]] = DisentangledParams
    params: DisentangledParams

    def __init__(self, params: Mapping[str, Any] | TrainParams, num_classes: int, precision: Precision, *, inputs: Mapping[str, Path] | None = None) -> None:
        super().__init__(params, num_classes, precision, inputs=inputs)
        p = self.params
        kwargs = {"dim": p.dim, "n_res": p.n_res, "n_down": p.n_down, "style_dim": p.style_dim, "mlp_dim": p.mlp_dim}
        self._arch = {"kind": "disentangled_translator", "kwargs": kwargs}
        self.translator = DisentangledTranslator(**kwargs).to(self.device)
        self.d_t = PatchDiscriminator(p.ndf, p.d_layers).to(self.device)
        self.d_s = PatchDiscriminator(p.ndf, p.d_layers).to(self.device)
        # Aliases of the generator-side networks (owned by the translator; GLUA reuses e_c).
        self.e_c = self.translator.content_encoder
        self.e_s_src, self.e_s_tgt = self.translator.style_encoder_src, self.translator.style_encoder_tgt
        self.g_src, self.g_tgt = self.translator.decoder_src, self.translator.decoder_tgt
        prepare_networks(self.networks().values(), channels_last=p.channels_last)
        adam: dict[str, Any] = {"lr": p.lr, "betas": (p.beta1, 0.999), "weight_decay": p.weight_decay, **optimizer_options(p.optimizer_impl, self.device)}
        self.opt_g = torch.optim.Adam(self.translator.parameters(), **adam)
        self.opt_d = torch.optim.Adam([*self.d_t.parameters(), *self.d_s.parameters()], **adam)
        self.iterations = p.iterations
        self.sched = {k: make_schedule(o, p.lr_schedule, self.iterations, p.decay_start) for k, o in (("g", self.opt_g), ("d", self.opt_d))}
        # Pools and random styles draw from their own checkpointed generators. Their seed is
        # the runner's seed if given, else drawn from the global RNG, which the experiment seed fixes.
        seed = p.seed if p.seed is not None else int(torch.randint(2**31 - 1, (1,)))
        self.pool_t, self.pool_s = ImagePool(p.pool_size, seed + 1), ImagePool(p.pool_size, seed + 2)
        self.style_gen = torch.Generator().manual_seed(seed + 3)
        self.batch_size = p.batch_size
        if p.compile:  # the modules the step calls directly
            compile_networks([self.e_c, self.e_s_src, self.e_s_tgt, self.g_src, self.g_tgt, self.d_t, self.d_s], self.device)

    def networks(self) -> Mapping[str, nn.Module]:
        return {"translator": self.translator, "d_t": self.d_t, "d_s": self.d_s}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"g": self.opt_g, "d": self.opt_d}

    def schedulers(self) -> Mapping[str, torch.optim.lr_scheduler.LRScheduler]:
        return self.sched

    def extra_state(self) -> dict[str, Any]:
        return {"pool_t": self.pool_t.state_dict(), "pool_s": self.pool_s.state_dict(), "style_gen": self.style_gen.get_state()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        if state:
            self.pool_t.load_state_dict(state["pool_t"], self.device)
            self.pool_s.load_state_dict(state["pool_s"], self.device)
            self.style_gen.set_state(state["style_gen"])

    def random_styles(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """z_s, z_t ~ N(0, I), [batch, style_dim] each, from the method's own generator."""
        z = torch.randn(2, batch, self.translator.style_dim, generator=self.style_gen).to(self.device)
        return z[0], z[1]

    def generator_losses(
        self, x_s: torch.Tensor, x_t: torch.Tensor, z_s: torch.Tensor | None = None, z_t: torch.Tensor | None = None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Every generator-side term (see the module docstring) and the translations x_st, x_ts.
        Random styles are drawn when not given."""
        p = self.params
        if z_s is None or z_t is None:
            z_s, z_t = self.random_styles(x_s.shape[0])
        c_s, c_t = self.e_c(x_s), self.e_c(x_t)
        s_s, s_t = self.e_s_src(x_s), self.e_s_tgt(x_t)
        x_st, x_ts = self.g_tgt(c_s, z_t), self.g_src(c_t, z_s)
        c_st, c_ts = self.e_c(x_st), self.e_c(x_ts)
        terms = {
            "recon_x_s": l1(self.g_src(c_s, s_s), x_s),
            "recon_x_t": l1(self.g_tgt(c_t, s_t), x_t),
            "recon_c_s": l1(c_st, c_s),
            "recon_c_t": l1(c_ts, c_t),
            "recon_style_t": l1(self.e_s_tgt(x_st), z_t),
            "recon_style_s": l1(self.e_s_src(x_ts), z_s),
            "cycle_s": l1(self.g_src(c_st, s_s), x_s),
            "cycle_t": l1(self.g_tgt(c_ts, s_t), x_t),
            "g_adv_t": lsgan_generator(self.d_t(x_st)),
            "g_adv_s": lsgan_generator(self.d_s(x_ts)),
        }
        terms["g_total"] = (
            p.lambda_x * (terms["recon_x_s"] + terms["recon_x_t"])
            + p.lambda_c * (terms["recon_c_s"] + terms["recon_c_t"])
            + p.lambda_s * (terms["recon_style_t"] + terms["recon_style_s"])
            + p.lambda_cycle * (terms["cycle_s"] + terms["cycle_t"])
            + p.lambda_gan * (terms["g_adv_t"] + terms["g_adv_s"])
        )
        return terms, x_st, x_ts

    def discriminator_losses(self, x_s: torch.Tensor, x_t: torch.Tensor, x_st: torch.Tensor, x_ts: torch.Tensor) -> dict[str, torch.Tensor]:
        d_t = lsgan_discriminator(self.d_t(x_t), self.d_t(self.pool_t.query(x_st.detach())))
        d_s = lsgan_discriminator(self.d_s(x_s), self.d_s(self.pool_s.query(x_ts.detach())))
        return {"d_t": d_t, "d_s": d_s, "d_total": d_t + d_s}

    def generator_step(self, x_s: torch.Tensor, x_t: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """One update of every generator-side network with the discriminators frozen."""
        set_requires_grad([self.d_t, self.d_s], False)
        with self.precision.autocast():
            terms, x_st, x_ts = self.generator_losses(x_s, x_t)
        self.backward_step(terms["g_total"], self.opt_g)
        set_requires_grad([self.d_t, self.d_s], True)
        return terms, x_st, x_ts

    def discriminator_step(self, x_s: torch.Tensor, x_t: torch.Tensor, x_st: torch.Tensor, x_ts: torch.Tensor) -> dict[str, torch.Tensor]:
        """One update of both discriminators on real images vs pooled (detached) translations."""
        with self.precision.autocast():
            terms = self.discriminator_losses(x_s, x_t, x_st, x_ts)
        self.backward_step(terms["d_total"], self.opt_d)
        return terms

    def train_step(self, data: TrainData, sampler: torch.Generator, step: int) -> dict[str, torch.Tensor]:
        assert data.source is not None and data.target is not None
        x_s = to_device(data.source.sample(self.batch_size, sampler)[0], self.device, self.params.channels_last)
        x_t = to_device(data.target.sample(self.batch_size, sampler)[0], self.device, self.params.channels_last)
        g_terms, x_st, x_ts = self.generator_step(x_s, x_t)
        d_terms = self.discriminator_step(x_s, x_t, x_st, x_ts)
        for s in self.sched.values():
            s.step()
        return {k: v.detach() for k, v in {**g_terms, **d_terms}.items()}  # read by the loop once per logging interval

    def prepare_inference(self, data: TrainData) -> None:
        """Fix the translation styles to the training slices' mean style codes (deterministic cache)."""
        assert data.source is not None and data.target is not None
        self.set_reference_styles(data.source.images, data.target.images)

    def set_reference_styles(self, source_images: torch.Tensor | None, target_images: torch.Tensor | None, batch_size: int = 64) -> None:
        """See `DisentangledTranslator.set_reference_styles`."""
        self.translator.set_reference_styles(source_images, target_images, batch_size)

    def inference_architecture(self) -> dict[str, Any]:
        return self._arch

    def inference_network(self) -> nn.Module:
        return self.translator

    def reconstruct(self, translated: torch.Tensor) -> torch.Tensor:
        """target-look -> source-look (for the preview's reconstruction column)."""
        return self.translator.reconstruct(translated)
