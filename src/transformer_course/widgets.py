"""Widgets: sliders wired to plain functions that return a matplotlib figure.

The logic of every widget is a plain function in ``experiments/`` (tests call it at both
ends of each slider's range); this module only wires sliders to it. Figures are made with
``matplotlib.figure.Figure`` rather than ``pyplot``, so moving a slider does not pile up
open figures in the kernel.
"""

from __future__ import annotations

from collections.abc import Callable

from matplotlib.figure import Figure


def figure_widget(fn: Callable[..., Figure], **sliders):
    """Wire ipywidgets sliders to ``fn(**values) -> Figure``; returns the widget to display.

    ``sliders`` are ipywidgets controls or the abbreviations ``interactive`` accepts.
    """
    import ipywidgets

    # auto_display: show fn's figure in the widget's output (plain `interactive` would not)
    return ipywidgets.interactive(fn, {"auto_display": True}, **sliders)
