"""GLUA step A's AD-GAN networks (xmodseg.nn.adgan): one encoder/decoder pair for both domains, the
domain entering only through AdaIN parameters, and a per-domain discriminator map."""

from __future__ import annotations

import torch

from xmodseg.nn.adgan import AdganDecoder, AdganEncoder, AdganTranslator, DomainDiscriminator, domain_code


def _tiny() -> AdganTranslator:
    torch.manual_seed(0)
    return AdganTranslator(ngf=4, n_res=1, mlp_dim=8)


def test_shapes_and_the_domain_switch():
    t = _tiny().eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        c = t.encoder(x, 0)
        assert c.shape == (2, 16, 8, 8)  # 4 ngf at 1/4 resolution
        rec, trans = t.decoder(c, 0), t.decoder(c, 1)
    assert rec.shape == trans.shape == x.shape and rec.abs().max() <= 1  # tanh output
    assert not torch.allclose(rec, trans)  # the same content rendered in two domains differs
    assert torch.equal(t(x, 0, 1), trans)


def test_per_sample_domains_match_per_batch_ones():
    t = _tiny().eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        mixed = t.encoder(x, torch.tensor([0, 1]))
        assert torch.allclose(mixed[0], t.encoder(x[:1], 0)[0], atol=1e-4)
        assert torch.allclose(mixed[1], t.encoder(x[1:], 1)[0], atol=1e-4)
    assert torch.equal(domain_code(1, 2, torch.device("cpu")), torch.tensor([[0.0, 1.0], [0.0, 1.0]]))


def test_the_mlp_is_the_only_domain_specific_path():
    """Zeroing the MLP's last layer makes every AdaIN an identity scale and zero shift: both domains then agree."""
    enc, dec = AdganEncoder(4, 1, 8), AdganDecoder(4, 1, 8)
    for m in (enc, dec):
        torch.nn.init.zeros_(m.mlp[-1].weight)
        torch.nn.init.zeros_(m.mlp[-1].bias)
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(enc(x, 0), enc(x, 1))
        c = enc(x, 0)
        assert torch.equal(dec(c, 0), dec(c, 1))


def test_discriminator_returns_each_samples_domain_map():
    torch.manual_seed(0)
    d = DomainDiscriminator(ndf=4).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        both = d.net(x)
        assert both.shape[1] == 2
        picked = d(x, torch.tensor([1, 0]))
        assert torch.equal(picked[0, 0], both[0, 1]) and torch.equal(picked[1, 0], both[1, 0])
        assert torch.equal(d(x, 1), both[:, 1:2])
