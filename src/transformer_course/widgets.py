"""Widgets: sliders wired to plain functions that return a matplotlib figure.

The logic of every widget is a plain function in ``experiments/`` (tests call it at both
ends of each slider's range); this module only wires sliders to it. Figures are made with
``matplotlib.figure.Figure`` rather than ``pyplot``, so moving a slider does not pile up
open figures in the kernel.

Why not plain ``ipywidgets.interact``: it draws into its ``Output`` widget by *capturing*
the cell's output (``with out: display(fig)``). A headless runner (nbclient, and so nbconvert,
nbgrader and the course's benchmark) imitates the capturing front end by sending a message
back to the kernel on the shell socket while it waits on that same socket for the cell's
reply; on a busy machine that send swallows the socket's "message ready" wake-up, and the
runner sleeps until its cell timeout although the kernel has long finished (measured on
this course's 2-core machine under load: 8 of 40 widget cells). ``figure_widget`` never
captures output: it renders the figure itself and stores the result in the ``Output``
widget's ``outputs`` from the kernel side, so no runner has anything to imitate.
"""

from __future__ import annotations

import functools
import inspect
import traceback
from collections.abc import Callable

from matplotlib.figure import Figure


def figure_widget(fn: Callable[..., Figure], **sliders):
    """Wire ipywidgets sliders to ``fn(**values) -> Figure``; returns the widget to display.

    ``sliders`` are ipywidgets controls or the abbreviations ``interactive`` accepts. ``fn`` may
    be a ``functools.partial`` that binds the objects a figure needs (a trained model, its data);
    fix any other argument that is not a slider with ``ipywidgets.fixed``.

    The first figure is drawn while the cell runs, and an error in it is raised there (so a
    test that runs the notebook sees it); an error after a slider move is shown in place of
    the figure.
    """
    if isinstance(fn, functools.partial):  # interactive needs fn.__name__, which a partial lacks
        fn = _named(fn)
    return _figure_widget_class()(fn, **sliders)


@functools.cache
def _figure_widget_class():
    """The widget class, made on first use so that importing this module needs no ipywidgets."""
    import ipywidgets

    class FigureWidget(ipywidgets.interactive):
        """``interactive`` whose output is set from the kernel side, never captured."""

        def __init__(self, fn, **sliders):
            self._drawn = False
            super().__init__(fn, {"auto_display": True}, **sliders)  # calls update() once

        def update(self, *args):
            self.kwargs = {w._kwarg: w.get_interact_value() for w in self.kwargs_widgets}
            try:
                self.result = self.f(**self.kwargs)
                self.out.outputs = (_display_data(self.result),) if self.result is not None else ()
            except Exception:
                if not self._drawn:
                    raise  # the first drawing runs inside the cell: let the cell fail
                self.out.outputs = ({"output_type": "stream", "name": "stderr",
                                     "text": traceback.format_exc()},)
            self._drawn = True

    return FigureWidget


def _display_data(obj) -> dict:
    """``obj`` as a notebook ``display_data`` output (a Figure becomes a PNG), formatted the
    way IPython would display it; outside IPython, its plain-text form."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:  # pragma: no cover - ipywidgets needs IPython
        shell = None
    if shell is not None:
        data, metadata = shell.display_formatter.format(obj)
    else:
        data, metadata = {"text/plain": repr(obj)}, {}
    if isinstance(obj, Figure) and "image/png" not in data:  # no inline backend registered
        data["image/png"] = _png(obj)
    return {"output_type": "display_data", "data": data, "metadata": metadata}


def _png(fig: Figure) -> str:
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _named(partial: functools.partial) -> Callable[..., Figure]:
    def fn(**values):
        return partial(**values)

    fn.__name__ = fn.__qualname__ = partial.func.__name__
    fn.__doc__ = partial.func.__doc__
    fn.__signature__ = inspect.signature(partial)  # the arguments the partial leaves free
    return fn
