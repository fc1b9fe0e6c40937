"""GLUA's step-B networks (xmodseg.nn.deeplab): the official layout's shapes, the local feature mask's
range and where it acts, and that gradients reach the encoder through the mask."""

from __future__ import annotations

import pytest
import torch

from xmodseg.nn.deeplab import RESNET101_BLOCKS, DeepLabV2, FeatureDiscriminator, MaskedSegmenter, OutputDiscriminator, local_feature_mask

TINY = {"blocks": (1, 1, 1, 1, 1), "width": 0.125}


def _nets(seed: int = 0) -> tuple[DeepLabV2, FeatureDiscriminator]:
    torch.manual_seed(seed)
    net = DeepLabV2(5, **TINY)
    return net, FeatureDiscriminator(net.feature_channels, TINY["width"])


def test_paper_scale_layout_matches_the_official_shapes():
    net = DeepLabV2(5)  # ResNet-101 layout, full width
    assert [len(getattr(net, f"layer{i}")) for i in range(1, 6)] == list(RESNET101_BLOCKS)
    assert net.feature_channels == 2048 and len(net.classifier.branches) == 2  # the official 2-branch quirk
    assert [b.dilation for b in net.classifier.branches] == [(6, 6), (12, 12)]
    with torch.no_grad():
        out = net.eval()(torch.zeros(1, 1, 256, 256))
    assert out.features.shape == (1, 2048, 33, 33)  # output stride 8 with the ceil-mode pool, as the official code
    assert out.logits.shape == (1, 5, 256, 256) and out.mask is None
    d_o = OutputDiscriminator(5)
    assert d_o(out.logits.softmax(1)).shape == (1, 1, 8, 8)


def test_mask_range_and_it_scales_only_target_features():
    scores = torch.tensor([-50.0, -1.0, 0.0, 0.5, 50.0])
    m = local_feature_mask(scores)
    assert torch.all(m >= 0) and torch.all(m <= 1) and m[2] == 0 and torch.isclose(m[1], m[3].new_tensor(0.7616), atol=1e-4)

    net, d_f = _nets()
    net.eval()
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        plain = net(x)
        masked = net(x, d_f)
        feats = net.features(x)
        expected = net.head((1 + local_feature_mask(d_f(feats))) * feats, x.shape[-2:])
    assert masked.mask is not None and masked.mask.shape == (2, 1, *feats.shape[-2:])
    assert torch.all(masked.mask >= 0) and torch.all(masked.mask < 1)
    assert torch.equal(plain.features, masked.features)  # F itself (what D_f judges) is unmasked
    # (the N(0, 0.01) init makes logits ~1e-8: compare relative differences only)
    assert torch.allclose(masked.logits, expected, rtol=1e-5, atol=0) and not torch.allclose(masked.logits, plain.logits, rtol=1e-3, atol=0)
    # a discriminator answering 0 everywhere leaves the target prediction as the source path's
    torch.nn.init.zeros_(d_f.net[-1].weight)
    torch.nn.init.zeros_(d_f.net[-1].bias)
    with torch.no_grad():
        assert torch.allclose(net(x, d_f).logits, plain.logits, rtol=1e-6, atol=0)


def test_gradients_reach_the_encoder_through_the_mask_with_d_f_frozen():
    net, d_f = _nets()
    d_f.requires_grad_(False)
    out = net(torch.randn(2, 1, 32, 32), d_f)
    assert out.mask is not None
    # through the mask only: the loss depends on M, not on the logits
    out.mask.sum().backward()
    assert net.layer1[0].conv1.weight.grad is not None and net.layer1[0].conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in d_f.parameters())


def test_masked_segmenter_is_the_inference_network():
    net, d_f = _nets()
    model = MaskedSegmenter(net, d_f).eval()
    x = torch.randn(1, 1, 40, 40)
    with torch.no_grad():
        assert torch.equal(model(x), net(x, d_f).logits)
        assert torch.equal(MaskedSegmenter(net, None)(x), net(x).logits)


@pytest.mark.parametrize(("kwargs", "match"), [({"blocks": (1, 1, 1)}, "5 positive counts"), ({"aspp_branches": 5}, "aspp_branches must be")])
def test_bad_shapes_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeepLabV2(5, **{**TINY, **kwargs})


def test_same_seed_same_weights():
    a, b = _nets(3)[0].state_dict(), _nets(3)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
