"""The AD-GAN translator (GLUA step A, xmodseg.translation.adgan): its loss terms recomputed by hand,
which optimizer moves which network, bit-identical resume, and a real run writing a translated cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xmodseg.nn.gan_losses import l1
from xmodseg.nn.networks import build
from xmodseg.preprocess import PreprocessConfig, preprocess_modality
from xmodseg.registry import load_dataset
from xmodseg.slices import SliceSet
from xmodseg.training.device import choose_device, choose_precision
from xmodseg.training.loop import LoopConfig, fit
from xmodseg.training.trainable import TrainData
from xmodseg.translation.adgan import Adgan, AdganParams
from xmodseg.translation.run import train_translator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"ngf": 4, "n_res": 1, "mlp_dim": 8, "ndf": 4, "batch_size": 2, "iterations": 4, "pool_size": 3, "checkpoint_every": 1}
CPU = choose_precision(choose_device("cpu"), "off")


def _data(n: int = 6, size: int = 32) -> TrainData:
    g = torch.Generator().manual_seed(0)
    return TrainData(
        source=SliceSet(torch.rand(n, 1, size, size, generator=g) * 2 - 1, None, ("a",), "mr"),
        target=SliceSet(torch.rand(n, 1, size, size, generator=g) * 2 - 1, None, ("b",), "ct"),
    )


def _model() -> Adgan:
    torch.manual_seed(0)
    return Adgan(TINY, 0, CPU)


def test_defaults_are_the_glua_authors_step_a():
    p = AdganParams.from_block({"iterations": 10})
    assert (p.lambda_rec, p.lambda_cycle, p.lambda_content, p.ngf, p.n_res, p.pool_size) == (20.0, 20.0, 1.0, 64, 4, 50)
    assert (p.lr, p.beta1, p.weight_decay, p.batch_size) == (2e-4, 0.5, 1e-4, 8)


def test_generator_terms_by_hand():
    m = _model()
    g = torch.Generator().manual_seed(1)
    x_a, x_b = torch.rand(2, 1, 32, 32, generator=g), torch.rand(2, 1, 32, 32, generator=g)
    enc, dec, d = m.translator.encoder, m.translator.decoder, m.disc
    with torch.no_grad():
        terms, x_ab, x_ba = m.generator_losses(x_a, x_b)
        c_a, c_b = enc(x_a, 0), enc(x_b, 1)
        assert torch.equal(x_ab, dec(c_a, 1)) and torch.equal(x_ba, dec(c_b, 0))
        assert torch.allclose(terms["rec"], l1(dec(c_a, 0), x_a) + l1(dec(c_b, 1), x_b))
        assert torch.allclose(terms["cycle"], l1(dec(enc(x_ab, 1), 0), x_a) + l1(dec(enc(x_ba, 0), 1), x_b))
        assert torch.allclose(terms["content"], l1(enc(x_ab, 1), c_a) + l1(enc(x_ba, 0), c_b))
        adv = (d(x_a, 0) ** 2).mean() + (d(x_b, 1) ** 2).mean() + ((d(x_ab, 1) - 1) ** 2).mean() + ((d(x_ba, 0) - 1) ** 2).mean()
        assert torch.allclose(terms["g_adv"], adv)
        assert torch.allclose(terms["g_total"], 20 * terms["rec"] + 20 * terms["cycle"] + terms["content"] + terms["g_adv"])


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")  # the spy below wraps step
def test_each_player_moves_only_with_its_own_optimizer(monkeypatch):
    m = _model()
    seen = {}
    step_d = m.opt_d.step

    def before_d_step(*args, **kwargs):  # the generator step is done: D must still be as it was
        seen["d"] = [q.detach().clone() for q in m.disc.parameters()]
        seen["d_grads_from_g"] = [q.grad for q in m.disc.parameters()]
        seen["translator"] = [q.detach().clone() for q in m.translator.parameters()]
        return step_d(*args, **kwargs)

    monkeypatch.setattr(m.opt_d, "step", before_d_step)
    d0 = [q.detach().clone() for q in m.disc.parameters()]
    t0 = [q.detach().clone() for q in m.translator.parameters()]
    terms = m.train_step(_data(), torch.Generator().manual_seed(2), 0)
    assert {"rec", "cycle", "content", "g_adv", "g_total", "d_real", "d_fake", "d_total"} <= set(terms)
    assert all(torch.equal(a, b) for a, b in zip(d0, seen["d"], strict=True))  # G's step left D alone
    assert any(not torch.equal(a, b) for a, b in zip(t0, seen["translator"], strict=True))  # and moved G
    assert all(torch.equal(a, b) for a, b in zip(seen["translator"], m.translator.parameters(), strict=True))  # D's step left G alone
    assert any(not torch.equal(a, b) for a, b in zip(d0, m.disc.parameters(), strict=True))


def test_resume_equals_uninterrupted(tmp_path):
    def run(tag, stop_at=None):
        m = _model()
        fit(m, _data(), LoopConfig(iterations=4, seed=0, checkpoint_every=1), checkpoint_dir=tmp_path / tag, log_path=tmp_path / f"{tag}.jsonl", config_hash="h", stop_at=stop_at)
        return m

    full = run("full")
    run("resumed", stop_at=2)
    resumed = run("resumed")
    for k, net in full.networks().items():
        assert all(torch.equal(a, b) for a, b in zip(net.parameters(), resumed.networks()[k].parameters(), strict=True)), k
    assert len(resumed.pool_ab.images) == len(full.pool_ab.images)


def test_train_translator_writes_a_translated_cache(tiny_dataset, tmp_path):
    spec = load_dataset(tiny_dataset, "tiny")
    # 32x32: the discriminator needs more than one pixel after its three stride-2 layers
    cfg = PreprocessConfig.from_dict({"spacing": [2.0, 2.0, 2.0], "slice_axis": "coronal", "crop_size": [32, 32]})
    caches = {m: preprocess_modality(spec, m, cfg, tmp_path / "cache" / m) for m in ("mr", "ct")}
    out = tmp_path / "translated"
    side = train_translator(
        translator="adgan", params={**TINY, "iterations": 2}, seed=0, source_cache=caches["mr"], target_cache=caches["ct"],
        model_path=tmp_path / "t" / "model.pt", checkpoint_dir=tmp_path / "t" / "ckpt", log_path=tmp_path / "t" / "log.jsonl",
        out_cache=out, quality_path=tmp_path / "t" / "quality.json", preview_path=tmp_path / "t" / "preview.png",
    )
    src, dst = (json.loads((p / "manifest.json").read_text()) for p in (caches["mr"], out))
    assert [c["case"] for c in dst["cases"]] == [c["case"] for c in src["cases"]]
    for c in src["cases"]:
        np.testing.assert_array_equal(np.load(out / c["label"]), np.load(caches["mr"] / c["label"]))  # source labels kept
    assert dst["translated"]["model_sha256"] == side["model_sha256"]
    payload = torch.load(tmp_path / "t" / "model.pt", weights_only=True)
    net = build(payload["architecture"])
    net.load_state_dict(payload["state_dict"])
    assert payload["architecture"]["kind"] == "adgan_translator"
