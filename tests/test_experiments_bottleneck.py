"""Notebooks 02 and 03's experiments: seq2seq models trained and scored by source length."""

from __future__ import annotations

import dataclasses
from functools import cache

import pytest
import torch
from torch import nn

from transformer_course.data import EOS, PAD, collate, make_pairs, task_vocabs
from transformer_course.experiments.bottleneck import (
    BOTTLENECK,
    CHANNEL,
    BottleneckSeq2Seq,
    bucket_centers,
    by_length,
    channel_data,
    cosine_decay,
    experiment_data,
    fit_probe,
    plot_channel,
    position_accuracy,
    probe_accuracy,
    probe_pairs,
    run_channel,
    run_length_experiment,
    same_length_batches,
    score_by_length,
)
from transformer_course.seq2seq import Seq2SeqConfig
from transformer_course.train import BucketScore
from transformer_course.utils import generator

VOCAB = task_vocabs("copy")[0]
# CHANNEL, shrunk: lengths 3-6, a few steps of a small model.
TINY = dataclasses.replace(CHANNEL, max_len=6, short_max=4, n_train=200, n_test=8, hidden_size=16,
                           width=4, steps=4, batch_size=16, eval_every=2)


class MeanAttention(nn.Module):
    """A stand-in attention: the mean of the real encoder states, whatever the query."""

    def forward(self, query, keys, mask):
        weights = mask.float() / mask.sum(1, keepdim=True)  # (B, S)
        return (weights.unsqueeze(1) @ keys).squeeze(1), weights


# --- notebook 03's preset ----------------------------------------------------------------------

def test_the_preset_is_frozen_and_its_data_reproducible():
    with pytest.raises(dataclasses.FrozenInstanceError):
        BOTTLENECK.steps = 1  # type: ignore[misc]
    exp = dataclasses.replace(BOTTLENECK, n_train=50, n_test=22)
    train_pairs, test_pairs, src_vocab, tgt_vocab = experiment_data(exp)
    assert len(train_pairs) == 50 and len(test_pairs) == 22 and src_vocab.itos == tgt_vocab.itos
    assert experiment_data(exp)[0] == train_pairs and train_pairs[:22] != test_pairs
    assert {len(s) for s, _ in test_pairs} == set(range(exp.min_len, exp.max_len + 1))


def test_run_length_experiment_small():
    exp = dataclasses.replace(BOTTLENECK, n_train=256, n_test=44, steps=3, hidden_size=8,
                              buckets=((3, 10), (11, 24)))
    run = run_length_experiment(exp, desc="tiny")
    assert len(run.history.losses) == 3
    assert [(s.lo, s.hi) for s in run.scores] == [(3, 10), (11, 24)]
    assert all(0 <= s.exact <= s.token <= 1 for s in run.scores)
    with_attention = run_length_experiment(exp, MeanAttention(), desc="tiny")
    assert with_attention.model.decoder.attention is not None
    assert bucket_centers(run.scores) == [6.5, 17.5]


# --- notebook 02: the channel model ----------------------------------------------------------------

def channel_model(width: int = 3, seed: int = 0) -> BottleneckSeq2Seq:
    torch.manual_seed(seed)
    return BottleneckSeq2Seq(Seq2SeqConfig(len(VOCAB), len(VOCAB), d_model=8, hidden_size=16), width)


def copy_batch(n: int = 6, lo: int = 3, hi: int = 7, seed: int = 0):
    return collate(make_pairs("copy", n, lo, hi, seed=seed), VOCAB, VOCAB)


