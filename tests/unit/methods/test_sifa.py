"""SIFA: loss terms, network shapes, gradient isolation, ablation switches, resume, warm start."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xmodseg.errors import ConfigError
from xmodseg.methods import get_method
from xmodseg.methods.sifa import Sifa, SifaParams
from xmodseg.methods.sifa_losses import dice_loss, l2_weight_decay, segmentation_loss, weighted_cross_entropy
from xmodseg.nn.layers import ResnetGenerator
from xmodseg.nn.networks import build
from xmodseg.nn.pool import ImagePool
from xmodseg.nn.sifa import EncoderBlock, SifaDecoder, SifaEncoder, SifaSegmenter
from xmodseg.slices import SliceSet
from xmodseg.training.device import choose_device, choose_precision
from xmodseg.training.fit import fit_method
from xmodseg.training.intensity import UnitRange
from xmodseg.training.trainable import TrainData

K = 3  # classes
TINY = {"iterations": 4, "width": 0.125, "batch_size": 2, "generator": {"ngf": 4, "n_blocks": 1, "skip": True}, "ndf": 4, "pool_size": 2}
CPU = choose_precision(choose_device("cpu"), "auto")  # fp32 on the CPU


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(n: int = 4, side: int = 32, seed: int = 0) -> TrainData:
    """Raw (z-scored looking) slices; source labels present, target labels absent."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randn(n, 1, side, side, generator=g)
    tgt = torch.randn(n, 1, side, side, generator=g) * 0.5 + 1.0
    labels = torch.randint(K, (n, side, side), generator=g)
    return TrainData(source=SliceSet(src, labels, ("s1", "s2"), "mr"), target=SliceSet(tgt, None, ("t1", "t2"), "ct"))


def _method(inputs=None, **over) -> Sifa:
    torch.manual_seed(0)
    return Sifa({**TINY, **over}, K, CPU, inputs=inputs)


def _snapshot(m: Sifa) -> dict[str, list[torch.Tensor]]:
    return {k: [p.detach().clone() for p in net.parameters()] for k, net in m.networks().items()}


def _changed(before: dict[str, list[torch.Tensor]], m: Sifa) -> set[str]:
    return {k for k, net in m.networks().items() if any(not torch.equal(a, p) for a, p in zip(before[k], net.parameters()))}


# --------------------------------------------------------------------------------------- losses


def test_weighted_cross_entropy_matches_hand_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, K, 5, 4, generator=g) * 3
    labels = torch.randint(K, (2, 5, 4), generator=g)
    labels[0, 0, 0], labels[0, 0, 1], labels[0, 0, 2] = 0, 1, 2  # every class present
    n = labels.numel()
    p = torch.softmax(logits, dim=1)
    want = torch.zeros(())
    for c in range(K):
        w_c = 1.0 - float((labels == c).sum()) / n
        y_c = (labels == c).float()
        want = want - (w_c * y_c * torch.log(p[:, c].clamp(0.005, 1.0))).sum()
    want = want / n
    assert torch.allclose(weighted_cross_entropy(logits, labels), want, rtol=1e-5, atol=1e-7)
    # the probability floor: a hopeless pixel costs at most w_c * log(1/0.005)
    hopeless = torch.tensor([[[[-100.0]], [[100.0]]]])  # class 1 certain, label 0
    lab = torch.zeros(1, 1, 1, dtype=torch.long)
    assert float(weighted_cross_entropy(hopeless, lab)) == pytest.approx(0.0)  # w_0 = 1 - 1 = 0 (only class)
    two = torch.cat([hopeless, -hopeless], dim=3)  # second pixel: class 0 certain, label 1
    lab2 = torch.tensor([[[0, 1]]])
    # w_0 = w_1 = 0.5; both pixels wrong with p = e^-200 -> clipped to 0.005
    assert float(weighted_cross_entropy(two, lab2)) == pytest.approx(0.5 * -math.log(0.005), rel=1e-6)


