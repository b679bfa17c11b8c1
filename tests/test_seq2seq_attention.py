"""Notebook 03: the attention decoder with the course's attention modules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer_course.attention import AdditiveAttention, DotProductAttention
from transformer_course.data import PAD
from transformer_course.decoding import greedy_decode
from transformer_course.seq2seq import Seq2Seq, Seq2SeqConfig

V, D, H = 14, 6, 10
ATTENTIONS = {"none": lambda: None, "additive": lambda: AdditiveAttention(H, attn_size=7),
              "dot": lambda: DotProductAttention(H)}


def make_model(kind: str, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq.from_config(Seq2SeqConfig(V, V, D, H), ATTENTIONS[kind]())


def padded_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([7, 3, 5, 1])
    src = torch.randint(4, V, (4, 7), generator=g).masked_fill(torch.arange(7) >= lengths[:, None], PAD)
    tgt_in = torch.randint(4, V, (4, 5), generator=g)
    return src, lengths, tgt_in


# ----------------------------------------------------------------------------- the attention decoder

@pytest.mark.parametrize("kind", ["additive", "dot"])
def test_with_attention_gradients_reach_every_real_encoder_output(kind):
    model = make_model(kind)
    src, lengths, tgt_in = padded_batch()
    enc = model.encoder(src, lengths)
    enc.outputs.retain_grad()
    logits, _ = model.decoder(tgt_in, model.decoder.init_state(enc))
    logits.sum().backward()
    grad = enc.outputs.grad.norm(dim=-1)  # (B, S)
    real = torch.arange(7) < lengths[:, None]
    assert (grad[real] > 0).all(), "every real source position must receive gradient through attention"
    assert (grad[~real] == 0).all(), "padding must receive no gradient"


def test_without_attention_only_the_last_real_output_gets_gradient():
    model = make_model("none")
    src, lengths, tgt_in = padded_batch()
    enc = model.encoder(src, lengths)
    enc.outputs.retain_grad()
    logits, weights = model.decoder(tgt_in, model.decoder.init_state(enc))
    logits.sum().backward()
    assert weights is None
    grad = enc.outputs.grad.norm(dim=-1)  # (B, S)
    last = torch.zeros_like(grad, dtype=torch.bool)
    last[torch.arange(4), lengths - 1] = True
    assert (grad[last] > 0).all() and (grad[~last] == 0).all()


@pytest.mark.parametrize("kind", ["additive", "dot"])
def test_greedy_weights_sum_to_one_and_padding_gets_zero(kind):
    model = make_model(kind, seed=1)
    src, lengths, _ = padded_batch(1)
    ids, weights = greedy_decode(model, src, lengths, max_len=6, return_weights=True)
    assert weights.shape == (4, ids.shape[1], 7)
    assert torch.allclose(weights.sum(-1), torch.ones(4, ids.shape[1]), atol=1e-5)
    pad = (torch.arange(7) >= lengths[:, None])[:, None, :].expand_as(weights)
    assert weights[pad].abs().max() == 0
    assert weights[:, :, 0].gt(0).all()


@pytest.mark.parametrize("kind", ["additive", "dot"])
def test_extra_padding_changes_nothing_with_attention(kind):
    model = make_model(kind, seed=2)
    src, lengths, tgt_in = padded_batch(2)
    wider = torch.cat([src, torch.full((4, 4), PAD)], dim=1)
    a, wa = model.forward_with_weights(src, lengths, tgt_in)
    b, wb = model.forward_with_weights(wider, lengths, tgt_in)
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(wa, wb[..., :7], atol=1e-6) and wb[..., 7:].abs().max() == 0


def test_additive_decoder_step_equals_a_reference_built_from_pytorch_modules():
    """One decoding step, rebuilt from nn.GRUCell and F.softmax with copied weights: outputs and gradients."""
    model = make_model("additive", seed=3)
    src, lengths, tgt_in = padded_batch(3)
    state = model.start(src, lengths)
    logits, new_state = model.step(tgt_in[:, 0], state)

    dec, att = model.decoder, model.decoder.attention
    cell = nn.GRUCell(D + H, H)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(dec.rnn, f"{name}_l0"))
    keys, mask, s = state.encoded.outputs, state.encoded.mask, state.hidden
    scores = torch.tanh(F.linear(s, att.query_proj.weight)[:, None] + F.linear(keys, att.key_proj.weight))
    scores = F.linear(scores, att.score.weight)[..., 0].masked_fill(~mask, float("-inf"))  # (B, S)
    weights = F.softmax(scores, dim=-1)  # (B, S)
    context = torch.einsum("bs,bsh->bh", weights, keys)  # (B, H)
    hidden = cell(torch.cat([dec.embed(tgt_in[:, 0]), context], -1), s)  # (B, H)
    ref = F.linear(torch.cat([hidden, context], -1), dec.out.weight, dec.out.bias)  # (B, V)

    assert torch.allclose(logits, ref, atol=1e-5)
    assert torch.allclose(new_state.weights, weights, atol=1e-6)
    shared = [att.query_proj.weight, att.key_proj.weight, att.score.weight, dec.out.weight, dec.embed.weight]
    ours = torch.autograd.grad(logits.square().sum(), [*shared, dec.rnn.weight_ih_l0, dec.rnn.weight_hh_l0],
                               retain_graph=True)
    theirs = torch.autograd.grad(ref.square().sum(), [*shared, cell.weight_ih, cell.weight_hh])
    for a, b in zip(ours, theirs, strict=True):
        assert a.abs().max() > 0 and torch.allclose(a, b, atol=1e-5)


# ----------------------------------------------------------------------------- keys projected once

@pytest.mark.parametrize("kind, general", [("additive", False), ("dot", True)])
def test_keys_projected_once_per_source_give_the_same_logits_and_gradients(kind, general):
    """The decoder computes W_k h_s once in init_state; recomputing it at every step is the same maths."""
    torch.manual_seed(3)
    attention = (AdditiveAttention(H, attn_size=7) if kind == "additive"
                 else DotProductAttention(H, general=general))
    model = Seq2Seq.from_config(Seq2SeqConfig(V, V, D, H), attention)
    src, lengths, tgt_in = padded_batch(seed=5)

    def run(cached: bool):
        model.zero_grad()
        state = model.start(src, lengths)
        assert state.keys is not None
        if not cached:
            state = state._replace(keys=None)  # the attention module projects the keys at every step
        logits, weights = model.decoder(tgt_in, state)
        (logits.square().mean() + weights.sum()).backward()
        return logits.detach(), weights.detach(), [p.grad.clone() for p in model.parameters()]

    cached, uncached = run(True), run(False)
    assert torch.allclose(cached[0], uncached[0], atol=1e-6)
    assert torch.allclose(cached[1], uncached[1], atol=1e-6)
    for g_cached, g_uncached in zip(cached[2], uncached[2], strict=True):
        assert torch.allclose(g_cached, g_uncached, atol=1e-6)


def test_keys_are_projected_once_not_at_every_step():
    model = make_model("additive")
    src, lengths, tgt_in = padded_batch()
    calls = []
    model.decoder.attention.key_proj.register_forward_hook(lambda *args: calls.append(1))
    model(src, lengths, tgt_in)
    assert len(calls) == 1, f"the key projection ran {len(calls)} times for {tgt_in.shape[1]} target steps"


def test_plain_dot_attention_has_no_keys_to_project():
    model = make_model("dot")
    src, lengths, _ = padded_batch()
    assert model.start(src, lengths).keys is None
    with pytest.raises(ValueError, match="projected_keys=None"):
        model.decoder.attention(torch.randn(4, H), torch.randn(4, 7, H), None,
                                projected_keys=torch.randn(4, 7, H))


def test_projected_keys_of_the_wrong_shape_are_refused():
    att = AdditiveAttention(H, attn_size=7)
    with pytest.raises(ValueError, match=r"projected_keys of shape \(B, S, A\) = \(4, 7, 7\)"):
        att(torch.randn(4, H), torch.randn(4, 7, H), None, projected_keys=torch.randn(4, 7, 6))
