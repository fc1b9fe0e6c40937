"""Semi-supervised co-training (xmodseg.methods.cps, co_da_alignment): distribution alignment,
the over-expectation mask, different initialisations, pseudo-labels without gradient, the
switches, ensemble inference and bit-identical resume."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from xmodseg.errors import ConfigError
from xmodseg.methods.co_da_alignment import ClassMarginals, ExpectationFilter, align, class_sums, pixel_mean, sigmoid_rampup
from xmodseg.methods.cps import CoDa, CoDaParams, Cps
from xmodseg.methods.supervised import Oracle, SupervisedSubset
from xmodseg.nn import networks
from xmodseg.slices import SliceSet
from xmodseg.training.device import choose_precision
from xmodseg.training.fit import fit_method
from xmodseg.training.trainable import TrainData

pytestmark = pytest.mark.usefixtures("one_torch_thread")

K = 3
TINY: dict[str, Any] = {"iterations": 4, "batch_size": 2, "network": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}}
FP32 = choose_precision(torch.device("cpu"), "off")


def _data(n: int = 6, side: int = 16, unlabelled: bool = True) -> TrainData:
    g = torch.Generator().manual_seed(0)

    def slices(cases: tuple[str, ...], labels: bool = True) -> SliceSet:
        images = torch.randn(n, 1, side, side, generator=g)
        return SliceSet(images, torch.randint(K, (n, side, side), generator=g) if labels else None, cases, "ct")

    return TrainData(source=None, target=slices(("t1",)), target_unlabelled=slices(("t2", "t3"), labels=False) if unlabelled else None)


def _method(cls: type[Cps] = CoDa, **over: Any) -> Cps:
    torch.manual_seed(0)
    return cls({**TINY, **over}, K, FP32)


def _steps(m: Cps, n: int = 1, data: TrainData | None = None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    data = data or _data()
    terms: dict[str, torch.Tensor] = {}
    for i in range(n):
        terms = m.train_step(data, g, i)
    return terms


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    wa, wb = a.state_dict(), b.state_dict()
    return all(torch.equal(wa[k], wb[k]) for k in wa)


# -- alignment, expectation, ramp-up ---------------------------------------------------------------
def test_alignment_reweights_by_the_marginal_ratio_and_renormalises():
    probs_u = torch.tensor([0.6, 0.3, 0.1]).view(1, 3, 1, 1)
    pi_l, pi_u = torch.tensor([0.5, 0.25, 0.25]), torch.tensor([0.25, 0.5, 0.25])
    out = align(probs_u, pi_l, pi_u).view(3)
    raw = torch.tensor([0.6 * 2.0, 0.3 * 0.5, 0.1 * 1.0])
    assert torch.allclose(out, raw / raw.sum(), atol=1e-5)
    assert torch.allclose(align(torch.softmax(torch.randn(2, 3, 4, 4), 1), pi_l, pi_u).sum(1), torch.ones(2, 4, 4))


def test_alignment_moves_the_unlabelled_marginal_towards_the_labelled_one():
    """A model that under-predicts class 2 on unlabelled images gets its share back."""
    g = torch.Generator().manual_seed(0)
    probs_u = torch.softmax(torch.randn(4, 3, 8, 8, generator=g) + torch.tensor([1.0, 0.5, -1.0]).view(1, 3, 1, 1), 1)
    pi_u = pixel_mean(probs_u)
    pi_l = torch.tensor([0.4, 0.3, 0.3])
    aligned = pixel_mean(align(probs_u, pi_l, pi_u))
    assert (aligned - pi_l).abs().sum() < (pi_u - pi_l).abs().sum()
    assert aligned[2] > pi_u[2]


def test_marginals_start_at_the_first_batch_then_follow_an_ema():
    em = ClassMarginals(3, momentum=0.9)
    first = torch.zeros(1, 3, 2, 2)
    first[:, 0] = 1.0
    assert torch.allclose(em.update(first), torch.tensor([1.0, 0.0, 0.0]))
    second = torch.zeros(1, 3, 2, 2)
    second[:, 1] = 1.0
    assert torch.allclose(em.update(second), torch.tensor([0.9, 0.1, 0.0]))


def test_expectation_is_a_class_wise_ema_and_masks_below_it():
    f = ExpectationFilter(3, momentum=0.5)
    assert torch.allclose(f.expectation, torch.full((3,), 1 / 3))
    confidence = torch.tensor([[0.9, 0.7], [0.4, 0.8]])
    pseudo = torch.tensor([[0, 0], [1, 1]])
    f.update(confidence, pseudo)
    # class 0: mean 0.8; class 1: mean 0.6; class 2 absent: unchanged
    assert torch.allclose(f.expectation, torch.tensor([0.5 / 3 + 0.4, 0.5 / 3 + 0.3, 1 / 3]))
    mask = f.mask(confidence, pseudo)
    e0, e1 = f.expectation[0].item(), f.expectation[1].item()
    assert mask.tolist() == [[float(0.9 >= e0), float(0.7 >= e0)], [float(0.4 >= e1), float(0.8 >= e1)]]
    assert mask.tolist() == [[1.0, 1.0], [0.0, 1.0]]


def test_class_sums_agree_between_the_cpu_and_the_one_hot_path(monkeypatch):
    classes, values = torch.tensor([0, 2, 2, 1, 2]), torch.tensor([0.5, 0.25, 0.5, 1.0, 0.125])
    counts, sums = class_sums(classes, values, 4)
    assert counts.tolist() == [1, 1, 3, 0] and sums.tolist() == [0.5, 1.0, 0.875, 0.0]
    onehot = torch.nn.functional.one_hot(classes, 4).float()
    assert torch.equal(onehot.sum(0), counts) and torch.equal((onehot * values.unsqueeze(1)).sum(0), sums)


def test_sigmoid_rampup():
    assert sigmoid_rampup(0, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(50, 100) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(100, 100) == 1.0 and sigmoid_rampup(500, 100) == 1.0 and sigmoid_rampup(3, 0) == 1.0


# -- the methods -------------------------------------------------------------------------------
def test_declarations_and_defaults():
    p = CoDaParams.from_block({"iterations": 10})
    assert (p.lambda_max, p.rampup, p.momentum, p.align, p.filter, p.ensemble) == (0.2, 1.0, 0.999, True, True, True)
    for cls in (Cps, CoDa, SupervisedSubset):
        assert cls.needs.target_labels and not cls.needs.source_images and not cls.needs.source_labels
    assert Cps.needs.target_images and not SupervisedSubset.needs.target_images
    assert "align" not in Cps.valid_params() and "align" in CoDa.valid_params()
    with pytest.raises(ConfigError, match="rampup"):
        _method(rampup=2.0)
    with pytest.raises(ConfigError, match="momentum"):
        _method(momentum=1.0)


def test_the_two_models_start_from_different_initialisations():
    m = _method(Cps)
    a, b = m.nets["a"].state_dict(), m.nets["b"].state_dict()
    convs = [k for k, v in a.items() if k.endswith("weight") and v.dim() == 4]
    assert convs and all(not torch.equal(a[k], b[k]) for k in convs)
    # Kaiming normal (fan_in, gain sqrt 2) vs Xavier normal (gain 1, fan_in + fan_out): different spreads
    w_a, w_b = a[convs[1]], b[convs[1]]
    fan_in = w_a[0].numel()
    assert w_a.std().item() == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.2)
    assert w_b.std().item() == pytest.approx(math.sqrt(2.0 / (fan_in + w_b.shape[0] * w_b[0, 0].numel())), rel=0.2)


def test_pseudo_labels_carry_no_gradient_to_their_teacher():
    """With the supervised terms off (no labelled pixels count), model A's update comes from the
    CPS term on A's outputs only: B's pseudo-labels must not send gradient into B through A's loss."""
    m = _method(Cps, lambda_max=1.0, rampup=0.0)
    data = _data()
    x_u = data.target_unlabelled.images[:2]  # type: ignore[union-attr]
    out_a, out_b = m.nets["a"](x_u), m.nets["b"](x_u)
    pseudo_b, _ = m.pseudo_labels("b", torch.softmax(out_b, 1), torch.softmax(out_b, 1))
    assert not pseudo_b.requires_grad
    F.cross_entropy(out_a, pseudo_b).backward()
    assert all(p.grad is None for p in m.nets["b"].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.nets["a"].parameters())


