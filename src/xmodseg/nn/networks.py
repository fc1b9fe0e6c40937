"""Network factories by name, so a saved model records how to rebuild itself."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from xmodseg.artifacts.model_file import Architecture, ModelFile

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}
# Modules of this package that define inference networks; a method that brings its own network
# registers it with `architecture` in its module, imported by the method registry.
_NETWORK_MODULES = ("xmodseg.nn.layers", "xmodseg.nn.sifa", "xmodseg.nn.disentangled", "xmodseg.nn.deeplab", "xmodseg.nn.adgan", "xmodseg.nn.ensemble", "xmodseg.nn.mkd")


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
    """MONAI's residual 2D U-Net (1.6 M parameters at the default widths). MONAI is imported here:
    importing it costs seconds, which evaluating a model of another architecture need not pay."""
    from monai.networks.nets import UNet

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


def build(spec: Architecture | Mapping[str, Any]) -> nn.Module:
    """`spec`: a model file's architecture ({"kind": name, "kwargs": {...}})."""
    if not isinstance(spec, Architecture):
        spec = Architecture(spec["kind"], spec["kwargs"])
    kind = spec.kind
    if kind not in ARCHITECTURES:  # the other network modules register themselves on import
        for module in _NETWORK_MODULES:
            importlib.import_module(module)
    if kind not in ARCHITECTURES:
        raise KeyError(f"unknown architecture '{kind}' (known: {sorted(ARCHITECTURES)})")
    return ARCHITECTURES[kind](**spec.kwargs)


def network(model: ModelFile, device: torch.device | str = "cpu") -> nn.Module:
    """The inference network of a model file, with its weights, on `device`, in eval mode."""
    net = build(model.architecture)
    net.load_state_dict(model.state_dict)
    net.to(device).eval()
    return net


def load_model(path: str, device: torch.device | str = "cpu") -> tuple[nn.Module, ModelFile]:
    """Rebuild a saved inference network in eval mode; returns it with its model file (read on the
    CPU with tensors and plain data only: no code runs on load)."""
    model = ModelFile.load(path)
    return network(model, device), model
