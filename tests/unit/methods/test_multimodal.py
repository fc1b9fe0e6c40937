"""The multi-modal supervised baselines (xmodseg.methods.multimodal): what each iteration trains on,
the fine-tuning phases and their optimisers, and bit-identical resume."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from xmodseg.errors import ConfigError
from xmodseg.methods.multimodal import Finetune, Joint
from xmodseg.slices import SliceSet
from xmodseg.training.device import choose_precision
from xmodseg.training.fit import fit_method
from xmodseg.training.trainable import TrainData

pytestmark = pytest.mark.usefixtures("one_torch_thread")

K = 3
NET = {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}
FP32 = choose_precision(torch.device("cpu"), "off")


def _data() -> TrainData:
    g = torch.Generator().manual_seed(0)
    target = SliceSet(torch.randn(4, 1, 16, 16, generator=g), torch.randint(K, (4, 16, 16), generator=g), ("t1",), "ct")
    assistant = SliceSet(torch.randn(6, 1, 16, 16, generator=g) + 10, torch.randint(K, (6, 16, 16), generator=g), ("a1",), "mr")
    return TrainData(source=None, target=target, assistant=assistant)


def test_joint_trains_on_target_and_assistant_slices_together(monkeypatch):
    torch.manual_seed(0)
    m = Joint({"iterations": 2, "batch_size": 2, "network": NET}, K, FP32)
    seen: list[torch.Tensor] = []
    forward = m.net.forward
    monkeypatch.setattr(m.net, "forward", lambda x: (seen.append(x), forward(x))[1])
    m.train_step(_data(), torch.Generator().manual_seed(1), 0)
    (batch,) = seen
    assert batch.shape[0] == 4
    assert float(batch[:2].mean()) < 5 < float(batch[2:].mean())  # two target slices, then two assistant slices


def test_finetune_pretrains_on_the_assistant_then_switches_optimiser():
    torch.manual_seed(0)
    m = Finetune({"iterations": 4, "batch_size": 2, "network": NET, "pretrain_iterations": 2, "finetune_lr": 5e-4}, K, FP32)
    data, g = _data(), torch.Generator().manual_seed(1)
    phases = [set(m.train_step(data, g, i)) for i in range(4)]
    assert phases == [{"seg_assistant"}] * 2 + [{"seg_target"}] * 2
    assert m.opt_finetune.param_groups[0]["initial_lr"] == 5e-4
    assert m.opt.state and m.opt_finetune.state  # each phase's Adam has its own moments
    with pytest.raises(ConfigError, match="pretrain_iterations 4 must be in"):
        Finetune({"iterations": 4, "network": NET, "pretrain_iterations": 4}, K, FP32)


@pytest.mark.parametrize("cls", [Joint, Finetune])
def test_resume_is_bit_identical(tmp_path, cls):
    params: dict[str, Any] = {"iterations": 4, "batch_size": 2, "network": NET, "checkpoint_every": 2, "log_every": 2}
    if cls is Finetune:
        params["pretrain_iterations"] = 3

    def run(tag: str, stop_at: int | None = None):
        return fit_method(cls, name=cls.name, params=params, seed=0, data=_data(), data_ids={"source": "s", "target": "t"}, num_classes=K,
                          checkpoint_dir=tmp_path / tag / "ckpt", log_path=tmp_path / tag / "log.jsonl", stop_at=stop_at)

    full = run("full")
    run("resumed", stop_at=2)
    resumed = run("resumed")
    assert resumed.result.resumed_from == 2
    a, b = full.method.net.state_dict(), resumed.method.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
