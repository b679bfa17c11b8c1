"""The attention explorer: its figure at the ends of every control, the maps it records from the
course's two trained-model kinds, and the widget that wires controls to it."""

from __future__ import annotations

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from transformer_course import utils  # noqa: E402
from transformer_course.experiments import explorer, race  # noqa: E402
from transformer_course.experiments.explorer import ALL, AttentionMaps  # noqa: E402
from transformer_course.gpt import GPT, CharTokenizer, GPTConfig  # noqa: E402


def fake_maps(n_layers=2, n_heads=3, T=4, S=5, seed=0) -> dict[str, AttentionMaps]:
    g = torch.Generator().manual_seed(seed)
    layers = [torch.softmax(torch.randn(n_heads, T, S, generator=g), -1) for _ in range(n_layers)]
    keys = ["학생", "이", "책", "을", "읽는다"][:S]
    return {"cross-attention": AttentionMaps([f"q{t}" for t in range(T)], keys, layers)}


@pytest.mark.parametrize("layer", [1, 2])
@pytest.mark.parametrize("head", [ALL, 1, 3])
def test_the_figure_draws_at_the_ends_of_every_control(layer, head):
    fig = explorer.explorer_figure(fake_maps(), "cross-attention", layer, head)
    fig.canvas.draw()
    title = fig._suptitle.get_text()
    assert f"layer {layer}" in title and (head == ALL or f"head {head} of 3" in title)


def test_one_head_draws_its_own_weights():
    maps = fake_maps(n_heads=2)
    fig = explorer.explorer_figure(maps, "cross-attention", 1, 2)
    image = fig.axes[1].images[0].get_array()
    assert torch.allclose(torch.as_tensor(image.data), maps["cross-attention"].layers[0][1])


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "encoder self-attention", "layer": 1}, "kind"),
    ({"kind": "cross-attention", "layer": 0}, "layer"),
    ({"kind": "cross-attention", "layer": 3}, "layer"),
    ({"kind": "cross-attention", "layer": 1, "head": 4}, "head"),
    ({"kind": "cross-attention", "layer": 1, "head": "first"}, "head"),
])
def test_bad_controls_say_what_was_given(kwargs, message):
    with pytest.raises(ValueError, match=message):
        explorer.explorer_figure(fake_maps(), **kwargs)


def test_maps_of_the_wrong_shape_are_refused():
    maps = fake_maps()
    bad = {"cross-attention": maps["cross-attention"]._replace(keys=["a", "b"])}
    with pytest.raises(ValueError, match=r"\(H, 4, 2\)"):
        explorer.explorer_figure(bad, "cross-attention", 1)


@pytest.fixture(scope="module")
def translator():
    utils.set_seed(0)
    data = race.race_data(race.REGIMES["short"], 0)
    model = race.transformer_model(data.src_vocab, data.tgt_vocab, 40)
    return model, data


def test_transformer_maps_are_the_layers_own_weights(translator):
    model, data = translator
    src = data.test[0][0]
    maps = explorer.transformer_maps(model, src, data.src_vocab, data.tgt_vocab)
    assert set(maps) == set(explorer.KINDS)
    enc, cross = maps["encoder self-attention"], maps["cross-attention"]
    assert enc.queries == enc.keys == list(src) and cross.keys == list(src)
    written = cross.queries
    assert maps["decoder self-attention"].keys == ["<bos>", *written[:-1]]
    for m in maps.values():
        for w in m.layers:
            assert torch.allclose(w.sum(-1), torch.ones(w.shape[:2]), atol=1e-5)
    causal = maps["decoder self-attention"].layers[0]
    assert torch.all(causal.triu(1) == 0), "a decoder step looked at a word it had not written yet"
    # the cross-attention equals what the model computes under teacher forcing
    ids = [data.tgt_vocab.stoi[w] if w != "<eos>" else 2 for w in written]
    from transformer_course.experiments.translation import cross_attention_weights
    again = cross_attention_weights(model, torch.tensor([data.src_vocab.encode(src)]),
                                    torch.tensor([[1, *ids[:-1]]]))
    assert torch.allclose(torch.stack(cross.layers), again[:, 0], atol=1e-6)


def test_transformer_maps_refuse_unknown_words(translator):
    model, data = translator
    with pytest.raises(ValueError, match="unknown word"):
        explorer.transformer_maps(model, "the zebra sleeps", data.src_vocab, data.tgt_vocab)


def test_gpt_maps_are_causal_and_one_per_block():
    text = "the cat sat on the mat"
    tok = CharTokenizer(text)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, d_model=16, n_heads=2, d_ff=32, n_layers=3, max_len=32))
    maps = explorer.gpt_maps(model, tok, text[:10])
    m = maps["self-attention"]
    assert len(m.layers) == 3 and m.queries[3] == "␣" and tuple(m.layers[0].shape) == (2, 10, 10)
    assert all(torch.all(w.triu(1) == 0) for w in m.layers)
    with pytest.raises(ValueError, match="max_len"):
        explorer.gpt_maps(model, tok, "x" * 40)
    with pytest.raises(ValueError, match="vocabulary"):
        explorer.gpt_maps(model, tok, "zebra")


def test_the_widget_redraws_on_every_control_and_survives_a_bad_sentence():
    calls = []

    def maps_for(sentence):
        calls.append(sentence)
        if "zebra" in sentence:
            raise ValueError("unknown word 'zebra'")
        return fake_maps(seed=len(sentence))

    widget = explorer.explorer(maps_for, ["a b c", "a b c d e"])
    assert "attention-explorer" in widget._dom_classes
    controls = {w._kwarg: w for w in widget.kwargs_widgets}
    first = widget.result
    controls["head"].value = 2
    assert widget.result is not first and "head 2 of 3" in widget.result._suptitle.get_text()
    controls["layer"].value = 1
    assert "layer 1" in widget.result._suptitle.get_text()
    controls["sentence"].value = "a b c d e"
    controls["typed_text"].value = "the zebra"
    assert "zebra" in widget.result.axes[0].texts[0].get_text()  # the message, not a crash
    controls["typed_text"].value = ""
    assert calls.count("a b c") == 1, "a sentence's maps are recorded once, then kept"


def test_the_widget_needs_a_sentence():
    with pytest.raises(ValueError, match="at least one sentence"):
        explorer.explorer(lambda s: fake_maps(), [])


EXPLORING = ["05_masks_and_multi_head", "08_full_transformer", "10_decoder_only_gpt"]


@pytest.mark.parametrize("name", EXPLORING)
def test_the_saved_notebook_shows_the_explorers_first_picture(name):
    """The explorer's cell is saved with its widget's state, and that state holds the first
    figure as a PNG: a static render of the notebook (JupyterLab without a kernel, nbviewer)
    shows the picture, not an empty box."""
    from pathlib import Path

    import nbformat

    nb = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / f"{name}.ipynb", 4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "explorer.explorer(" in c.source]
    assert cells, f"{name} has no attention explorer"
    views = [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] for o in cells[0].outputs
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert views, f"{name}: the explorer's cell has no widget output (re-execute the notebook)"
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    children = [c.removeprefix("IPY_MODEL_") for c in state[views[0]]["state"]["children"]]
    outputs = [state[c]["state"].get("outputs", []) for c in children
               if state[c]["model_name"] == "OutputModel"]
    assert any("image/png" in o.get("data", {}) for out in outputs for o in out), (
        f"{name}: the saved explorer holds no picture")
