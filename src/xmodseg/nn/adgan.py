"""GLUA step A's translator networks: AD-GAN's aligned-disentangling design (methods.md §3.4; the
public AD-GAN layers are MIT; the GLUA author's own step-A class has the same parts).

One encoder E(x, d) and one decoder G(c, d) are shared by both domains; the domain d (0 = source,
1 = target) enters every normalisation as AdaIN parameters from a small MLP of one-hot(d), so
x_AB = G(E(x_A, 0), 1) translates and G(E(x_A, 0), 0) reconstructs with the same weights.

* encoder: reflect-pad 3 + 7x7 conv -> ngf, two 3x3 stride-2 convs (x2 channels each), each
  followed by AdaIN + ReLU; `n_res` AdaIN residual blocks at 4 ngf.
* decoder: `n_res` AdaIN residual blocks; two 3x3 stride-2 transposed convs (/2 channels each) with
  AdaIN + ReLU; reflect-pad 3 + 7x7 conv -> 1; tanh.
* AdaIN parameters: MLP(one-hot(d) -> mlp_dim -> mlp_dim -> all gammas and betas), one per network.
* discriminator: a PatchGAN (4x4 convs: 64, 128, 256 at stride 2, 512 at stride 1, instance norm
  after the first, LeakyReLU 0.2) with one output map per domain; `forward(x, d)` returns the map
  of each sample's domain.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmodseg.nn.disentangled import AdaINResidualBlock, adain
from xmodseg.nn.layers import init_normal
from xmodseg.nn.networks import architecture

DOMAINS = 2


def domain_index(domain: torch.Tensor | int, batch: int, device: torch.device) -> torch.Tensor:
    """The domain of each sample as a [B] long tensor; `domain` is an int for the whole batch or a [B] tensor."""
    return torch.full((batch,), int(domain), device=device, dtype=torch.long) if isinstance(domain, int) else domain.to(device=device, dtype=torch.long)


def domain_code(domain: torch.Tensor | int, batch: int, device: torch.device) -> torch.Tensor:
    """one-hot(d) as [B, DOMAINS] floats."""
    return F.one_hot(domain_index(domain, batch, device), DOMAINS).float()


def _mlp(out_features: int, mlp_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(DOMAINS, mlp_dim), nn.ReLU(inplace=True), nn.Linear(mlp_dim, mlp_dim), nn.ReLU(inplace=True), nn.Linear(mlp_dim, out_features))


class AdaINConv(nn.Module):
    """A convolution (or transposed one) followed by AdaIN and ReLU; takes [B, 2 * out] parameters."""

    def __init__(self, conv: nn.Module, channels: int) -> None:
        super().__init__()
        self.conv = conv
        self.channels = channels

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        gamma, beta = params.split(self.channels, dim=1)
        return F.relu(adain(self.conv(x), gamma, beta))


class _Conditioned(nn.Module):
    """A stack of AdaIN layers whose parameters one MLP computes from the domain code."""

    layers: nn.ModuleList
    mlp: nn.Sequential

    def _widths(self) -> list[int]:
        """AdaIN parameters per layer: gamma and beta per channel, twice in a residual block."""
        widths = []
        for m in self.layers:
            if isinstance(m, AdaINResidualBlock):
                widths.append(4 * m.channels)
            else:
                assert isinstance(m, AdaINConv)
                widths.append(2 * m.channels)
        return widths

    def _run(self, x: torch.Tensor, domain: torch.Tensor | int) -> torch.Tensor:
        params = self.mlp(domain_code(domain, x.shape[0], x.device)).split(self._widths(), dim=1)
        for layer, p in zip(self.layers, params, strict=True):
            x = layer(x, p)
        return x


class AdganEncoder(_Conditioned):
    def __init__(self, ngf: int = 64, n_res: int = 4, mlp_dim: int = 64, in_channels: int = 1) -> None:
        super().__init__()
        self.layers = nn.ModuleList([
            AdaINConv(nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7)), ngf),
            AdaINConv(nn.Conv2d(ngf, 2 * ngf, 3, stride=2, padding=1), 2 * ngf),
            AdaINConv(nn.Conv2d(2 * ngf, 4 * ngf, 3, stride=2, padding=1), 4 * ngf),
            *(AdaINResidualBlock(4 * ngf) for _ in range(n_res)),
        ])
        self.mlp = _mlp(sum(self._widths()), mlp_dim)
        init_normal(self)

    def forward(self, x: torch.Tensor, domain: torch.Tensor | int) -> torch.Tensor:
        return self._run(x, domain)


class AdganDecoder(_Conditioned):
    def __init__(self, ngf: int = 64, n_res: int = 4, mlp_dim: int = 64, out_channels: int = 1) -> None:
        super().__init__()
        self.layers = nn.ModuleList([
            *(AdaINResidualBlock(4 * ngf) for _ in range(n_res)),
            AdaINConv(nn.ConvTranspose2d(4 * ngf, 2 * ngf, 3, stride=2, padding=1, output_padding=1), 2 * ngf),
            AdaINConv(nn.ConvTranspose2d(2 * ngf, ngf, 3, stride=2, padding=1, output_padding=1), ngf),
        ])
        self.mlp = _mlp(sum(self._widths()), mlp_dim)
        self.out = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7))
        init_normal(self)

    def forward(self, content: torch.Tensor, domain: torch.Tensor | int) -> torch.Tensor:
        return torch.tanh(self.out(self._run(content, domain)))


class DomainDiscriminator(nn.Module):
    """PatchGAN with one output map per domain; `forward(x, d)` picks each sample's domain map."""

    def __init__(self, ndf: int = 64, in_channels: int = 1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, 2 * ndf, 4, stride=2, padding=1), nn.InstanceNorm2d(2 * ndf), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * ndf, 4 * ndf, 4, stride=2, padding=1), nn.InstanceNorm2d(4 * ndf), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(4 * ndf, 8 * ndf, 4, stride=1, padding=1), nn.InstanceNorm2d(8 * ndf), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(8 * ndf, DOMAINS, 4, stride=1, padding=1),
        )
        init_normal(self)

    def forward(self, x: torch.Tensor, domain: torch.Tensor | int) -> torch.Tensor:
        maps = self.net(x)
        d = domain_index(domain, x.shape[0], x.device)
        return maps[torch.arange(x.shape[0], device=x.device), d].unsqueeze(1)


class AdganTranslator(nn.Module):
    """E and G together; `forward(x, source_domain, target_domain)` translates (what a translated
    cache is written with)."""

    def __init__(self, ngf: int = 64, n_res: int = 4, mlp_dim: int = 64) -> None:
        super().__init__()
        self.encoder = AdganEncoder(ngf, n_res, mlp_dim)
        self.decoder = AdganDecoder(ngf, n_res, mlp_dim)

    def forward(self, x: torch.Tensor, source_domain: int = 0, target_domain: int = 1) -> torch.Tensor:
        return self.decoder(self.encoder(x, source_domain), target_domain)


@architecture("adgan_translator")
def adgan_translator(ngf: int = 64, n_res: int = 4, mlp_dim: int = 64) -> nn.Module:
    """The saved step-A network: E and G, translating source -> target by default."""
    return AdganTranslator(ngf, n_res, mlp_dim)
