"""The course's attention against PyTorch's: outputs, weights and gradients; masks; bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer_course.attention import (
    AdditiveAttention,
    DotProductAttention,
    MultiHeadAttention,
    additive_attention,
    dot_product_attention,
    make_causal_mask,
    make_padding_mask,
    merge_heads,
    scaled_dot_product_attention,
    split_heads,
)
from transformer_course.reference import mha_to_torch

DT = torch.float64
TOL = {"atol": 1e-10, "rtol": 1e-8}


def _rand(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=DT, requires_grad=True)


def _grads(out: torch.Tensor, inputs: list[torch.Tensor], g: torch.Generator) -> list[torch.Tensor]:
    upstream = torch.randn(out.shape, generator=g, dtype=out.dtype)
    return list(torch.autograd.grad(out, inputs, upstream))


def _reference_weights(q, k, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, -1).nan_to_num(0.0)


# ----------------------------------------------------------------------------- scaled dot-product

SDPA_CASES = [  # (q shape, k shape), mask kind
    ((2, 3, 5, 8), (2, 3, 7, 8), None),
    ((4, 6, 16), (4, 6, 16), "causal"),
    ((2, 4, 5, 4), (2, 4, 9, 4), "padding"),
    ((3, 2, 6, 8), (3, 2, 6, 8), "random"),
    ((7, 1), (3, 1), "random"),  # no batch axes, Dh = 1
    ((2, 2, 4, 8), (2, 2, 5, 8), "with_empty_row"),
]


def _make_mask(kind, q_shape, k_shape, g):
    T, S = q_shape[-2], k_shape[-2]
    batch = torch.broadcast_shapes(q_shape[:-2], k_shape[:-2])
    if kind is None:
        return None
    if kind == "causal":
        return make_causal_mask(T)
    if kind == "padding":
        lengths = torch.randint(1, S + 1, (batch[0],), generator=g)
        tokens = torch.where(torch.arange(S) < lengths[:, None], 5, 0)
        return make_padding_mask(tokens, pad_id=0)  # (B, 1, 1, S)
    mask = torch.rand(*batch, T, S, generator=g) > 0.4
    mask[..., 0] = True  # every query keeps a key
    if kind == "with_empty_row":
        mask[..., 1, :] = False
    return mask


@pytest.mark.parametrize("case", range(len(SDPA_CASES)))
def test_sdpa_equals_pytorch_outputs_weights_and_gradients(case):
    q_shape, k_shape, kind = SDPA_CASES[case]
    g = torch.Generator().manual_seed(case)
    q, k = _rand(g, *q_shape), _rand(g, *k_shape)
    v = _rand(g, *k_shape[:-1], 5)
    mask = _make_mask(kind, q_shape, k_shape, g)
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert out.shape == expected.shape == (*q_shape[:-1], 5)
    assert weights.shape == (*torch.broadcast_shapes(q_shape[:-2], k_shape[:-2]), q_shape[-2], k_shape[-2])
    assert torch.allclose(out, expected, **TOL)
    assert torch.allclose(weights, _reference_weights(q, k, mask), **TOL)
    seed = g.initial_seed()
    ours = _grads(out, [q, k, v], torch.Generator().manual_seed(seed))
    theirs = _grads(expected, [q, k, v], torch.Generator().manual_seed(seed))
    for a, b in zip(ours, theirs, strict=True):
        assert torch.isfinite(a).all()
        assert torch.allclose(a, b, **TOL)


def test_sdpa_float32_matches_pytorch():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 10, 16, generator=g) for _ in range(3))
    out, _ = scaled_dot_product_attention(q, k, v, make_causal_mask(10))
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(out, expected, atol=1e-5)


def test_sdpa_scales_by_sqrt_head_size():
    q = torch.ones(1, 1, 4, dtype=DT)
    k = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]], dtype=DT)
    _, w = scaled_dot_product_attention(q, k, k)
    # logits 4 / sqrt(4) = 2 and 0
    assert torch.allclose(w[0, 0], torch.softmax(torch.tensor([2.0, 0.0], dtype=DT), -1))


def test_fully_masked_row_gives_zeros_and_finite_gradients():
    g = torch.Generator().manual_seed(1)
    q, k, v = _rand(g, 2, 3, 4), _rand(g, 2, 5, 4), _rand(g, 2, 5, 4)
    mask = torch.ones(2, 3, 5, dtype=torch.bool)
    mask[0, 1] = False  # query 1 of example 0 may see nothing
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert torch.equal(out[0, 1], torch.zeros(4, dtype=DT))
    assert torch.equal(w[0, 1], torch.zeros(5, dtype=DT))
    assert torch.allclose(w[0, 0].sum(), torch.tensor(1.0, dtype=DT))
    out.sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert torch.equal(q.grad[0, 1], torch.zeros(4, dtype=DT))


def test_padded_keys_get_exactly_zero_weight():
    g = torch.Generator().manual_seed(2)
    tokens = torch.tensor([[4, 5, 6, 0, 0], [7, 0, 0, 0, 0]])
    mask = make_padding_mask(tokens, pad_id=0)
    q, k, v = _rand(g, 2, 1, 3, 8), _rand(g, 2, 1, 5, 8), _rand(g, 2, 1, 5, 8)
    _, w = scaled_dot_product_attention(q, k, v, mask)
    assert torch.equal(w[0, 0, :, 3:], torch.zeros(3, 2, dtype=DT))
    assert torch.equal(w[1, 0, :, 1:], torch.zeros(3, 4, dtype=DT))
    assert torch.allclose(w.sum(-1), torch.ones(2, 1, 3, dtype=DT))
    assert torch.allclose(w[1, 0, :, 0], torch.ones(3, dtype=DT))


def test_causal_mask_future_tokens_do_not_change_the_past():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 9, 8, generator=g, dtype=DT)
    out, w = scaled_dot_product_attention(x, x, x, make_causal_mask(9))
    x2 = x.clone()
    x2[:, 5:] = torch.randn(2, 4, 8, generator=g, dtype=DT)
    out2, _ = scaled_dot_product_attention(x2, x2, x2, make_causal_mask(9))
    assert torch.allclose(out[:, :5], out2[:, :5], **TOL)
    assert not torch.allclose(out[:, 5:], out2[:, 5:])
    assert torch.equal(w.triu(1), torch.zeros_like(w))


def test_mask_helpers():
    m = make_causal_mask(4)
    assert m.dtype == torch.bool and m.shape == (4, 4)
    assert torch.equal(m, torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]).bool())
    p = make_padding_mask(torch.tensor([[3, 4, 0], [0, 5, 0]]), pad_id=0)
    assert p.shape == (2, 1, 1, 3) and p.dtype == torch.bool
    assert torch.equal(p[:, 0, 0], torch.tensor([[True, True, False], [False, True, False]]))
    assert (p & m[:3, :3]).shape == (2, 1, 3, 3)


def test_split_and_merge_heads_round_trip_and_layout():
    x = torch.arange(2 * 3 * 8, dtype=torch.float32).view(2, 3, 8)
    h = split_heads(x, 4)
    assert h.shape == (2, 4, 3, 2)
    assert torch.equal(h[1, 2, 0], x[1, 0, 4:6])  # head 2 holds features 4..5 of every position
    assert torch.equal(merge_heads(h), x)


# ----------------------------------------------------------------------------- multi-head attention

def _torch_masks(mask_kind, tokens, T, S):
    """Our mask (True = allowed) and nn.MultiheadAttention's (True = blocked)."""
    ours, attn_mask, key_padding_mask = None, None, None
    if mask_kind in ("padding", "both"):
        ours = make_padding_mask(tokens, pad_id=0)  # (B, 1, 1, S)
        key_padding_mask = ~ours[:, 0, 0]  # (B, S)
    if mask_kind in ("causal", "both"):
        causal = make_causal_mask(T)
        attn_mask = ~causal
        ours = causal if ours is None else ours & causal
    return ours, attn_mask, key_padding_mask


