"""Notebooks 03 and 08: the true alignments of the translation task, their scores and heatmaps."""

from __future__ import annotations

import io
import warnings
from typing import NamedTuple

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from transformer_course import korean
from transformer_course.attention import AdditiveAttention
from transformer_course.data import make_pairs, task_vocabs
from transformer_course.experiments import alignment
from transformer_course.seq2seq import Seq2Seq, Seq2SeqConfig

# ----------------------------------------------------------------------------- alignments

PAIRS = make_pairs("translate", 400, 5, 16, seed=9)


def test_translation_alignment_reproduces_the_data_and_points_at_translations():
    for src, tgt in PAIRS:
        aligned = alignment.translation_alignment(src)
        assert [a.word for a in aligned] == tgt
        assert all(a.phrase in alignment.PHRASES for a in aligned)
        for a in aligned:
            if a.source is None:
                assert a.word in ("이", "가", "을", "를", "은", "는")
            else:
                assert 0 <= a.source < len(src)
        verb = next(v for v in korean.VERBS if v.forms.plain == aligned[-1].word)
        assert aligned[-1].phrase == "verb" and src[aligned[-1].source] in (verb.en, verb.en_plural)


def test_translation_alignment_example():
    src = "the old dog sees a cat in the park".split()
    got = [(a.word, a.source, a.phrase) for a in alignment.translation_alignment(src)]
    assert got == [("늙은", 1, "subject"), ("개", 2, "subject"), ("가", None, "subject"),
                   ("공원", 8, "place"), ("에서", 6, "place"), ("고양이", 5, "object"),
                   ("를", None, "object"), ("본다", 3, "verb")]


@pytest.mark.parametrize("bad", [["the", "dog"], "the dog sees a cat".split()[::-1],
                                 "the dog sees sees a cat".split(), "the dog sees a zebra".split()])
def test_translation_alignment_rejects_other_sentences(bad):
    with pytest.raises(ValueError, match="translate task"):
        alignment.translation_alignment(bad)


def test_translation_alignment_rejects_a_string():
    with pytest.raises(TypeError, match="list of English words"):
        alignment.translation_alignment("the dog sees a cat")


def gold_weights(pairs) -> torch.Tensor:
    S, T = max(len(s) for s, _ in pairs), max(len(t) for _, t in pairs)
    weights = torch.zeros(len(pairs), T, S)
    for b, (src, _) in enumerate(pairs):
        for t, a in enumerate(alignment.translation_alignment(src)):
            weights[b, t, a.source if a.source is not None else 0] = 1.0
    return weights


def test_alignment_accuracy_is_one_for_the_true_alignment_and_low_for_the_monotonic_one():
    perfect = alignment.alignment_accuracy(gold_weights(PAIRS), PAIRS)
    assert set(perfect) == {"all", *alignment.PHRASES}
    assert all(v == 1.0 for v in perfect.values())
    diagonal = alignment.alignment_accuracy(alignment.monotonic_weights(PAIRS), PAIRS)
    assert diagonal["all"] < 0.35 and diagonal["verb"] < 0.2
    shifted = alignment.alignment_accuracy(gold_weights(PAIRS).roll(1, dims=2), PAIRS)
    assert shifted["all"] == 0.0


def test_alignment_accuracy_and_monotonic_weights_bad_inputs():
    with pytest.raises(ValueError, match=r"weights of shape \(B, T, S\) with B = 400"):
        alignment.alignment_accuracy(torch.zeros(3, 20, 20), PAIRS)
    with pytest.raises(ValueError, match="too small"):
        alignment.alignment_accuracy(torch.zeros(400, 5, 20), PAIRS)
    with pytest.raises(ValueError, match="at least one pair"):
        alignment.monotonic_weights([])


def test_monotonic_weights_are_one_hot_from_first_to_last_word():
    w = alignment.monotonic_weights(PAIRS[:5])
    for b, (src, tgt) in enumerate(PAIRS[:5]):
        assert torch.equal(w[b, : len(tgt)].sum(-1), torch.ones(len(tgt)))
        assert w[b, 0, 0] == 1 and w[b, len(tgt) - 1, len(src) - 1] == 1
        assert w[b, len(tgt):].sum() == 0


def test_plot_alignment_checks_the_shape():
    fig = Figure()
    ax = fig.subplots()
    alignment.plot_alignment(ax, torch.rand(2, 3), ["a", "b", "c"], ["x", "y"], gold=[0, None], title="t")
    assert len(ax.patches) == 1 and len(fig.axes) == 1
    with pytest.raises(ValueError, match=r"\(T, S\) = \(2, 3\)"):
        alignment.plot_alignment(ax, torch.rand(3, 2), ["a", "b", "c"], ["x", "y"])


