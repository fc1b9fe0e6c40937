"""MKD (xmodseg.methods.mkd): which segmenter each loss reaches, the IAM's online coupling and
warm-up, the ablation switches, ensemble inference, warm start and bit-identical resume."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from xmodseg.errors import ConfigError
from xmodseg.methods.mkd import Mkd, MkdParams
from xmodseg.nn import networks
from xmodseg.nn.layers import ResnetGenerator
from xmodseg.slices import SliceSet
from xmodseg.training.device import choose_precision
from xmodseg.training.fit import fit_method
from xmodseg.training.trainable import TrainData

pytestmark = pytest.mark.usefixtures("one_torch_thread")

K = 3
TINY: dict[str, Any] = {
    "iterations": 4, "batch_size": 2, "network": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1},
    "ngf": 4, "n_blocks": 1, "ndf": 4, "d_layers": 2, "pool_size": 2,
}
FP32 = choose_precision(torch.device("cpu"), "off")


def _data(n: int = 6, side: int = 16, unlabelled: bool = True) -> TrainData:
    g = torch.Generator().manual_seed(0)

    def slices(cases: tuple[str, ...], modality: str, labels: bool = True) -> SliceSet:
        images = torch.randn(n, 1, side, side, generator=g) * 3 + 5
        return SliceSet(images, torch.randint(K, (n, side, side), generator=g) if labels else None, cases, modality)

    return TrainData(
        source=None,
        target=slices(("t1", "t2"), "ct"),
        target_unlabelled=slices(("t3",), "ct", labels=False) if unlabelled else None,
        assistant=slices(("a1", "a2"), "mr"),
    )


def _method(**over: Any) -> Mkd:
    torch.manual_seed(0)
    return Mkd({**TINY, **over}, K, FP32)


def _prepared(m: Mkd) -> TrainData:
    return m.prepare(_data())


def _steps(m: Mkd, n: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    data = _prepared(m)
    terms: dict[str, torch.Tensor] = {}
    for i in range(n):
        terms = m.train_step(data, g, i)
    return terms


def _weights(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    wa, wb = _weights(a), _weights(b)
    return all(torch.equal(wa[k], wb[k]) for k in wa)


def test_defaults_are_the_recommended_choices():
    p = MkdParams.from_block({"iterations": 10})
    assert (p.temperature, p.lambda_s2r, p.lambda_r2s, p.ensemble, p.iam) == (2.0, 1.0, 1.0, True, True)
    assert (p.lr, p.gan_lr, p.beta1, p.lambda_cycle, p.lambda_identity, p.pool_size, p.ngf, p.n_blocks) == (1e-3, 2e-4, 0.5, 10.0, 0.5, 50, 64, 9)
    assert Mkd.needs.assistant_labels and Mkd.needs.target_labels and not Mkd.needs.source_images


def test_each_distillation_term_reaches_only_its_student():
    """lambda_r2s trains S_syn only and lambda_s2r S_real only: switching one off changes one network."""
    base, no_r2s, no_s2r = _method(), _method(lambda_r2s=0.0), _method(lambda_s2r=0.0)
    for m in (base, no_r2s, no_s2r):
        _steps(m)
    assert _same(base.s_real, no_r2s.s_real) and not _same(base.s_syn, no_r2s.s_syn)
    assert _same(base.s_syn, no_s2r.s_syn) and not _same(base.s_real, no_s2r.s_real)
    assert _same(base.g_at, no_r2s.g_at) and _same(base.g_at, no_s2r.g_at)  # the generator step came first


def test_supervised_losses_use_the_right_labels(monkeypatch):
    """S_real's supervised loss sees target labels on real images, S_syn's assistant labels on x_at."""
    m = _method()
    data = _prepared(m)
    calls: list[tuple[int, torch.Tensor]] = []
    loss = m.loss

    def spy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        calls.append((logits.shape[0], labels))
        return loss(logits, labels)

    monkeypatch.setattr(m, "loss", spy)
    g = torch.Generator().manual_seed(1)
    m.train_step(data, g, 0)
    g = torch.Generator().manual_seed(1)
    x_a, y_a = data.assistant.sample(2, g)  # the step's first draw
    assert data.target_unlabelled is not None
    data.target_unlabelled.sample(1, g)
    _, y_t = data.target.sample(2, g)
    # generator step (S_syn on x_at, assistant labels), then S_real (target labels), then S_syn (assistant labels)
    assert [torch.equal(lab, y_a) for _, lab in calls] == [True, False, True]
    assert torch.equal(calls[1][1], y_t)


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")  # the spy below
def test_generator_gets_the_synthetic_segmentation_loss_but_segmenters_stay_frozen(monkeypatch):
    coupled, uncoupled = _method(), _method(lambda_seg_to_generator=0.0)
    seen: dict[str, Any] = {}
    step = coupled.opts["g"].step

    def spy_step(*a: Any, **k: Any) -> Any:
        seen["seg_grads"] = [q.grad for net in (coupled.s_real, coupled.s_syn) for q in net.parameters()]
        return step(*a, **k)

    monkeypatch.setattr(coupled.opts["g"], "step", spy_step)
    terms = _steps(coupled)
    _steps(uncoupled)
    assert all(g is None for g in seen["seg_grads"])  # the generator step computed no segmenter gradient
    assert "g_seg_syn" in terms and torch.isfinite(terms["g_seg_syn"])
    assert not _same(coupled.g_at, uncoupled.g_at)


def test_a_smaller_coupling_batch_still_gives_the_segmenters_a_whole_synthetic_batch():
    m = _method(batch_size=3, coupling_batch_size=1)
    terms = _steps(m)
    assert m._x_at.shape[0] == 3 and not m._x_at.requires_grad
    assert torch.isfinite(terms["g_seg_syn"])
    with pytest.raises(ConfigError, match=r"coupling_batch_size 4 must be in \[gan_batch_size, batch_size\]"):
        _method(batch_size=3, coupling_batch_size=4)


def test_warmup_trains_the_iam_alone():
    m = _method(iam_warmup=2)
    s_real, s_syn, g_at = _weights(m.s_real), _weights(m.s_syn), _weights(m.g_at)
    terms = _steps(m, 2)
    assert not any(k.startswith(("sup", "kd")) for k in terms)
    assert all(torch.equal(s_real[k], v) for k, v in _weights(m.s_real).items())
    assert all(torch.equal(s_syn[k], v) for k, v in _weights(m.s_syn).items())
    assert any(not torch.equal(g_at[k], v) for k, v in _weights(m.g_at).items())
    assert m.opts["s_real"].param_groups[0]["lr"] == pytest.approx(1e-3)  # the segmenters' schedule has not started
    terms = m.train_step(_prepared(m), torch.Generator().manual_seed(2), 2)
    assert {"sup_real", "sup_syn", "kd_s2r", "kd_r2s", "g_seg_syn"} <= set(terms)


def test_without_iam_the_segmenters_see_raw_assistant_images():
    m = _method(iam=False)
    assert set(m.networks()) == {"s_real", "s_syn"} and set(m.optimizers()) == {"s_real", "s_syn"}
    terms = _steps(m, 2)
    assert set(terms) == {"sup_real", "sup_syn", "kd_s2r", "kd_r2s", "seg_real", "seg_syn"}
    with pytest.raises(ConfigError, match="iam: false has no image alignment module"):
        _method(iam=False, iam_warmup=1)


def test_prepare_maps_both_domains_to_unit_range_and_gives_the_iam_every_target_image():
    m = _method()
    data = _prepared(m)
    assert data.target is not None and data.assistant is not None and data.target_unlabelled is not None
    for s in (data.target, data.assistant, data.target_unlabelled):
        assert float(s.images.min()) >= -1 and float(s.images.max()) <= 1
    assert len(data.target_unlabelled) == 12 and data.target_unlabelled.labels is None
    assert data.target.labels is not None and len(data.target) == 6
    assert m.record()["intensity"].keys() == {"assistant", "target"}


@pytest.mark.parametrize("ensemble", [True, False])
def test_inference_is_the_mean_softmax_and_rebuilds_from_its_architecture(ensemble):
    m = _method(ensemble=ensemble)
    _steps(m)
    net = m.inference_network().eval()
    x = torch.randn(2, 1, 16, 16) * 3 + 5
    rebuilt = networks.build(m.inference_architecture())
    rebuilt.load_state_dict(net.state_dict())
    rebuilt.eval()
    with torch.no_grad():
        unit = m.ensemble.to_unit(x)
        p_real, p_syn = torch.softmax(m.s_real.eval()(unit), 1), torch.softmax(m.s_syn.eval()(unit), 1)
        expected = (p_real + p_syn) / 2 if ensemble else p_real
        assert torch.allclose(torch.softmax(net(x), 1), expected, atol=1e-6)
        assert torch.equal(rebuilt(x), net(x))
        assert torch.equal(net(x).argmax(1), expected.argmax(1))
    assert m.inference_architecture()["kwargs"]["members"] == (2 if ensemble else 1)
    lo, hi = m.inference_architecture()["kwargs"]["intensity_range"]
    assert lo < 5 < hi  # the target range was fitted on the cached intensities (mean 5)


def test_warm_start_loads_the_translator_generator(tmp_path):
    gen = ResnetGenerator(ngf=4, n_blocks=1)
    ranges = {"source": {"low": -1.0, "high": 9.0, "mode": "percentile"}, "target": {"low": 0.0, "high": 10.0, "mode": "percentile"}}
    path = tmp_path / "model.pt"
    torch.save({"architecture": {"kind": "resnet_generator", "kwargs": {"ngf": 4, "n_blocks": 1, "skip": False}},
                "state_dict": gen.state_dict(), "intensity_ranges": ranges}, path)
    torch.manual_seed(0)
    m = Mkd(TINY, K, FP32, inputs={"warm_start": path})
    assert _same(m.g_at, gen)
    m.prepare(_data())
    assert m.inference_architecture()["kwargs"]["intensity_range"] == [0.0, 10.0] and m.record()["intensity_from_warm_start"]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(Exception, match="bad.pt is unreadable"):
        Mkd(TINY, K, FP32, inputs={"warm_start": bad})
    with pytest.raises(ConfigError, match="iam: false"):
        Mkd({**TINY, "iam": False}, K, FP32, inputs={"warm_start": path})


def test_resume_is_bit_identical(tmp_path):
    def run(tag: str, stop_at: int | None = None):
        return fit_method(
            Mkd, name="mkd", params={**TINY, "iterations": 4, "iam_warmup": 1, "checkpoint_every": 2, "log_every": 2}, seed=0,
            data=_data(), data_ids={"source": "s", "target": "t"}, num_classes=K, checkpoint_dir=tmp_path / tag / "ckpt",
            log_path=tmp_path / tag / "log.jsonl", stop_at=stop_at,
        )

    full = run("full")
    run("resumed", stop_at=2)
    resumed = run("resumed")
    assert resumed.result.resumed_from == 2
    for name, net in full.method.networks().items():
        assert _same(net, resumed.method.networks()[name]), name
    assert _same(full.method.inference_network(), resumed.method.inference_network())


def test_single_segmenter_inference_is_the_same_training():
    """`ensemble: false` changes only what is saved: both runs train the same weights, so the
    single-segmenter row is S_real of the ensemble's run."""
    both, single = _method(), _method(ensemble=False)
    _steps(both, 2)
    _steps(single, 2)
    assert _same(both.s_real, single.s_real) and _same(both.s_syn, single.s_syn)
    assert len(single.inference_network().members) == 1 and _same(single.inference_network().members[0], both.s_real)
