"""SIFA v2: synergistic image and feature alignment (Chen et al., TMI 2020; methods.md §2).

Image alignment: G_t renders source slices in the target look (x_st); E∘U renders target slices
in the source look (x_ts); both are cycled back and judged by D_t / D_s. Feature alignment: the
segmenter (E + C_1 + deep-supervision C_2) is trained on x_st with the source labels, while D_p1 /
D_p2 pull its target predictions towards its x_st predictions and D_s's auxiliary head pulls
x_ts towards x_sts, both through the shared encoder.

One iteration updates, in the official code's order, each with a fresh forward pass on the
current weights (as each `sess.run` does): G_t -> D_t -> (E, C_1, C_2) -> U -> D_s (main + aux)
-> D_p1 -> D_p2. LSGAN objectives; weights as published (`SifaParams`); Adam lr 2e-4,
beta1 0.5 on the GAN side, (0.9, 0.999) for the segmenter; pools of 50 *batches*.

Ablation switches (`align_predictions`, `align_image_features`) re-create the paper's rows:
image adaptation only (both off: E learns from segmentation alone, U still closes the cycle on
detached features), + prediction-space alignment, and the full model (both on, the default).
`deep_supervision: false` gives SIFA v1's single classifier.

Warm start: the declared input `warm_start` (a CycleGAN translator's model.pt; the experiment's
`inputs: {warm_start: <translator>}`) initialises G_t with its source -> target generator and
reuses its intensity ranges; G_t's architecture then comes from that file.

Intensities (`intensity`): on the SIFA release the caches already hold SIFA's fixed-constant
[-1, 1] mapping and are used as they are (`sifa_fixed`); on our own caches each domain is mapped
with its training slices' 0.5/99.5 percentiles and clamped (`percentile`; the clamped fraction is
logged). The mode and ranges go into the model file and the sidecar. The SIFA presets train in
fp32 (`amp: "off"`), as the official code does.

Speed switches (TrainParams, all off by default): `amp: bf16`, `channels_last`, `compile` (G_t, E,
U and the discriminators; the classifiers are 1x1 convolutions), `optimizer_impl: fused`.
`benchmarks/bench_sifa.py` measures them.
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
from xmodseg.methods.base import DataNeeds, InputSpec, SegmentationMethod, TrainData, set_requires_grad
from xmodseg.methods.sifa_losses import l2_weight_decay, segmentation_loss
from xmodseg.methods.warm_start import cyclegan_generator
from xmodseg.nn.gan_losses import l1, lsgan_discriminator, lsgan_generator
from xmodseg.nn.layers import PatchDiscriminator, ResnetGenerator
from xmodseg.nn.pool import ImagePool
from xmodseg.nn.sifa import SifaDecoder, SifaSegmenter, scaled
from xmodseg.slices import SliceSet
from xmodseg.training.device import Precision, compile_networks, optimizer_options, prepare_networks, to_device
from xmodseg.training.intensity import MODES, UnitRange, unit_range_for
from xmodseg.training.params import TrainParams, doc
from xmodseg.training.schedules import make_schedule


@dataclass(frozen=True, kw_only=True)
class SifaParams(TrainParams):
    """SIFA's `train` keys (v2 weights as published)."""

    # scale
    width: float = field(default=1.0, metadata=doc("multiplies every channel count (paper: 1.0)"))
    downsamplings: int = field(default=3, metadata=doc("encoder poolings (paper: 3, output stride 8)"))
    image_size: list[int] | None = field(default=None, metadata=doc("[H, W] the networks run at; slices are resized to it (None: cache size)"))
    generator: dict[str, Any] | None = field(default=None, metadata=doc("G_t {ngf, n_blocks, skip}; None: {32 x width, 9, true} as the paper"))
    decoder_skip: bool = field(default=True, metadata=doc("U outputs tanh(x + out)"))
    decoder_dropout: float = field(default=0.25, metadata=doc("U's residual blocks, always on (official code: keep rate 0.75); 0 = off"))
    ndf: int | None = field(default=None, metadata=doc("discriminator width; None: 64 x width"))
    d_layers: int = field(default=3, metadata=doc("discriminator layers"))
    # optimisation
    batch_size: int = field(default=8, metadata=doc("source and target slices per iteration"))
    lr: float = field(default=2e-4, metadata=doc("every module, constant (v2)"))
    lr_seg: float | None = field(default=None, metadata=doc("E + C_1 + C_2 only; None: `lr` (v2). v1 used 1e-3 for the segmentation part"))
    beta1: float = field(default=0.5, metadata=doc("GAN-side Adam; the segmenter uses (0.9, 0.999)"))
    lr_schedule: str = field(default="constant", metadata=doc('v2; "linear" decays to 0 from decay_start x iterations (v1 code\'s option)'))
    decay_start: float = field(default=0.5, metadata=doc("linear schedule: fraction of the iterations before the decay"))
    pool_size: int = field(default=50, metadata=doc("image pools, in batches"))
    # objective (v2 weights)
    lambda_cycle: float = field(default=10.0, metadata=doc("G_t and U: 10 |x_sts - x_s| + 10 |x_tst - x_t| + GAN"))
    lambda_encoder_image: float = field(default=0.1, metadata=doc("E sees 0.1 x U's objective (so the cycle reaches E with weight 1)"))
    lambda_seg_aux: float = field(default=0.1, metadata=doc("C_2's segmentation loss"))
    lambda_adv_p1: float = field(default=0.1, metadata=doc("D_p1 as seen by E"))
    lambda_adv_p2: float = field(default=0.01, metadata=doc("D_p2 as seen by E"))
    lambda_adv_aux: float = field(default=0.1, metadata=doc("D_s's auxiliary head, as seen by E"))
    weight_decay: float = field(default=1e-4, metadata=doc("x 1/2 sum w^2 over E, C_1, C_2"))
    # ablation rows
    align_predictions: bool = field(default=True, metadata=doc("D_p1 / D_p2: prediction-space alignment"))
    align_image_features: bool = field(default=True, metadata=doc("D_s's auxiliary head and the cycle through E"))
    deep_supervision: bool = field(default=True, metadata=doc("C_2 and D_p2; false = SIFA v1"))
    # intensities: auto = sifa_fixed on the SIFA release (its constants, no refit, no clamp),
    # percentile (0.5/99.5 of the training slices, clamped) on our own caches
    intensity: str = field(default="auto", metadata=doc(f"one of {list(MODES)}"))


