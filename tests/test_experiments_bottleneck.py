"""Notebooks 02 and 03's experiment: a seq2seq model trained and scored by source length."""

from __future__ import annotations

import dataclasses

import pytest
from torch import nn

from transformer_course.experiments.bottleneck import (
    BOTTLENECK,
    bucket_centers,
    experiment_data,
    hold_length,
    plot_bottleneck,
    run_length_experiment,
)
from transformer_course.train import BucketScore


class MeanAttention(nn.Module):
    """A stand-in attention: the mean of the real encoder states, whatever the query."""

    def forward(self, query, keys, mask):
        weights = mask.float() / mask.sum(1, keepdim=True)  # (B, S)
        return (weights.unsqueeze(1) @ keys).squeeze(1), weights


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


def _scores(tokens):
    return [BucketScore(lo, lo + 2, 10, 0.0, t) for lo, t in zip(range(3, 100, 3), tokens, strict=False)]


def test_hold_length_interpolates_the_crossing():
    assert bucket_centers(_scores([1, 1])) == [4.0, 7.0]
    assert hold_length(_scores([0.9, 0.7, 0.3])) == pytest.approx(7 + 3 * 0.5)
    assert hold_length(_scores([0.4, 0.3])) == 4.0
    assert hold_length(_scores([0.9, 0.8])) == 7.0
    with pytest.raises(ValueError, match=r"hold_length expects metric to be one of \('exact', 'token'\)"):
        hold_length(_scores([0.9]), metric="bleu")
    with pytest.raises(ValueError, match="at least one"):
        hold_length([])


@pytest.mark.parametrize("hidden_size", [16, 128])
@pytest.mark.parametrize("length", [3, 24])
def test_plot_bottleneck_at_the_ends_of_its_sliders(hidden_size, length):
    sweep = {h: [BucketScore(lo, hi, 10, 0.5, 0.6) for lo, hi in BOTTLENECK.buckets] for h in (16, 64, 128)}
    fig = plot_bottleneck(sweep, hidden_size, length)
    assert len(fig.axes) == 2
    assert str(hidden_size) in fig.axes[0].get_title()
    bucket = next(b for b in BOTTLENECK.buckets if b[0] <= length <= b[1])
    assert f"{bucket[0]}-{bucket[1]}" in fig.axes[1].get_title()


def test_plot_bottleneck_bad_arguments():
    sweep = {16: [BucketScore(3, 5, 10, 0.5, 0.6), BucketScore(6, 8, 10, 0.5, 0.6)]}
    with pytest.raises(ValueError, match=r"hidden_size to be one of the sweep's sizes \[16\], got 32"):
        plot_bottleneck(sweep, 32, 4)
    with pytest.raises(ValueError, match=r"length in \[3, 8\], got 9 \(outside the evaluated range\)"):
        plot_bottleneck(sweep, 16, 9)
    with pytest.raises(ValueError, match="plot_bottleneck expects metric to be one of"):
        plot_bottleneck(sweep, 16, 4, metric="bleu")
