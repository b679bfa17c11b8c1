"""Tiled attention and the online softmax equal exact attention and softmax, and refuse bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from transformer_course.attention import scaled_dot_product_attention
from transformer_course.efficient import online_softmax, online_softmax_step, tiled_attention

# (B, H, T, S, Dh, Dv, block_size, block_q): T not a multiple of the block, T != S, one block, block 1
SHAPES = [
    (2, 3, 10, 10, 8, 8, 4, None),
    (1, 2, 7, 13, 8, 5, 4, None),
    (2, 1, 13, 7, 4, 4, 5, 3),
    (1, 1, 33, 33, 16, 16, 8, 16),
    (3, 2, 5, 9, 8, 8, 100, None),
    (1, 1, 6, 6, 4, 4, 1, None),
]


def _qkv(B, H, T, S, Dh, Dv, dtype=torch.float64, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, n, d, generator=g, dtype=dtype) for n, d in ((T, Dh), (S, Dh), (S, Dv)))
    return [x.requires_grad_(requires_grad) for x in (q, k, v)]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_tiled_equals_exact_attention_in_float64(shape, causal):
    *dims, block, block_q = shape
    q, k, v = _qkv(*dims, seed=sum(dims))
    T, S = q.shape[-2], k.shape[-2]
    mask = torch.ones(T, S, dtype=torch.bool).tril() if causal else None  # top-left aligned
    out = tiled_attention(q, k, v, causal, block_size=block, block_q=block_q)
    assert out.shape == (*q.shape[:-1], v.shape[-1])
    assert torch.allclose(out, scaled_dot_product_attention(q, k, v, mask)[0], atol=1e-12)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, is_causal=causal), atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_tiled_equals_fused_attention_in_float32(causal):
    q, k, v = _qkv(2, 4, 100, 100, 32, 32, dtype=torch.float32, seed=1)
    out = tiled_attention(q * 3, k, v, causal, block_size=16)  # * 3: peaked weights, large logits
    ref = F.scaled_dot_product_attention(q * 3, k, v, is_causal=causal)
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-4)


def test_tiled_survives_logits_that_overflow_a_plain_exp():
    q, k, v = _qkv(1, 1, 9, 9, 4, 4, dtype=torch.float32, seed=2)
    q = q * 300  # logits in the thousands: exp overflows without the running max
    out = tiled_attention(q, k, v, block_size=4)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v), atol=1e-4)


@pytest.mark.parametrize("causal", [False, True])
def test_tiled_gradients_equal_the_reference(causal):
    q, k, v = _qkv(2, 2, 11, 11, 8, 6, seed=3, requires_grad=True)
    upstream = torch.randn(2, 2, 11, 6, dtype=torch.float64)
    ours = torch.autograd.grad(tiled_attention(q, k, v, causal, block_size=4), (q, k, v), upstream)
    ref = torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, is_causal=causal), (q, k, v), upstream)
    for a, b in zip(ours, ref, strict=True):
        assert torch.allclose(a, b, atol=1e-10)


def test_causal_rows_never_see_later_keys():
    q, k, v = _qkv(1, 1, 12, 12, 4, 4, seed=4)
    out = tiled_attention(q, k, v, causal=True, block_size=5)
    v2 = v.clone()
    v2[..., 7:, :] = 100.0  # rewrite the values of keys 7.. : queries 0..6 must not move
    out2 = tiled_attention(q, k, v2, causal=True, block_size=5)
    assert torch.equal(out[..., :7, :], out2[..., :7, :])
    assert not torch.allclose(out[..., 7:, :], out2[..., 7:, :])


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, None])
def test_bad_block_size_is_refused(bad):
    q, k, v = _qkv(1, 1, 4, 4, 4, 4)
    with pytest.raises(ValueError, match="tiled_attention expects block_size to be a positive int"):
        tiled_attention(q, k, v, block_size=bad)
    if bad is not None:  # block_q=None means "the same as block_size"
        with pytest.raises(ValueError, match="tiled_attention expects block_q to be a positive int"):
            tiled_attention(q, k, v, block_size=2, block_q=bad)


def test_shape_mismatches_are_refused():
    q, k, v = _qkv(1, 2, 4, 6, 8, 8)
    with pytest.raises(ValueError, match="same last dimension Dh"):
        tiled_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="same number of positions S"):
        tiled_attention(q, k, v[..., :5, :])
    with pytest.raises(ValueError, match="same leading"):
        tiled_attention(q, k[:, :1], v[:, :1])
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        tiled_attention(q[0, 0, 0], k, v)


def test_bad_types_are_refused():
    q, k, v = _qkv(1, 1, 4, 4, 4, 4)
    with pytest.raises(TypeError, match="floating-point"):
        tiled_attention(q.long(), k, v)
    with pytest.raises(TypeError, match="torch.Tensor"):
        tiled_attention(q.tolist(), k, v)
    with pytest.raises(TypeError, match="tiled_attention expects causal to be True or False"):
        tiled_attention(q, k, v, causal="yes")


# ----------------------------------------------------------------------------- the online softmax

@pytest.mark.parametrize("block_size", [1, 3, 8, 50])
def test_online_softmax_equals_softmax(block_size):
    x = torch.randn(4, 17, dtype=torch.float64) * 20
    probs, m, l = online_softmax(x, block_size)
    assert torch.allclose(probs, torch.softmax(x, -1), atol=1e-12)
    assert torch.equal(m, x.amax(-1))
    assert torch.allclose(l, torch.exp(x - m[:, None]).sum(-1), atol=1e-12)
    with pytest.raises(ValueError, match="block_size"):
        online_softmax(x, 0)


def test_online_softmax_step_over_all_blocks_gives_attention():
    q, k, v = _qkv(2, 1, 5, 12, 4, 3, seed=5)
    scores = q @ k.transpose(-2, -1) / 2.0  # (B, H, T, S), Dh = 4
    m = torch.full((2, 1, 5), -math.inf, dtype=torch.float64)
    l, acc = torch.zeros(2, 1, 5, dtype=torch.float64), torch.zeros(2, 1, 5, 3, dtype=torch.float64)
    for s in range(0, 12, 5):
        m, l, acc = online_softmax_step(m, l, acc, scores[..., s:s + 5], v[..., s:s + 5, :])
    assert torch.allclose(acc / l[..., None], torch.softmax(scores, -1) @ v, atol=1e-12)
    assert torch.equal(m, scores.amax(-1))


def test_online_softmax_step_on_a_fully_masked_first_block_gives_no_nan():
    m, l, acc = torch.full((3,), -math.inf), torch.zeros(3), torch.zeros(3, 2)
    m, l, acc = online_softmax_step(m, l, acc, torch.full((3, 4), -math.inf), torch.randn(4, 2))
    assert torch.isneginf(m).all() and (l == 0).all() and (acc == 0).all()


def test_online_softmax_refuses_what_is_not_a_float_tensor():
    with pytest.raises(TypeError, match=r"online_softmax expects x .* to be a torch.Tensor, got list"):
        online_softmax([1.0, 2.0], 2)
    with pytest.raises(TypeError, match="floating-point"):
        online_softmax(torch.arange(4), 2)
