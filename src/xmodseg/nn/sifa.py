"""SIFA's networks (Chen et al., TMI 2020; layer layout of the official TF code, methods.md §2.3).

* `SifaEncoder` (E): a dilated residual network with batch norm. Its `2xR512` stage feeds the
  auxiliary (deep-supervision) classifier C_2; its last `C512` stage feeds the main classifier C_1
  and the decoder U.
* `SifaDecoder` (U): E's features back to a source-looking image (E∘U is the target -> source
  generator); instance norm, residual blocks with the official code's always-on dropout
  (`decoder_dropout`, keep rate 0.75 there), output tanh(x + out) with the skip from the encoder's
  input image.
* `SifaSegmenter`: E + C_1 (+ C_2), the network kept for inference. It maps cached (z-scored)
  intensities to [-1, 1] with the stored range (`percentile` mode), or takes them as they are when
  the cache is already in SIFA's fixed [-1, 1] space (`sifa_fixed`, the release), so it is applied
  to target slices like any segmenter.

All widths are the paper's times `width`; `downsamplings` (paper 3 = output stride 8) and
`image_size` let the same code run the 256x256 paper scale and a small CPU demo scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xmodseg.nn.networks import architecture


def map_to_unit(x: torch.Tensor, intensity_range: torch.Tensor, mode: str) -> torch.Tensor:
    """Cached intensities -> [-1, 1] as training mapped them (the network's stored range), clamped;
    "sifa_fixed": the cache is already in SIFA's [-1, 1] (no map, no clamp)."""
    if mode == "sifa_fixed":
        return x
    low, high = intensity_range[0], intensity_range[1]
    return (2 * (x - low) / (high - low) - 1).clamp(-1, 1)


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def init_encoder(module: nn.Module, std: float = 0.01) -> None:
    """Truncated N(0, 0.01) convolution weights, as SIFA's encoder."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.trunc_normal_(m.weight, 0.0, std, -2 * std, 2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def conv_bn(cin: int, cout: int, dilation: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False), nn.BatchNorm2d(cout, momentum=0.1)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class EncoderBlock(nn.Module):
    """Two 3x3 conv+BN layers, ReLU after the addition; a wider block zero-pads the shortcut."""

    def __init__(self, cin: int, cout: int, dilation: int = 1) -> None:
        super().__init__()
        if cout < cin:
            raise ValueError("encoder blocks never reduce the channel count")
        self.extra = cout - cin
        self.body = nn.Sequential(conv_bn(cin, cout, dilation), conv_bn(cout, cout, dilation, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x
        return F.relu(self.body(x) + shortcut)


class SifaEncoder(nn.Module):
    """C16 7x7 -> R16 -> pool -> R32 -> pool -> 2xR64 -> pool -> 2xR128 -> 4xR256 -> 2xR512 (aux)
    -> 2xD512 (dilation 2) -> 2xC512 (main). With `downsamplings` < 3 the last pools are dropped."""

    def __init__(self, width: float = 1.0, downsamplings: int = 3, in_channels: int = 1) -> None:
        super().__init__()
        if not 1 <= downsamplings <= 3:
            raise ValueError(f"downsamplings must be 1, 2 or 3 (got {downsamplings})")
        c = {k: scaled(k, width) for k in (16, 32, 64, 128, 256, 512)}
        pools = [nn.MaxPool2d(2) if i < downsamplings else nn.Identity() for i in range(3)]
        self.low = nn.Sequential(
            nn.Conv2d(in_channels, c[16], 7, padding=3, bias=False),
            nn.BatchNorm2d(c[16], momentum=0.1),
            nn.ReLU(inplace=True),
            EncoderBlock(c[16], c[16]),
            pools[0],
            EncoderBlock(c[16], c[32]),
            pools[1],
            EncoderBlock(c[32], c[64]),
            EncoderBlock(c[64], c[64]),
            pools[2],
            EncoderBlock(c[64], c[128]),
            EncoderBlock(c[128], c[128]),
            *[EncoderBlock(c[128] if i == 0 else c[256], c[256]) for i in range(4)],
            EncoderBlock(c[256], c[512]),
            EncoderBlock(c[512], c[512]),
        )
        self.high = nn.Sequential(
            EncoderBlock(c[512], c[512], dilation=2),
            EncoderBlock(c[512], c[512], dilation=2),
            conv_bn(c[512], c[512]),
            conv_bn(c[512], c[512]),
        )
        self.channels = c[512]
        self.stride = 2**downsamplings
        init_encoder(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(main features for C_1 and U, intermediate features for C_2)."""
        aux = self.low(x)
        return self.high(aux), aux


def _trunc_normal(conv: nn.Module, std: float) -> None:
    """TF's truncated normal initialiser (cut at two standard deviations), zero biases."""
    assert isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d))
    nn.init.trunc_normal_(conv.weight, 0.0, std, -2 * std, 2 * std)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class DecoderBlock(nn.Module):
    """A residual block of SIFA's decoder U as the official code builds it (`build_resnet_block`
    with instance norm): zero padding, 3x3 conv without bias, dropout, IN, ReLU, again without the
    ReLU, then ReLU(x + out). The dropout is *always on* (TF's `tf.nn.dropout(keep_rate=0.75)`
    there ignores the training flag); p = 0 switches it off."""

    def __init__(self, channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm1 = nn.InstanceNorm2d(channels, affine=True)  # tf.contrib instance_norm: learned scale and centre
        self.norm2 = nn.InstanceNorm2d(channels, affine=True)
        self.dropout = float(dropout)
        for conv in (self.conv1, self.conv2):
            _trunc_normal(conv, 0.01)

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.dropout, training=True) if self.dropout > 0 else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self._drop(self.conv1(x))))
        out = self.norm2(self._drop(self.conv2(out)))
        return F.relu(x + out)


