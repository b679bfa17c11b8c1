"""Positional encodings: the paper's formula, the offset property, learned embeddings, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from transformer_course.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_encoding,
)


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
    with pytest.raises(ValueError, match="start"):
        module(torch.randn(1, 4, 8), start=-1)
    with pytest.raises(ValueError, match="d_model should be a positive int"):
        cls(d_model=0, max_len=10)
    with pytest.raises(ValueError, match="max_len should be a positive int"):
        cls(d_model=8, max_len=2.5)


def test_sinusoidal_encoding_bad_input():
    with pytest.raises(ValueError, match="max_len"):
        sinusoidal_encoding(0, 8)
    with pytest.raises(ValueError, match="d_model"):
        sinusoidal_encoding(4, -2)
