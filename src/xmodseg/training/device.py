"""Device and mixed-precision choice.

The device comes from what is visible: on SLURM or under our GPU lease `CUDA_VISIBLE_DEVICES`
names the GPU, and torch then sees it as cuda:0. With no visible GPU we run on the CPU.
"""

from __future__ import annotations

import contextlib
import os
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    device: torch.device
    dtype: torch.dtype | None  # None = full fp32

    def autocast(self) -> ContextManager[None]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16


def choose_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{requested}' requested but no CUDA device is visible (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
    return dev


def choose_precision(device: torch.device, amp: str = "auto") -> Precision:
    """'auto': fp16 autocast on CUDA, fp32 on CPU; 'bf16': bfloat16 autocast (fast on CPUs with AMX); 'off': fp32."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return Precision(device, None)
    if amp == "auto":
        return Precision(device, torch.float16)
    if amp == "bf16":
        return Precision(device, torch.bfloat16)
    raise ValueError(f"amp must be auto, bf16 or off, got {amp!r}")


def describe_device(device: torch.device) -> dict[str, str | None]:
    info: dict[str, str | None] = {"device": str(device), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    if device.type == "cuda":
        info["gpu_name"] = torch.cuda.get_device_name(device)
    info["torch_threads"] = str(torch.get_num_threads())
    return info
