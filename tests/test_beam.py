"""Beam search (decoding.beam_search) and the state reordering it relies on."""

import itertools
import math
from dataclasses import dataclass
from typing import NamedTuple

import pytest
import torch

from transformer_course import data
from transformer_course.attention import AdditiveAttention
from transformer_course.decoding import beam_search, greedy_decode, reorder_state
from transformer_course.seq2seq import Seq2Seq, Seq2SeqConfig
from transformer_course.transformer import Transformer, translate_config

SRC_VOCAB, TGT_VOCAB = data.task_vocabs("translate")


def translate_batch(n: int = 6, seed: int = 3) -> data.Batch:
    return data.collate(data.make_pairs("translate", n, 5, 16, seed=seed), SRC_VOCAB, TGT_VOCAB)


def course_models(seed: int) -> dict:
    torch.manual_seed(seed)
    V_src, V_tgt = len(SRC_VOCAB), len(TGT_VOCAB)
    return {"transformer": Transformer(translate_config(dropout=0.0)).eval(),
            "seq2seq": Seq2Seq.from_config(Seq2SeqConfig(V_src, V_tgt, 16, 32)).eval(),
            "seq2seq+attention": Seq2Seq.from_config(Seq2SeqConfig(V_src, V_tgt, 16, 32),
                                                     AdditiveAttention(32)).eval()}


class MarkovState(NamedTuple):
    prev: torch.Tensor    # (1, N) the token before the last one, laid out like a GRU's hidden state
    shared: torch.Tensor  # (V, V, V) not per row: must be kept as it is


