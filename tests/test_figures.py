"""Every heatmap has a colour bar: a learner must be able to read what a colour means.

The rule, read from the source: a notebook code cell, or a function of the package, that draws
a heatmap (``imshow``, ``matshow``, ``pcolormesh`` or the course's ``plot_alignment``) also
draws a colour bar (``colorbar``, or ``two_level_colorbar`` for a map of 0s and 1s).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import matplotlib
import nbformat
import pytest

matplotlib.use("Agg")

from transformer_course import utils  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "transformer_course"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*.ipynb"))
HEATMAP = re.compile(r"\b(imshow|matshow|pcolormesh|plot_alignment)\(")
COLORBAR = re.compile(r"colorbar")


def heatmaps_without_colorbar(source: str) -> list[str]:
    """The heatmap calls of a piece of code that has no colour bar: [] when it is fine."""
    if COLORBAR.search(source):
        return []
    return HEATMAP.findall(source)


def package_functions() -> list[tuple[str, str]]:
    """(module:function, source) for every top-level function of the package that draws a heatmap."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        for node in ast.parse(text).body:
            if isinstance(node, ast.FunctionDef):
                source = ast.get_source_segment(text, node) or ""
                if HEATMAP.search(source):
                    found.append((f"{path.relative_to(PACKAGE)}:{node.name}", source))
    return found


def test_the_rule_catches_a_heatmap_without_a_colour_bar():
    assert heatmaps_without_colorbar("ax.imshow(w)\nplt.show()") == ["imshow"]
    assert heatmaps_without_colorbar("alignment.plot_alignment(ax, w, s, t)") == ["plot_alignment"]
    assert heatmaps_without_colorbar("im = ax.imshow(w)\nfig.colorbar(im, ax=ax)") == []
    assert heatmaps_without_colorbar("im = ax.imshow(m)\nutils.two_level_colorbar(im, ax)") == []
    assert heatmaps_without_colorbar("ax.plot(x, y)") == []


def test_the_package_draws_heatmaps_and_each_has_a_colour_bar():
    functions = package_functions()
    assert len(functions) >= 4, [name for name, _ in functions]  # the rule is not vacuous
    missing = {name: calls for name, source in functions if (calls := heatmaps_without_colorbar(source))}
    assert not missing, f"heatmaps without a colour bar: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_heatmap_in_a_notebook_has_a_colour_bar(path):
    nb = nbformat.read(path, as_version=4)
    missing = [(i, calls) for i, cell in enumerate(nb.cells)
               if cell.cell_type == "code" and (calls := heatmaps_without_colorbar(cell.source))]
    assert not missing, f"{path.name}: cells (index, calls) with a heatmap and no colour bar: {missing}"


def test_two_level_colorbar_names_both_levels_and_refuses_three_labels():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    image = ax.imshow([[0, 1], [1, 0]], vmin=0, vmax=1)
    bar = utils.two_level_colorbar(image, ax, labels=("no", "yes"))
    assert [t.get_text() for t in bar.ax.get_yticklabels()] == ["no", "yes"]
    with pytest.raises(ValueError, match="two labels"):
        utils.two_level_colorbar(image, ax, labels=("a", "b", "c"))
    plt.close(fig)
