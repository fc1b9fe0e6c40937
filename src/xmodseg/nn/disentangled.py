"""The disentangled translator's networks (DRIT/MUNIT-style content and style encoders, an AdaIN
decoder): the inference network `DisentangledTranslator` is rebuilt from a model file by name."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmodseg.nn.layers import ResidualBlock, init_normal
from xmodseg.nn.networks import architecture


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, pad: int | None = None) -> list[nn.Module]:
    """Reflection padding + convolution."""
    return [nn.ReflectionPad2d(kernel // 2 if pad is None else pad), nn.Conv2d(in_ch, out_ch, kernel, stride=stride)]


class ContentEncoder(nn.Module):
    """c7s1-dim, `n_down` x (4x4 stride-2 conv, channels doubling), `n_res` residual blocks; instance
    norm and ReLU throughout. Output: dim * 2**n_down channels at 1/2**n_down of the input size."""

    def __init__(self, dim: int = 64, n_down: int = 2, n_res: int = 4, in_channels: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_conv(in_channels, dim, 7), nn.InstanceNorm2d(dim), nn.ReLU(inplace=True)]
        ch = dim
        for _ in range(n_down):
            layers += [*_conv(ch, ch * 2, 4, stride=2, pad=1), nn.InstanceNorm2d(ch * 2), nn.ReLU(inplace=True)]
            ch *= 2
        layers += [ResidualBlock(ch) for _ in range(n_res)]
        self.body = nn.Sequential(*layers)
        self.out_channels = ch
        init_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class StyleEncoder(nn.Module):
    """c7s1-dim, `n_down + 2` 4x4 stride-2 convs (doubling for the first `n_down`), ReLU, no
    normalisation; global average pooling; 1x1 conv -> [B, style_dim]."""

    def __init__(self, dim: int = 64, n_down: int = 2, style_dim: int = 8, in_channels: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_conv(in_channels, dim, 7), nn.ReLU(inplace=True)]
        ch = dim
        for i in range(n_down + 2):
            nxt = ch * 2 if i < n_down else ch
            layers += [*_conv(ch, nxt, 4, stride=2, pad=1), nn.ReLU(inplace=True)]
            ch = nxt
        layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(ch, style_dim, 1)]
        self.body = nn.Sequential(*layers)
        init_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)


def adain(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Instance-normalise x per sample and channel, then scale by 1 + gamma and shift by beta ([B, C])."""
    return F.instance_norm(x) * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


