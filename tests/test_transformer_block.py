"""Notebook 07's experiments (experiments/transformer_block.py): gradient norms per layer, the layer
without residuals, the tagger of notebook 06 with the paper's embedding scale, warm-up."""

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from transformer_course import data
from transformer_course.data import PAD
from transformer_course.experiments.positions import Tagger, tag_targets
from transformer_course.experiments.transformer_block import (
    GRADIENT_VARIANTS,
    NoResidualEncoderLayer,
    constant_warmup,
    gradient_figure,
    gradient_norm_curves,
    layer_gradient_norms,
)
from transformer_course.reference import copy_encoder_layer, randomise_norms
from transformer_course.transformer import EncoderLayer

# ----------------------------------------------------------------------------- gradient norms


@pytest.mark.parametrize("depth", [1, 48])  # both ends of the widget's slider
def test_gradient_norm_curves_at_the_ends_of_the_slider(depth):
    curves = gradient_norm_curves(depth)
    assert list(curves) == list(GRADIENT_VARIANTS)
    for norms in curves.values():
        assert norms.shape == (depth,)
        assert torch.isfinite(norms).all() and (norms > 0).all()


@pytest.mark.parametrize("depth", [1, 48])  # both ends of the widget's slider
def test_gradient_figure_at_the_ends_of_the_slider(depth):
    fig = gradient_figure(depth)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 1
    assert fig.axes[0].get_title() == f"{depth} layers"  # the depth drawn, not one off
    lines = [line for line in fig.axes[0].get_lines() if line.get_label() in GRADIENT_VARIANTS]
    assert len(lines) == len(GRADIENT_VARIANTS)
    assert all(len(line.get_xdata()) == depth for line in lines)


def test_layer_gradient_norms_match_a_hand_computation():
    depth = 3
    norms = layer_gradient_norms(depth, residual=True, norm_first=True, seed=4)
    g = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    layers = [EncoderLayer(64, 4, 256, 0.0, True) for _ in range(depth)]
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
    with pytest.raises(ValueError, match="depth to be a positive int"):
        layer_gradient_norms(bad)
    with pytest.raises(ValueError, match="depth to be a positive int"):
        gradient_norm_curves(bad)


@pytest.mark.parametrize("norm_first", [False, True])
def test_the_no_residual_layer_drops_only_the_skip(norm_first):
    torch.manual_seed(0)
    layer = NoResidualEncoderLayer(16, 4, 32, norm_first=norm_first).eval()
    torch.manual_seed(0)
    same_weights = EncoderLayer(16, 4, 32, norm_first=norm_first).eval()  # the same initialisation
    x = torch.randn(2, 5, 16)
    if norm_first:  # no skip: the output is the sublayer alone
        h = layer.self_attn(*(layer.norm1(x),) * 3)[0]
        expected = layer.ff(layer.norm2(h))
    else:
        h = layer.norm1(layer.self_attn(x, x, x)[0])
        expected = layer.norm2(layer.ff(h))
    assert torch.allclose(layer(x), expected, atol=1e-6)
    assert not torch.allclose(layer(x), same_weights(x), atol=1e-3)
    assert all(torch.equal(a, b) for a, b in zip(layer.parameters(), same_weights.parameters(), strict=True))


# ----------------------------------------------------------------------------- the tagger


def block_tagger(norm_first: bool = True, n_labels: int = 24) -> Tagger:
    """Notebook 07's tagger, small: the paper's embedding scale, post-LN or pre-LN."""
    return Tagger(24, d_model=16, n_heads=4, d_ff=32, n_layers=2, max_len=12, n_labels=n_labels,
                  norm_first=norm_first, scale_embeddings=True)


@pytest.mark.parametrize("norm_first", [False, True])
def test_tagger_equals_nn_transformer_encoder(norm_first):
    g = torch.Generator().manual_seed(9)
    torch.manual_seed(9)
    tagger = block_tagger(norm_first)
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
    x = tagger.add_positions(tagger.embed(src) * 16**0.5)
    logits_ref = tagger.out(ref(x, src_key_padding_mask=src == PAD))
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
    tagger = block_tagger().eval()
    src = torch.randint(4, 24, (2, 5))
    padded = torch.cat([src, torch.full((2, 3), PAD)], dim=1)
    assert torch.allclose(tagger(src), tagger(padded)[:, :5], atol=1e-6)


def test_tagger_rejects_bad_input():
    tagger = block_tagger(n_labels=20)
    with pytest.raises(TypeError, match=r"token ids of shape \(B, S\), got torch.float32 of shape \(2, 3\)"):
        tagger(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"token ids of shape \(B, S\), got torch.int64 of shape \(3,\)"):
        tagger(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"length of src to be an int in \[1, 12\], got 13"):
        tagger(torch.ones(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match="n_heads"):
        Tagger(24, d_model=16, n_heads=5)
    assert tagger(torch.ones(1, 3, dtype=torch.long)).shape == (1, 3, 20)  # n_labels outputs


def test_the_embedding_scale_is_the_only_difference_between_the_two_taggers():
    torch.manual_seed(3)
    plain = Tagger(24, d_model=16, n_heads=4, d_ff=32, n_layers=2, max_len=12)
    torch.manual_seed(3)
    scaled = Tagger(24, d_model=16, n_heads=4, d_ff=32, n_layers=2, max_len=12, scale_embeddings=True)
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), scaled.parameters(), strict=True))
    with torch.no_grad():
        scaled.embed.weight /= 4.0  # sqrt(16): now the two compute the same function
    src = torch.randint(4, 24, (2, 6), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(plain(src), scaled(src), atol=1e-5)


@pytest.mark.parametrize("task", ["sort", "reverse", "copy"])
def test_tag_targets_are_the_output_at_each_source_position_with_padding_kept(task):
    src_vocab, tgt_vocab = data.task_vocabs(task)
    pairs = data.make_pairs(task, 6, 3, 8, seed=2)
    batch = data.collate(pairs, src_vocab, tgt_vocab)
    tags = tag_targets(batch)
    assert tags.shape == batch.src.shape
    # notebook 07's former ``sort_tags``: the target cut to the source's width, padded where it is
    assert torch.equal(tags, batch.tgt_out[:, : batch.src.shape[1]].masked_fill(batch.src == PAD, PAD))
    for i, (_, tgt) in enumerate(pairs):
        assert tgt_vocab.decode(tags[i]) == tgt


def test_tag_targets_of_sort_are_the_sorted_source():
    src_vocab, tgt_vocab = data.task_vocabs("sort")
    pairs = data.make_pairs("sort", 6, 3, 8, seed=2)
    batch = data.collate(pairs, src_vocab, tgt_vocab)
    tags = tag_targets(batch)
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
    with pytest.raises(ValueError, match="constant_warmup expects warmup_steps to be an int >= 0"):
        constant_warmup(bad)