class SecondOrderMarkov(torch.nn.Module):
    """A scripted decoder: next-token logits = table[token before last, last token]."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table  # (V, V, V)

    def start(self, src, src_lengths):
        return MarkovState(torch.full((1, src.shape[0]), data.BOS), self.table)

    def step(self, tokens, state):
        logits = state.shared[state.prev[0], tokens]  # (N, V)
        return logits, MarkovState(tokens[None], state.shared)


def markov_table(seed: int, V: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(V, V, V, generator=g) * 2
    table[..., data.PAD] = -1e9  # the model never chooses padding or <bos>
    table[..., data.BOS] = -1e9
    return table


def brute_force_best(table: torch.Tensor, max_len: int, alpha: float) -> float:
    """The best length-normalised score over every sequence (ending at <eos> or at max_len)."""
    V, best = table.shape[0], -math.inf
    logp = torch.log_softmax(table, -1)
    for n in range(1, max_len + 1):
        for seq in itertools.product(range(V), repeat=n):
            if data.EOS in seq[:-1] or (n < max_len and seq[-1] != data.EOS):
                continue
            prev, last, total = data.BOS, data.BOS, 0.0
            for tok in seq:
                total += logp[prev, last, tok].item()
                prev, last = last, tok
            best = max(best, total / n ** alpha)
    return best


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", ["transformer", "seq2seq", "seq2seq+attention"])
def test_beam_width_one_is_greedy(kind, seed):
    model = course_models(seed)[kind]
    b = translate_batch()
    greedy = greedy_decode(model, b.src, b.src_lengths, max_len=20)
    beam = beam_search(model, b.src, b.src_lengths, max_len=20, beam_size=1)
    assert torch.equal(beam.tokens[:, 0], greedy)


@pytest.mark.parametrize("kind", ["transformer", "seq2seq+attention"])
def test_beams_are_sorted_by_normalised_score(kind):
    model = course_models(0)[kind]
    b = translate_batch()
    res = beam_search(model, b.src, b.src_lengths, max_len=12, beam_size=4, length_penalty=1.0)
    assert res.tokens.shape[:2] == (6, 4) and res.scores.shape == (6, 4)
    assert (res.scores[:, :-1] >= res.scores[:, 1:]).all()
    assert torch.allclose(res.scores, res.log_probs / res.lengths.float())


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_an_exhaustive_beam_finds_the_best_sequence_and_beats_greedy(seed, alpha):
    table = markov_table(seed)
    model, src = SecondOrderMarkov(table), torch.zeros(1, 3, dtype=torch.long)
    lengths = torch.tensor([3])
    res = beam_search(model, src, lengths, max_len=3, beam_size=6 ** 3, length_penalty=alpha)
    assert res.scores[0, 0].item() == pytest.approx(brute_force_best(table, 3, alpha), abs=1e-4)
    greedy = beam_search(model, src, lengths, max_len=3, beam_size=1, length_penalty=alpha)
    for k in (2, 4, 216):  # here a wider beam never scores lower than greedy
        wider = beam_search(model, src, lengths, max_len=3, beam_size=k, length_penalty=alpha)
        assert wider.scores[0, 0] >= greedy.scores[0, 0] - 1e-5


def test_beam_search_escapes_greedy_trap():
    # after <bos>: "a" (p .5) or "b" (p .4); after "a" everything is unlikely; after "b" <eos>
    V, a, b = 6, 3, 4
    table = torch.full((V, V, V), -1e9)
    table[:, data.BOS, [a, b, data.EOS]] = torch.tensor([0.5, 0.4, 0.1]).log()
    table[:, a, [3, 4, 5, data.EOS]] = torch.tensor([0.25, 0.25, 0.26, 0.24]).log()
    table[:, b, [data.EOS, 5]] = torch.tensor([0.95, 0.05]).log()
    table[:, 5, data.EOS] = 0.0
    model, src = SecondOrderMarkov(table), torch.zeros(2, 1, dtype=torch.long)
    lengths = torch.tensor([1, 1])
    greedy = greedy_decode(model, src, lengths, max_len=4)
    assert greedy[0].tolist()[:2] == [a, 5]
    res = beam_search(model, src, lengths, max_len=4, beam_size=2)
    assert res.tokens[0, 0].tolist()[:2] == [b, data.EOS]
    assert res.scores[0, 0] > beam_search(model, src, lengths, max_len=4, beam_size=1).scores[0, 0]


def test_eos_ends_a_hypothesis_and_padding_follows():
    table = markov_table(5)
    model, src = SecondOrderMarkov(table), torch.zeros(3, 2, dtype=torch.long)
    res = beam_search(model, src, torch.tensor([2, 2, 2]), max_len=6, beam_size=3)
    for row, n in zip(res.tokens.reshape(-1, res.tokens.shape[-1]), res.lengths.reshape(-1), strict=True):
        row, n = row.tolist(), int(n)
        if data.EOS in row:
            end = row.index(data.EOS)
            assert n == end + 1 and all(t == data.PAD for t in row[end + 1:])
        else:  # cut at max_len
            assert n == len(row) == 6
    # <eos> certain right away: one step, length 1, log-probability 0
    sure = torch.full((6, 6, 6), float("-inf"))  # -inf candidates are dead beams
    sure[..., data.EOS] = 0.0
    res = beam_search(SecondOrderMarkov(sure), src, torch.tensor([2, 2, 2]), max_len=6, beam_size=2)
    assert res.tokens.shape[-1] == 1 and (res.tokens[:, 0, 0] == data.EOS).all()
    assert res.log_probs[:, 0].abs().max() < 1e-6 and (res.lengths[:, 0] == 1).all()


def test_length_penalty_zero_is_the_plain_sum():
    model = course_models(1)["seq2seq"]
    b = translate_batch(3)
    res = beam_search(model, b.src, b.src_lengths, max_len=8, beam_size=3, length_penalty=0.0)
    assert torch.allclose(res.scores, res.log_probs)


def test_reorder_state_handles_the_course_states():
    @dataclass
    class DC:
        x: torch.Tensor
        note: str

    N = 3
    index = torch.tensor([2, 2, 0])
    shared = torch.arange(5.0)
    state = {"nt": MarkovState(torch.arange(N)[None], shared), "dc": DC(torch.arange(N * 2).view(N, 2), "hi"),
             "list": [torch.arange(N), None], "hidden": torch.arange(2 * N).view(2, N, 1).float()}
    out = reorder_state(state, index)
    assert out["nt"].prev.tolist() == [[2, 2, 0]] and out["nt"].shared is shared
    assert out["dc"].x.tolist() == [[4, 5], [4, 5], [0, 1]] and out["dc"].note == "hi"
    assert out["list"][0].tolist() == [2, 2, 0] and out["list"][1] is None
    assert out["hidden"][1, :, 0].tolist() == [5.0, 5.0, 3.0]
    model = course_models(0)["transformer"]
    b = translate_batch(3)
    before = model.start(b.src, b.src_lengths)
    after = reorder_state(before, index)
    assert torch.equal(after.memory, before.memory[index]) and torch.equal(after.tokens, before.tokens[index])
    assert torch.equal(after.memory_mask, before.memory_mask[index])


@pytest.mark.parametrize("kwargs, message", [
    (dict(beam_size=0), "beam_size"), (dict(beam_size=True), "beam_size"), (dict(beam_size=2.0), "beam_size"),
    (dict(beam_size=2, length_penalty=-1.0), "length_penalty"), (dict(beam_size=2, max_len=0), "max_len"),
])
def test_beam_search_rejects_bad_arguments(kwargs, message):
    model = course_models(0)["seq2seq"]
    b = translate_batch(2)
    args = {"max_len": 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        beam_search(model, b.src, b.src_lengths, **args)


def test_beam_search_rejects_bad_models_and_sources():
    b = translate_batch(2)
    with pytest.raises(TypeError, match="start"):
        beam_search(torch.nn.Linear(2, 2), b.src, b.src_lengths, 5, 2)
    model = course_models(0)["seq2seq"]
    with pytest.raises(TypeError, match="beam_search expects src to be integer token ids"):
        beam_search(model, b.src.float(), b.src_lengths, 5, 2)
    with pytest.raises(ValueError, match="src_lengths"):
        beam_search(model, b.src, b.src_lengths[:1], 5, 2)
    with pytest.raises(ValueError, match="index"):
        reorder_state((torch.zeros(2),), torch.tensor([0.0, 1.0]))