def _resized(images: torch.Tensor, labels: torch.Tensor | None, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    if tuple(images.shape[-2:]) == size:
        return images, labels
    images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    if labels is not None:
        labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
    return images, labels


@register
class Sifa(SegmentationMethod):
    name: ClassVar[str] = "sifa"
    needs: ClassVar[DataNeeds] = DataNeeds(source_labels=True, target_images=True)
    params_type: ClassVar[type[TrainParams]] = SifaParams
    params: SifaParams
    # The experiment's `inputs: {warm_start: <cyclegan translator>}` (the job's --input warm_start=PATH);
    # its sha256 joins the resume hash under "warm_start". A path in the train block would not.
    inputs: ClassVar[Mapping[str, InputSpec]] = {
        "warm_start": InputSpec(
            "translator_model",
            optional=True,
            description="a CycleGAN translator's model.pt: G_t starts from its source -> target generator and its intensity ranges",
            translator_kinds=("cyclegan",),
        )
    }

    def __init__(self, params: Mapping[str, Any] | TrainParams, num_classes: int, precision: Precision, *, inputs: Mapping[str, Path] | None = None) -> None:
        super().__init__(params, num_classes, precision, inputs=inputs)
        p = self.params
        if p.intensity not in MODES:
            raise ConfigError(f"sifa: intensity '{p.intensity}' is not one of {list(MODES)}")
        w = p.width
        self.warm_ranges: dict[str, UnitRange] | None = None
        self.g_t = self._generator(p, w).to(self.device)
        self.seg = SifaSegmenter(num_classes, w, p.downsamplings, p.deep_supervision, p.image_size).to(self.device)
        self.dec = SifaDecoder(w, p.downsamplings, p.decoder_skip, p.decoder_dropout).to(self.device)
        ndf = int(p.ndf or scaled(64, w))
        layers = p.d_layers
        self.d_t = PatchDiscriminator(ndf, layers).to(self.device)
        self.d_s = PatchDiscriminator(ndf, layers, out_channels=2).to(self.device)  # main + auxiliary head
        align_p = p.align_predictions
        self.d_p1 = PatchDiscriminator(ndf, layers, in_channels=num_classes).to(self.device) if align_p else None
        self.d_p2 = PatchDiscriminator(ndf, layers, in_channels=num_classes).to(self.device) if align_p and p.deep_supervision else None
        prepare_networks(self.networks().values(), channels_last=p.channels_last)
        lr, gan_betas, impl = p.lr, (p.beta1, 0.999), optimizer_options(p.optimizer_impl, self.device)
        self.opts: dict[str, torch.optim.Optimizer] = {
            "g_t": torch.optim.Adam(self.g_t.parameters(), lr=lr, betas=gan_betas, **impl),
            "d_t": torch.optim.Adam(self.d_t.parameters(), lr=lr, betas=gan_betas, **impl),
            "seg": torch.optim.Adam(self.seg.parameters(), lr=float(p.lr_seg or lr), betas=(0.9, 0.999), **impl),
            "dec": torch.optim.Adam(self.dec.parameters(), lr=lr, betas=gan_betas, **impl),
            "d_s": torch.optim.Adam(self.d_s.parameters(), lr=lr, betas=gan_betas, **impl),
        }
        for name, disc in (("d_p1", self.d_p1), ("d_p2", self.d_p2)):
            if disc is not None:
                self.opts[name] = torch.optim.Adam(disc.parameters(), lr=lr, betas=gan_betas, **impl)
        self.compile_fallback: str | None = None
        if p.compile:  # the modules the step calls directly (seg.logits is a method: its encoder is the cost)
            called = [self.g_t, self.seg.encoder, self.dec, self.d_t, self.d_s, self.d_p1, self.d_p2]
            self.compile_fallback = compile_networks([m for m in called if m is not None], self.device)
        self.scheds = {k: make_schedule(o, p.lr_schedule, p.iterations, p.decay_start) for k, o in self.opts.items()}
        seed = p.seed if p.seed is not None else 0
        self.pool_st = ImagePool(p.pool_size, seed + 1, whole_batches=True)  # feeds D_t
        self.pool_ts = ImagePool(p.pool_size, seed + 2, whole_batches=True)  # feeds D_s (both heads)
        self.batch_size = p.batch_size

    def _generator(self, p: SifaParams, width: float) -> ResnetGenerator:
        warm = self.input_paths.get("warm_start")
        if warm is not None:
            g, self.warm_ranges, _ = cyclegan_generator(warm, "sifa warm_start")
            return g
        gen = {"ngf": scaled(32, width), "n_blocks": 9, "skip": True, **(p.generator or {})}
        return ResnetGenerator(**gen)

    # -- data -------------------------------------------------------------------------------
    def prepare(self, data: TrainData) -> TrainData:
        """Map both domains to [-1, 1] (`intensity` mode, or the warm start's ranges) and to
        `image_size`; the target range and mode are stored in the segmenter for inference."""
        assert data.source is not None and data.target is not None
        mode = self.params.intensity
        ranges = self.warm_ranges or {
            "source": unit_range_for(data.source.images, data.source.intensity_space, mode, "source"),
            "target": unit_range_for(data.target.images, data.target.intensity_space, mode, "target"),
        }
        self.ranges = ranges
        t = ranges["target"]
        self.seg.intensity_range.copy_(torch.tensor([t.low, t.high]))
        self.seg.intensity_mode = t.mode
        size = tuple(int(s) for s in (self.params.image_size or data.source.images.shape[-2:]))
        step = max(4, 2 ** self.params.downsamplings)
        if len(size) != 2 or any(s % step for s in size) or tuple(data.target.images.shape[-2:]) != tuple(data.source.images.shape[-2:]):
            raise ConfigError(
                f"sifa: image size {list(size)} must be two sides divisible by {step} (image_size, or the caches' crop_size), "
                f"and source/target slices must have the same size"
            )
        out = []
        for s, r in ((data.source, ranges["source"]), (data.target, ranges["target"])):
            images, labels = _resized(r.to_unit(s.images), s.labels, size)
            out.append(SliceSet(images, labels, s.cases, s.modality, s.intensity_space))
        return TrainData(source=out[0], target=out[1])

    # -- Method interface ---------------------------------------------------------------------
    def networks(self) -> Mapping[str, nn.Module]:
        nets = {"g_t": self.g_t, "seg": self.seg, "dec": self.dec, "d_t": self.d_t, "d_s": self.d_s, "d_p1": self.d_p1, "d_p2": self.d_p2}
        return {k: v for k, v in nets.items() if v is not None}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return self.opts

    def schedulers(self) -> Mapping[str, torch.optim.lr_scheduler.LRScheduler]:
        return self.scheds

    def extra_state(self) -> dict[str, Any]:
        return {"pool_st": self.pool_st.state_dict(), "pool_ts": self.pool_ts.state_dict()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        if state:
            self.pool_st.load_state_dict(state["pool_st"], self.device)
            self.pool_ts.load_state_dict(state["pool_ts"], self.device)

    def inference_architecture(self) -> dict[str, Any]:
        p = self.params
        low, high = (float(v) for v in self.seg.intensity_range.tolist())
        kwargs = {
            "num_classes": self.num_classes,
            "width": p.width,
            "downsamplings": p.downsamplings,
            "deep_supervision": p.deep_supervision,
            "image_size": list(p.image_size) if p.image_size else None,
            "intensity_range": [low, high],
            "intensity_mode": self.seg.intensity_mode,
        }
        return {"kind": "sifa_segmenter", "kwargs": kwargs}

    def record(self) -> dict[str, Any]:
        """What a reviewer needs beside the params: intensity mapping per domain (mode, range,
        clamped fraction), the decoder's dropout and the training precision."""
        ranges = getattr(self, "ranges", None) or {}
        return {
            "intensity": {k: r.to_dict() for k, r in ranges.items()},
            "intensity_from_warm_start": self.warm_ranges is not None,
            "decoder_dropout": self.params.decoder_dropout,
            "precision": str(self.precision.dtype) if self.precision.dtype else "fp32",
            **({"compile_fallback": self.compile_fallback} if self.compile_fallback else {}),
        }

    def inference_network(self) -> nn.Module:
        return self.seg

    # -- one iteration ------------------------------------------------------------------------
    def _only(self, *nets: nn.Module | None) -> None:
        """Gradients for `nets` only: a step never moves another player's weights."""
        set_requires_grad(list(self.networks().values()), False)
        set_requires_grad([n for n in nets if n is not None], True)

    def _step(self, name: str, loss: torch.Tensor) -> None:
        self.backward_step(loss, self.opts[name])

    def train_step(self, data: TrainData, sampler: torch.Generator, step: int) -> dict[str, torch.Tensor]:
        assert data.source is not None and data.target is not None
        p = self.params
        x_s, y_s = data.source.sample(self.batch_size, sampler)
        x_t = data.target.sample(self.batch_size, sampler)[0]
        assert y_s is not None
        cl = p.channels_last
        x_s, y_s, x_t = to_device(x_s, self.device, cl), y_s.to(self.device), to_device(x_t, self.device, cl)
        lam_cyc = p.lambda_cycle
        t: dict[str, torch.Tensor] = {}

        # 1. G_t: cycle (both ways, through the frozen E, U) + target-domain GAN
        self._only(self.g_t)
        with self.precision.autocast():
            with torch.no_grad():
                x_ts = self.dec(self.seg.encoder(x_t)[0], x_t)
            x_st = self.g_t(x_s)
            x_sts = self.dec(self.seg.encoder(x_st)[0], x_st)
            t["g_cycle_s"], t["g_cycle_t"] = l1(x_sts, x_s), l1(self.g_t(x_ts), x_t)
            t["g_adv_t"] = lsgan_generator(self.d_t(x_st))
            t["g_total"] = lam_cyc * (t["g_cycle_s"] + t["g_cycle_t"]) + t["g_adv_t"]
        self._step("g_t", t["g_total"])

        # 2. D_t: real target vs pooled x_st
        self._only(self.d_t)
        with self.precision.autocast():
            t["d_t"] = lsgan_discriminator(self.d_t(x_t), self.d_t(self.pool_st.query(x_st.detach())))
        self._step("d_t", t["d_t"])

        # 3. E + C_1 + C_2: segmentation on x_st, plus the alignment terms the switches allow
        self._only(self.seg)
        with self.precision.autocast():
            with torch.no_grad():
                x_st = self.g_t(x_s)
            f_st, main_st, aux_st = self.seg.logits(x_st)
            t["seg_main"] = segmentation_loss(main_st, y_s)
            t["weight_decay"] = p.weight_decay * l2_weight_decay([self.seg])
            total = t["seg_main"] + t["weight_decay"]
            if aux_st is not None:
                t["seg_aux"] = segmentation_loss(aux_st, y_s)
                total = total + p.lambda_seg_aux * t["seg_aux"]
            if p.align_image_features or p.align_predictions:
                f_t, main_t, aux_t = self.seg.logits(x_t)
            if p.align_image_features:
                x_ts = self.dec(f_t, x_t)
                scores = self.d_s(x_ts)
                t["e_cycle_s"] = l1(self.dec(f_st, x_st), x_s)
                t["e_cycle_t"] = l1(self.g_t(x_ts), x_t)
                t["e_adv_s"] = lsgan_generator(scores[:, :1])
                t["e_adv_aux"] = lsgan_generator(scores[:, 1:])
                decoder_objective = lam_cyc * (t["e_cycle_s"] + t["e_cycle_t"]) + t["e_adv_s"]
                total = total + p.lambda_encoder_image * decoder_objective + p.lambda_adv_aux * t["e_adv_aux"]
            if self.d_p1 is not None:
                t["e_adv_p1"] = lsgan_generator(self.d_p1(main_t))
                total = total + p.lambda_adv_p1 * t["e_adv_p1"]
                if self.d_p2 is not None and aux_t is not None:
                    t["e_adv_p2"] = lsgan_generator(self.d_p2(aux_t))
                    total = total + p.lambda_adv_p2 * t["e_adv_p2"]
            t["seg_total"] = total
        self._step("seg", total)

        # 4. U: cycle + source-domain GAN, on the updated (frozen) encoder's features. Every forward
        # pass in training mode updates E's batch-norm statistics, as TF's in-place BN updates do.
        self._only(self.dec)
        with self.precision.autocast():
            with torch.no_grad():
                f_st, main_st, aux_st = self.seg.logits(x_st)
                f_t, main_t, aux_t = self.seg.logits(x_t)
            x_ts = self.dec(f_t, x_t)
            x_sts = self.dec(f_st, x_st)
            t["u_cycle_s"], t["u_cycle_t"] = l1(x_sts, x_s), l1(self.g_t(x_ts), x_t)
            t["u_adv_s"] = lsgan_generator(self.d_s(x_ts)[:, :1])
            t["u_total"] = lam_cyc * (t["u_cycle_s"] + t["u_cycle_t"]) + t["u_adv_s"]
        self._step("dec", t["u_total"])

        # 5. D_s: main head real x_s vs pooled x_ts; auxiliary head real x_sts vs the same pooled x_ts
        self._only(self.d_s)
        with self.precision.autocast():
            fake = self.d_s(self.pool_ts.query(x_ts.detach()))
            t["d_s_main"] = lsgan_discriminator(self.d_s(x_s)[:, :1], fake[:, :1])
            d_s_total = t["d_s_main"]
            if p.align_image_features:
                t["d_s_aux"] = lsgan_discriminator(self.d_s(x_sts.detach())[:, 1:], fake[:, 1:])
                d_s_total = d_s_total + t["d_s_aux"]
        self._step("d_s", d_s_total)

        # 6-7. D_p1, D_p2: "real" = predictions on x_st, "fake" = predictions on x_t
        for name, disc, real, fake_pred in (("d_p1", self.d_p1, main_st, main_t), ("d_p2", self.d_p2, aux_st, aux_t)):
            if disc is not None and real is not None and fake_pred is not None:
                self._only(disc)
                with self.precision.autocast():
                    t[name] = lsgan_discriminator(disc(real), disc(fake_pred))
                self._step(name, t[name])

        for s in self.scheds.values():
            s.step()
        set_requires_grad(list(self.networks().values()), True)
        return {k: v.detach() for k, v in t.items()}  # read by the loop once per logging interval

    def translate(self, x_s_unit: torch.Tensor) -> torch.Tensor:
        """x_st for previews (unit range in, unit range out)."""
        return self.g_t(x_s_unit)