MHA_CASES = [  # (B, T, S, D, H, self-attention?, mask kind, bias)
    (2, 5, 5, 16, 4, True, None, True),
    (3, 6, 6, 12, 3, True, "causal", True),
    (2, 4, 7, 16, 2, False, "padding", True),
    (3, 6, 6, 8, 8, True, "both", False),
    (1, 3, 9, 24, 6, False, None, True),
]


@pytest.mark.parametrize("B,T,S,D,H,is_self,mask_kind,bias", MHA_CASES)
def test_mha_equals_nn_multiheadattention(B, T, S, D, H, is_self, mask_kind, bias):
    torch.manual_seed(10 + D + H)
    mha = MultiHeadAttention(D, H, bias=bias).to(DT)
    ref = mha_to_torch(mha)
    g = torch.Generator().manual_seed(20 + T)
    query = torch.randn(B, T, D, generator=g, dtype=DT, requires_grad=True)
    if is_self:
        key = value = query
    else:
        key = torch.randn(B, S, D, generator=g, dtype=DT, requires_grad=True)
        value = torch.randn(B, S, D, generator=g, dtype=DT, requires_grad=True)
    lengths = torch.randint(1, S + 1, (B,), generator=g)
    tokens = torch.where(torch.arange(S) < lengths[:, None], 3, 0)
    ours_mask, attn_mask, kpm = _torch_masks(mask_kind, tokens, T, S)

    out, w = mha(query, key, value, ours_mask)
    out_ref, w_ref = ref(query, key, value, key_padding_mask=kpm, attn_mask=attn_mask,
                         need_weights=True, average_attn_weights=False)
    _, w_avg = ref(query, key, value, key_padding_mask=kpm, attn_mask=attn_mask)
    assert w.shape == (B, H, T, S)
    assert torch.allclose(out, out_ref, **TOL)
    assert torch.allclose(w, w_ref, **TOL)
    assert torch.allclose(w.mean(1), w_avg, **TOL)

    inputs = [query] if is_self else [query, key, value]
    params = [mha.q_proj.weight, mha.k_proj.weight, mha.v_proj.weight, mha.out_proj.weight]
    ref_params = [ref.in_proj_weight, ref.out_proj.weight]
    if bias:
        params += [mha.q_proj.bias, mha.k_proj.bias, mha.v_proj.bias, mha.out_proj.bias]
        ref_params += [ref.in_proj_bias, ref.out_proj.bias]
    seed = 99 + B
    ours = _grads(out, inputs + params, torch.Generator().manual_seed(seed))
    theirs = _grads(out_ref, inputs + ref_params, torch.Generator().manual_seed(seed))
    n = len(inputs)
    for a, b in zip(ours[:n], theirs[:n], strict=True):
        assert torch.allclose(a, b, **TOL)
    assert torch.allclose(torch.cat(ours[n:n + 3]), theirs[n], **TOL)  # q, k, v weights packed
    assert torch.allclose(ours[n + 3], theirs[n + 1], **TOL)
    if bias:
        assert torch.allclose(torch.cat(ours[n + 4:n + 7]), theirs[n + 2], **TOL)
        assert torch.allclose(ours[n + 7], theirs[n + 3], **TOL)