def test_channel_data_is_reproducible_and_fills_every_length():
    exp = dataclasses.replace(TINY, n_train=40, n_test=5)
    train_pairs, test_pairs, src_vocab, _ = channel_data(exp)
    assert len(train_pairs) == 40 and len(test_pairs) == 5 * 4 and src_vocab.itos == VOCAB.itos
    assert channel_data(exp)[1] == test_pairs and exp.lengths == [3, 4, 5, 6]
    assert sorted(len(s) for s, _ in test_pairs) == [n for n in exp.lengths for _ in range(5)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        CHANNEL.width = 1  # type: ignore[misc]


def test_only_the_channel_reaches_the_decoder():
    model = channel_model(width=3)
    b = copy_batch()
    assert model.channel(b.src, b.src_lengths).shape == (6, 3)
    logits = model(b.src, b.src_lengths, b.tgt_in)
    assert logits.shape == (*b.tgt_in.shape, len(VOCAB))
    other = b.src.clone()
    other[other != PAD] = VOCAB.stoi["a"]  # another source of the same lengths
    assert not torch.allclose(model(other, b.src_lengths, b.tgt_in), logits)
    with torch.no_grad():
        model.down.weight.zero_()  # the channel is now its bias alone, whatever the source
    torch.testing.assert_close(model(other, b.src_lengths, b.tgt_in), model(b.src, b.src_lengths, b.tgt_in))


def test_teacher_forcing_equals_stepping_and_decoding_works():
    model = channel_model(width=5)
    b = copy_batch()
    logits = model(b.src, b.src_lengths, b.tgt_in)
    state, stepped = model.start(b.src, b.src_lengths), []
    for t in range(b.tgt_in.shape[1]):
        step_logits, state = model.step(b.tgt_in[:, t], state)
        stepped.append(step_logits)
    torch.testing.assert_close(torch.stack(stepped, 1), logits, rtol=1e-5, atol=1e-5)
    scores = score_by_length(model, make_pairs("copy", 8, 3, 4, seed=2), VOCAB, VOCAB)
    assert [(s.lo, s.hi, s.n) for s in scores] == [(3, 3, 4), (4, 4, 4)]


def test_channel_model_keeps_the_state_scale_at_init_and_checks_its_width():
    model = channel_model(width=16)  # W = H: the two orthogonal maps compose to an orthogonal one
    h = torch.randn(5, 16)
    torch.testing.assert_close(model.up(model.down(h)).norm(dim=1), h.norm(dim=1))
    with pytest.raises(ValueError, match="BottleneckSeq2Seq expects width to be a positive int, got 0"):
        channel_model(width=0)


def test_same_length_batches_cover_every_pair_once_in_one_length_each():
    groups = by_length(make_pairs("copy", 30, 3, 5, seed=0), VOCAB, VOCAB)
    assert sorted(groups) == [3, 4, 5] and all(b.src.shape[1] == n for n, b in groups.items())
    batches = list(same_length_batches(groups, 4, generator(0)))
    assert all(len(set(b.src_lengths.tolist())) == 1 for b in batches)
    assert all(not (b.src == PAD).any() for b in batches)  # one length per batch: no padding
    rows = sorted(tuple(r) for b in batches for r in b.src.tolist())
    assert rows == sorted(tuple(r) for b in groups.values() for r in b.src.tolist())
    again = list(same_length_batches(groups, 4, generator(0)))
    assert all(torch.equal(a.src, b.src) for a, b in zip(batches, again, strict=True))
    with pytest.raises(ValueError, match="same_length_batches expects batch_size"):
        next(same_length_batches(groups, 0, generator(0)))


def test_cosine_decay_goes_from_one_to_zero():
    f = cosine_decay(10)
    assert f(0) == 1.0 and f(5) == pytest.approx(0.5) and f(10) == pytest.approx(0.0)
    assert f(12) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="cosine_decay expects steps"):
        cosine_decay(0)


@cache
def tiny_runs() -> dict:
    """Two tiny trained channels of TINY (a few steps each), for the run and the widget."""
    return {w: run_channel(TINY, width=w, desc=f"tiny {w}") for w in (2, 8)}


def test_run_channel_small():
    run = tiny_runs()[2]
    assert run.exp.width == 2 and run.model.width == 2 and len(run.history.losses) == TINY.steps
    assert [e["step"] for e in run.history.evals] == [2, 4]
    assert all(len(e["exact"]) == len(TINY.lengths) for e in run.history.evals)
    assert [s.lo for s in run.scores] == TINY.lengths and all(s.n == TINY.n_test for s in run.scores)
    pooled = run.exact(3, 4)
    assert pooled == pytest.approx((run.scores[0].exact + run.scores[1].exact) / 2)
    assert run.exact(5) == run.scores[2].exact
    with pytest.raises(ValueError, match="ChannelRun.exact expects lengths within the scored ones 3-6"):
        run.exact(7)


# --- per-position accuracy and the probe ---------------------------------------------------------

class CopyOracle(nn.Module):
    """Copies its source exactly (``skip=0``), or drops its first ``skip`` symbols."""

    def __init__(self, skip: int = 0):
        super().__init__()
        self.skip = skip

    def start(self, src, src_lengths):
        return src, src_lengths, 0

    def step(self, tokens, state):
        src, lengths, t = state
        i = t + self.skip
        nxt = torch.where(i < lengths, src[:, min(i, src.shape[1] - 1)], torch.full_like(lengths, EOS))
        return nn.functional.one_hot(nxt, len(VOCAB)).float(), (src, lengths, t + 1)


