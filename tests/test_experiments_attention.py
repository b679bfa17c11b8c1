"""The experiments' logic of notebooks 00, 04 and 05: the widgets at both ends of their sliders."""

from __future__ import annotations

import math

import pytest
import torch
from matplotlib.figure import Figure

from transformer_course import widgets
from transformer_course.experiments.multi_head import mask_and_head_weights, mask_figure
from transformer_course.experiments.self_attention import (
    attention_entropy,
    temperature_weights,
    weights_figure,
)
from transformer_course.experiments.softmax import DEMO_LOGITS, softmax_temperature, temperature_figure


@pytest.mark.parametrize("temperature", [0.01, 1.0, 10.0])  # the slider's range and middle
def test_temperature_figure_draws_at_every_slider_position(temperature):
    fig = temperature_figure(temperature)
    assert isinstance(fig, Figure)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert len(heights) == len(DEMO_LOGITS)
    assert sum(heights) == pytest.approx(1.0, abs=1e-5)


def test_temperature_controls_entropy():
    logits = torch.tensor(DEMO_LOGITS)
    entropies = [softmax_temperature(logits, t)[1] for t in (0.01, 0.5, 2.0, 10.0)]
    assert entropies == sorted(entropies)
    assert entropies[0] < 0.01 and entropies[-1] > 2.2


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_temperature_must_be_positive(bad):
    with pytest.raises(ValueError, match=f"expects temperature to be a finite number > 0, got {bad}"):
        softmax_temperature(torch.zeros(3), bad)


def test_figure_widget_wires_a_slider():
    import ipywidgets

    w = widgets.figure_widget(temperature_figure, temperature=(0.1, 2.0))
    assert any(isinstance(c, ipywidgets.FloatSlider) for c in w.children)


def test_attention_entropy_ends():
    assert torch.allclose(attention_entropy(torch.full((3, 4), 0.25)), torch.full((3,), math.log(4)))
    assert torch.equal(attention_entropy(torch.tensor([0.0, 1.0, 0.0])), torch.tensor(0.0))


@pytest.mark.parametrize("d_k", [1, 512])
@pytest.mark.parametrize("temperature", [0.1, 10.0])
@pytest.mark.parametrize("scaled", [True, False])
def test_temperature_weights_at_the_slider_ends(d_k, temperature, scaled):
    w, h = temperature_weights(d_k, temperature, scaled=scaled)
    assert w.shape == (8, 8) and torch.isfinite(w).all()
    assert torch.allclose(w.sum(-1), torch.ones(8), atol=1e-5)
    assert 0.0 <= h <= math.log(8) + 1e-6


def test_temperature_weights_lessons_and_errors():
    _, cold = temperature_weights(64, 0.1)
    _, hot = temperature_weights(64, 10.0)
    assert hot > math.log(8) - 0.05 > cold
    _, unscaled = temperature_weights(512, 1.0, scaled=False)
    _, scaled = temperature_weights(512, 1.0, scaled=True)
    assert unscaled < 0.1 < 1.0 < scaled
    with pytest.raises(ValueError, match="temperature"):
        temperature_weights(8, 0.0)
    with pytest.raises(ValueError, match="d_k"):
        temperature_weights(0)


@pytest.mark.parametrize("seq_len", [1, 12])
@pytest.mark.parametrize("n_pad", [0, 12])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("head", [0, 3])
def test_mask_and_head_weights_at_the_slider_ends(seq_len, n_pad, causal, head):
    mask, w = mask_and_head_weights(seq_len, n_pad, causal, head)
    assert mask.shape == w.shape == (seq_len, seq_len) and mask.dtype == torch.bool
    assert torch.isfinite(w).all()
    assert torch.equal(w[~mask], torch.zeros_like(w[~mask]))
    rows = mask.any(-1)
    assert torch.allclose(w[rows].sum(-1), torch.ones(int(rows.sum())), atol=1e-5)
    assert torch.equal(w[~rows], torch.zeros_like(w[~rows]))
    n_real = seq_len - min(n_pad, seq_len)
    assert torch.equal(mask[:, n_real:], torch.zeros(seq_len, seq_len - n_real, dtype=torch.bool))


@pytest.mark.parametrize("d_k", [1, 512])  # the SelectionSlider's first and last options
@pytest.mark.parametrize("temperature", [0.1, 10.0])  # FloatLogSlider 10**-1 .. 10**1
@pytest.mark.parametrize("scaled", [True, False])
def test_weights_figure_at_the_slider_ends(d_k, temperature, scaled):
    fig = weights_figure(d_k=d_k, temperature=temperature, scaled=scaled)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2  # the heatmap and its colour bar
    assert f"d_k = {d_k}" in fig.axes[0].get_title()


@pytest.mark.parametrize("seq_len", [1, 12])
@pytest.mark.parametrize("n_pad", [0, 12])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("head", [0, 3])
def test_mask_figure_at_the_slider_ends(seq_len, n_pad, causal, head):
    fig = mask_figure(seq_len=seq_len, n_pad=n_pad, causal=causal, head=head)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4  # the mask, the head's weights and a colour bar for each
    assert fig.axes[1].get_images()[0].get_array().shape == (seq_len, seq_len)
    assert [t.get_text() for t in fig.axes[2].get_yticklabels()] == ["blocked", "allowed"]


def test_mask_and_head_weights_errors():
    with pytest.raises(ValueError, match="head"):
        mask_and_head_weights(4, 0, True, head=4)
    with pytest.raises(ValueError, match="n_pad"):
        mask_and_head_weights(4, -1, True, head=0)
