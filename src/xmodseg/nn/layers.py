"""Building blocks of the image-to-image networks (CycleGAN ResNet generator, PatchGAN)."""

from __future__ import annotations

import torch
from torch import nn

from xmodseg.nn.networks import architecture


def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """N(0, std) conv weights, zero biases (CycleGAN/SIFA practice)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ResidualBlock(nn.Module):
    """Two reflection-padded 3x3 convs with instance norm and an identity shortcut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's generator: c7s1-ngf, two stride-2 downsamplings, `n_blocks` residual blocks,
    two transposed-conv upsamplings, c7s1-1, tanh. `skip=True` adds the input before the tanh
    (SIFA's G_t). Input sides must be divisible by 4."""

    def __init__(self, ngf: int = 64, n_blocks: int = 9, in_channels: int = 1, out_channels: int = 1, skip: bool = False) -> None:
        super().__init__()
        self.skip = skip
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(inplace=True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1), nn.InstanceNorm2d(ngf * mult * 2), nn.ReLU(inplace=True)]
        layers += [ResidualBlock(ngf * 4) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1),
                nn.InstanceNorm2d(ngf * mult // 2),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7)]
        self.body = nn.Sequential(*layers)
        init_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return torch.tanh(out + x if self.skip else out)


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN: 4x4 convs (ndf, 2ndf, 4ndf stride 2; 8ndf stride 1; 1 output map), no norm
    on the first layer, instance norm after, LeakyReLU(0.2). Outputs raw LSGAN scores."""

    def __init__(self, ndf: int = 64, n_layers: int = 3, in_channels: int = 1, out_channels: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        ch = ndf
        for i in range(1, n_layers + 1):
            nxt = ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(ch, nxt, 4, stride=stride, padding=1), nn.InstanceNorm2d(nxt), nn.LeakyReLU(0.2, inplace=True)]
            ch = nxt
        layers += [nn.Conv2d(ch, out_channels, 4, stride=1, padding=1)]
        self.body = nn.Sequential(*layers)
        init_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@architecture("resnet_generator")
def resnet_generator(ngf: int = 64, n_blocks: int = 9, skip: bool = False) -> nn.Module:
    return ResnetGenerator(ngf=ngf, n_blocks=n_blocks, skip=skip)
