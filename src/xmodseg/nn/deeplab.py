"""GLUA's step-B networks (Su et al., JBHI 2023; layer layout of the official code, methods.md §3.4).

* `DeepLabV2`: a DeepLab-v2 dilated ResNet with bottleneck blocks and output stride 8. The stages
  are the official `DeeplabMulti`'s: a 7x7/2 stem and a 3x3/2 max-pool (ceil mode), layer1,
  layer2 (stride 2), layer3 (dilation 2), layer4 (dilation 4; its output is the feature F the
  discriminator and the mask see), layer5 (one more dilation-4 bottleneck) and the classifier: 3x3
  convolutions with dilations 6/12/18/24 whose outputs are summed. The official code returns after
  the first two branches (a quirk inherited from AdaptSegNet); `aspp_branches: 2` keeps that, 4
  sums all four. Logits are upsampled bilinearly (align_corners) to the input size.
  `blocks` is the number of bottlenecks per stage (ResNet-101: 3, 4, 23, 2, 1) and `width`
  multiplies every channel count, so the paper scale and a small CPU demo run the same code.
* `FeatureDiscriminator` (D_f): 3x3 stride-1 convolutions at feature resolution. Its output is
  also the local feature mask M = |tanh(D_f(F))|; target features enter layer5 as (1 + M) * F,
  in training and at inference, so the segmenter needs D_f to predict.
* `OutputDiscriminator` (D_o): 4x4 stride-2 convolutions on the softmax (AdaptSegNet's).

Weights: convolutions N(0, 0.01), batch-norm scale 1 and shift 0, all trainable, as the official
code; trained from scratch (no ImageNet weights ship with a package here).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from xmodseg.nn.networks import architecture

RESNET101_BLOCKS = (3, 4, 23, 2, 1)
ASPP_DILATIONS = (6, 12, 18, 24)


class DeepLabOutput(NamedTuple):
    """The segmenter's answer: logits at the input size, the unmasked features F, the mask M (target only)."""

    logits: torch.Tensor
    features: torch.Tensor
    mask: torch.Tensor | None


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class Bottleneck(nn.Module):
    """1x1 (carries the stride, Caffe style as DeepLab-v2) -> 3x3 dilated -> 1x1 x4, batch norm, residual."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class Classifier(nn.Module):
    """Sum of dilated 3x3 convolutions (DeepLab-v2's ASPP head, `branches` of the four)."""

    def __init__(self, cin: int, num_classes: int, branches: int = 2) -> None:
        super().__init__()
        if not 1 <= branches <= len(ASPP_DILATIONS):
            raise ValueError(f"aspp_branches must be 1..{len(ASPP_DILATIONS)}, got {branches}")
        self.branches = nn.ModuleList(nn.Conv2d(cin, num_classes, 3, padding=d, dilation=d) for d in ASPP_DILATIONS[:branches])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for conv in self.branches[1:]:
            out = out + conv(x)
        return out


class FeatureDiscriminator(nn.Module):
    """D_f: 3x3 stride-1 convolutions cin -> 1024w -> 512w -> 256w -> 1, LeakyReLU(0.2), no normalisation."""

    def __init__(self, cin: int, width: float = 1.0) -> None:
        super().__init__()
        chans = [cin, *(scaled(c, width) for c in (1024, 512, 256))]
        layers: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(a, b, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(chans[-1], 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def local_feature_mask(scores: torch.Tensor) -> torch.Tensor:
    """M = |tanh(D_f(F))| in [0, 1): largest where a target feature still looks most 'target'."""
    return torch.tanh(scores).abs()


class OutputDiscriminator(nn.Module):
    """D_o: 4x4 stride-2 convolutions num_classes -> 64w -> 128w -> 256w -> 512w -> 1, LeakyReLU(0.2)."""

    def __init__(self, num_classes: int, width: float = 1.0) -> None:
        super().__init__()
        chans = [num_classes, *(scaled(c, width) for c in (64, 128, 256, 512))]
        layers: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(chans[-1], 1, 4, stride=2, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, probabilities: torch.Tensor) -> torch.Tensor:
        return self.net(probabilities)


def init_deeplab(module: nn.Module, std: float = 0.01) -> None:
    """N(0, std) convolution weights, zero biases; batch norm scale 1, shift 0 (the official init)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class DeepLabV2(nn.Module):
    """Dilated ResNet segmenter; `forward(x, mask_from=D_f)` applies GLUA's local feature mask.

    Args:
        num_classes: output channels (background included).
        in_channels: image channels (1 for our slices; the official code replicates grey to 3).
        blocks: bottlenecks in layer1..layer5 (ResNet-101 layout: 3, 4, 23, 2, 1).
        width: multiplies every channel count (1.0 = the paper's 64..2048).
        aspp_branches: dilated classifier branches summed (the official code: 2).

    Example:
        >>> net = DeepLabV2(5, blocks=(1, 1, 1, 1, 1), width=0.125)
        >>> net(torch.zeros(2, 1, 64, 64)).logits.shape
        torch.Size([2, 5, 64, 64])
    """

    def __init__(self, num_classes: int, in_channels: int = 1, blocks: Sequence[int] = RESNET101_BLOCKS, width: float = 1.0, aspp_branches: int = 2) -> None:
        super().__init__()
        if len(blocks) != 5 or any(int(b) < 1 for b in blocks):
            raise ValueError(f"blocks must be 5 positive counts (layer1..layer5), got {list(blocks)}")
        stem = scaled(64, width)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        )
        self._cin = stem
        planes = [scaled(p, width) for p in (64, 128, 256, 512, 512)]
        self.layer1 = self._stage(planes[0], blocks[0])
        self.layer2 = self._stage(planes[1], blocks[1], stride=2)
        self.layer3 = self._stage(planes[2], blocks[2], dilation=2)
        self.layer4 = self._stage(planes[3], blocks[3], dilation=4)
        self.feature_channels = self._cin
        self.layer5 = self._stage(planes[4], blocks[4], dilation=4)
        self.classifier = Classifier(self._cin, num_classes, aspp_branches)
        init_deeplab(self)

    def _stage(self, planes: int, n: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
        layers = [Bottleneck(self._cin, planes, stride, dilation)]
        self._cin = planes * Bottleneck.expansion
        layers += [Bottleneck(self._cin, planes, 1, dilation) for _ in range(int(n) - 1)]
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """F: layer4's output (output stride 8), what D_f judges."""
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))

    def head(self, features: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        logits = self.classifier(self.layer5(features))
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=True)

    def forward(self, x: torch.Tensor, mask_from: nn.Module | None = None) -> DeepLabOutput:
        feats = self.features(x)
        mask = None
        masked = feats
        if mask_from is not None:  # target images: amplify the features with the largest remaining gap
            mask = local_feature_mask(mask_from(feats))
            masked = (1 + mask) * feats
        return DeepLabOutput(self.head(masked, x.shape[-2:]), feats, mask)


class MaskedSegmenter(nn.Module):
    """What inference runs: the segmenter on target slices with D_f's mask (GLUA's test.py)."""

    def __init__(self, segmenter: DeepLabV2, feature_discriminator: FeatureDiscriminator | None) -> None:
        super().__init__()
        self.segmenter = segmenter
        self.feature_discriminator = feature_discriminator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmenter(x, self.feature_discriminator).logits


@architecture("glua_deeplab")
def glua_deeplab(num_classes: int, blocks: Sequence[int] = RESNET101_BLOCKS, width: float = 1.0, aspp_branches: int = 2, local_mask: bool = True, in_channels: int = 1) -> nn.Module:
    """The saved GLUA inference network: the segmenter, with D_f when the mask is on."""
    segmenter = DeepLabV2(num_classes, in_channels, blocks, width, aspp_branches)
    return MaskedSegmenter(segmenter, FeatureDiscriminator(segmenter.feature_channels, width) if local_mask else None)
