"""`model.pt` (ModelFile) and its `model.json` sidecar (Sidecar).

model.pt holds what inference needs: the network's architecture (`{"kind", "kwargs"}`, rebuilt by
`xmodseg.nn.networks.build`), its weights, the resume hash, and either a segmentation method's
`method` and `class_names` or a translator's `translator` and `intensity_ranges`; with
`train.snapshots: k` also the earlier checkpoints' weights. It is read with
`torch.load(weights_only=True)`: tensors and plain data only, no code runs.

`ModelFile.to_payload()` is the dict `xmodseg.training.fit.write_model` saves, key for key in the
same order, so `save` writes the same bytes.

The sidecar records how the model was made (parameters, data, loop, device, provenance). Its
writer is still growing (declared `inputs`, the `labels` budget), so keys not known here are kept
in `Sidecar.extra` and written back, and a read sidecar is written back in its own key order.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xmodseg.artifacts._json import check_keys, read_json
from xmodseg.atomic import atomic_path, write_json
from xmodseg.errors import InputDataError

if TYPE_CHECKING:  # torch is imported where a model file is read or written: the sidecar needs none
    import torch

_FIX_MODEL = "rerun the job that trains it"


class RefusedModelFileError(InputDataError, pickle.UnpicklingError):
    """A model file that holds more than tensors and plain data: refused, never executed."""


@dataclass(frozen=True)
class Architecture:
    """How to rebuild the inference network: a name in `nn.networks.ARCHITECTURES` and its kwargs."""

    kind: str
    kwargs: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "kwargs": self.kwargs}


@dataclass(frozen=True, eq=False)  # tensors have no truth value: compare weights with torch.equal
class Snapshot:
    """The inference weights of an earlier checkpoint (`train.snapshots`)."""

    iteration: int
    state_dict: dict[str, torch.Tensor]

    def to_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "state_dict": self.state_dict}


@dataclass(frozen=True, kw_only=True, eq=False)  # as Snapshot
class ModelFile:
    """What model.pt holds (see the module docstring); `load` it, never unpickle it otherwise."""

    architecture: Architecture
    state_dict: dict[str, torch.Tensor]
    config_hash: str
    method: str | None = None  # a segmentation method's model ...
    class_names: list[str] | None = None
    translator: str | None = None  # ... or a translator's
    intensity_ranges: dict[str, dict[str, Any]] | None = None  # {"source", "target"}: UnitRange.to_dict()
    snapshots: list[Snapshot] | None = None
    path: str = field(default="", compare=False)  # where it was read from (not stored)

    @classmethod
    def from_payload(cls, payload: Any, where: str) -> ModelFile:
        check_keys(payload, _REQUIRED, _OPTIONAL, where, _FIX_MODEL)
        arch = payload["architecture"]
        check_keys(arch, ("kind", "kwargs"), (), f"{where} architecture", _FIX_MODEL)
        snaps = payload.get("snapshots")
        if snaps is not None:
            if not isinstance(snaps, list):
                raise InputDataError(f"{where}: snapshots is not a list ({_FIX_MODEL})")
            for i, s in enumerate(snaps):
                check_keys(s, ("iteration", "state_dict"), (), f"{where} snapshots[{i}]", _FIX_MODEL)
            snaps = [Snapshot(s["iteration"], s["state_dict"]) for s in snaps]
        return cls(**{**payload, "architecture": Architecture(arch["kind"], arch["kwargs"]), "snapshots": snaps}, path=where)

    def to_payload(self) -> dict[str, Any]:
        """The dict torch saves as model.pt (the writer's key order: same bytes)."""
        out: dict[str, Any] = {}
        for k in _ORDER:
            v = getattr(self, k)
            if v is None:
                continue
            out[k] = v.to_dict() if k == "architecture" else [s.to_dict() for s in v] if k == "snapshots" else v
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: torch.device | str = "cpu") -> ModelFile:
        """Read `path` onto `device` (tensors and plain data only); every failure names the file."""
        import torch

        p = str(path)
        try:
            payload = torch.load(p, map_location=device, weights_only=True)
        except FileNotFoundError:
            raise InputDataError(f"{p}: no model file ({_FIX_MODEL})") from None
        except pickle.UnpicklingError as exc:
            why = next((line.strip().split(". ")[0] for line in str(exc).splitlines() if "Unpickler error" in line), str(exc)[:200])
            raise RefusedModelFileError(f"{p}: refused: it holds more than tensors and plain data ({why}); not loaded, {_FIX_MODEL}") from exc
        except Exception as exc:  # truncated or not a torch file: name the file instead of a torch traceback
            raise InputDataError(f"{p}: unreadable model file ({type(exc).__name__}: {exc}); {_FIX_MODEL}") from exc
        return cls.from_payload(payload, p)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Atomically; through a file object, as training.checkpoint.save_torch, so the bytes do not
        depend on the (temporary) file name."""
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            import torch

            torch.save(self.to_payload(), fh)

    @property
    def role(self) -> str:
        """`method` (a segmentation model) or `translator`."""
        return "translator" if self.translator is not None else "method"


_ORDER = ("architecture", "state_dict", "config_hash", "method", "class_names", "translator", "intensity_ranges", "snapshots")
_REQUIRED = ("architecture", "state_dict", "config_hash")
_OPTIONAL = tuple(k for k in _ORDER if k not in _REQUIRED)


# ---- sidecar ------------------------------------------------------------------------------------

_FIX_SIDECAR = "written with model.pt by `xmodseg train` / `xmodseg translate`; rerun it"


@dataclass(frozen=True, kw_only=True)
class Sidecar:
    """`model.json`: a segmentation method's (`method`, `selection`, ...) or a translator's
    (`translator`, `intensity_ranges`) record of how model.pt was made."""

    seed: int
    params: dict[str, Any]
    data: dict[str, Any]  # {"source", "target"}: the cache each side trained on (None: not used)
    config_hash: str
    model_sha256: str
    method: str | None = None
    translator: str | None = None
    selection: str | None = None
    intensity_ranges: dict[str, Any] | None = None
    uses_target_labels_for_training: bool | None = None
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # declared inputs: role -> {path, sha256}
    labels: dict[str, Any] | None = None  # the label budget
    loop: dict[str, Any] | None = None
    loss_curve: dict[str, Any] | None = None  # binned loss history (xmodseg.training.loop.loss_curve)
    snapshot_iterations: list[int] | None = None
    precision: str | None = None
    method_record: dict[str, Any] | None = None
    device: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this class does not know, kept as they are
    key_order: tuple[str, ...] = field(default=(), compare=False, repr=False)  # as read; () = the writer's order

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Sidecar:
        check_keys(d, _SIDE_REQUIRED, tuple(d) if isinstance(d, dict) else (), where, _FIX_SIDECAR)  # unknown keys: `extra`
        if d.get("method") is None and d.get("translator") is None:
            raise InputDataError(f"{where}: missing key method (or translator) ({_FIX_SIDECAR})")
        known = {k: v for k, v in d.items() if k in _SIDE_FIELDS}
        return cls(**known, extra={k: v for k, v in d.items() if k not in _SIDE_FIELDS}, key_order=tuple(d))

    def to_dict(self) -> dict[str, Any]:
        values = {**{f: getattr(self, f) for f in _SIDE_ORDER}, **self.extra}
        # a read sidecar: its keys (null values included) in their order, then any set since
        out = {k: values[k] for k in self.key_order if k in values}
        out.update({k: v for k, v in values.items() if k not in out and v is not None and not (k == "inputs" and self.key_order and not v)})
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Sidecar:
        return cls.from_dict(read_json(path, "model sidecar", _FIX_SIDECAR), str(path))

    @classmethod
    def of_model(cls, model_path: str | os.PathLike[str]) -> Sidecar:
        """The sidecar next to `model_path` (same name, .json)."""
        return cls.load(Path(model_path).with_suffix(".json"))

    def save(self, path: str | os.PathLike[str]) -> None:
        write_json(path, self.to_dict())


# today's writers: a method's run, a translator's, then training.fit.write_model's common part
_SIDE_ORDER = (
    "method", "translator", "seed", "params", "selection", "intensity_ranges", "uses_target_labels_for_training",
    "labels", "data", "config_hash", "loop", "loss_curve", "snapshot_iterations", "precision", "inputs", "method_record", "device",
    "model_sha256", "provenance",
)  # fmt: skip
_SIDE_FIELDS = frozenset(_SIDE_ORDER)
_SIDE_REQUIRED = ("seed", "params", "data", "config_hash", "model_sha256")