def test_position_accuracy_of_an_oracle_and_of_a_slip():
    pairs = make_pairs("copy", 12, 3, 5, seed=0)
    perfect = position_accuracy(CopyOracle(), pairs, VOCAB, VOCAB)
    assert perfect.shape == (3, 5)
    beyond = torch.tensor([[0, 0, 0, 1, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]]).bool()  # i >= n
    assert torch.equal(perfect.isnan(), beyond)
    assert perfect.nan_to_num(1.0).eq(1).all()
    slipped = position_accuracy(CopyOracle(skip=1), pairs, VOCAB, VOCAB)
    assert slipped[:, 0].max() <= 0.5  # the first symbol is gone, so every later one is out of place


class OneHotChannel(nn.Module):
    """A fake channel that lays out the source symbols one-hot (every symbol is linearly readable)."""

    def channel(self, src, src_lengths):
        return nn.functional.one_hot(src, len(VOCAB)).flatten(1).float()  # (N, S * V)


class NoiseChannel(nn.Module):
    """A fake channel of pure noise (nothing is readable)."""

    def channel(self, src, src_lengths):
        return torch.randn(src.shape[0], 8, generator=torch.Generator().manual_seed(src.shape[1]))


def test_fit_probe_is_least_squares():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200, 6, generator=g)
    symbols = torch.randint(4, len(VOCAB), (200, 3), generator=g)
    probe = fit_probe(z, symbols, len(VOCAB), ridge=0.0)
    x = (z - z.mean(0)) / z.std(0)
    y = nn.functional.one_hot(symbols, len(VOCAB)).flatten(1).float()
    design = torch.cat([x, torch.ones(200, 1)], 1)  # PyTorch's least squares, with an intercept column
    ref = torch.linalg.lstsq(design, y).solution  # (W + 1, P * V)
    torch.testing.assert_close(probe.weight, ref[:-1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(probe.bias, ref[-1], rtol=1e-4, atol=1e-5)
    assert probe(z).shape == (200, 3, len(VOCAB))
    with pytest.raises(ValueError, match=r"fit_probe expects symbols \(N, P\) with as many rows as z"):
        fit_probe(z, symbols[:10], len(VOCAB))
    with pytest.raises(ValueError, match="fit_probe expects z"):
        fit_probe(z[0], symbols, len(VOCAB))


def test_probe_accuracy_reads_a_readable_channel_and_not_noise():
    exp = dataclasses.replace(TINY, max_len=5)
    fit, test = probe_pairs(exp, 200, seed=0), probe_pairs(exp, 50, seed=1)
    assert len(fit) == 600 and {len(s) for s, _ in fit} == {3, 4, 5}
    readable = probe_accuracy(OneHotChannel(), fit, test, VOCAB)
    assert readable.shape == (3, 5) and readable[0, 3:].isnan().all() and not readable[2].isnan().any()
    assert readable.nan_to_num(1.0).min() == 1.0
    noise = probe_accuracy(NoiseChannel(), fit, test, VOCAB)
    assert noise.nanmean() < 0.2  # chance is 1/20
    with pytest.raises(ValueError, match="probe_accuracy expects the same lengths"):
        probe_accuracy(OneHotChannel(), fit, make_pairs("copy", 10, 3, 3, seed=2), VOCAB)


# --- the widget ------------------------------------------------------------------------------------

@pytest.mark.parametrize("width", [2, 8])
@pytest.mark.parametrize("length", [TINY.min_len, TINY.max_len])
def test_plot_channel_at_the_ends_of_its_sliders(width, length):
    fig = plot_channel(tiny_runs(), width, length, n_fit=40, n_test=20)
    left, right = fig.axes
    assert f"width {width}, strings of {length} symbols" == left.get_title()
    assert len(left.lines[0].get_xdata()) == length
    assert len(right.lines) == 2 + 1  # one curve per width, and the chosen length
    legend = [t.get_text() for t in right.get_legend().get_texts()]
    assert legend == ["width 2", "width 8", f"length {length}"]  # the grey curves are named too


def test_plot_channel_bad_arguments():
    with pytest.raises(ValueError, match=r"expects width to be one of the trained widths \[2, 8\], got 4"):
        plot_channel(tiny_runs(), 4, 3)
    with pytest.raises(ValueError, match=r"plot_channel expects length to be an int in \[3, 6\], got 7"):
        plot_channel(tiny_runs(), 2, 7)


def test_bucket_scores_are_one_per_length():
    scores = [BucketScore(n, n, 10, 0.5, 0.6) for n in (3, 4)]
    assert bucket_centers(scores) == [3.0, 4.0]
