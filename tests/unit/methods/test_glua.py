"""GLUA step B (xmodseg.methods.glua): the official defaults, which network each loss reaches, the
ablation switches, the mask at inference, and bit-identical resume on the shared loop."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from xmodseg.errors import ConfigError
from xmodseg.methods.glua import Glua, GluaParams
from xmodseg.nn import networks
from xmodseg.slices import SliceSet
from xmodseg.training.device import choose_precision
from xmodseg.training.fit import fit_method
from xmodseg.training.trainable import TrainData

pytestmark = pytest.mark.usefixtures("one_torch_thread")

K = 3
TINY: dict[str, Any] = {"iterations": 3, "blocks": [1, 1, 1, 1, 1], "width": 0.125, "batch_size": 2}
FP32 = choose_precision(torch.device("cpu"), "off")


def _data(n: int = 4, side: int = 32) -> TrainData:
    g = torch.Generator().manual_seed(0)
    src = SliceSet(torch.randn(n, 1, side, side, generator=g), torch.randint(K, (n, side, side), generator=g), ("s1", "s2"), "mr")
    return TrainData(source=src, target=SliceSet(torch.randn(n, 1, side, side, generator=g), None, ("t1", "t2"), "ct"))


def _method(**over: Any) -> Glua:
    torch.manual_seed(0)
    return Glua({**TINY, **over}, K, FP32)


def _steps(m: Glua, n: int = 2) -> None:
    g = torch.Generator().manual_seed(1)
    data = _data()
    for i in range(n):
        m.train_step(data, g, i)


def _weights(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_defaults_are_the_official_code():
    p = GluaParams.from_block({"iterations": 10})
    assert (p.lr, p.head_lr_multiplier, p.momentum, p.weight_decay) == (0.01, 10.0, 0.9, 5e-4)
    assert (p.d_lr, p.d_betas, p.batch_size, p.blocks, p.aspp_branches) == (1e-4, [0.9, 0.99], 12, [3, 4, 23, 2, 1], 2)
    assert (p.ce_weight, p.dice_weight, p.lambda_adv_feature, p.lambda_adv_output) == (0.5, 0.5, 0.01, 0.01)
    m = _method()
    lrs = [g["lr"] for g in m.opt.param_groups]
    assert lrs == [0.01, pytest.approx(0.1)]  # the classifier at 10x
    assert {id(q) for q in m.opt.param_groups[1]["params"]} == {id(q) for q in m.segmenter.classifier.parameters()}


def test_poly_horizon_defaults_to_the_run_and_can_mimic_the_official_constant_rate():
    m = _method(iterations=4)
    _steps(m, 2)
    assert m.opt.param_groups[0]["lr"] == pytest.approx(0.01 * (1 - 2 / 4) ** 0.9)
    official = _method(iterations=4, poly_horizon=1_000_000)
    _steps(official, 2)
    assert official.opt.param_groups[0]["lr"] == pytest.approx(0.01, rel=1e-5)
    assert m.record()["poly_horizon"] == 4 and official.record()["poly_horizon"] == 1_000_000


def test_each_loss_reaches_only_its_networks(monkeypatch):
    m = _method()
    seen: dict[str, Any] = {}
    step = m.sched.step

    def after_segmenter_step() -> None:  # called right after the segmenter's optimizer step
        seen["d_grads"] = [q.grad for d in (m.d_feature, m.d_output) for q in d.parameters()]
        seen["seg_grads"] = {n: q.grad.clone() for n, q in m.segmenter.named_parameters() if q.grad is not None}
        seen["d_weights"] = {n: _weights(d) for n, d in (("f", m.d_feature), ("o", m.d_output))}
        step()

    monkeypatch.setattr(m.sched, "step", after_segmenter_step)
    before = {n: _weights(d) for n, d in (("f", m.d_feature), ("o", m.d_output))}
    terms = m.train_step(_data(), torch.Generator().manual_seed(1), 0)
    assert set(terms) == {"seg", "adv_feature", "adv_output", "mask_mean", "d_feature", "d_output"}
    # the segmenter step left the discriminators untouched (frozen, no gradients)
    assert all(g is None for g in seen["d_grads"])
    assert all(torch.equal(before[n][k], seen["d_weights"][n][k]) for n in before for k in before[n])
    # the discriminator step changed them, and added nothing to the segmenter's gradients (detached inputs)
    assert any(not torch.equal(before["f"][k], v) for k, v in _weights(m.d_feature).items())
    assert any(not torch.equal(before["o"][k], v) for k, v in _weights(m.d_output).items())
    assert all(torch.equal(seen["seg_grads"][n], q.grad) for n, q in m.segmenter.named_parameters() if n in seen["seg_grads"])


def test_adversarial_terms_move_the_segmenter_and_zero_weights_do_not():
    plain = _method(feature_discriminator=False, output_discriminator=False, local_mask=False)
    zero = _method(lambda_adv_feature=0.0, lambda_adv_output=0.0, local_mask=False)
    full = _method(local_mask=False)
    for m in (plain, zero, full):
        _steps(m)
    a, b, c = _weights(plain.segmenter), _weights(zero.segmenter), _weights(full.segmenter)
    assert all(torch.equal(a[k], b[k]) for k in a)  # discriminators with weight 0 do not reach the segmenter
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize(
    ("switches", "nets"),
    [
        ({"feature_discriminator": False, "output_discriminator": False, "local_mask": False}, {"segmenter"}),  # global alignment only
        ({"feature_discriminator": False, "local_mask": False}, {"segmenter", "d_output"}),  # + output space
        ({"local_mask": False}, {"segmenter", "d_feature", "d_output"}),  # + feature D without the mask
        ({}, {"segmenter", "d_feature", "d_output"}),  # full GLUA
    ],
)
def test_ablation_rows(switches, nets):
    m = _method(**switches)
    assert set(m.networks()) == nets
    terms = m.train_step(_data(), torch.Generator().manual_seed(1), 0)
    assert ("mask_mean" in terms) == m.params.local_mask
    assert all(torch.isfinite(v) for v in terms.values())


def test_mask_needs_the_feature_discriminator():
    with pytest.raises(ConfigError, match="local_mask needs feature_discriminator"):
        _method(feature_discriminator=False)


def test_the_saved_network_applies_the_mask_and_rebuilds_from_its_architecture():
    m = _method()
    _steps(m, 1)
    net = m.inference_network().eval()
    x = torch.randn(2, 1, 32, 32)
    rebuilt = networks.build(m.inference_architecture())
    rebuilt.load_state_dict(net.state_dict())
    rebuilt.eval()
    with torch.no_grad():
        expected = m.segmenter.eval()(x, m.d_feature).logits
        assert torch.equal(net(x), expected) and torch.equal(rebuilt(x), expected)
        assert not torch.equal(expected, m.segmenter(x).logits)  # without the mask the answer differs
    assert "feature_discriminator.net.0.weight" in net.state_dict()


def test_resume_is_bit_identical(tmp_path):
    def run(tag: str, stop_at: int | None = None):
        return fit_method(
            Glua, name="glua", params={**TINY, "iterations": 4, "checkpoint_every": 2, "log_every": 2}, seed=0, data=_data(),
            data_ids={"source": "s", "target": "t"}, num_classes=K, checkpoint_dir=tmp_path / tag / "ckpt",
            log_path=tmp_path / tag / "log.jsonl", stop_at=stop_at,
        )

    full = run("full")
    run("resumed", stop_at=2)
    resumed = run("resumed")
    assert resumed.result.resumed_from == 2
    for name, net in full.method.networks().items():
        a, b = net.state_dict(), resumed.method.networks()[name].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
