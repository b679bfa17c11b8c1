"""The GRU encoder-decoder, its attention hook, and greedy decoding."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from transformer_course.data import BOS, EOS, PAD, make_pairs, task_vocabs
from transformer_course.decoding import greedy_decode
from transformer_course.seq2seq import (
    Encoded,
    RNNDecoder,
    RNNEncoder,
    Seq2Seq,
    Seq2SeqConfig,
    last_real_state,
    length_grouped_batches,
)

V, D, H = 12, 8, 16


class MeanAttention(nn.Module):
    """A stand-in attention: the mean of the real encoder states, whatever the query."""

    def forward(self, query, keys, mask):
        weights = mask.float() / mask.sum(1, keepdim=True)  # (B, S)
        return (weights.unsqueeze(1) @ keys).squeeze(1), weights


class QueryAttention(nn.Module):
    """A stand-in attention that depends on the query (dot product), so weights vary by step."""

    def forward(self, query, keys, mask):
        scores = (keys @ query.unsqueeze(-1)).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        return (weights.unsqueeze(1) @ keys).squeeze(1), weights


def random_batch(g: torch.Generator, B: int = 4, S: int = 7):
    lengths = torch.randint(1, S + 1, (B,), generator=g)
    lengths[0] = S  # one row without padding
    src = torch.randint(4, V, (B, S), generator=g)
    src[torch.arange(S) >= lengths[:, None]] = PAD
    return src, lengths


def make_model(attention: nn.Module | None = None, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq.from_config(Seq2SeqConfig(V, V, D, H), attention)


# --- the encoder -------------------------------------------------------------------------

def test_final_state_equals_packed_gru_outputs_and_gradients():
    g = torch.Generator().manual_seed(1)
    enc = RNNEncoder(V, D, H)
    src, lengths = random_batch(g, B=5, S=9)
    ours = enc(src, lengths)
    packed = pack_padded_sequence(enc.embed(src), lengths, batch_first=True, enforce_sorted=False)
    _, h_n = enc.rnn(packed)  # PyTorch's reference: the state at each row's last real token
    assert torch.allclose(ours.final, h_n[0], atol=1e-6)
    w = torch.randn(H, generator=g)
    grads_ours = torch.autograd.grad((ours.final @ w).sum(), list(enc.parameters()))
    grads_ref = torch.autograd.grad((h_n[0] @ w).sum(), list(enc.parameters()))
    for a, b in zip(grads_ours, grads_ref, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_appending_padding_leaves_the_final_state_unchanged():
    g = torch.Generator().manual_seed(2)
    enc = RNNEncoder(V, D, H)
    src, lengths = random_batch(g)
    wider = torch.cat([src, torch.full((src.shape[0], 5), PAD)], dim=1)
    a, b = enc(src, lengths), enc(wider, lengths)
    assert torch.allclose(a.final, b.final, atol=1e-6)
    assert torch.allclose(a.outputs, b.outputs[:, : src.shape[1]], atol=1e-6)
    assert not torch.allclose(b.final, enc.rnn(enc.embed(wider))[0][:, -1], atol=1e-3)  # the naive read


def test_encoder_mask_and_zero_outputs_at_padding():
    g = torch.Generator().manual_seed(3)
    src, lengths = random_batch(g)
    enc = RNNEncoder(V, D, H)(src, lengths)
    assert torch.equal(enc.mask, src != PAD)
    assert (enc.outputs[~enc.mask] == 0).all()
    assert torch.equal(enc.final, enc.outputs[torch.arange(len(lengths)), lengths - 1])


def test_last_real_state_picks_index_length_minus_one():
    outputs = torch.arange(2 * 4 * 3, dtype=torch.float).view(2, 4, 3)
    got = last_real_state(outputs, torch.tensor([2, 4]))
    assert torch.equal(got, torch.stack([outputs[0, 1], outputs[1, 3]]))


# --- the decoder and its attention hook ---------------------------------------------------

@pytest.mark.parametrize("attention", [None, MeanAttention(), QueryAttention()])
def test_teacher_forcing_equals_stepping(attention):
    g = torch.Generator().manual_seed(4)
    model = make_model(attention)
    src, lengths = random_batch(g)
    tgt_in = torch.randint(4, V, (src.shape[0], 6), generator=g)
    tgt_in[:, 0] = BOS
    logits, weights = model.forward_with_weights(src, lengths, tgt_in)
    assert logits.shape == (4, 6, V)
    state = model.start(src, lengths)
    for t in range(tgt_in.shape[1]):
        step_logits, state = model.step(tgt_in[:, t], state)
        assert torch.allclose(step_logits, logits[:, t], atol=1e-5)
        if attention is None:
            assert weights is None and state.weights is None
        else:
            assert torch.allclose(state.weights, weights[:, t], atol=1e-6)


def test_context_is_the_final_state_without_attention_and_every_state_with_it():
    g = torch.Generator().manual_seed(5)
    outputs, mask = torch.randn(3, 5, H, generator=g), torch.ones(3, 5, dtype=torch.bool)
    final = outputs[:, -1]
    changed = outputs.clone()
    changed[:, 0] += 1.0  # an early encoder state, not the final one
    tokens = torch.full((3,), BOS)
    for attention, should_change in [(None, False), (MeanAttention(), True)]:
        torch.manual_seed(0)
        dec = RNNDecoder(V, D, H, attention)
        a, _ = dec.step(tokens, dec.init_state(Encoded(outputs, final, mask)))
        b, _ = dec.step(tokens, dec.init_state(Encoded(changed, final, mask)))
        assert torch.allclose(a, b) is not should_change


def test_attention_weights_are_zero_on_padding_and_sum_to_one():
    g = torch.Generator().manual_seed(6)
    model = make_model(QueryAttention())
    src, lengths = random_batch(g)
    tgt_in = torch.full((src.shape[0], 3), BOS)
    _, weights = model.forward_with_weights(src, lengths, tgt_in)
    assert weights.shape == (4, 3, src.shape[1])
    assert (weights.masked_select((src == PAD).unsqueeze(1).expand_as(weights)) == 0).all()
    assert torch.allclose(weights.sum(-1), torch.ones(4, 3))


def test_gradients_reach_the_attention_module():
    class Scaled(MeanAttention):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(1.5))

        def forward(self, query, keys, mask):
            context, weights = super().forward(query, keys, mask)
            return self.scale * context, weights

    g = torch.Generator().manual_seed(7)
    model = make_model(Scaled())
    src, lengths = random_batch(g)
    model(src, lengths, torch.full((4, 3), BOS)).sum().backward()
    assert model.decoder.attention.scale.grad is not None
    assert model.decoder.attention.scale.grad.abs() > 0


# --- bad input ---------------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors():
    model = make_model()
    src, lengths = torch.randint(4, V, (2, 5)), torch.tensor([5, 3])
    with pytest.raises(TypeError, match=r"Seq2Seq expects src to be integer token ids of shape \(B, S\), "
                                        r"got torch.float32 of shape \(2, 5\)"):
        model(src.float(), lengths, src)
    with pytest.raises(ValueError, match=r"src to be integer token ids of shape \(B, S\), got torch.int64 of "
                                         r"shape \(5,\)"):
        model(src[0], lengths, src)
    with pytest.raises(ValueError, match="empty batch"):
        model(src[:0], lengths[:0], src[:0])
    with pytest.raises(ValueError, match=r"src_lengths of shape \(B,\) = \(2,\) holding integers, got "
                                         r"torch.int64 of shape \(1,\)"):
        model(src, torch.tensor([5]), src)
    with pytest.raises(ValueError, match=r"src_lengths of shape \(B,\) = \(2,\)"):
        model(src, torch.tensor([5.0, 3.0]), src)
    with pytest.raises(ValueError, match=r"src_lengths in \[1, 5\] \(the source width S\), got values "
                                         "from 3 to 6"):
        model(src, torch.tensor([6, 3]), src)
    with pytest.raises(ValueError, match=r"src_lengths in \[1, 5\]"):
        model(src, torch.tensor([0, 3]), src)
    with pytest.raises(ValueError, match=r"tgt_in \(B, T\) with as many rows as src \(B, S\), got \(1, 5\) "
                                         r"and \(2, 5\)"):
        model(src, lengths, src[:1])
    with pytest.raises(TypeError, match="src to be integer token ids.*got list"):
        model(src.tolist(), lengths, src)
    with pytest.raises(TypeError, match="tgt_in to be integer token ids"):
        model(src, lengths, src.float())
    with pytest.raises(ValueError, match=r"outputs \(B, S, H\) with 3 dimensions"):
        last_real_state(torch.zeros(2, 3), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"last_real_state expects src_lengths of shape \(B,\) = \(2,\)"):
        last_real_state(torch.zeros(2, 3, 4), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"RNNEncoder expects src_lengths in \[1, 5\]"):
        model.encoder(src, torch.tensor([6, 3]))
    with pytest.raises(TypeError, match=r"RNNDecoder.step expects tokens to be integer token ids"):
        model.step(torch.zeros(2), model.start(src, lengths))


def test_hidden_size_mismatch_and_bad_config_raise():
    with pytest.raises(ValueError, match="Seq2Seq expects an encoder and a decoder of the same hidden size "
                                         r"\(the final encoder state starts the decoder\), got 16 and 8"):
        Seq2Seq(RNNEncoder(V, D, 16), RNNDecoder(V, D, 8))
    with pytest.raises(ValueError, match="Seq2SeqConfig expects hidden_size to be a positive int, got 0"):
        Seq2SeqConfig(V, V, D, 0)
    with pytest.raises(ValueError, match="d_model to be a positive int, got 2.5"):
        Seq2SeqConfig(V, V, 2.5, H)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Seq2SeqConfig(V, V, D, H).d_model = 1  # type: ignore[misc]


def test_attention_with_wrong_output_shape_raises():
    class Bad(nn.Module):
        def forward(self, query, keys, mask):
            return keys.mean(1)[:, :-1], mask.float()

    model = make_model(Bad())
    with pytest.raises(ValueError, match=r"RNNDecoder expects attention to return context \(B, H\) = "
                                         r"\(2, 16\) and weights \(B, S\) = \(2, 5\), got \(2, 15\) "
                                         r"and \(2, 5\)"):
        model(torch.randint(4, V, (2, 5)), torch.tensor([5, 3]), torch.full((2, 2), BOS))


# --- greedy decoding ---------------------------------------------------------------------

@pytest.mark.parametrize("attention", [None, QueryAttention()])
def test_greedy_equals_argmax_of_teacher_forcing_on_its_own_output(attention):
    g = torch.Generator().manual_seed(8)
    model = make_model(attention, seed=3)
    with torch.no_grad():
        model.decoder.out.bias[EOS] += 2.0  # some rows stop early, some do not
    src, lengths = random_batch(g, B=8)
    ids, weights = greedy_decode(model, src, lengths, max_len=10, return_weights=True)
    assert ids.shape[0] == 8 and ids.shape[1] <= 10
    tgt_in = torch.cat([torch.full((8, 1), BOS), ids[:, :-1]], dim=1)  # fed its own outputs
    logits, tf_weights = model.forward_with_weights(src, lengths, tgt_in)
    finished_before = torch.cumsum(ids == EOS, 1) - (ids == EOS).long() > 0  # (B, L)
    expected = logits.argmax(-1).masked_fill(finished_before, PAD)
    assert torch.equal(ids, expected)
    if attention is None:
        assert weights is None
    else:
        live = ~finished_before
        assert torch.allclose(weights[live], tf_weights[live], atol=1e-5)


class Scripted(nn.Module):
    """A fake model: row b emits 4, 5, 6, ... and <eos> at step eos_at[b]."""

    def __init__(self, eos_at: list[int], V: int = 10):
        super().__init__()
        self.eos_at, self.V = eos_at, V

    def start(self, src, src_lengths):
        return 0

    def step(self, tokens, t):
        logits = torch.zeros(len(self.eos_at), self.V)
        for b, stop in enumerate(self.eos_at):
            logits[b, EOS if t == stop else 4 + t % (self.V - 4)] = 1.0
        return logits, t + 1


def test_greedy_stops_at_eos_and_pads_after_it():
    src, lengths = torch.full((3, 4), 5), torch.tensor([4, 4, 4])
    ids = greedy_decode(Scripted([1, 3, 0]), src, lengths, max_len=10)
    assert ids.tolist() == [[4, EOS, PAD, PAD], [4, 5, 6, EOS], [EOS, PAD, PAD, PAD]]
    capped = greedy_decode(Scripted([1, 30, 0]), src, lengths, max_len=6)
    assert capped.shape == (3, 6) and capped[1].tolist() == [4, 5, 6, 7, 8, 9]


def test_greedy_decode_bad_input():
    model = make_model()
    src, lengths = torch.randint(4, V, (2, 5)), torch.tensor([5, 3])
    with pytest.raises(TypeError, match=r"greedy_decode expects a model with start\(src, src_lengths\) and "
                                        r"step\(tokens, state\), got a Linear, which has no start or step"):
        greedy_decode(nn.Linear(2, 2), src, lengths, max_len=3)
    with pytest.raises(ValueError, match="greedy_decode expects max_len to be a positive int, got 0"):
        greedy_decode(model, src, lengths, max_len=0)
    with pytest.raises(TypeError, match=r"src to be integer token ids of shape \(B, S\), got torch.float32"):
        greedy_decode(model, src.float(), lengths, max_len=3)
    with pytest.raises(ValueError, match="empty batch"):
        greedy_decode(model, src[:0], lengths[:0], max_len=3)
    with pytest.raises(ValueError, match=r"src_lengths of shape \(B,\) = \(2,\), got torch.int64 of "
                                         r"shape \(1,\)"):
        greedy_decode(model, src, lengths[:1], max_len=3)


# --- batches grouped by length ------------------------------------------------------------

def test_length_grouped_batches_cover_every_pair_once_with_similar_lengths():
    src_vocab, tgt_vocab = task_vocabs("copy")
    pairs = make_pairs("copy", 200, 3, 24, seed=0)
    out = list(length_grouped_batches(pairs, src_vocab, tgt_vocab, 16, torch.Generator().manual_seed(0)))
    again = list(length_grouped_batches(pairs, src_vocab, tgt_vocab, 16, torch.Generator().manual_seed(0)))
    assert sum(len(b) for b in out) == 200
    assert sorted(int(n) for b in out for n in b.src_lengths) == sorted(len(s) for s, _ in pairs)
    assert max(int(b.src_lengths.max() - b.src_lengths.min()) for b in out) <= 3
    assert all(torch.equal(a.src, b.src) for a, b in zip(out, again, strict=True))
    with pytest.raises(ValueError, match="batch_size"):
        next(length_grouped_batches(pairs, src_vocab, tgt_vocab, 0, torch.Generator()))


def test_the_course_attention_modules_plug_into_the_decoder():
    from transformer_course.attention import AdditiveAttention, DotProductAttention

    g = torch.Generator().manual_seed(9)
    src, lengths = random_batch(g, B=5)
    for attention in (AdditiveAttention(H), DotProductAttention(H)):
        model = make_model(attention)
        logits, weights = model.forward_with_weights(src, lengths, torch.full((5, 4), BOS))
        assert logits.shape == (5, 4, V) and weights.shape == (5, 4, src.shape[1])
        assert (weights.masked_select((src == PAD).unsqueeze(1).expand_as(weights)) == 0).all()
        ids, step_weights = greedy_decode(model, src, lengths, max_len=4, return_weights=True)
        assert step_weights.shape == (5, ids.shape[1], src.shape[1])