class AdaINResidualBlock(nn.Module):
    """Two reflection-padded 3x3 convs, each followed by AdaIN (ReLU after the first), identity shortcut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv1 = nn.Sequential(*_conv(channels, channels, 3))
        self.conv2 = nn.Sequential(*_conv(channels, channels, 3))

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """`params`: [B, 4 * channels] = (gamma1, beta1, gamma2, beta2)."""
        g1, b1, g2, b2 = params.split(self.channels, dim=1)
        out = F.relu(adain(self.conv1(x), g1, b1))
        return x + adain(self.conv2(out), g2, b2)


class Decoder(nn.Module):
    """`n_res` AdaIN residual blocks (parameters from a 3-layer MLP of the style code), `n_down` x
    (nearest x2 upsampling, 5x5 conv halving channels, layer norm, ReLU), c7s1-out, tanh."""

    def __init__(self, dim: int = 64, n_down: int = 2, n_res: int = 4, style_dim: int = 8, mlp_dim: int = 256, out_channels: int = 1) -> None:
        super().__init__()
        if n_res < 1:
            raise ValueError("the decoder needs n_res >= 1: its AdaIN residual blocks are where the style enters")
        ch = dim * 2**n_down
        self.blocks = nn.ModuleList(AdaINResidualBlock(ch) for _ in range(n_res))
        self.mlp = nn.Sequential(
            nn.Linear(style_dim, mlp_dim),
            nn.ReLU(inplace=True),
            nn.Linear(mlp_dim, mlp_dim),
            nn.ReLU(inplace=True),
            nn.Linear(mlp_dim, 4 * ch * n_res),
        )
        layers: list[nn.Module] = []
        for _ in range(n_down):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), *_conv(ch, ch // 2, 5), nn.GroupNorm(1, ch // 2), nn.ReLU(inplace=True)]
            ch //= 2
        layers += [*_conv(ch, out_channels, 7)]
        self.head = nn.Sequential(*layers)
        init_normal(self)

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        params = self.mlp(style).chunk(len(self.blocks), dim=1)
        x = content
        for block, p in zip(self.blocks, params):
            x = block(x, p)
        return torch.tanh(self.head(x))


@architecture("disentangled_translator")
class DisentangledTranslator(nn.Module):
    """Every generator-side network of the disentangled translator, plus the reference styles.

    `forward(x_s)` = G_tgt(E_c(x_s), target_style): deterministic source -> target translation.
    `reconstruct(x)` = G_src(E_c(x), source_style): target-look -> source-look. Both reference
    styles are buffers (saved with the state dict), zeros (the prior's mean) until
    `set_reference_styles` sets them to the mean style codes of training images. Inputs are
    [B, 1, H, W] in [-1, 1] with H, W divisible by 2**n_down and at least 2**(n_down + 2).
    """

    source_style: torch.Tensor  # buffers
    target_style: torch.Tensor

    def __init__(self, dim: int = 64, n_res: int = 4, n_down: int = 2, style_dim: int = 8, mlp_dim: int = 256) -> None:
        super().__init__()
        self.style_dim = style_dim
        self.content_encoder = ContentEncoder(dim, n_down, n_res)
        self.style_encoder_src = StyleEncoder(dim, n_down, style_dim)
        self.style_encoder_tgt = StyleEncoder(dim, n_down, style_dim)
        self.decoder_src = Decoder(dim, n_down, n_res, style_dim, mlp_dim)
        self.decoder_tgt = Decoder(dim, n_down, n_res, style_dim, mlp_dim)
        self.register_buffer("source_style", torch.zeros(1, style_dim))
        self.register_buffer("target_style", torch.zeros(1, style_dim))

    def _style(self, style: torch.Tensor | None, reference: torch.Tensor, batch: int) -> torch.Tensor:
        s = reference if style is None else style.to(reference.device, reference.dtype)
        return s.reshape(-1, self.style_dim).expand(batch, -1)

    def forward(self, x_s: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """Source -> target; `style` ([style_dim], [1, style_dim] or [B, style_dim]) defaults to `target_style`."""
        return self.decoder_tgt(self.content_encoder(x_s), self._style(style, self.target_style, x_s.shape[0]))

    def reconstruct(self, x_t: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """Target-look -> source-look; `style` defaults to `source_style`."""
        return self.decoder_src(self.content_encoder(x_t), self._style(style, self.source_style, x_t.shape[0]))

    @torch.no_grad()
    def mean_style(self, encoder: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Mean style code [1, style_dim] of `images` ([N, 1, H, W], any device), computed batch-wise."""
        if len(images) == 0:
            raise ValueError("no images to compute a reference style from")
        total = torch.zeros(1, self.style_dim, dtype=torch.float64, device=self.target_style.device)
        for i in range(0, len(images), batch_size):
            batch = images[i : i + batch_size].to(self.target_style.device, torch.float32)
            total += encoder(batch).double().sum(dim=0, keepdim=True)
        return (total / len(images)).to(self.target_style.dtype)

    def set_reference_styles(self, source_images: torch.Tensor | None, target_images: torch.Tensor | None, batch_size: int = 64) -> None:
        """Set `source_style` / `target_style` to the mean style codes of the given (training) images
        ([N, 1, H, W] in [-1, 1], the translator's input range); None leaves that buffer as it is."""
        if source_images is not None:
            self.source_style.copy_(self.mean_style(self.style_encoder_src, source_images, batch_size))
        if target_images is not None:
            self.target_style.copy_(self.mean_style(self.style_encoder_tgt, target_images, batch_size))

    def set_reference_style(self, target_images: torch.Tensor, batch_size: int = 64) -> None:
        """Only `target_style` (what `forward` uses)."""
        self.set_reference_styles(None, target_images, batch_size)


# Registered by call rather than as a class decorator so type checkers keep the class type.