def _dice_by_hand(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    p = torch.softmax(logits, dim=1)
    coeffs = []
    for c in range(logits.shape[1]):
        y = (labels == c).float()
        pc = p[:, c]
        coeffs.append(2 * (pc * y).sum() / ((pc**2).sum() + y.sum() + 1e-7))
    return 1 - torch.stack(coeffs).mean()


def test_dice_loss_matches_hand_formula_over_the_whole_batch():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, K, 6, 6, generator=g)
    labels = torch.randint(K, (3, 6, 6), generator=g)
    assert torch.allclose(dice_loss(logits, labels), _dice_by_hand(logits, labels), rtol=1e-5, atol=1e-6)
    # batch-wise, not a mean of per-slice Dice: a class absent from one slice is not punished there
    labels[0] = 0
    assert torch.allclose(dice_loss(logits, labels), _dice_by_hand(logits, labels), rtol=1e-5, atol=1e-6)
    # a class absent from the whole batch scores 0 (the background is included in the mean)
    only01 = labels.clamp(max=1)
    assert torch.allclose(dice_loss(logits, only01), _dice_by_hand(logits, only01), rtol=1e-5, atol=1e-6)
    assert torch.allclose(
        segmentation_loss(logits, labels), weighted_cross_entropy(logits, labels) + _dice_by_hand(logits, labels), rtol=1e-5, atol=1e-6
    )


def test_perfect_prediction_has_zero_dice_loss():
    labels = torch.tensor([[[0, 1, 2, 0], [1, 2, 0, 1]], [[2, 2, 0, 1], [0, 0, 1, 2]]])
    logits = 50.0 * F.one_hot(labels, K).permute(0, 3, 1, 2).float()
    assert float(dice_loss(logits, labels)) == pytest.approx(0.0, abs=1e-5)
    assert float(dice_loss(-logits, labels)) > 0.9  # and a wrong one is near 1


def test_l2_weight_decay_is_half_sum_of_squared_conv_kernels():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Conv2d(3, 2, 1, bias=True), nn.Flatten(), nn.LazyLinear(2))
    net(torch.zeros(1, 1, 5, 5))
    with torch.no_grad():  # make biases and BN weights non-trivial so their exclusion matters
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) and m.bias is not None:
                m.bias.fill_(3.0)
        net[1].weight.fill_(2.0)
    want = 0.5 * ((net[0].weight ** 2).sum() + (net[2].weight ** 2).sum())
    assert torch.allclose(l2_weight_decay([net]), want)
    seg = SifaSegmenter(K, 0.125, 2)
    convs = [m.weight for m in seg.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) > 20
    assert torch.allclose(l2_weight_decay([seg]), 0.5 * sum((w**2).sum() for w in convs))


# --------------------------------------------------------------------------------------- networks


