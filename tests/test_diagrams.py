"""The diagrams: each draws, names only what the code has, opens its notebook before the formulas,
and turns bad arguments into a clear error. The README's course map is the package's drawing."""

from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from matplotlib.image import imread  # noqa: E402

from transformer_course import attention, diagrams, gpt, seq2seq, transformer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COURSE_MAP = ROOT / "docs" / "course_map.png"


def texts(fig) -> str:
    """Every piece of text drawn on a figure, joined."""
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts + [ax.title])


def notebook(number: str) -> nbformat.NotebookNode:
    return nbformat.read(next((ROOT / "notebooks").glob(f"{number}_*.ipynb")), 4)


@pytest.mark.parametrize("number", sorted(diagrams.OPENING))
def test_each_opening_diagram_draws_boxes_and_text(number):
    fig = diagrams.OPENING[number]()
    ax = fig.axes[0]
    assert len(ax.patches) >= 8, f"diagram {number} draws only {len(ax.patches)} shapes"
    assert len(ax.texts) >= 5, f"diagram {number} has only {len(ax.texts)} labels"
    fig.canvas.draw()  # renders: mathtext and every patch are valid
    assert fig._repr_png_().startswith(b"\x89PNG"), "a notebook cell ending in a diagram shows no picture"


# Names a diagram shows, and the code that must still have them: a rename breaks the test.
MHA = attention.MultiHeadAttention(8, 2)
ENC, DEC = transformer.EncoderLayer(8, 2, 16), transformer.DecoderLayer(8, 2, 16)
MODEL = transformer.Transformer(transformer.TransformerConfig(src_vocab_size=10, tgt_vocab_size=10, d_model=8,
                                                             n_heads=2, d_ff=16, n_layers=1))
GPT_MODEL = gpt.GPT(gpt.GPTConfig(vocab_size=10, d_model=8, n_heads=2, d_ff=16, n_layers=1, max_len=8))
NAMED = {
    "02": [(seq2seq, "RNNEncoder"), (seq2seq, "RNNDecoder")],
    "03": [(seq2seq, "RNNEncoder"), (seq2seq, "RNNDecoder")],
    "05": [(MHA, "q_proj"), (MHA, "k_proj"), (MHA, "v_proj"), (MHA, "out_proj"), (attention, "split_heads"),
           (attention, "merge_heads")],
    "07": [(ENC, "self_attn"), (ENC, "ff"), (ENC, "norm1"), (ENC, "norm2"), (transformer, "FeedForward"),
           (attention, "MultiHeadAttention")],
    "08": [(MODEL, "src_embed"), (MODEL, "tgt_embed"), (MODEL, "head"), (DEC, "self_attn"),
           (DEC, "cross_attn"), (DEC, "norm3"), (transformer, "EncoderLayer"), (transformer, "DecoderLayer")],
    "10": [(GPT_MODEL, "embed"), (GPT_MODEL, "norm"), (GPT_MODEL, "head"), (gpt, "GPTBlock")],
}


@pytest.mark.parametrize("number", sorted(NAMED))
def test_a_diagram_labels_parts_with_names_the_code_has(number):
    shown = texts(diagrams.OPENING[number]())
    for owner, name in NAMED[number]:
        assert re.search(rf"\b{name}\b", shown), f"diagram {number} does not show {name}"
        assert hasattr(owner, name), f"diagram {number} shows {name}, which the code no longer has"


def test_the_masks_diagram_names_the_mask_functions():
    shown = texts(diagrams.masks(length=3, T=5))
    assert "make_padding_mask" in shown and "make_causal_mask(5)" in shown
    assert hasattr(attention, "make_padding_mask") and hasattr(attention, "make_causal_mask")


def test_the_lookup_prints_one_real_attention_step():
    """The weights the figure prints are the softmax of its printed scores, and sum to 1."""
    shown = texts(diagrams.soft_lookup(seed=3, query=1, n_keys=5, d_k=6))
    scores = [float(x) for x in re.findall(r"^([+-]\d\.\d\d)$", shown, re.M)]
    weights = [float(x) for x in re.findall(r"^(0\.\d\d|1\.00)$", shown, re.M)]
    assert len(scores) == len(weights) == 5
    assert math.isclose(sum(weights), 1.0, abs_tol=0.03)
    expected = torch.softmax(torch.tensor(scores), dim=0)
    assert torch.allclose(torch.tensor(weights), expected, atol=0.02)


