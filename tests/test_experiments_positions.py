"""experiments.positions: notebook 06's encoding widget draws at both ends of its sliders."""

import pytest
from matplotlib.figure import Figure

from transformer_course.experiments.positions import encoding_figure


@pytest.mark.parametrize("position", [0, 63])  # the position slider's range
@pytest.mark.parametrize("dim", [0, 31])  # the dimension slider's range
def test_encoding_figure_at_the_slider_ends(position, dim):
    fig = encoding_figure(position=position, dim=dim)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3  # the table, the chosen dimension's curve and the table's colour bar
    assert f"row {position}, column {dim}" in fig.axes[0].get_title()
    assert len(fig.axes[1].get_lines()[0].get_ydata()) == 64
