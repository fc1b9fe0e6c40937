"""Device, mixed precision and the opt-in speed settings (memory format, compile, optimizer kernels).

The device comes from what is visible: on SLURM or under our GPU lease `CUDA_VISIBLE_DEVICES`
names the GPU, and torch then sees it as cuda:0. With no visible GPU we run on the CPU.

Every speed setting is off by default and changes only what its switch names, so the default run
gives the same weights as before the switch existed (`amp: auto` is fp32 on the CPU).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from xmodseg.errors import ConfigError
from xmodseg.training.params import AMP_MODES, OPTIMIZER_IMPLS

log = logging.getLogger(__name__)


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
    """The device to run on; says which in the log in plain words (a CPU run names no GPU)."""
    if requested == "auto":
        dev = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(requested)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device '{requested}' requested but no CUDA device is visible (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
    if dev.type == "cuda":
        log.info("device: %s (%s)", dev, torch.cuda.get_device_name(dev))
    else:
        log.info("device: %s%s", dev, " (no GPU visible)" if not torch.cuda.is_available() else "")
    return dev


def choose_precision(device: torch.device, amp: str = "auto") -> Precision:
    """'auto': fp16 autocast on CUDA, fp32 elsewhere; 'fp16': fp16 autocast with loss scaling (CUDA
    only); 'bf16': bfloat16 autocast (CUDA, or a CPU with bf16 instructions, AVX512-BF16 or AMX);
    'bf16_native': bf16 where the device has it natively, fp32 elsewhere; 'off': fp32."""
    if amp not in AMP_MODES:
        raise ConfigError(f"train.amp: {amp!r} is not one of {list(AMP_MODES)}")
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return Precision(device, None)
    if amp == "bf16_native":  # the demo's setting: the speed-up where it exists, never the emulated slow path
        native = _cpu_has_bf16() if device.type == "cpu" else device.type == "cuda" and torch.cuda.is_bf16_supported()
        log.info("amp: bf16_native -> %s on %s", "bf16" if native else "fp32 (no native bf16)", device)
        return Precision(device, torch.bfloat16 if native else None)
    if amp in ("auto", "fp16"):
        if device.type != "cuda":
            raise ConfigError(f"train.amp: fp16 needs a CUDA device (the run is on {device}); use bf16 on a CPU with bf16 instructions, or off")
        return Precision(device, torch.float16)
    if device.type == "cpu" and not _cpu_has_bf16():
        log.warning("amp: bf16 on a CPU without bf16 instructions (AVX512-BF16/AMX) is emulated and slower than fp32")
    elif device.type == "cuda" and not torch.cuda.is_bf16_supported():
        log.warning("amp: bf16 on %s, which has no native bf16: slower than fp16 (amp: fp16)", torch.cuda.get_device_name(device))
    return Precision(device, torch.bfloat16)


def _cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def describe_device(device: torch.device) -> dict[str, str | None]:
    info: dict[str, str | None] = {"device": str(device), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    if device.type == "cuda":
        info["gpu_name"] = torch.cuda.get_device_name(device)
    info["torch_threads"] = str(torch.get_num_threads())
    return info


# -- opt-in speed settings (TrainParams: channels_last, compile, optimizer_impl) -------------------------


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """A batch on the training device; image batches in channels-last layout when the networks are."""
    x = x.to(device)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def optimizer_options(impl: str, device: torch.device) -> dict[str, Any]:
    """Keyword arguments for torch.optim.Adam. 'default' passes nothing (on the CPU the per-tensor
    loop; on CUDA PyTorch's default, foreach); 'foreach' is bit-identical to the per-tensor loop on
    the CPU (and not faster there); 'fused' is one kernel per step: about 4x faster on the CPU, with
    a different rounding (a switch, not a default)."""
    if impl not in OPTIMIZER_IMPLS:
        raise ConfigError(f"train.optimizer_impl: {impl!r} is not one of {list(OPTIMIZER_IMPLS)}")
    if impl == "fused" and device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise ConfigError(f"train.optimizer_impl: fused Adam is not available on {device}; use default")
    return {} if impl == "default" else {impl: True}


def prepare_networks(nets: Iterable[nn.Module], *, channels_last: bool = False) -> None:
    """Put every network (parameters and buffers) in channels-last layout, in place, before the
    optimizers take their first step (their state follows the parameters' layout)."""
    if channels_last:
        for net in nets:
            net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # (Module.to's stubs omit memory_format)


def compile_networks(nets: Iterable[nn.Module], device: torch.device) -> str | None:
    """torch.compile each module's forward in place (state_dict keys unchanged). Returns None when
    compiled, else why not (training then runs eagerly; the reason is logged). A graph that fails to
    compile later also runs eagerly, with TorchDynamo's warning. Compile time is paid in the first
    iterations (the s/iteration log shows it)."""
    reason = compile_unavailable(device)
    if reason is not None:
        log.warning("compile: true, but torch.compile is unavailable here (%s); training eagerly", reason)
        return reason
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True  # a graph that fails to compile runs eagerly (with a warning)
    for net in nets:
        net.compile()
    return None


_COMPILE_CHECK: dict[str, str | None] = {}


def compile_unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot run on `device` (None if it can): checked once per process and device
    type by compiling a one-line function, so a missing C++ compiler (CPU) or Triton (CUDA) shows
    here, not in the middle of the first training step."""
    if device.type not in _COMPILE_CHECK:
        try:
            import torch._dynamo

            if not torch._dynamo.is_dynamo_supported():
                raise RuntimeError("TorchDynamo does not support this Python")
            torch.compile(lambda x: x * 2 + 1)(torch.ones(2, device=device))
            _COMPILE_CHECK[device.type] = None
        except Exception as exc:  # any failure means: run eagerly
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            _COMPILE_CHECK[device.type] = f"{type(exc).__name__}: {first}"
    return _COMPILE_CHECK[device.type]
