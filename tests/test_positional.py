"""Positional encodings: the paper's formula, the offset property, learned embeddings, bad input;
the tagger of notebook 06 (experiments/positions.py) proven equal to PyTorch's layers, and the
widget's logic."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from transformer_course import data
from transformer_course.experiments.positions import (
    POSITIONS,
    Tagger,
    encoding_view,
    tag_targets,
    tagging_accuracy,
)
from transformer_course.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    offset_dot_products,
    sinusoidal_encoding,
)
from transformer_course.reference import copy_encoder_layer


@pytest.mark.parametrize("max_len,d_model", [(1, 2), (7, 8), (50, 16), (5, 7)])
def test_sinusoidal_encoding_equals_the_papers_formula(max_len, d_model):
    pe = sinusoidal_encoding(max_len, d_model)
    assert pe.shape == (max_len, d_model) and pe.dtype == torch.float32
    expected = torch.zeros(max_len, d_model)
    for pos in range(max_len):
        for j in range(d_model):
            angle = pos / 10000 ** (2 * (j // 2) / d_model)
            expected[pos, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    assert torch.allclose(pe, expected, atol=1e-6)


def test_sinusoidal_dot_product_depends_only_on_the_offset():
    pe = sinusoidal_encoding(100, 32).double()
    gram = pe @ pe.T  # (T, T)
    for offset in (1, 5, 20):
        diag = torch.diagonal(gram, offset)
        assert torch.allclose(diag, diag[0].expand_as(diag), atol=1e-4)
    assert torch.allclose(torch.diagonal(gram), torch.full((100,), 16.0, dtype=torch.float64))


def test_sinusoidal_module_adds_the_table():
    module = SinusoidalPositionalEncoding(d_model=8, max_len=20)
    x = torch.randn(3, 6, 8, requires_grad=True)
    out = module(x)
    assert torch.allclose(out, x + sinusoidal_encoding(20, 8)[:6])
    assert torch.allclose(module(x, start=4), x + sinusoidal_encoding(20, 8)[4:10])
    assert list(module.parameters()) == []
    assert "pe" not in module.state_dict()  # rebuilt from the formula, not saved
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_learned_embedding_adds_one_trained_row_per_position():
    torch.manual_seed(0)
    module = LearnedPositionalEmbedding(d_model=8, max_len=10)
    x = torch.randn(2, 5, 8)
    out = module(x)
    assert torch.allclose(out, x + module.embedding.weight[:5])
    assert torch.allclose(module(x, start=5), x + module.embedding.weight[5:10])
    out.pow(2).sum().backward()
    grad = module.embedding.weight.grad
    assert grad[:5].abs().sum() > 0 and torch.equal(grad[5:], torch.zeros(5, 8))


@pytest.mark.parametrize("cls", [SinusoidalPositionalEncoding, LearnedPositionalEmbedding])
def test_too_long_and_bad_input(cls):
    module = cls(d_model=8, max_len=10)
    assert module(torch.randn(1, 10, 8)).shape == (1, 10, 8)  # exactly max_len is fine
    with pytest.raises(ValueError, match="do not fit max_len=10"):
        module(torch.randn(1, 11, 8))
    with pytest.raises(ValueError, match="do not fit max_len=10"):
        module(torch.randn(1, 4, 8), start=7)
    with pytest.raises(ValueError, match=r"\(B, T, d_model=8\)"):
        module(torch.randn(1, 4, 6))
    with pytest.raises(ValueError, match=r"\(B, T, d_model=8\)"):
        module(torch.randn(4, 8))
    with pytest.raises(ValueError, match="start to be an int >= 0, got -1"):
        module(torch.randn(1, 4, 8), start=-1)
    with pytest.raises(TypeError, match=r"x \(B, T, d_model=8\) to be a torch.Tensor, got list"):
        module([[1.0] * 8])
    with pytest.raises(ValueError, match="d_model to be a positive int, got 0"):
        cls(d_model=0, max_len=10)
    with pytest.raises(ValueError, match="max_len to be a positive int, got 2.5"):
        cls(d_model=8, max_len=2.5)


def test_sinusoidal_encoding_bad_input():
    with pytest.raises(ValueError, match="max_len"):
        sinusoidal_encoding(0, 8)
    with pytest.raises(ValueError, match="d_model"):
        sinusoidal_encoding(4, -2)


# --- offset dot products, the widget's logic, the tagger of notebook 06 ---------------------------

@pytest.mark.parametrize("offset", [0, 1, 4, 9])
def test_offset_dot_products_are_the_diagonals_of_the_gram_matrix(offset):
    pe = torch.randn(10, 6, generator=torch.Generator().manual_seed(offset))
    got = offset_dot_products(pe, offset)
    assert got.shape == (10 - offset,)
    assert torch.allclose(got, torch.diagonal(pe @ pe.T, offset), atol=1e-5)


def test_offset_dot_products_of_the_sinusoidal_table_are_sums_of_cosines():
    d_model = 16
    pe = sinusoidal_encoding(40, d_model).double()
    omega = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    for k in (0, 3, 39):
        got = offset_dot_products(pe, k)
        assert torch.allclose(got, torch.cos(k * omega).sum().expand_as(got), atol=1e-5)


def test_offset_dot_products_bad_input():
    with pytest.raises(ValueError, match=r"offset to be an int in \[0, 4\], got 5"):
        offset_dot_products(torch.zeros(5, 4), 5)
    with pytest.raises(ValueError, match="offset to be an int in"):
        offset_dot_products(torch.zeros(5, 4), -1)
    with pytest.raises(ValueError, match=r"pe \(max_len, D\) with 2 dimensions, got shape \(2, 5, 4\)"):
        offset_dot_products(torch.zeros(2, 5, 4), 1)


@pytest.mark.parametrize("position,dim", [(0, 0), (63, 31), (0, 31), (63, 0), (10, 4)])
def test_encoding_view_at_the_ends_of_the_sliders(position, dim):
    table, column, row, wavelength = encoding_view(position, dim, max_len=64, d_model=32)
    assert table.shape == (64, 32) and column.shape == (64,) and row.shape == (32,)
    assert torch.equal(column, table[:, dim]) and torch.equal(row, table[position])
    assert torch.isfinite(table).all() and table.abs().max() <= 1
    assert wavelength == pytest.approx(2 * math.pi * 10000 ** (2 * (dim // 2) / 32))
    expected = (math.sin if dim % 2 == 0 else math.cos)(position / 10000 ** (2 * (dim // 2) / 32))
    assert column[position].item() == pytest.approx(expected, abs=1e-6)


def test_encoding_view_bad_input():
    with pytest.raises(ValueError, match=r"position to be an int in \[0, 63\], got 64"):
        encoding_view(64, 0)
    with pytest.raises(ValueError, match=r"dim to be an int in \[0, 31\], got -1"):
        encoding_view(0, -1)


def _reference_tagger(ours: Tagger, d_model: int, n_heads: int, d_ff: int):
    """PyTorch's own layers with our tagger's weights: embedding, positions, encoder layer, linear."""
    ref_layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=0.0, batch_first=True)
    copy_encoder_layer(ours.encoder.layers[0], ref_layer)
    embed = nn.Embedding.from_pretrained(ours.embed.weight.detach().clone(), freeze=False)
    out = nn.Linear(d_model, ours.out.out_features)
    out.load_state_dict(ours.out.state_dict())
    if ours.positions == "learned":
        table = nn.Parameter(ours.add_positions.embedding.weight.detach().clone())
    else:
        table = sinusoidal_encoding(ours.config.max_len, d_model) * (ours.positions == "sinusoidal")

    def forward(src: torch.Tensor) -> torch.Tensor:
        x = embed(src) + table[: src.shape[1]]
        return out(ref_layer(x, src_key_padding_mask=src == data.PAD))

    return forward, embed, out, table


@pytest.mark.parametrize("positions", POSITIONS)
def test_tagger_equals_pytorch_layers_outputs_and_gradients(positions):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    ours = Tagger(vocab_size=12, d_model=16, n_heads=4, d_ff=24, n_layers=1, max_len=10,
                  positions=positions)
    ref, embed, out, table = _reference_tagger(ours, 16, 4, 24)
    src = torch.randint(4, 12, (3, 7), generator=g)
    src[1, 5:] = data.PAD
    src[2, 2:] = data.PAD
    logits, logits_ref = ours(src), ref(src)
    real = src != data.PAD
    assert logits.shape == (3, 7, 12)
    assert torch.allclose(logits[real], logits_ref[real], atol=1e-5)
    upstream = torch.randn(logits.shape, generator=g) * real[..., None]
    (logits * upstream).sum().backward()
    (logits_ref * upstream).sum().backward()
    assert torch.allclose(ours.embed.weight.grad, embed.weight.grad, atol=1e-5)
    assert torch.allclose(ours.out.weight.grad, out.weight.grad, atol=1e-5)
    if positions == "learned":
        assert torch.allclose(ours.add_positions.embedding.weight.grad, table.grad, atol=1e-5)


def test_tagger_without_positions_is_permutation_equivariant_and_with_positions_is_not():
    torch.manual_seed(0)
    src = torch.randint(4, 24, (2, 8), generator=torch.Generator().manual_seed(0))
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(1))
    for positions in POSITIONS:
        model = Tagger(24, d_model=16, n_heads=2, d_ff=32, n_layers=2, max_len=8, positions=positions)
        with torch.no_grad():
            gap = (model(src[:, perm]) - model(src)[:, perm]).abs().max().item()
        if positions == "none":
            assert gap < 1e-5
        else:
            assert gap > 0.1, positions


def test_tagger_ignores_what_follows_in_the_padding():
    torch.manual_seed(0)
    model = Tagger(24, d_model=16, n_heads=2, d_ff=32, n_layers=2, max_len=12)
    src = torch.tensor([[5, 6, 7, 8]])
    longer = torch.tensor([[5, 6, 7, 8, data.PAD, data.PAD]])
    with torch.no_grad():
        assert torch.allclose(model(src), model(longer)[:, :4], atol=1e-5)


def test_tagger_bad_input():
    with pytest.raises(ValueError, match="positions to be one of"):
        Tagger(24, positions="rotary")
    with pytest.raises(ValueError, match="vocab_size to be a positive int"):
        Tagger(0)
    with pytest.raises(ValueError, match="d_model divisible by n_heads"):
        Tagger(24, d_model=10, n_heads=4)
    model = Tagger(24, d_model=16, n_heads=2, d_ff=32, n_layers=1, max_len=6)
    with pytest.raises(ValueError, match=r"length of src to be an int in \[1, 6\], got 7"):
        model(torch.ones(1, 7, dtype=torch.long))
    with pytest.raises(TypeError, match=r"integer token ids of shape \(B, S\)"):
        model(torch.ones(1, 4))
    with pytest.raises(ValueError, match=r"integer token ids of shape \(B, S\)"):
        model(torch.ones(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"src ids in \[0, 23\] \(the vocabulary\), got ids from 1 to 24"):
        model(torch.tensor([[1, 24]]))


def test_tag_targets_are_the_outputs_at_the_source_positions():
    vocab, _ = data.task_vocabs("reverse")
    pairs = [(list("abc"), list("cba")), (list("abcde"), list("edcba"))]
    batch = data.collate(pairs, vocab, vocab)
    targets = tag_targets(batch)
    assert targets.shape == batch.src.shape
    assert vocab.decode(targets[0]) == list("cba") and targets[0, 3:].eq(data.PAD).all()
    assert vocab.decode(targets[1]) == list("edcba")
    en, ko = data.task_vocabs("translate")
    with pytest.raises(ValueError, match="differ in length"):
        tag_targets(data.collate(data.make_pairs("translate", 4, 5, 8, seed=0), en, ko))


class _Oracle(nn.Module):
    """Logits that point at the reversed input (or at a fixed wrong token)."""

    def __init__(self, vocab_size: int, wrong: bool = False):
        super().__init__()
        self.vocab_size, self.wrong = vocab_size, wrong

    def forward(self, src):
        lengths = (src != data.PAD).sum(1)
        out = torch.zeros_like(src)
        for b, n in enumerate(lengths.tolist()):
            out[b, :n] = src[b, :n].flip(0)
        if self.wrong:
            out = torch.full_like(src, data.UNK)
        return nn.functional.one_hot(out, self.vocab_size).float()


def test_tagging_accuracy_of_a_perfect_and_a_wrong_model():
    vocab, _ = data.task_vocabs("reverse")
    pairs = data.make_pairs("reverse", 50, 3, 6, seed=0)
    acc, by_pos = tagging_accuracy(_Oracle(len(vocab)), pairs, vocab, batch_size=16)
    assert acc == 1.0 and by_pos.shape == (6,) and torch.equal(by_pos, torch.ones(6))
    acc, by_pos = tagging_accuracy(_Oracle(len(vocab), wrong=True), pairs, vocab)
    assert acc == 0.0 and by_pos.eq(0).all()
