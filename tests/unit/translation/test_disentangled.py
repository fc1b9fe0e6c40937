"""Disentangled (MUNIT/DRIT-style) translator: shapes, loss terms, gradient isolation, resume, inference."""

from __future__ import annotations

import pytest
import torch

from xmodseg.nn.disentangled import ContentEncoder, Decoder, DisentangledTranslator, StyleEncoder
from xmodseg.nn.gan_losses import l1, lsgan_discriminator, lsgan_generator
from xmodseg.nn.networks import build
from xmodseg.slices import SliceSet
from xmodseg.training.device import choose_device, choose_precision
from xmodseg.training.loop import LoopConfig, fit
from xmodseg.training.trainable import TrainData
from xmodseg.translation.disentangled import Disentangled
from xmodseg.translation.registry import get_translator

TINY = {
    "iterations": 4,
    "dim": 4,
    "n_res": 1,
    "n_down": 2,
    "style_dim": 3,
    "mlp_dim": 8,
    "ndf": 4,
    "d_layers": 2,
    "batch_size": 2,
    "pool_size": 3,
    "seed": 7,
}
SIDE = 16
CPU = choose_precision(choose_device("cpu"), "off")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _method(**over) -> Disentangled:
    torch.manual_seed(0)
    return Disentangled({**TINY, **over}, 5, CPU)


def _data(n: int = 6, side: int = SIDE) -> TrainData:
    g = torch.Generator().manual_seed(123)
    src = torch.rand(n, 1, side, side, generator=g) * 2 - 1
    tgt = (torch.rand(n, 1, side, side, generator=g) * 2 - 1) * 0.5 + 0.3
    return TrainData(source=SliceSet(src, None, ("s",), "mr"), target=SliceSet(tgt, None, ("t",), "ct"))


def _gen_groups(m: Disentangled) -> dict[str, torch.nn.Module]:
    return {"e_c": m.e_c, "e_s_src": m.e_s_src, "e_s_tgt": m.e_s_tgt, "g_src": m.g_src, "g_tgt": m.g_tgt}


def _disc_groups(m: Disentangled) -> dict[str, torch.nn.Module]:
    return {"d_t": m.d_t, "d_s": m.d_s}


def _snapshot(mods: dict[str, torch.nn.Module]) -> dict[str, list[torch.Tensor]]:
    return {k: [p.detach().clone() for p in mod.parameters()] for k, mod in mods.items()}


def _unchanged(before: dict[str, list[torch.Tensor]], mods: dict[str, torch.nn.Module]) -> dict[str, bool]:
    return {k: all(torch.equal(a, b) for a, b in zip(before[k], mod.parameters())) for k, mod in mods.items()}


def test_registered_and_defaults():
    assert get_translator("disentangled") is Disentangled
    m = Disentangled({"iterations": 1, "dim": 4, "n_res": 1, "mlp_dim": 8, "ndf": 4}, 5, CPU)
    p = m.params
    assert (p["lambda_x"], p["lambda_c"], p["lambda_s"], p["lambda_cycle"], p["lambda_gan"]) == (10.0, 1.0, 1.0, 10.0, 1.0)
    assert (p["style_dim"], p["n_down"], p["pool_size"]) == (8, 2, 50)
    for opt in (m.opt_g, m.opt_d):
        g = opt.param_groups[0]
        assert (g["lr"], g["betas"], g["weight_decay"]) == (1e-4, (0.5, 0.999), 1e-4)
    gen_ids = {id(q) for q in m.translator.parameters()}
    assert {id(q) for q in m.opt_g.param_groups[0]["params"]} == gen_ids
    assert {id(q) for q in m.opt_d.param_groups[0]["params"]} == {id(q) for q in [*m.d_t.parameters(), *m.d_s.parameters()]}


