"""CycleGAN translator, image pool, losses, translated cache and quality numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xmodseg.nn.gan_losses import l1, lsgan_discriminator, lsgan_generator
from xmodseg.nn.layers import PatchDiscriminator, ResnetGenerator
from xmodseg.nn.networks import build
from xmodseg.nn.pool import ImagePool
from xmodseg.preprocess import PreprocessConfig, preprocess_modality
from xmodseg.registry import load_dataset
from xmodseg.slices import SliceSet
from xmodseg.training.device import choose_device, choose_precision
from xmodseg.training.intensity import UnitRange
from xmodseg.training.loop import LoopConfig, fit
from xmodseg.training.trainable import TrainData
from xmodseg.translation.apply import distribution_distance
from xmodseg.translation.cyclegan import CycleGAN
from xmodseg.translation.run import train_translator

TINY = {"ngf": 4, "ndf": 4, "n_blocks": 1, "d_layers": 2, "batch_size": 2, "iterations": 4, "pool_size": 3, "checkpoint_every": 1}
CPU = choose_precision(choose_device("cpu"), "off")


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _data(n=6, size=16, seed=0) -> TrainData:
    g = torch.Generator().manual_seed(seed)
    return TrainData(SliceSet(torch.rand(n, 1, size, size, generator=g) * 2 - 1, None, ("a",), "mr"), SliceSet(torch.rand(n, 1, size, size, generator=g) * 2 - 1, None, ("b",), "ct"))


def test_lsgan_and_l1_known_values():
    real, fake = torch.tensor([1.0, 0.0]), torch.tensor([0.5, -1.0])
    assert float(lsgan_discriminator(real, fake)) == pytest.approx(0.5 * ((0 + 1) / 2 + (0.25 + 1) / 2))
    assert float(lsgan_generator(fake)) == pytest.approx((0.25 + 4) / 2)
    assert float(l1(torch.tensor([1.0, -1.0]), torch.tensor([0.0, 0.0]))) == pytest.approx(1.0)
    # a perfect discriminator has zero loss; a perfectly fooled one gives the generator zero loss
    assert float(lsgan_discriminator(torch.ones(3), torch.zeros(3))) == 0.0
    assert float(lsgan_generator(torch.ones(3))) == 0.0


@pytest.mark.parametrize("size", [16, 32])
def test_network_shapes(size):
    x = torch.zeros(2, 1, size, size)
    assert ResnetGenerator(ngf=4, n_blocks=1)(x).shape == x.shape
    assert ResnetGenerator(ngf=4, n_blocks=1, skip=True)(x).abs().max() <= 1
    assert PatchDiscriminator(ndf=4, n_layers=2)(x).shape[:2] == (2, 1)


@torch.no_grad()
def test_skip_generator_passes_the_input_through():
    """With `skip` the untrained output already follows the input (anatomy kept from step 0)."""
    torch.manual_seed(0)
    x = torch.rand(1, 1, 16, 16) * 1.6 - 0.8

    def corr(skip: bool) -> float:
        out = ResnetGenerator(ngf=4, n_blocks=1, skip=skip)(x)
        return float(torch.corrcoef(torch.stack([out.flatten(), x.flatten()]))[0, 1])

    assert corr(True) > 0.9
    assert corr(True) > abs(corr(False)) + 0.3


def test_image_pool_fills_then_mixes_and_resumes():
    pool = ImagePool(size=3, seed=1)
    first = torch.arange(3.0).view(3, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: returns its input
    state = pool.state_dict()
    new = torch.full((8, 1, 1, 1), 9.0)
    out = pool.query(new)
    assert set(out.flatten().tolist()) <= {0.0, 1.0, 2.0, 9.0}
    assert 0 < (out == 9).sum() < 8  # some new, some from history (p = 0.5 each)
    again = ImagePool(size=3, seed=123)
    again.load_state_dict(state)
    assert torch.equal(again.query(new), out)  # restored history and RNG give the same draw
    assert torch.equal(ImagePool(size=0).query(new), new)


def test_generator_losses_reach_generators_only():
    m = CycleGAN(TINY, 0, CPU)
    d = _data()
    from xmodseg.training.trainable import set_requires_grad

    set_requires_grad([m.d_t, m.d_s], False)
    terms, _, _ = m.generator_losses(d.source.images[:2], d.target.images[:2])
    terms["g_total"].backward()
    assert all(p.grad is None for p in [*m.d_t.parameters(), *m.d_s.parameters()])
    assert all(p.grad is not None for p in [*m.g_st.parameters(), *m.g_ts.parameters()])
    expected = terms["g_adv_t"] + terms["g_adv_s"] + 10 * (terms["cycle_s"] + terms["cycle_t"]) + 0.5 * 10 * (terms["identity_t"] + terms["identity_s"])
    assert float(terms["g_total"].detach()) == pytest.approx(float(expected.detach()), rel=1e-6)


def test_one_step_updates_every_group_and_isolates_players():
    m = CycleGAN(TINY, 0, CPU)
    before = {k: [p.detach().clone() for p in n.parameters()] for k, n in m.networks().items()}
    gen = torch.Generator().manual_seed(0)
    d = _data()
    # generator update alone: discriminators must not move
    x_s, x_t = d.source.images[:2], d.target.images[:2]
    from xmodseg.training.trainable import set_requires_grad

    set_requires_grad([m.d_t, m.d_s], False)
    terms, fake_t, fake_s = m.generator_losses(x_s, x_t)
    m.backward_step(terms["g_total"], m.opt_g)
    set_requires_grad([m.d_t, m.d_s], True)
    for k in ("d_t", "d_s"):
        assert all(torch.equal(a, p) for a, p in zip(before[k], m.networks()[k].parameters()))
    # discriminator update alone: generators must not move
    g_now = {k: [p.detach().clone() for p in m.networks()[k].parameters()] for k in ("g_st", "g_ts")}
    m.backward_step(m.discriminator_losses(x_s, x_t, fake_t, fake_s)["d_total"], m.opt_d)
    for k in ("g_st", "g_ts"):
        assert all(torch.equal(a, p) for a, p in zip(g_now[k], m.networks()[k].parameters()))
    # a full iteration moves every group
    losses = m.train_step(d, gen, 0)
    for k, net in m.networks().items():
        assert any(not torch.equal(a, p) for a, p in zip(before[k], net.parameters())), k
    assert {"g_adv_t", "cycle_s", "identity_t", "d_t", "g_total", "d_total"} <= set(losses)


def test_translator_resume_equals_uninterrupted(tmp_path):
    def run(tag, stop_at=None):
        torch.manual_seed(0)
        m = CycleGAN(TINY, 0, CPU)
        fit(m, _data(), LoopConfig(iterations=4, seed=0, checkpoint_every=1), checkpoint_dir=tmp_path / tag, log_path=tmp_path / f"{tag}.jsonl", config_hash="h", stop_at=stop_at)
        return m

    full = run("full")
    run("resumed", stop_at=2)
    resumed = run("resumed")
    for k, net in full.networks().items():
        for a, b in zip(net.parameters(), resumed.networks()[k].parameters()):
            assert torch.equal(a, b), k
    assert len(resumed.pool_t.images) == len(full.pool_t.images)


def test_unit_range_round_trip():
    x = torch.linspace(-2, 5, 50)
    r = UnitRange.fit(x)
    u = r.to_unit(x)
    assert float(u.min()) >= -1 and float(u.max()) <= 1
    inside = (x > r.low) & (x < r.high)
    assert torch.allclose(r.from_unit(u)[inside], x[inside], atol=1e-5)


def test_distribution_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 5000)
    same = distribution_distance(a, a)
    assert same["wasserstein"] == pytest.approx(0, abs=1e-9) and same["kl"] == pytest.approx(0, abs=1e-6)
    shifted = distribution_distance(a, a + 2)
    assert shifted["wasserstein"] == pytest.approx(2, rel=0.01) and shifted["kl"] > 1


def test_train_translator_writes_cache_quality_and_preview(tiny_dataset, tmp_path):
    spec = load_dataset(tiny_dataset, "tiny")
    cfg = PreprocessConfig.from_dict({"spacing": [2.0, 2.0, 2.0], "slice_axis": "coronal", "crop_size": [16, 16]})
    caches = {m: preprocess_modality(spec, m, cfg, tmp_path / "cache" / m) for m in ("mr", "ct")}
    out = tmp_path / "translated"
    side = train_translator(
        translator="cyclegan",
        params={**TINY, "iterations": 3},
        seed=0,
        source_cache=caches["mr"],
        target_cache=caches["ct"],
        model_path=tmp_path / "t" / "model.pt",
        checkpoint_dir=tmp_path / "t" / "ckpt",
        log_path=tmp_path / "t" / "log.jsonl",
        out_cache=out,
        quality_path=tmp_path / "t" / "quality.json",
        preview_path=tmp_path / "t" / "preview.png",
    )
    src, dst = (json.loads((p / "manifest.json").read_text()) for p in (caches["mr"], out))
    assert [c["case"] for c in dst["cases"]] == [c["case"] for c in src["cases"]]
    assert [c["split"] for c in dst["cases"]] == [c["split"] for c in src["cases"]]
    assert dst["translated"]["model_sha256"] == side["model_sha256"]
    for c in src["cases"]:
        np.testing.assert_array_equal(np.load(out / c["label"]), np.load(caches["mr"] / c["label"]))  # source labels kept
        assert np.load(out / c["image"]).shape == np.load(caches["mr"] / c["image"]).shape
    q = json.loads((tmp_path / "t" / "quality.json").read_text())
    assert q["source"] == "mr" and q["target"] == "ct" and set(q["intensity_distance"]) >= {"before", "after"}
    assert (tmp_path / "t" / "preview.png").stat().st_size > 1000
    payload = torch.load(tmp_path / "t" / "model.pt", weights_only=False)
    net = build(payload["architecture"])
    net.load_state_dict(payload["state_dict"])
    assert set(payload["intensity_ranges"]) == {"source", "target"}
    assert side["data"]["source"]["labels_used"] is False and side["data"]["target"]["labels_used"] is False


def test_translator_on_release_caches_keeps_sifa_space(tiny_dataset, tmp_path):
    """Caches in SIFA's fixed [-1, 1] space are neither refit nor clamped; the translated cache says
    which space its images are in; our own caches record the percentile range and clamped fraction."""
    spec = load_dataset(tiny_dataset, "tiny")
    cfg = PreprocessConfig.from_dict({"spacing": [2.0, 2.0, 2.0], "slice_axis": "coronal", "crop_size": [16, 16]})
    caches = {m: preprocess_modality(spec, m, cfg, tmp_path / "cache" / m) for m in ("mr", "ct")}
    for m in ("mr", "ct"):  # pretend these are release caches
        path = caches[m] / "manifest.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "intensity_space": "sifa_unit"}))

    def run(name, **over):
        return train_translator(
            translator="cyclegan",
            params={**TINY, "iterations": 2, **over},
            seed=0,
            source_cache=caches["mr"],
            target_cache=caches["ct"],
            model_path=tmp_path / name / "model.pt",
            checkpoint_dir=tmp_path / name / "ckpt",
            log_path=tmp_path / name / "log.jsonl",
            out_cache=tmp_path / name / "translated",
            quality_path=tmp_path / name / "quality.json",
            preview_path=tmp_path / name / "preview.png",
        )

    side = run("auto")
    assert {r["mode"] for r in side["intensity_ranges"].values()} == {"sifa_fixed"}
    assert json.loads((tmp_path / "auto" / "translated" / "manifest.json").read_text())["intensity_space"] == "sifa_unit"
    side = run("percentile", intensity="percentile")
    for r in side["intensity_ranges"].values():
        assert r["mode"] == "percentile" and 0 <= r["clamped_fraction"] < 0.05
