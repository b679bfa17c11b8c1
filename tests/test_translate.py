"""experiments/translation.py: notebook 08's helpers and the logic of its widget."""

import pytest
import torch
from matplotlib.figure import Figure

from transformer_course import data
from transformer_course.experiments.translation import (
    check_sentence,
    cross_attention_weights,
    example_translation_figure,
    tokenize,
    transformer_loss,
    translate,
    translation_figure,
    xavier_init_,
)
from transformer_course.transformer import Transformer, translate_config

SRC_VOCAB, TGT_VOCAB = data.task_vocabs("translate")


@pytest.fixture(scope="module")
def model() -> Transformer:
    torch.manual_seed(0)
    return xavier_init_(Transformer(translate_config())).eval()


def test_tokenize_lowers_and_drops_punctuation():
    words = ["the", "old", "dog", "sees", "a", "cat", "quietly"]
    assert tokenize("The old Dog sees a cat, quietly!") == words
    assert tokenize("   ") == []
    with pytest.raises(TypeError, match="string"):
        tokenize(["the", "dog"])


def test_check_sentence_names_unknown_words_and_limits():
    check_sentence(["the", "dog", "sees", "a", "cat"], SRC_VOCAB, 32)
    with pytest.raises(ValueError, match="unknown words 'zebra', 'sneezes'"):
        check_sentence(["the", "zebra", "sneezes"], SRC_VOCAB, 32)
    with pytest.raises(ValueError, match="type an English sentence"):
        check_sentence([], SRC_VOCAB, 32)
    with pytest.raises(ValueError, match="at most 4"):
        check_sentence(["the", "dog", "sees", "a", "cat"], SRC_VOCAB, 4)


def test_xavier_init_brings_scaled_embeddings_to_the_positions_scale():
    torch.manual_seed(0)
    m = Transformer(translate_config())
    before = (m.src_embed.weight * 8).std().item()
    after = (xavier_init_(m).src_embed.weight * 8).std().item()
    assert before > 6 and 0.5 < after < 2
    with pytest.raises(TypeError, match="nn.Module"):
        xavier_init_("model")


def test_transformer_loss_is_finite_and_decreases_with_a_step(model):
    batch = data.collate(data.make_pairs("translate", 16, 5, 16, seed=0), SRC_VOCAB, TGT_VOCAB)
    m = Transformer(translate_config(dropout=0.0))
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    first = transformer_loss(m, batch)
    first.backward()
    opt.step()
    assert torch.isfinite(first) and transformer_loss(m, batch).item() < first.item()


def test_cross_attention_weights_shape_and_rows_sum_to_one(model):
    batch = data.collate(data.make_pairs("translate", 3, 5, 9, seed=1), SRC_VOCAB, TGT_VOCAB)
    w = cross_attention_weights(model, batch.src, batch.tgt_in)
    L, B, H, T, S = w.shape
    assert (L, B, H, T, S) == (2, 3, 4, batch.tgt_in.shape[1], batch.src.shape[1])
    assert torch.allclose(w.sum(-1), torch.ones(L, B, H, T), atol=1e-5)
    pad = batch.src == data.PAD  # (B, S): padded source words get no weight
    assert w.permute(1, 4, 0, 2, 3)[pad].abs().max() == 0
    with pytest.raises(TypeError, match="Transformer"):
        cross_attention_weights(torch.nn.Linear(2, 2), batch.src, batch.tgt_in)


def test_translate_returns_words_and_weights(model):
    tr = translate(model, "The dog sees a cat.", SRC_VOCAB, TGT_VOCAB)
    assert tr.src == ["the", "dog", "sees", "a", "cat"]
    assert tr.weights.shape == (2, 4, len(tr.out), 5)
    tr4 = translate(model, ["the", "dog", "sees", "a", "cat"], SRC_VOCAB, TGT_VOCAB, beam_size=3)
    assert tr4.weights.shape[:2] == (2, 4) and all(w in TGT_VOCAB.stoi for w in tr4.out)
    with pytest.raises(ValueError, match="unknown word 'unicorn'"):
        translate(model, "the unicorn sees a cat", SRC_VOCAB, TGT_VOCAB)


def test_translation_figure_at_both_ends_and_with_bad_input(model):
    pairs = data.make_pairs("translate", 6, 5, 16, seed=2)
    shortest = min(pairs, key=lambda p: len(p[0]))
    longest = max(pairs, key=lambda p: len(p[0]))
    for src, tgt in (shortest, longest):
        fig = translation_figure(model, " ".join(src), SRC_VOCAB, TGT_VOCAB, reference=tgt)
        assert len(fig.axes) == 8 + 1  # 2 layers x 4 heads, and the colour bar
    # words the task knows, but not a sentence of its grammar: drawn, without a reference
    fig = translation_figure(model, "dog dog dog", SRC_VOCAB, TGT_VOCAB)
    assert len(fig.axes) == 8 + 1 and "no reference" in fig._suptitle.get_text()
    for text, expected in (("the zebra sees a cat", "zebra"), ("", "type an English sentence"),
                           (" ".join(["the dog"] * 20), "at most 32")):
        fig = translation_figure(model, text, SRC_VOCAB, TGT_VOCAB)
        assert len(fig.axes) == 1 and expected in fig.axes[0].texts[0].get_text()



EXAMPLES = data.make_pairs("translate", 4, 5, 16, seed=1)


@pytest.mark.parametrize("index", [0, len(EXAMPLES) - 1])  # the example slider's range, empty text box
def test_example_translation_figure_at_the_ends_of_the_slider(model, index):
    fig = example_translation_figure(model, EXAMPLES, SRC_VOCAB, TGT_VOCAB, index=index, text="")
    assert isinstance(fig, Figure) and len(fig.axes) == 8 + 1  # 2 layers x 4 heads, the colour bar
    assert fig._suptitle.get_text().startswith(" ".join(EXAMPLES[index][0]))


@pytest.mark.parametrize(("text", "n_axes"), [("the dog sees a cat", 8 + 1), ("the zebra sees a cat", 1)])
def test_example_translation_figure_prefers_the_typed_sentence(model, text, n_axes):
    fig = example_translation_figure(model, EXAMPLES, SRC_VOCAB, TGT_VOCAB, index=3, text=text)
    assert isinstance(fig, Figure) and len(fig.axes) == n_axes
    if n_axes == 1:  # an unknown word: a message, not an error
        assert "zebra" in fig.axes[0].texts[0].get_text()
    else:
        assert fig._suptitle.get_text().startswith(text)