def test_cps_weight_zero_trains_each_model_as_the_supervised_baseline():
    """lambda_max 0: each model's update is its Dice + CE on the labelled batch, and pseudo-labels change nothing."""
    m0, m1 = _method(Cps, lambda_max=0.0), _method(Cps, lambda_max=1.0, rampup=0.0)
    t0, t1 = _steps(m0, 2), _steps(m1, 2)
    assert float(t0["cps_weight"]) == 0.0 and float(t1["cps_weight"]) == 1.0
    assert not _same(m0.nets["a"], m1.nets["a"]) and not _same(m0.nets["b"], m1.nets["b"])


def test_switches_change_the_training():
    runs = {name: _method(CoDa, lambda_max=1.0, rampup=0.0, momentum=0.0, **over) for name, over in {
        "full": {}, "no_align": {"align": False}, "no_filter": {"filter": False}, "cps_like": {"align": False, "filter": False}}.items()}
    terms = {name: _steps(m, 3) for name, m in runs.items()}
    assert "kept" in terms["full"] and "kept" not in terms["no_filter"] and 0 < float(terms["full"]["kept"]) <= 1
    for name in ("no_align", "no_filter"):
        assert not _same(runs["full"].nets["a"], runs[name].nets["a"]), name
    cps = _method(Cps, lambda_max=1.0, rampup=0.0)
    _steps(cps, 3)
    assert _same(cps.nets["a"], runs["cps_like"].nets["a"]) and _same(cps.nets["b"], runs["cps_like"].nets["b"])