@pytest.mark.parametrize("side", [16, 32])
def test_shapes(side):
    dim, n_down, n_res, sd = 4, 2, 1, 3
    x = torch.rand(2, 1, side, side) * 2 - 1
    e_c = ContentEncoder(dim, n_down, n_res)
    c = e_c(x)
    assert c.shape == (2, dim * 4, side // 4, side // 4) and e_c.out_channels == dim * 4
    s = StyleEncoder(dim, n_down, sd)(x)
    assert s.shape == (2, sd)
    y = Decoder(dim, n_down, n_res, sd, mlp_dim=8)(c, s)
    assert y.shape == x.shape and y.abs().max() <= 1
    m = _method()
    out = m.translator(x)
    assert out.shape == x.shape
    assert m.translator.reconstruct(out).shape == x.shape
    assert m.translator(x, style=torch.zeros(3)).shape == x.shape
    assert m.translator(x, style=torch.randn(2, 3)).shape == x.shape
    assert m.d_t(x).shape[:2] == (2, 1) and m.d_s(x).shape[:2] == (2, 1)
    terms, x_st, x_ts = m.generator_losses(x, x.flip(0))
    assert x_st.shape == x_ts.shape == x.shape
    assert all(v.ndim == 0 for v in terms.values())


def test_loss_terms_match_hand_computation():
    lam = {"lambda_x": 2.0, "lambda_c": 3.0, "lambda_s": 5.0, "lambda_cycle": 7.0, "lambda_gan": 11.0, "pool_size": 0}
    m = _method(**lam)
    data = _data()
    x_s, x_t = data.source.images[:2], data.target.images[:2]
    z_s, z_t = torch.randn(2, 3), torch.randn(2, 3)
    terms, x_st, x_ts = m.generator_losses(x_s, x_t, z_s, z_t)

    t = m.translator
    E, Es, Et, Gs, Gt = t.content_encoder, t.style_encoder_src, t.style_encoder_tgt, t.decoder_src, t.decoder_tgt
    c_s, c_t = E(x_s), E(x_t)
    xst, xts = Gt(c_s, z_t), Gs(c_t, z_s)
    assert torch.allclose(x_st, xst) and torch.allclose(x_ts, xts)
    want = {
        "recon_x_s": (Gs(c_s, Es(x_s)) - x_s).abs().mean(),
        "recon_x_t": (Gt(c_t, Et(x_t)) - x_t).abs().mean(),
        "recon_c_s": (E(xst) - c_s).abs().mean(),
        "recon_c_t": (E(xts) - c_t).abs().mean(),
        "recon_style_t": (Et(xst) - z_t).abs().mean(),
        "recon_style_s": (Es(xts) - z_s).abs().mean(),
        "cycle_s": (Gs(E(xst), Es(x_s)) - x_s).abs().mean(),
        "cycle_t": (Gt(E(xts), Et(x_t)) - x_t).abs().mean(),
        "g_adv_t": ((m.d_t(xst) - 1) ** 2).mean(),
        "g_adv_s": ((m.d_s(xts) - 1) ** 2).mean(),
    }
    for k, v in want.items():
        assert torch.allclose(terms[k], v, rtol=1e-5, atol=1e-7), k
    total = (
        2 * (want["recon_x_s"] + want["recon_x_t"])
        + 3 * (want["recon_c_s"] + want["recon_c_t"])
        + 5 * (want["recon_style_t"] + want["recon_style_s"])
        + 7 * (want["cycle_s"] + want["cycle_t"])
        + 11 * (want["g_adv_t"] + want["g_adv_s"])
    )
    assert set(terms) == {*want, "g_total"}
    assert torch.allclose(terms["g_total"], total, rtol=1e-5)
    # the helpers used are the plain formulas
    assert torch.allclose(l1(x_st, x_s), (x_st - x_s).abs().mean())
    assert torch.allclose(lsgan_generator(m.d_t(xst)), want["g_adv_t"])

    d = m.discriminator_losses(x_s, x_t, x_st, x_ts)  # pool_size 0: the pool returns the batch
    d_t = 0.5 * (((m.d_t(x_t) - 1) ** 2).mean() + (m.d_t(xst) ** 2).mean())
    d_s = 0.5 * (((m.d_s(x_s) - 1) ** 2).mean() + (m.d_s(xts) ** 2).mean())
    assert torch.allclose(d["d_t"], d_t) and torch.allclose(d["d_s"], d_s) and torch.allclose(d["d_total"], d_t + d_s)
    assert torch.allclose(lsgan_discriminator(m.d_t(x_t), m.d_t(xst)), d_t)


def test_gradient_isolation():
    m = _method()
    data = _data()
    x_s, x_t = data.source.images[:2], data.target.images[:2]
    gen, disc = _gen_groups(m), _disc_groups(m)
    g0, d0 = _snapshot(gen), _snapshot(disc)

    _, x_st, x_ts = m.generator_step(x_s, x_t)
    assert all(p.grad is None for mod in disc.values() for p in mod.parameters())
    assert all(p.requires_grad for mod in disc.values() for p in mod.parameters())  # unfrozen again
    assert all(_unchanged(d0, disc).values())
    assert not any(_unchanged(g0, gen).values())

    g1 = _snapshot(gen)
    gen_grads = [p.grad.clone() for mod in gen.values() for p in mod.parameters()]
    m.discriminator_step(x_s, x_t, x_st, x_ts)
    assert all(_unchanged(g1, gen).values())
    assert all(torch.equal(a, p.grad) for a, p in zip(gen_grads, (p for mod in gen.values() for p in mod.parameters())))
    assert not any(_unchanged(d0, disc).values())

    # a second generator step leaves the discriminators' parameters and gradients alone
    d1 = _snapshot(disc)
    d_grads = [p.grad.clone() for mod in disc.values() for p in mod.parameters()]
    m.generator_step(x_s, x_t)
    assert all(_unchanged(d1, disc).values())
    assert all(torch.equal(a, p.grad) for a, p in zip(d_grads, (p for mod in disc.values() for p in mod.parameters())))


def test_train_step_updates_every_group_and_reports_floats():
    m = _method()
    groups = {**_gen_groups(m), **_disc_groups(m)}
    before = _snapshot(groups)
    losses = m.train_step(_data(), torch.Generator().manual_seed(0), 0)
    changed = {k: not v for k, v in _unchanged(before, groups).items()}
    assert all(changed.values()), changed
    # every tensor of every group moved (the AdaIN MLPs included)
    for k, mod in groups.items():
        for a, (name, p) in zip(before[k], mod.named_parameters()):
            assert not torch.equal(a, p), f"{k}.{name}"
    keys = {"recon_x_s", "recon_x_t", "recon_c_s", "recon_c_t", "recon_style_s", "recon_style_t", "cycle_s", "cycle_t", "g_adv_t", "g_adv_s", "g_total", "d_t", "d_s", "d_total"}
    assert set(losses) == keys and all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad for v in losses.values())