def test_mha_causal_property_and_padding_property():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).to(DT)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 8, 16, generator=g, dtype=DT)
    causal = make_causal_mask(8)
    out, w = mha(x, x, x, causal)
    x2 = x.clone()
    x2[:, 6:] += 1.0
    out2, _ = mha(x2, x2, x2, causal)
    assert torch.allclose(out[:, :6], out2[:, :6], **TOL)
    assert not torch.allclose(out[:, 6:], out2[:, 6:])
    assert torch.equal(w.triu(1), torch.zeros_like(w))

    tokens = torch.tensor([[1, 2, 3, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7, 0]])
    _, w = mha(x, x, x, make_padding_mask(tokens, 0))
    assert torch.equal(w[0, :, :, 3:], torch.zeros(4, 8, 5, dtype=DT))
    assert torch.equal(w[1, :, :, 7], torch.zeros(4, 8, dtype=DT))
    assert torch.allclose(w.sum(-1), torch.ones(2, 4, 8, dtype=DT))


def test_mha_fully_padded_sequence_gives_no_nan():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2)
    x = torch.randn(2, 3, 8, requires_grad=True)
    tokens = torch.tensor([[0, 0, 0], [1, 2, 0]])
    out, w = mha(x, x, x, make_padding_mask(tokens, 0))
    assert torch.isfinite(out).all()
    assert torch.equal(w[0], torch.zeros(2, 3, 3))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_mha_dropout_only_in_training():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, dropout=0.5)
    x = torch.randn(2, 6, 16)
    mha.eval()
    a, _ = mha(x, x, x)
    b, _ = mha(x, x, x)
    assert torch.equal(a, b)
    mha.train()
    c, w = mha(x, x, x)
    assert not torch.allclose(a, c)
    assert (w == 0).any()


