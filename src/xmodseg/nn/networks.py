"""Network factories by name, so a saved model records how to rebuild itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from monai.networks.nets import UNet
from torch import nn

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}


def architecture(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        ARCHITECTURES[name] = fn
        return fn

    return deco


@architecture("monai_unet")
def monai_unet(
    num_classes: int,
    in_channels: int = 1,
    channels: tuple[int, ...] = (16, 32, 64, 128, 256),
    strides: tuple[int, ...] = (2, 2, 2, 2),
    num_res_units: int = 2,
    dropout: float = 0.0,
    norm: str = "instance",
) -> nn.Module:
    """MONAI's residual 2D U-Net (1.6 M parameters at the default widths)."""
    return UNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=num_classes,
        channels=tuple(channels),
        strides=tuple(strides),
        num_res_units=num_res_units,
        dropout=dropout,
        norm=norm,
    )


def build(spec: Mapping[str, Any]) -> nn.Module:
    """`spec` = {"kind": name, "kwargs": {...}} as stored in model files."""
    kind = spec["kind"]
    if kind not in ARCHITECTURES:
        from xmodseg.methods import available_methods
        from xmodseg.translation.registry import available_translators

        available_methods()  # method and translator modules register their inference networks on import
        available_translators()
    if kind not in ARCHITECTURES:
        raise KeyError(f"unknown architecture '{kind}' (known: {sorted(ARCHITECTURES)})")
    return ARCHITECTURES[kind](**spec["kwargs"])


def load_model(path: str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a saved inference network in eval mode; returns it with the stored metadata."""
    payload = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only: no code runs on load
    net = build(payload["architecture"])
    net.load_state_dict(payload["state_dict"])
    net.to(device).eval()
    return net, {k: v for k, v in payload.items() if k != "state_dict"}