def test_filter_masks_cps_pixels_below_the_expectation():
    m = _method(CoDa, align=False, momentum=0.0)
    probs = torch.softmax(torch.randn(2, K, 8, 8, generator=torch.Generator().manual_seed(3)) * 3, 1)
    pseudo, mask = m.pseudo_labels("a", probs, probs)
    assert mask is not None
    confidence = probs.max(1).values
    # momentum 0: the expectation is this batch's class-wise mean confidence
    for c in range(K):
        sel = pseudo == c
        if sel.any():
            mean = confidence[sel].mean()
            assert torch.equal(mask[sel], (confidence[sel] >= mean).float())


def test_without_unlabelled_cases_the_labelled_images_are_the_unlabelled_batch():
    m = _method(CoDa)
    terms = _steps(m, 1, _data(unlabelled=False))
    assert torch.isfinite(terms["cps_a"])


def test_ensemble_inference_is_rebuilt_from_its_architecture():
    both, single = _method(CoDa), _method(CoDa, ensemble=False)
    _steps(both, 2)
    _steps(single, 2)
    assert _same(both.nets["a"], single.nets["a"]) and _same(both.nets["b"], single.nets["b"])
    x = torch.randn(2, 1, 16, 16)
    for m, members in ((both, 2), (single, 1)):
        net = networks.build(m.inference_architecture())
        net.load_state_dict(m.inference_network().state_dict())
        net.eval(), m.inference_network().eval()
        assert len(net.members) == members
        with torch.no_grad():
            assert torch.allclose(net(x), m.inference_network()(x))
    with torch.no_grad():
        mean = (torch.softmax(both.nets["a"](x), 1) + torch.softmax(both.nets["b"](x), 1)) / 2
        assert torch.allclose(torch.softmax(both.inference_network()(x), 1), mean, atol=1e-5)
        assert torch.allclose(torch.softmax(single.inference_network()(x), 1), torch.softmax(single.nets["a"](x), 1), atol=1e-5)


def test_resume_is_bit_identical(tmp_path):
    def run(tag: str, stop_at: int | None = None):
        return fit_method(
            CoDa, name="co_da", params={**TINY, "iterations": 4, "momentum": 0.5, "checkpoint_every": 2, "log_every": 2}, seed=0,
            data=_data(), data_ids={"source": "s", "target": "t"}, num_classes=K, checkpoint_dir=tmp_path / tag / "ckpt",
            log_path=tmp_path / tag / "log.jsonl", stop_at=stop_at,
        )

    full = run("full")
    run("resumed", stop_at=2)
    resumed = run("resumed")
    assert resumed.result.resumed_from == 2
    for name, net in full.method.networks().items():
        assert _same(net, resumed.method.networks()[name]), name
    method = full.method
    assert isinstance(method, CoDa) and isinstance(resumed.method, CoDa)
    assert torch.equal(method.filters["a"].expectation, resumed.method.filters["a"].expectation)
    assert torch.equal(method.marginals["b"]["unlabelled"].value, resumed.method.marginals["b"]["unlabelled"].value)


def test_supervised_subset_is_the_oracle_on_the_labelled_cases():
    data = _data()
    sub, orc = _method(SupervisedSubset), _method(Oracle)  # type: ignore[arg-type]
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for i in range(2):
        sub.train_step(data, g1, i)
        orc.train_step(data, g2, i)
    assert _same(sub.net, orc.net)  # type: ignore[attr-defined]
