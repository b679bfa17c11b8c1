"""Notebook 07's experiments: gradient norms per layer, the encoder-only tagger, warm-up."""

import pytest
import torch
from torch import nn

from transformer_course import data
from transformer_course.data import PAD
from transformer_course.transformer import (
    GRADIENT_VARIANTS,
    EncoderLayer,
    EncoderTagger,
    TransformerConfig,
    constant_warmup,
    gradient_norm_curves,
    layer_gradient_norms,
    sort_tags,
)

# ----------------------------------------------------------------------------- gradient norms


@pytest.mark.parametrize("depth", [1, 48])  # both ends of the widget's slider
def test_gradient_norm_curves_at_the_ends_of_the_slider(depth):
    curves = gradient_norm_curves(depth)
    assert list(curves) == list(GRADIENT_VARIANTS)
    for norms in curves.values():
        assert norms.shape == (depth,)
        assert torch.isfinite(norms).all() and (norms > 0).all()


def test_layer_gradient_norms_match_a_hand_computation():
    depth = 3
    norms = layer_gradient_norms(depth, residual=True, norm_first=True, seed=4)
    g = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    layers = [EncoderLayer(64, 4, 256, 0.0, True, True) for _ in range(depth)]
    final = nn.LayerNorm(64)
    x = torch.randn(8, 16, 64, generator=g, requires_grad=True)
    target = torch.randn(8, 16, 64, generator=g)
    h1 = layers[0](x)
    h1.retain_grad()
    out = final(layers[2](layers[1](h1)))
    nn.functional.mse_loss(out, target).backward()
    assert torch.allclose(norms[0], x.grad.norm(), rtol=1e-5)
    assert torch.allclose(norms[1], h1.grad.norm(), rtol=1e-5)


def test_without_residuals_the_gradient_fades_with_depth():
    for norm_first in (False, True):
        shallow = layer_gradient_norms(6, residual=False, norm_first=norm_first)
        deep = layer_gradient_norms(48, residual=False, norm_first=norm_first)
        with_res = layer_gradient_norms(48, residual=True, norm_first=norm_first)
        assert deep[0] / deep[-1] < shallow[0] / shallow[-1]
        assert deep[0] / deep[-1] < 0.2 < 0.4 < with_res[0] / with_res[-1]


def test_gradient_norms_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    gradient_norm_curves(2)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "6"])
def test_gradient_norms_reject_a_bad_depth(bad):
    with pytest.raises(ValueError, match="depth should be an int >= 1"):
        layer_gradient_norms(bad)
    with pytest.raises(ValueError, match="depth should be an int >= 1"):
        gradient_norm_curves(bad)


def test_residual_false_drops_only_the_skip():
    torch.manual_seed(0)
    layer = EncoderLayer(16, 4, 32, residual=False, norm_first=True).eval()
    x = torch.randn(2, 5, 16)
    h = layer.self_attn(*(layer.norm1(x),) * 3)[0]
    expected = h + layer.ff(layer.norm2(h)) - h  # no skip: the output is the sublayer alone
    assert torch.allclose(layer(x), layer.ff(layer.norm2(h)), atol=1e-6)
    assert torch.allclose(layer(x), expected, atol=1e-6)


# ----------------------------------------------------------------------------- the tagger


def tagger_config(norm_first: bool = True, **overrides) -> TransformerConfig:
    base = dict(src_vocab_size=24, tgt_vocab_size=24, d_model=16, n_heads=4, d_ff=32, n_layers=2,
                max_len=12, dropout=0.0, norm_first=norm_first)
    return TransformerConfig(**{**base, **overrides})


@pytest.mark.parametrize("norm_first", [False, True])
def test_tagger_equals_nn_transformer_encoder(norm_first):
    from pytorch_reference import copy_encoder_layer, randomise_norms

    g = torch.Generator().manual_seed(9)
    torch.manual_seed(9)
    tagger = EncoderTagger(tagger_config(norm_first))
    ref_layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm_first)
    ref = nn.TransformerEncoder(ref_layer, num_layers=2, enable_nested_tensor=False,
                                norm=nn.LayerNorm(16) if norm_first else None)
    randomise_norms(ref, g)
    for ours, theirs in zip(tagger.encoder.layers, ref.layers, strict=True):
        copy_encoder_layer(ours, theirs)
    if norm_first:
        tagger.encoder.norm.load_state_dict(ref.norm.state_dict())
    src = torch.randint(4, 24, (3, 7), generator=g)
    src[1, 5:], src[2, 2:] = PAD, PAD
    logits = tagger(src)
    x = tagger.positions(tagger.embed(src) * 16**0.5)
    logits_ref = tagger.head(ref(x, src_key_padding_mask=src == PAD))
    real = src != PAD
    assert logits.shape == (3, 7, 24)
    assert torch.allclose(logits[real], logits_ref[real], atol=1e-5)
    logits[real].square().sum().backward()
    grad_ours = tagger.encoder.layers[0].ff.linear1.weight.grad.clone()
    tagger.zero_grad()
    logits_ref[real].square().sum().backward()
    assert torch.allclose(ref.layers[0].linear1.weight.grad, grad_ours, atol=1e-4)


def test_tagger_ignores_appended_padding():
    torch.manual_seed(1)
    tagger = EncoderTagger(tagger_config()).eval()
    src = torch.randint(4, 24, (2, 5))
    padded = torch.cat([src, torch.full((2, 3), PAD)], dim=1)
    assert torch.allclose(tagger(src), tagger(padded)[:, :5], atol=1e-6)


def test_tagger_rejects_bad_input():
    tagger = EncoderTagger(tagger_config())
    with pytest.raises(ValueError, match=r"integer token ids \(B, S\), got torch.float32 \(2, 3\)"):
        tagger(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"integer token ids \(B, S\), got torch.int64 \(3,\)"):
        tagger(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="length 13, longer than max_len=12"):
        tagger(torch.ones(1, 13, dtype=torch.long))
    with pytest.raises(TypeError, match="expects a TransformerConfig, got dict"):
        EncoderTagger({"d_model": 16})


def test_sort_tags_are_the_sorted_source_with_padding_kept():
    src_vocab, tgt_vocab = data.task_vocabs("sort")
    pairs = data.make_pairs("sort", 6, 3, 8, seed=2)
    batch = data.collate(pairs, src_vocab, tgt_vocab)
    tags = sort_tags(batch)
    assert tags.shape == batch.src.shape
    for i, (src, _) in enumerate(pairs):
        n = len(src)
        assert tgt_vocab.decode(tags[i]) == sorted(src)
        assert (tags[i, n:] == PAD).all()
        assert torch.equal(tags[i, :n].sort().values, batch.src[i, :n].sort().values)


# ----------------------------------------------------------------------------- warm-up


def test_constant_warmup_rises_linearly_then_stays():
    lr = constant_warmup(4)
    assert [lr(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert constant_warmup(0)(0) == 1.0 and constant_warmup(0)(100) == 1.0


@pytest.mark.parametrize("bad", [-1, 2.0, True, None])
def test_constant_warmup_rejects_bad_lengths(bad):
    with pytest.raises(ValueError, match="constant_warmup expects an int >= 0"):
        constant_warmup(bad)