class SifaDecoder(nn.Module):
    """U: conv 3x3 -> 128, 4 residual blocks (`DecoderBlock`, dropout `dropout`), one stride-2
    transposed conv per encoder pooling (64, 64, 32 channels at the paper scale), conv 7x7 -> 1,
    tanh(x_in + out). Instance norm with learned affine parameters, as tf.contrib's."""

    def __init__(self, width: float = 1.0, downsamplings: int = 3, skip: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"decoder dropout must be in [0, 1), got {dropout}")
        c512, c128 = scaled(512, width), scaled(128, width)
        ups = [scaled(w, width) for w in (64, 64, 32)[3 - downsamplings :]]
        first = nn.Conv2d(c512, c128, 3, padding=1, bias=False)
        _trunc_normal(first, 0.02)
        layers: list[nn.Module] = [first, nn.InstanceNorm2d(c128, affine=True), nn.ReLU(inplace=True)]
        layers += [DecoderBlock(c128, dropout) for _ in range(4)]
        ch = c128
        for nxt in ups:
            up = nn.ConvTranspose2d(ch, nxt, 3, stride=2, padding=1, output_padding=1)
            _trunc_normal(up, 0.02)
            layers += [up, nn.InstanceNorm2d(nxt, affine=True), nn.ReLU(inplace=True)]
            ch = nxt
        last = nn.Conv2d(ch, 1, 7, padding=3, bias=False)
        _trunc_normal(last, 0.02)
        layers.append(last)
        self.body = nn.Sequential(*layers)
        self.skip = skip
        self.dropout = float(dropout)

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        out = self.body(features)
        return torch.tanh(out + image if self.skip else out)


class SifaSegmenter(nn.Module):
    """E + C_1 (+ C_2). `forward` takes cached intensities (what evaluation feeds every model);
    `logits` takes images already in [-1, 1] (what the training loop feeds)."""

    intensity_range: torch.Tensor  # a buffer (typed here: Module.__getattr__ cannot say it is a tensor)

    def __init__(
        self,
        num_classes: int,
        width: float = 1.0,
        downsamplings: int = 3,
        deep_supervision: bool = True,
        image_size: Sequence[int] | None = None,
        intensity_range: Sequence[float] = (-1.0, 1.0),
        intensity_mode: str = "percentile",
    ) -> None:
        super().__init__()
        self.intensity_mode = intensity_mode  # "sifa_fixed": inputs are already in [-1, 1] (no map, no clamp)
        self.encoder = SifaEncoder(width, downsamplings)
        self.main_head = nn.Conv2d(self.encoder.channels, num_classes, 1)
        self.aux_head = nn.Conv2d(self.encoder.channels, num_classes, 1) if deep_supervision else None
        self.image_size = tuple(int(s) for s in image_size) if image_size else None
        self.register_buffer("intensity_range", torch.tensor([float(v) for v in intensity_range]))

    def logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(encoder features, main logits, auxiliary logits or None), logits at the input size."""
        feats, aux_feats = self.encoder(x)
        size = x.shape[-2:]
        main = F.interpolate(self.main_head(feats), size=size, mode="bilinear", align_corners=False)
        aux = F.interpolate(self.aux_head(aux_feats), size=size, mode="bilinear", align_corners=False) if self.aux_head is not None else None
        return feats, main, aux

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        return map_to_unit(x, self.intensity_range, self.intensity_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x = self.to_unit(x)
        if self.image_size is not None and tuple(size) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        main = self.logits(x)[1]
        if main.shape[-2:] != size:
            main = F.interpolate(main, size=size, mode="bilinear", align_corners=False)
        return main


@architecture("sifa_segmenter")
def sifa_segmenter(**kwargs: object) -> nn.Module:
    return SifaSegmenter(**kwargs)  # type: ignore[arg-type]