@pytest.mark.parametrize("call, message", [
    (lambda: diagrams.seq2seq(source=("a",)), "number of source tokens"),
    (lambda: diagrams.seq2seq(step=1), "step"),
    (lambda: diagrams.seq2seq(step=5), "step"),
    (lambda: diagrams.soft_lookup(query=4), "query"),
    (lambda: diagrams.soft_lookup(n_keys=9), "n_keys"),
    (lambda: diagrams.soft_lookup(seed=-1), "seed"),
    (lambda: diagrams.multi_head(n_heads=0), "n_heads"),
    (lambda: diagrams.masks(length=7, T=6), "length"),
    (lambda: diagrams.kv_cache(steps=0), "steps"),
    (lambda: diagrams.tiles(current=(4, 0)), "query tile"),
    (lambda: diagrams.tiles(current=(0,)), "current"),
    (lambda: diagrams.encoder_decoder(n_layers=0), "n_layers"),
])
def test_bad_arguments_say_what_was_given(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("call", [
    lambda: diagrams.seq2seq(source=tuple("abcdef"), step=6, attention=True),
    lambda: diagrams.soft_lookup(n_keys=6, d_k=8, query=5),
    lambda: diagrams.multi_head(n_heads=8),
    lambda: diagrams.masks(length=1, T=12),
    lambda: diagrams.kv_cache(steps=6),
    lambda: diagrams.tiles(n_q_tiles=6, n_kv_tiles=8, current=(5, 7)),
])
def test_the_ends_of_each_range_draw(call):
    call().canvas.draw()


@pytest.mark.parametrize("number", sorted(diagrams.OPENING))
def test_each_notebook_opens_with_its_diagram_before_any_formula(number):
    """The cell that draws the diagram comes before the first markdown cell with math
    (the title cell, with its recap of the notebook before, aside)."""
    cells = notebook(number).cells
    draws = [i for i, c in enumerate(cells) if c.cell_type == "code" and "diagrams." in c.source]
    assert draws, f"notebook {number} never draws its diagram"
    formulas = [i for i, c in enumerate(cells) if i and c.cell_type == "markdown" and "$" in c.source]
    assert not formulas or draws[0] < formulas[0], (
        f"notebook {number}: the diagram (cell {draws[0]}) comes after the first formula "
        f"(cell {formulas[0]})")
    outputs = cells[draws[0]].get("outputs", [])
    assert any("image/png" in o.get("data", {}) for o in outputs), (
        f"notebook {number}: the diagram's cell has no stored image (re-execute the notebook)")


def test_the_course_map_names_every_notebook_by_its_heading():
    headings = [notebook(f"{k:02d}").cells[0].source.splitlines()[0].split("·", 1)[1].strip()
                for k in range(len(diagrams.NOTEBOOKS))]
    assert list(diagrams.NOTEBOOKS) == headings
    assert len(list((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))) == len(diagrams.NOTEBOOKS)


def test_the_course_maps_claims_are_notebook_00s():
    """Notebook 00's table of the seed post's claims names the same notebook for each claim."""
    table = notebook("00").cells[0].source
    rows = re.findall(r"^\| (\d) \| .* \| (\d\d) \|$", table, re.M)
    assert [(int(n), int(k)) for n, k in rows] == [(i + 1, k) for i, (_, k, _) in enumerate(diagrams.CLAIMS)]


def test_the_readme_shows_the_course_map_the_package_draws(tmp_path):
    """docs/course_map.png is course_map() as drawn now (`make diagrams` redraws it)."""
    assert "docs/course_map.png" in (ROOT / "README.md").read_text(encoding="utf-8")
    fresh = tmp_path / "map.png"
    diagrams.course_map().savefig(fresh, dpi=diagrams.MAP_DPI)
    committed, drawn = imread(COURSE_MAP), imread(fresh)
    assert committed.shape == drawn.shape, "docs/course_map.png is stale: run `make diagrams`"
    assert np.abs(committed - drawn).mean() < 0.01, "docs/course_map.png is stale: run `make diagrams`"