def test_mha_submodules():
    mha = MultiHeadAttention(32, 4, bias=False)
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        lin = getattr(mha, name)
        assert isinstance(lin, nn.Linear) and lin.weight.shape == (32, 32) and lin.bias is None
    assert mha.d_head == 8


# ----------------------------------------------------------------------------- seq2seq attention

SEQ2SEQ_MODULES = {  # name: (factory, key size)
    "additive": (lambda: AdditiveAttention(6, attn_size=5), 6),
    "dot": (lambda: DotProductAttention(6), 6),
    "general": (lambda: DotProductAttention(6, key_size=4, general=True), 4),
}


@pytest.mark.parametrize("name", SEQ2SEQ_MODULES)
def test_seq2seq_attention_weights_mask_and_gradients(name):
    torch.manual_seed(0)
    make, key_size = SEQ2SEQ_MODULES[name]
    module = make()
    query = torch.randn(3, 6, requires_grad=True)
    keys = torch.randn(3, 7, key_size, requires_grad=True)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[0, 4:] = False
    mask[1, 1:] = False
    context, w = module(query, keys, mask)
    assert context.shape == (3, key_size) and w.shape == (3, 7)
    assert torch.allclose(w.sum(-1), torch.ones(3))
    assert torch.equal(w[0, 4:], torch.zeros(3)) and torch.equal(w[1, 1:], torch.zeros(6))
    assert torch.allclose(context[1], keys[1, 0])  # one real key: the context is that key
    assert torch.allclose(context, (w[:, :, None] * keys).sum(1), atol=1e-6)
    context.pow(2).sum().backward()
    assert query.grad.abs().sum() > 0 and keys.grad.abs().sum() > 0
    assert torch.equal(keys.grad[1, 1:], torch.zeros(6, key_size))  # masked keys get no gradient
    for p in module.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_additive_attention_equals_its_formula_written_as_a_loop():
    torch.manual_seed(1)
    att = AdditiveAttention(5, key_size=3, attn_size=4)
    query, keys = torch.randn(2, 5), torch.randn(2, 6, 3)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]).bool()
    context, w = att(query, keys, mask)
    Wq, Wk, v = att.query_proj.weight, att.key_proj.weight, att.score.weight[0]
    for b in range(2):
        scores = torch.stack([v @ torch.tanh(Wq @ query[b] + Wk @ keys[b, s]) for s in range(6)])
        scores = scores.masked_fill(~mask[b], float("-inf"))
        a = torch.softmax(scores, 0)
        assert torch.allclose(w[b], a, atol=1e-6)
        assert torch.allclose(context[b], a @ keys[b], atol=1e-6)


def test_dot_product_attention_equals_pytorch_without_scale():
    g = torch.Generator().manual_seed(2)
    query, keys = _rand(g, 4, 8), _rand(g, 4, 5, 8)
    mask = torch.rand(4, 5, generator=g) > 0.3
    mask[:, 0] = True
    context, w = DotProductAttention(8)(query, keys, mask)
    expected = F.scaled_dot_product_attention(query[:, None], keys, keys, attn_mask=mask[:, None],
                                              scale=1.0)[:, 0]
    assert torch.allclose(context, expected, **TOL)
    assert torch.allclose(w, torch.softmax((keys @ query[:, :, None])[..., 0].masked_fill(~mask, -1e300), -1),
                          **TOL)
    a = _grads(context, [query, keys], torch.Generator().manual_seed(0))
    b = _grads(expected, [query, keys], torch.Generator().manual_seed(0))
    for x, y in zip(a, b, strict=True):
        assert torch.allclose(x, y, **TOL)


def test_seq2seq_attention_fully_masked_gives_zeros():
    query, keys = torch.randn(2, 4), torch.randn(2, 3, 4)
    mask = torch.tensor([[False, False, False], [True, False, False]])
    for module in (AdditiveAttention(4), DotProductAttention(4)):
        context, w = module(query, keys, mask)
        assert torch.equal(context[0], torch.zeros(4)) and torch.equal(w[0], torch.zeros(3))
        assert torch.isfinite(context).all()