def test_plot_alignment_draws_hangul_and_a_colour_bar():
    src, tgt = PAIRS[0]
    fig = Figure()
    ax = fig.subplots()  # made before plot_alignment registers the Hangul font
    alignment.plot_alignment(ax, torch.rand(len(tgt), len(src)), src, tgt, title=korean.join(tgt),
                             colorbar=True)
    assert len(fig.axes) == 2  # the heatmap and its colour bar
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(io.BytesIO(), format="png")
    assert not [w for w in caught if "missing from font" in str(w.message)]


# ----------------------------------------------------------------------------- the widget

def translate_model(kind: str = "additive") -> tuple[Seq2Seq, object, object]:
    en, ko = task_vocabs("translate")
    torch.manual_seed(0)
    attention = AdditiveAttention(16) if kind == "additive" else None
    return Seq2Seq.from_config(Seq2SeqConfig(len(en), len(ko), 8, 16), attention).eval(), en, ko


@pytest.mark.parametrize("index", [0, len(PAIRS) // 2, len(PAIRS) - 1])  # the slider's ends and middle
def test_alignment_figure_at_both_ends_of_the_slider(index):
    model, en, ko = translate_model()
    fig = alignment.alignment_figure(model, PAIRS, index, en, ko)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    image = ax.images[0].get_array()
    assert image.shape[1] == len(PAIRS[index][0])  # one column per English word
    assert abs(image.sum(1) - 1).max() < 1e-5  # each decoding step's weights sum to 1
    assert f"example {index}" in ax.get_title()


class ScriptedTranslator(nn.Module):
    """A fake model that outputs a set translation and looks exactly at the true alignment."""

    class State(NamedTuple):
        t: int
        weights: torch.Tensor | None

    def __init__(self, pair, ko, wrong_at: int | None = None):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))  # alignment_figure reads the device from a parameter
        src, tgt = pair
        self.ids = ko.encode(tgt, eos=True)
        if wrong_at is not None:
            self.ids[wrong_at] = ko.stoi["가"] if tgt[wrong_at] != "가" else ko.stoi["를"]
        self.gold = [a.source or 0 for a in alignment.translation_alignment(src)] + [len(src) - 1]
        self.S, self.V = len(src), len(ko)

    def start(self, src, src_lengths):
        return self.State(0, None)

    def step(self, tokens, state):
        logits = torch.zeros(1, self.V)
        logits[0, self.ids[state.t]] = 1.0
        weights = torch.zeros(1, self.S)
        weights[0, self.gold[state.t]] = 1.0
        return logits, self.State(state.t + 1, weights)


@pytest.mark.parametrize("wrong_at", [None, 1])
def test_alignment_figure_boxes_the_true_alignment_of_the_right_words(wrong_at):
    _, en, ko = translate_model()
    src, tgt = PAIRS[0]
    fig = alignment.alignment_figure(ScriptedTranslator(PAIRS[0], ko, wrong_at), PAIRS, 0, en, ko)
    ax = fig.axes[0]
    aligned = [t for t, a in enumerate(alignment.translation_alignment(src)) if a.source is not None]
    boxed = sorted(int(p.get_y() + 0.5) for p in ax.patches)  # the rows (target words) with a box
    assert boxed == [t for t in aligned if t != wrong_at]
    for p in ax.patches:  # each box sits on the cell the model looked at, the true source word
        t, s = int(p.get_y() + 0.5), int(p.get_x() + 0.5)
        assert alignment.translation_alignment(src)[t].source == s
    assert ("right" in ax.get_title()) == (wrong_at is None)
    assert [x.get_text() for x in ax.get_yticklabels()][-1] == "<eos>"


@pytest.mark.parametrize("index", [-1, len(PAIRS), 2.0, True])
def test_alignment_figure_rejects_indices_outside_the_slider(index):
    model, en, ko = translate_model()
    with pytest.raises(ValueError, match=r"alignment_figure expects index to be an int in \[0, 399\]"):
        alignment.alignment_figure(model, PAIRS, index, en, ko)


def test_alignment_figure_needs_attention():
    model, en, ko = translate_model("none")
    with pytest.raises(ValueError, match="alignment_figure expects a model with attention"):
        alignment.alignment_figure(model, PAIRS, 0, en, ko)