@pytest.mark.parametrize(("side", "downsamplings"), [(32, 3), (64, 2)])
def test_module_shapes(side, downsamplings):
    torch.manual_seed(0)
    width = 0.125
    ch = round(512 * width)
    x = torch.rand(2, 1, side, side) * 2 - 1
    enc = SifaEncoder(width, downsamplings)
    main, aux = enc(x)
    stride = 2**downsamplings
    assert enc.stride == stride and enc.channels == ch
    assert main.shape == aux.shape == (2, ch, side // stride, side // stride)

    for deep in (True, False):
        seg = SifaSegmenter(K, width, downsamplings, deep_supervision=deep)
        feats, logits, aux_logits = seg.logits(x)
        assert feats.shape == (2, ch, side // stride, side // stride)
        assert logits.shape == (2, K, side, side)
        if deep:
            assert aux_logits is not None and aux_logits.shape == (2, K, side, side)
        else:
            assert aux_logits is None and seg.aux_head is None

    dec = SifaDecoder(width, downsamplings)
    with torch.no_grad():
        y = dec(main, x)
        y_noskip = SifaDecoder(width, downsamplings, skip=False)(main, x)
    assert y.shape == x.shape and float(y.abs().max()) <= 1.0
    assert y_noskip.shape == x.shape and float(y_noskip.abs().max()) <= 1.0

    # the inference network resizes to its image_size and answers at the input size
    small = SifaSegmenter(K, width, downsamplings, image_size=[side // 2, side // 2]).eval()
    with torch.no_grad():
        out = small(torch.randn(1, 1, side, side))
    assert out.shape == (1, K, side, side)

    m = _method(downsamplings=downsamplings)
    assert m.d_s(x).shape[:2] == (2, 2)  # main + auxiliary head
    assert m.d_t(x).shape[:2] == (2, 1)
    assert m.d_p1(torch.randn(2, K, side, side)).shape[:2] == (2, 1)
    assert m.g_t(x).shape == x.shape


def test_encoder_rejects_bad_downsamplings():
    with pytest.raises(ValueError, match="downsamplings"):
        SifaEncoder(0.125, 4)


def test_encoder_block_zero_pads_the_shortcut():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    wide = EncoderBlock(3, 5)
    out = wide(x)
    assert out.shape == (2, 5, 8, 8) and float(out.detach().min()) >= 0  # ReLU after the addition
    with torch.no_grad():
        body = wide.body(x)
        want = F.relu(body + torch.cat([x, torch.zeros(2, 2, 8, 8)], dim=1))
    assert torch.allclose(out, want)
    same = EncoderBlock(4, 4, dilation=2)
    x4 = torch.randn(1, 4, 8, 8)
    assert torch.allclose(same(x4), F.relu(same.body(x4) + x4))
    with pytest.raises(ValueError, match="never reduce"):
        EncoderBlock(5, 3)


def test_inference_network_rebuilds_from_its_architecture():
    m = _method(image_size=[32, 32])
    data = m.prepare(_data(side=64))
    m.train_step(data, torch.Generator().manual_seed(0), 0)
    arch = m.inference_architecture()
    assert arch["kind"] == "sifa_segmenter"
    net = build(arch)
    net.load_state_dict(m.inference_network().state_dict())
    net.eval(), m.seg.eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        a, b = m.seg(x), net(x)
    assert a.shape == (2, K, 64, 64) and torch.equal(a, b)
    assert torch.equal(net.intensity_range, m.seg.intensity_range)


# --------------------------------------------------------------------------------------- training


def test_registered_and_defaults():
    assert get_method("sifa") is Sifa
    p = SifaParams.defaults()
    assert (p["lambda_cycle"], p["lambda_seg_aux"], p["lambda_adv_p1"], p["lambda_adv_p2"], p["lambda_adv_aux"]) == (10.0, 0.1, 0.1, 0.01, 0.1)
    m = _method()
    assert set(m.optimizers()) == {"g_t", "d_t", "seg", "dec", "d_s", "d_p1", "d_p2"}
    for name, opt in m.optimizers().items():
        assert {id(q) for q in opt.param_groups[0]["params"]} == {id(q) for q in m.networks()[name].parameters()}, name
        assert opt.param_groups[0]["betas"] == ((0.9, 0.999) if name == "seg" else (0.5, 0.999))


def test_unknown_parameter_is_refused():
    with pytest.raises(ConfigError, match="lamda_cycle"):
        Sifa({**TINY, "lamda_cycle": 3.0}, K, CPU)


def test_each_step_moves_only_its_own_network(monkeypatch):
    m = _method()
    data = m.prepare(_data())
    nets = m.networks()
    log: list[tuple[str, set[str], set[str]]] = []
    original = m._step

    def spy(name: str, loss: torch.Tensor) -> None:
        before = _snapshot(m)
        grads = {k: [None if p.grad is None else p.grad.clone() for p in net.parameters()] for k, net in nets.items()}
        original(name, loss)
        grads_moved = {
            k
            for k, net in nets.items()
            if k != name and any((a is None) != (p.grad is None) or (a is not None and not torch.equal(a, p.grad)) for a, p in zip(grads[k], net.parameters()))
        }
        log.append((name, _changed(before, m), grads_moved))

    monkeypatch.setattr(m, "_step", spy)
    m.train_step(data, torch.Generator().manual_seed(0), 0)
    assert [name for name, _, _ in log] == ["g_t", "d_t", "seg", "dec", "d_s", "d_p1", "d_p2"]
    for name, changed, grads_moved in log:
        assert changed == {name}, (name, changed)
        assert not grads_moved, (name, grads_moved)  # frozen players do not even accumulate gradients
    assert all(p.requires_grad for net in nets.values() for p in net.parameters())  # unfrozen afterwards


def test_full_iteration_updates_every_network_and_logs_every_term():
    m = _method()
    before = _snapshot(m)
    seg_named = {k: v.detach().clone() for k, v in m.seg.named_parameters()}
    losses = m.train_step(m.prepare(_data()), torch.Generator().manual_seed(0), 0)
    assert _changed(before, m) == {"g_t", "seg", "dec", "d_t", "d_s", "d_p1", "d_p2"}
    for k in ("aux_head.weight", "aux_head.bias", "main_head.weight", "main_head.bias", "encoder.low.0.weight", "encoder.high.3.0.weight"):
        assert not torch.equal(seg_named[k], dict(m.seg.named_parameters())[k]), k
    required = {"g_total", "d_t", "seg_main", "seg_aux", "u_total", "d_s_main", "d_s_aux", "d_p1", "d_p2", "e_adv_p1", "e_adv_p2", "e_adv_aux", "weight_decay"}
    assert required <= set(losses)
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad and math.isfinite(v) for v in losses.values())  # read by the loop
    assert losses["weight_decay"] > 0


def test_switches_select_the_ablation_rows():
    data = _data()
    gen = torch.Generator

    m = _method(align_predictions=False)
    assert m.d_p1 is None and m.d_p2 is None and not {"d_p1", "d_p2"} & set(m.optimizers())  # not even built
    before = _snapshot(m)
    losses = m.train_step(m.prepare(data), gen().manual_seed(0), 0)
    assert not {"e_adv_p1", "e_adv_p2", "d_p1", "d_p2"} & set(losses)
    assert {"e_adv_aux", "d_s_aux"} <= set(losses)
    assert _changed(before, m) == {"g_t", "seg", "dec", "d_t", "d_s"}

    m = _method(align_image_features=False)
    before = _snapshot(m)
    losses = m.train_step(m.prepare(data), gen().manual_seed(0), 0)
    assert not {"d_s_aux", "e_adv_aux", "e_cycle_s", "e_cycle_t"} & set(losses)
    assert {"e_adv_p1", "e_adv_p2", "d_p1", "d_p2", "d_s_main"} <= set(losses)
    assert _changed(before, m) == {"g_t", "seg", "dec", "d_t", "d_s", "d_p1", "d_p2"}

    m = _method(deep_supervision=False)
    assert m.seg.aux_head is None and m.d_p2 is None and "d_p2" not in m.networks() and "d_p2" not in m.optimizers()
    before = _snapshot(m)
    losses = m.train_step(m.prepare(data), gen().manual_seed(0), 0)
    assert not {"seg_aux", "d_p2", "e_adv_p2"} & set(losses)
    assert {"seg_main", "e_adv_p1", "d_p1"} <= set(losses)
    assert _changed(before, m) == {"g_t", "seg", "dec", "d_t", "d_s", "d_p1"}
    assert m.inference_architecture()["kwargs"]["deep_supervision"] is False

    m = _method(align_predictions=False, align_image_features=False)  # image adaptation only
    losses = m.train_step(m.prepare(data), gen().manual_seed(0), 0)
    assert not {"e_adv_p1", "e_adv_aux", "d_s_aux", "d_p1"} & set(losses)
    assert all(math.isfinite(v) for v in losses.values())


def test_resume_equals_uninterrupted(tmp_path):
    params = {**TINY, "checkpoint_every": 1, "log_every": 1, "device": "cpu"}

    def run(tag, stop_at=None):
        return fit_method(
            Sifa,
            name="sifa",
            params=params,
            seed=5,
            data=_data(),
            data_ids={"source": "s", "target": "t"},
            num_classes=K,
            checkpoint_dir=tmp_path / tag,
            log_path=tmp_path / f"{tag}.jsonl",
            stop_at=stop_at,
        )

    full = run("full")
    partial = run("resumed", stop_at=2)
    assert partial.result.iterations_done == 2
    resumed = run("resumed")
    assert resumed.result.resumed_from == 2 and resumed.result.iterations_done == 4
    for name, net in full.method.networks().items():
        a, b = net.state_dict(), resumed.method.networks()[name].state_dict()
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}.{k}"
    a, b = full.method.inference_network().state_dict(), resumed.method.inference_network().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    for pool in ("pool_st", "pool_ts"):
        pa, pb = getattr(full.method, pool), getattr(resumed.method, pool)
        assert len(pa.images) == len(pb.images) == 2
        assert all(torch.equal(x, y) for x, y in zip(pa.images, pb.images))



def test_nan_loss_stops_naming_the_term_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import xmodseg.methods.sifa as sifa_module
    from xmodseg.errors import TrainingDivergedError
    from xmodseg.training.checkpoint import LAST

    calls = {"n": 0}
    real = sifa_module.segmentation_loss

    def poisoned(logits, labels):
        calls["n"] += 1  # two calls (C_1, C_2) per iteration: iteration 3 diverges
        out = real(logits, labels)
        return out * math.nan if calls["n"] > 4 else out

    monkeypatch.setattr(sifa_module, "segmentation_loss", poisoned)
    params = {**TINY, "checkpoint_every": 1, "log_every": 1, "device": "cpu"}
    with pytest.raises(TrainingDivergedError, match=r"iteration 3: .*seg_main"):
        fit_method(
            Sifa,
            name="sifa",
            params=params,
            seed=0,
            data=_data(),
            data_ids={"source": "s", "target": "t"},
            num_classes=K,
            checkpoint_dir=tmp_path / "ckpt",
            log_path=tmp_path / "log.jsonl",
        )
    state = torch.load(tmp_path / "ckpt" / LAST, map_location="cpu", weights_only=False)
    assert state["iteration"] == 2  # the last good one

# --------------------------------------------------------------------------------------- warm start, data


def _translator(path, kind="resnet_generator", ranges=True):
    torch.manual_seed(42)
    g = ResnetGenerator(ngf=4, n_blocks=1, skip=False)
    payload = {"architecture": {"kind": kind, "kwargs": {"ngf": 4, "n_blocks": 1, "skip": False}}, "state_dict": g.state_dict()}
    if ranges:
        payload["intensity_ranges"] = {"source": {"low": -1.0, "high": 2.0}, "target": {"low": -3.0, "high": 3.0}}
    torch.save(payload, path)
    return g


def test_warm_start_loads_the_translator_and_its_ranges(tmp_path):
    path = tmp_path / "translator" / "model.pt"
    path.parent.mkdir()
    saved = _translator(path)
    m = _method(inputs={"warm_start": path})
    assert m.g_t.skip is False  # G_t's architecture comes from the file, not `generator`
    sd = m.g_t.state_dict()
    assert sd.keys() == saved.state_dict().keys()
    assert all(torch.equal(sd[k], v) for k, v in saved.state_dict().items())
    raw = _data()
    data = m.prepare(raw)
    assert m.seg.intensity_range.tolist() == [-3.0, 3.0]
    assert torch.equal(data.source.images, UnitRange(-1.0, 2.0).to_unit(raw.source.images))
    assert torch.equal(data.target.images, UnitRange(-3.0, 3.0).to_unit(raw.target.images))
    assert m.inference_architecture()["kwargs"]["intensity_range"] == [-3.0, 3.0]


@pytest.mark.parametrize(("kind", "ranges"), [("monai_unet", True), ("resnet_generator", False)])
def test_warm_start_refuses_other_models(tmp_path, kind, ranges):
    path = tmp_path / "other.pt"
    _translator(path, kind=kind, ranges=ranges)
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        _method(inputs={"warm_start": path})


def test_prepare_without_warm_start_fits_training_ranges():
    m = _method()
    raw = _data()
    data = m.prepare(raw)
    t = UnitRange.fit(raw.target.images)
    assert m.seg.intensity_range.tolist() == pytest.approx([t.low, t.high])
    for s in (data.source, data.target):
        assert float(s.images.min()) >= -1 and float(s.images.max()) <= 1
    assert torch.equal(data.source.labels, raw.source.labels) and data.target.labels is None
    assert data.source.cases == raw.source.cases and data.target.modality == "ct"


def test_prepare_checks_and_resizes_the_image_size():
    with pytest.raises(ConfigError, match="divisible by 8"):
        _method().prepare(_data(side=36))
    assert _method(downsamplings=2).prepare(_data(side=36)).source.images.shape[-2:] == (36, 36)  # 36 % 4 == 0
    with pytest.raises(ConfigError, match="divisible"):
        _method(image_size=[32, 36]).prepare(_data(side=64))
    raw = _data(side=64)
    data = _method(image_size=[32, 32]).prepare(raw)
    assert data.source.images.shape == (4, 1, 32, 32) and data.target.images.shape == (4, 1, 32, 32)
    labels = data.source.labels
    assert labels.shape == (4, 32, 32) and labels.dtype == torch.int64
    assert set(labels.unique().tolist()) <= set(range(K))
    # nearest-neighbour labels: every output label is one of the labels of its 2x2 input block
    blocks = raw.source.labels.unfold(1, 2, 2).unfold(2, 2, 2).reshape(4, 32, 32, 4)
    assert bool((blocks == labels[..., None]).any(-1).all())


# --------------------------------------------------------------------------------------- pool


def test_image_pool_keeps_whole_batches():
    pool = ImagePool(size=2, seed=3, whole_batches=True)

    def batch(k: int) -> torch.Tensor:
        return (100.0 * k + torch.arange(3.0)).view(3, 1, 1, 1)  # three distinct images per batch

    for k in range(2):  # filling: returned unchanged, stored as whole batches
        assert torch.equal(pool.query(batch(k)), batch(k))
    assert len(pool.images) == 2 and all(torch.equal(s, batch(k)) for k, s in enumerate(pool.images))
    saw_new = saw_old = False
    for k in range(2, 40):
        stored = [s.clone() for s in pool.images]
        out = pool.query(batch(k))
        assert out.shape == (3, 1, 1, 1)
        if torch.equal(out, batch(k)):
            saw_new = True
            assert all(torch.equal(a, b) for a, b in zip(stored, pool.images))  # history untouched
        else:
            j = [i for i, s in enumerate(stored) if torch.equal(out, s)]
            assert len(j) == 1, f"batch {k}: returned a mix {out.flatten().tolist()}"
            assert torch.equal(pool.images[j[0]], batch(k))  # the new batch took its place
            saw_old = True
        assert len(pool.images) == 2
    assert saw_new and saw_old


# ------------------------------------------------------------------ intensity modes, decoder, record


def _release_like(n: int = 4, side: int = 32) -> TrainData:
    """Slices of caches already in SIFA's fixed [-1, 1] space (the release), including values
    outside [-1, 1] (SIFA's constants do not clip)."""
    d = _data(n, side)
    src = SliceSet(d.source.images * 0.8, d.source.labels, d.source.cases, "mr", "sifa_unit")
    tgt = SliceSet(d.target.images * 0.8, None, d.target.cases, "ct", "sifa_unit")
    assert float(src.images.abs().max()) > 1 and float(tgt.images.abs().max()) > 1
    return TrainData(source=src, target=tgt)


def test_release_caches_are_used_as_they_are_no_refit_no_clamp():
    raw = _release_like()
    m = _method()
    data = m.prepare(raw)
    assert torch.equal(data.source.images, raw.source.images) and torch.equal(data.target.images, raw.target.images)
    arch = m.inference_architecture()
    assert arch["kwargs"]["intensity_mode"] == "sifa_fixed"
    rebuilt = build(arch)
    x = raw.target.images[:2]
    assert torch.equal(rebuilt.to_unit(x), x)  # evaluation feeds the cache unchanged too
    rec = m.record()
    assert rec["intensity"]["source"]["mode"] == rec["intensity"]["target"]["mode"] == "sifa_fixed"


def test_explicit_modes_are_checked_and_percentile_reports_the_clamped_fraction():
    with pytest.raises(ConfigError, match="sifa_fixed needs a cache in SIFA's"):
        _method(intensity="sifa_fixed").prepare(_data())
    with pytest.raises(ConfigError, match="intensity 'fixed'"):
        _method(intensity="fixed")
    raw = _release_like()
    m = _method(intensity="percentile")  # allowed on release caches when asked for explicitly
    data = m.prepare(raw)
    assert float(data.source.images.abs().max()) <= 1
    m = _method()
    raw = _data()
    m.prepare(raw)
    t = m.record()["intensity"]["target"]
    values = raw.target.images.flatten()
    expected = float(((values < t["low"]) | (values > t["high"])).float().mean())
    assert t["mode"] == "percentile" and t["clamped_fraction"] == pytest.approx(expected)
    assert 0 < t["clamped_fraction"] < 0.02


def test_decoder_dropout_is_always_on_as_in_the_official_code():
    torch.manual_seed(0)
    feats, image = torch.randn(2, 64, 4, 4), torch.zeros(2, 1, 32, 32)
    dec = SifaDecoder(0.125, 3, dropout=0.25).eval()  # eval mode: TF's tf.nn.dropout ignores it too
    assert not torch.equal(dec(feats, image), dec(feats, image))
    plain = SifaDecoder(0.125, 3, dropout=0.0).eval()
    assert torch.equal(plain(feats, image), plain(feats, image))
    convs = [mod for mod in dec.modules() if isinstance(mod, nn.Conv2d)]
    assert all(c.bias is None for c in convs)  # the official convs have no bias
    norms = [mod for mod in dec.modules() if isinstance(mod, nn.InstanceNorm2d)]
    assert norms and all(n.affine for n in norms)
    with pytest.raises(ValueError, match="dropout"):
        SifaDecoder(0.125, 3, dropout=1.0)
    m = _method(decoder_dropout=0.0)
    assert m.dec.dropout == 0.0 and _method().dec.dropout == SifaParams.defaults()["decoder_dropout"] == 0.25


def test_sidecar_records_intensity_dropout_and_precision(tmp_path):
    from xmodseg.training.fit import write_model

    trained = fit_method(
        Sifa,
        name="sifa",
        params={**TINY, "iterations": 2, "amp": "off", "decoder_dropout": 0.25},
        seed=0,
        data=_release_like(),
        data_ids={"source": "s", "target": "t"},
        num_classes=K,
        checkpoint_dir=tmp_path / "ckpt",
        log_path=tmp_path / "log.jsonl",
    )
    side = write_model(tmp_path / "model.pt", trained, {"method": "sifa"}, {"method": "sifa"})
    rec = side["method_record"]
    assert rec["precision"] == "fp32" and rec["decoder_dropout"] == 0.25
    assert rec["intensity"]["target"]["mode"] == "sifa_fixed"
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    assert payload["architecture"]["kwargs"]["intensity_mode"] == "sifa_fixed"