# ----------------------------------------------------------------------------- bad input

def test_sdpa_bad_inputs():
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    with pytest.raises(ValueError, match="same last dimension"):
        scaled_dot_product_attention(q, torch.randn(2, 5, 6), v)
    with pytest.raises(ValueError, match="same number of positions"):
        scaled_dot_product_attention(q, k, torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match="broadcast"):
        scaled_dot_product_attention(q, torch.randn(3, 5, 4), torch.randn(3, 5, 4))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        scaled_dot_product_attention(torch.randn(4), k, v)
    with pytest.raises(TypeError, match="torch.Tensor"):
        scaled_dot_product_attention(q.tolist(), k, v)
    with pytest.raises(TypeError, match="floating-point"):
        scaled_dot_product_attention(q.long(), k, v)
    with pytest.raises(TypeError, match="torch.bool"):
        scaled_dot_product_attention(q, k, v, torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"broadcasts to \(\.\.\., T, S\)"):
        scaled_dot_product_attention(q, k, v, torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="broadcasts to"):
        scaled_dot_product_attention(q, k, v, torch.ones(7, 2, 3, 5, dtype=torch.bool))  # would grow


def test_mha_bad_inputs():
    with pytest.raises(ValueError, match="d_model divisible by n_heads .*got d_model=10 and n_heads=3"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="positive int"):
        MultiHeadAttention(0, 1)
    with pytest.raises(ValueError, match="dropout"):
        MultiHeadAttention(8, 2, dropout=1.5)
    mha = MultiHeadAttention(8, 2)
    x = torch.randn(2, 3, 8)
    with pytest.raises(ValueError, match="d_model=8"):
        mha(torch.randn(2, 3, 6), x, x)
    with pytest.raises(ValueError, match="3 dimensions"):
        mha(torch.randn(3, 8), x, x)
    with pytest.raises(ValueError, match="agree on B and S"):
        mha(x, x, torch.randn(2, 4, 8))
    with pytest.raises(ValueError, match=r"mask\[:, None\]"):
        mha(x, x, x, torch.ones(2, 3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="torch.bool"):
        mha(x, x, x, torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"\(B, H, T, S\)"):
        mha(x, x, x, torch.ones(4, 4, dtype=torch.bool))


def test_helpers_bad_inputs():
    with pytest.raises(ValueError, match="positive int"):
        make_causal_mask(0)
    with pytest.raises(ValueError, match="positive int"):
        make_causal_mask(3.0)
    with pytest.raises(ValueError, match=r"\(B, S\)"):
        make_padding_mask(torch.tensor([1, 2, 0]), 0)
    with pytest.raises(TypeError, match="integer token ids"):
        make_padding_mask(torch.randn(2, 3), 0)
    with pytest.raises(ValueError, match="divisible by n_heads=3"):
        split_heads(torch.randn(2, 3, 8), 3)
    with pytest.raises(ValueError, match=r"\(B, H, T, Dh\)"):
        merge_heads(torch.randn(2, 3, 8))


def test_seq2seq_bad_inputs():
    att = AdditiveAttention(4)
    with pytest.raises(ValueError, match="2 dimensions"):
        att(torch.randn(2, 1, 4), torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="the same batch size B"):
        att(torch.randn(3, 4), torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"\(B, S\)"):
        att(torch.randn(2, 4), torch.randn(2, 3, 4), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="torch.bool"):
        att(torch.randn(2, 4), torch.randn(2, 3, 4), torch.ones(2, 3))
    with pytest.raises(ValueError, match="that fit query"):
        att(torch.randn(2, 5), torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="general=True"):
        DotProductAttention(4, key_size=6)
    with pytest.raises(ValueError, match="of the same size D"):
        DotProductAttention(4)(torch.randn(2, 4), torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="attention size A"):
        additive_attention(torch.randn(2, 4), torch.randn(2, 3, 4), torch.randn(5, 4),
                           torch.randn(5, 4), torch.randn(6))
    with pytest.raises(ValueError, match="positive int"):
        AdditiveAttention(0)
    assert dot_product_attention(torch.randn(2, 4), torch.randn(2, 3, 4))[1].shape == (2, 3)
