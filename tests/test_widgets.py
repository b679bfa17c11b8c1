"""widgets: the logic behind notebook 00's slider, at both ends of its range."""

import pytest
import torch
from matplotlib.figure import Figure

from transformer_course import utils, widgets


@pytest.mark.parametrize("temperature", [0.01, 1.0, 10.0])  # the slider's range and middle
def test_temperature_figure_draws_at_every_slider_position(temperature):
    fig = widgets.temperature_figure(temperature)
    assert isinstance(fig, Figure)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert len(heights) == len(widgets.DEMO_LOGITS)
    assert sum(heights) == pytest.approx(1.0, abs=1e-5)


def test_temperature_controls_entropy():
    logits = torch.tensor(widgets.DEMO_LOGITS)
    entropies = [widgets.softmax_temperature(logits, t)[1] for t in (0.01, 0.5, 2.0, 10.0)]
    assert entropies == sorted(entropies)
    assert entropies[0] < 0.01 and entropies[-1] > 2.2


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_temperature_must_be_positive(bad):
    with pytest.raises(ValueError, match=f"temperature must be > 0, got {bad}"):
        widgets.softmax_temperature(torch.zeros(3), bad)


def test_figure_widget_wires_a_slider():
    import ipywidgets

    w = widgets.figure_widget(widgets.temperature_figure, temperature=(0.1, 2.0))
    assert any(isinstance(c, ipywidgets.FloatSlider) for c in w.children)


def test_environment_report_names_versions_and_times_a_product():
    report = utils.environment_report(matmul_size=32, repeats=1)
    assert report["torch"] == torch.__version__
    assert "GFLOP/s" in report["matmul 32x32"]
    with pytest.raises(ValueError, match="matmul_size must be a positive int, got 0"):
        utils.environment_report(matmul_size=0)