def test_reference_styles_are_mean_style_codes():
    m = _method(iterations=2)
    data = _data()
    sampler = torch.Generator().manual_seed(0)
    m.train_step(data, sampler, 0)
    assert torch.count_nonzero(m.translator.target_style) == 0  # the prior's mean until set
    m.set_reference_styles(data.source.images, data.target.images)
    t = m.translator
    with torch.no_grad():
        want_t = t.style_encoder_tgt(data.target.images).mean(0, keepdim=True)
        want_s = t.style_encoder_src(data.source.images).mean(0, keepdim=True)
    assert torch.allclose(t.target_style, want_t, atol=1e-6) and torch.allclose(t.source_style, want_s, atol=1e-6)
    # batch-wise computation gives the same mean
    t.set_reference_styles(data.source.images, data.target.images, batch_size=4)
    assert torch.allclose(t.target_style, want_t, atol=1e-6) and torch.allclose(t.source_style, want_s, atol=1e-6)
    t.set_reference_style(data.source.images)
    assert torch.allclose(t.target_style, t.style_encoder_tgt(data.source.images).mean(0, keepdim=True), atol=1e-6)
    assert torch.allclose(t.source_style, want_s, atol=1e-6)


def _fit(tmp_path, tag, stop_at=None):
    m = _method()
    fit(m, _data(), LoopConfig(iterations=4, seed=1), checkpoint_dir=tmp_path / tag, log_path=tmp_path / f"{tag}.jsonl", config_hash="h", stop_at=stop_at)
    return m


def test_resume_equals_uninterrupted(tmp_path):
    full = _fit(tmp_path, "full")
    partial = _fit(tmp_path, "resumed", stop_at=2)
    assert partial.pool_t.images and partial.style_gen.get_state() is not None
    resumed = _fit(tmp_path, "resumed")  # a fresh instance, resumed from iteration 2
    for name in full.networks():
        a, b = full.networks()[name].state_dict(), resumed.networks()[name].state_dict()
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}.{k}"
    assert torch.equal(full.style_gen.get_state(), resumed.style_gen.get_state())
    assert len(full.pool_t.images) == len(resumed.pool_t.images)
    assert all(torch.equal(a, b) for a, b in zip(full.pool_t.images, resumed.pool_t.images))


def test_inference_network_rebuilds_and_is_deterministic():
    m = _method()
    data = _data()
    m.train_step(data, torch.Generator().manual_seed(0), 0)
    m.set_reference_styles(data.source.images, data.target.images)
    live = m.inference_network()
    sd = live.state_dict()
    assert {"target_style", "source_style"} <= set(sd)
    assert any(k.startswith("content_encoder.") for k in sd) and any(k.startswith("decoder_tgt.") for k in sd)
    assert any(k.startswith("style_encoder_tgt.") for k in sd)
    arch = m.inference_architecture()
    assert arch["kind"] == "disentangled_translator"
    rebuilt = build(arch)
    assert isinstance(rebuilt, DisentangledTranslator)
    rebuilt.load_state_dict(sd)
    live.eval(), rebuilt.eval()
    x = data.source.images[:3]
    with torch.no_grad():
        a, b, again = live(x), rebuilt(x), rebuilt(x)
        assert torch.equal(a, b) and torch.equal(b, again)
        assert torch.equal(live.reconstruct(a), rebuilt.reconstruct(a))
        assert torch.equal(m.reconstruct(a), live.reconstruct(a))
        # style=None means the stored mean target style
        assert torch.equal(a, live(x, style=live.target_style))
        assert not torch.equal(a, live(x, style=live.target_style + 1))
