"""figure_widget: draws from the kernel side, so headless runners never stall on it."""

from __future__ import annotations

import multiprocessing
import os
import time

import ipywidgets
import nbformat
import pytest
from matplotlib.figure import Figure

from transformer_course import widgets


def line(n: int) -> Figure:
    fig = Figure(figsize=(2, 2))
    fig.subplots().plot(range(n))
    return fig


def test_the_first_figure_is_stored_in_the_output_as_a_png_without_capturing():
    w = widgets.figure_widget(line, n=ipywidgets.IntSlider(value=3, min=1, max=5))
    (out,) = w.out.outputs
    assert out["output_type"] == "display_data" and out["data"]["image/png"]
    assert w.out.msg_id == ""  # nothing was captured: no runner has an Output to imitate
    assert [type(c).__name__ for c in w.children] == ["IntSlider", "Output"]


def test_moving_a_slider_replaces_the_figure():
    w = widgets.figure_widget(line, n=ipywidgets.IntSlider(value=3, min=1, max=5))
    before = w.out.outputs[0]["data"]["image/png"]
    w.children[0].value = 5
    assert len(w.out.outputs) == 1 and w.out.outputs[0]["data"]["image/png"] != before
    assert w.kwargs == {"n": 5}


def test_an_error_in_the_first_figure_fails_the_cell():
    def broken(n):
        raise ValueError(f"no figure for n={n}")

    with pytest.raises(ValueError, match="no figure for n=3"):
        widgets.figure_widget(broken, n=ipywidgets.IntSlider(value=3, min=1, max=5))


def test_an_error_after_a_slider_move_is_shown_in_place_of_the_figure():
    def fragile(n):
        if n == 5:
            raise ValueError("n=5 is out of range")
        return line(n)

    w = widgets.figure_widget(fragile, n=ipywidgets.IntSlider(value=3, min=1, max=5))
    w.children[0].value = 5
    (out,) = w.out.outputs
    assert out["output_type"] == "stream" and "n=5 is out of range" in out["text"]
    w.children[0].value = 4  # and it recovers
    assert "image/png" in w.out.outputs[0]["data"]


def test_a_partial_and_fixed_arguments_are_wired():
    import functools

    def scaled(n, scale, title):
        fig = line(n * scale)
        fig.suptitle(title)
        return fig

    w = widgets.figure_widget(functools.partial(scaled, title="t"),
                              n=ipywidgets.IntSlider(value=2, min=1, max=3), scale=ipywidgets.fixed(2))
    assert w.kwargs["n"] == 2 and w.kwargs["scale"] == 2 and w.out.outputs


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


SETUP = """%matplotlib inline
import ipywidgets
from matplotlib.figure import Figure
from transformer_course import widgets
def line(n):
    fig = Figure(figsize=(2, 2)); fig.subplots().plot(range(n)); return fig
"""
CELL = "widgets.figure_widget(line, n=ipywidgets.IntSlider(value=3, min=1, max=5))"


def test_nbclient_never_waits_out_its_timeout_on_a_widget_cell_of_a_loaded_machine():
    """The stall this module avoids: with ``ipywidgets.interact``, nbclient sent its imitation of
    the Output widget to the kernel on the shell socket while waiting on it for the reply; on a
    loaded machine 8 of 40 such cells waited the whole timeout (measured before the fix)."""
    from nbclient import NotebookClient

    cells = [nbformat.v4.new_code_cell(SETUP)] + [nbformat.v4.new_code_cell(CELL) for _ in range(30)]
    nb = nbformat.v4.new_notebook(cells=cells)
    timeout = 15
    loaders = [multiprocessing.Process(target=_spin, args=(120,)) for _ in range(os.cpu_count() or 2)]
    for p in loaders:
        p.start()
    slow = []
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3")
        with client.setup_kernel():
            for i, cell in enumerate(nb.cells):
                start = time.monotonic()
                client.execute_cell(cell, i)
                if time.monotonic() - start > timeout - 1:
                    slow.append(i)
    finally:
        for p in loaders:
            p.terminate()
    assert not slow, f"cells {slow} waited out nbclient's {timeout} s timeout: the widget stall is back"
    assert all(c.outputs and "application/vnd.jupyter.widget-view+json" in c.outputs[0]["data"]
               for c in nb.cells[1:])
