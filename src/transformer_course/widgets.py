"""Widgets: sliders wired to plain functions that return a matplotlib figure.

The logic of every widget is a plain function in ``experiments/`` (tests call it at both
ends of each slider's range); this module only wires sliders to it. Figures are made with
``matplotlib.figure.Figure`` rather than ``pyplot``, so moving a slider does not pile up
open figures in the kernel.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

from matplotlib.figure import Figure


def figure_widget(fn: Callable[..., Figure], **sliders):
    """Wire ipywidgets sliders to ``fn(**values) -> Figure``; returns the widget to display.

    ``sliders`` are ipywidgets controls or the abbreviations ``interactive`` accepts. ``fn`` may
    be a ``functools.partial`` that binds the objects a figure needs (a trained model, its data);
    fix any other argument that is not a slider with ``ipywidgets.fixed``.
    """
    import ipywidgets

    if isinstance(fn, functools.partial):  # interactive needs fn.__name__, which a partial lacks
        fn = _named(fn)

    # auto_display: show fn's figure in the widget's output (plain `interactive` would not)
    return ipywidgets.interactive(fn, {"auto_display": True}, **sliders)


def _named(partial: functools.partial) -> Callable[..., Figure]:
    def fn(**values):
        return partial(**values)

    fn.__name__ = fn.__qualname__ = partial.func.__name__
    fn.__doc__ = partial.func.__doc__
    fn.__signature__ = inspect.signature(partial)  # the arguments the partial leaves free
    return fn
