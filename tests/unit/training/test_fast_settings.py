"""Opt-in speed settings (amp bf16, channels_last, compile, optimizer_impl) and the loop's deferred
loss reads: the switches parse, the defaults keep today's arithmetic, the fast settings train and
resume exactly, and the NaN/Inf guard still stops before a bad checkpoint or log line."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from xmodseg.errors import ConfigError, TrainingDivergedError
from xmodseg.methods.sifa import Sifa, SifaParams
from xmodseg.methods.supervised import SupervisedParams
from xmodseg.slices import SliceSet
from xmodseg.training import device as device_module
from xmodseg.training.device import choose_device, choose_precision, optimizer_options
from xmodseg.training.fit import fit_method
from xmodseg.training.loop import LoopConfig, _as_floats, fit
from xmodseg.training.params import TrainParams
from xmodseg.training.trainable import DataNeeds, Trainable, TrainData
from xmodseg.translation.cyclegan import CycleGANParams

pytestmark = pytest.mark.usefixtures("one_torch_thread")

K = 3
TINY = {"iterations": 4, "width": 0.125, "batch_size": 2, "generator": {"ngf": 4, "n_blocks": 1, "skip": True}, "ndf": 4, "pool_size": 2}
CPU = torch.device("cpu")


def _data(n: int = 4, side: int = 32) -> TrainData:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(K, (n, side, side), generator=g)
    src = SliceSet(torch.randn(n, 1, side, side, generator=g), labels, ("s1", "s2"), "mr")
    return TrainData(source=src, target=SliceSet(torch.randn(n, 1, side, side, generator=g), None, ("t1", "t2"), "ct"))


def _fit_sifa(tmp_path, tag: str, stop_at: int | None = None, **over: Any):
    return fit_method(
        Sifa, name="sifa", params={**TINY, "checkpoint_every": 2, "log_every": 2, **over}, seed=0, data=_data(),
        data_ids={"source": "s", "target": "t"}, num_classes=K, checkpoint_dir=tmp_path / tag / "ckpt",
        log_path=tmp_path / tag / "log.jsonl", stop_at=stop_at,
    )


def _weights(method: Trainable) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.detach().clone() for n, net in method.networks().items() for k, v in net.state_dict().items()}


# ------------------------------------------------------------------------------------------ switches


def test_switches_parse_and_default_to_todays_behaviour():
    for cls in (TrainParams, SifaParams, SupervisedParams, CycleGANParams):
        d = cls.defaults()
        assert (d["amp"], d["channels_last"], d["compile"], d["optimizer_impl"]) == ("auto", False, False, "default")
    p = SifaParams.from_block({"iterations": 1, "amp": "bf16", "channels_last": True, "compile": True, "optimizer_impl": "fused"})
    assert (p.amp, p.channels_last, p.compile, p.optimizer_impl) == ("bf16", True, True, "fused")
    assert choose_precision(CPU, "auto").dtype is None and choose_precision(CPU, "bf16").dtype == torch.bfloat16
    assert optimizer_options("default", CPU) == {} and optimizer_options("fused", CPU) == {"fused": True}


@pytest.mark.parametrize("native", [True, False])
def test_bf16_native_uses_bf16_only_where_the_cpu_has_it(monkeypatch, native):
    """The demo's `amp: bf16_native`: bf16 autocast on a CPU with bf16 instructions, plain fp32 (not
    the emulated, slower bf16) on one without."""
    monkeypatch.setattr(device_module, "_cpu_has_bf16", lambda: native)
    assert choose_precision(CPU, "bf16_native").dtype == (torch.bfloat16 if native else None)


@pytest.mark.parametrize(
    ("block", "match"),
    [
        ({"amp": "fp8"}, r"x\.amp: 'fp8' is not one of \['auto', 'off', 'bf16', 'bf16_native', 'fp16'\]"),
        ({"optimizer_impl": "fast"}, r"x\.optimizer_impl: 'fast' is not one of"),
        ({"channels_last": "yes"}, r"x\.channels_last: 'yes' is not true/false"),
        ({"compile": 1}, r"x\.compile: 1 is not true/false"),
        ({"chanels_last": True}, r"did you mean 'chanels_last' -> 'channels_last'"),
    ],
)
def test_bad_switch_values_name_the_key(block, match):
    with pytest.raises(ConfigError, match=match):
        SifaParams.from_block({"iterations": 1, **block}, "x")


def test_fp16_needs_cuda():
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        choose_precision(CPU, "fp16")


def test_explicit_defaults_and_foreach_give_the_same_weights_as_before(tmp_path):
    """The switches at their defaults, and foreach Adam on the CPU, run the same arithmetic as a
    block without them; fused Adam rounds differently, so it is a switch and not a default."""
    base = _weights(_fit_sifa(tmp_path, "base").method)
    explicit = _weights(_fit_sifa(tmp_path, "explicit", amp="auto", channels_last=False, compile=False, optimizer_impl="default").method)
    foreach = _weights(_fit_sifa(tmp_path, "foreach", optimizer_impl="foreach").method)
    fused = _fit_sifa(tmp_path, "fused", optimizer_impl="fused")
    assert all(o.defaults["fused"] for o in fused.method.optimizers().values())
    for k in base:
        assert torch.equal(base[k], explicit[k]) and torch.equal(base[k], foreach[k]), k
    assert any(not torch.equal(base[k], v) for k, v in _weights(fused.method).items())


def test_bf16_channels_last_trains_finite_and_resumes_exactly(tmp_path):
    fast = {"amp": "bf16", "channels_last": True, "optimizer_impl": "fused"}
    full = _fit_sifa(tmp_path, "full", **fast)
    assert full.precision.dtype == torch.bfloat16 and full.method.record()["precision"] == "torch.bfloat16"
    convs = {n: m.weight for net in full.method.networks().values() for n, m in net.named_modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1}
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs.values())
    assert all(math.isfinite(v) for v in full.result.last_losses.values()) and "seg_main" in full.result.last_losses
    _fit_sifa(tmp_path, "resumed", stop_at=2, **fast)
    resumed = _fit_sifa(tmp_path, "resumed", **fast)
    assert resumed.result.resumed_from == 2
    a, b = _weights(full.method), _weights(resumed.method)
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-reproducible for a given setting


def test_compile_falls_back_to_eager_with_a_message(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(device_module, "_COMPILE_CHECK", {"cpu": "RuntimeError: no C++ compiler"})
    caplog.set_level("WARNING")
    m = Sifa({**TINY, "compile": True}, K, choose_precision(CPU, "off"))
    assert "torch.compile is unavailable here (RuntimeError: no C++ compiler); training eagerly" in caplog.text
    assert m.record()["compile_fallback"] == "RuntimeError: no C++ compiler"
    assert "compile_fallback" not in Sifa(TINY, K, choose_precision(CPU, "off")).record()
    m.train_step(m.prepare(_data()), torch.Generator().manual_seed(0), 0)


# ------------------------------------------------------------------------------- deferred loss reads


class _Toy(Trainable):
    """One conv; its terms come back as fp32 and bf16 tensors and a float; `bad_at` poisons one."""

    name: ClassVar[str] = "_toy_fast_settings"
    needs: ClassVar[DataNeeds] = DataNeeds()

    def __init__(self, bad_at: int | None = None) -> None:
        super().__init__({"iterations": 6}, 1, choose_precision(choose_device("cpu"), "off"))
        torch.manual_seed(0)
        self.net = nn.Conv2d(1, 1, 3, padding=1)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-2)
        self.bad_at = bad_at
        self.returned: list[dict[str, float]] = []

    def networks(self) -> Mapping[str, nn.Module]:
        return {"net": self.net}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"net": self.opt}

    def train_step(self, data: TrainData, sampler: torch.Generator, step: int) -> dict[str, Any]:
        x = torch.randn(2, 1, 8, 8, generator=sampler)
        loss = (self.net(x) - x).pow(2).mean() * 1.2345678
        self.backward_step(loss, self.opt)
        poison = math.inf if step + 1 == self.bad_at else 1.0
        out = {"loss": loss.detach() * poison, "bf16": loss.detach().to(torch.bfloat16), "plain": 0.1 * (step + 1)}
        self.returned.append({k: float(v) for k, v in out.items()})
        return out

    def inference_architecture(self) -> dict[str, Any]:
        return {"kind": "none", "kwargs": {}}

    def inference_network(self) -> nn.Module:
        return self.net


def test_logged_values_equal_float_of_each_term(tmp_path):
    toy = _Toy()
    result = fit(toy, TrainData(None, None), LoopConfig(iterations=6, seed=0, checkpoint_every=6, log_every=3), checkpoint_dir=tmp_path / "c",
                 log_path=tmp_path / "l.jsonl", config_hash="h")
    records = [json.loads(x) for x in (tmp_path / "l.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [3, 6]
    for r in records:
        assert {k: r[k] for k in ("loss", "bf16", "plain")} == toy.returned[r["iteration"] - 1]
    assert result.last_losses == toy.returned[-1]
    assert _as_floats([torch.tensor(1 / 3, dtype=torch.float64), torch.tensor(1 / 3), 1 / 3]) == [1 / 3, float(torch.tensor(1 / 3)), 1 / 3]


def test_nan_guard_fires_between_log_records_before_the_next_checkpoint(tmp_path):
    """Iteration 3 goes non-finite; the next read (the checkpoint at 4) stops the run, naming
    iteration 3 and the term; checkpoint 4 is never written and no log line holds the bad value."""
    with pytest.raises(TrainingDivergedError, match=r"iteration 3: \{'loss': inf\}"):
        fit(_Toy(bad_at=3), TrainData(None, None), LoopConfig(iterations=6, seed=0, checkpoint_every=2, log_every=10),
            checkpoint_dir=tmp_path / "c", log_path=tmp_path / "l.jsonl", config_hash="h")
    assert torch.load(tmp_path / "c" / "last.pt", weights_only=False)["iteration"] == 2
    assert "inf" not in (tmp_path / "l.jsonl").read_text().lower()


def test_nan_guard_fires_at_the_last_iteration_without_any_checkpoint_between(tmp_path):
    with pytest.raises(TrainingDivergedError, match=r"iteration 5: "):
        fit(_Toy(bad_at=5), TrainData(None, None), LoopConfig(iterations=6, seed=0, checkpoint_every=100, log_every=100),
            checkpoint_dir=tmp_path / "c", log_path=tmp_path / "l.jsonl", config_hash="h")
    assert not (tmp_path / "c" / "last.pt").exists()


def test_bf16_native_resume_key_names_the_precision_used(tmp_path, monkeypatch):
    """A bf16_native checkpoint written in bf16 is not resumed on a machine that would train in fp32."""
    monkeypatch.setattr(device_module, "_cpu_has_bf16", lambda: True)
    with_bf16 = _fit_sifa(tmp_path, "same", stop_at=2, amp="bf16_native")
    monkeypatch.setattr(device_module, "_cpu_has_bf16", lambda: False)
    without = _fit_sifa(tmp_path, "same", amp="bf16_native")
    assert with_bf16.precision.dtype == torch.bfloat16 and without.precision.dtype is None
    assert with_bf16.config_hash != without.config_hash
    assert not without.result.resumed_from  # trained from scratch in fp32, not on top of the bf16 checkpoint
