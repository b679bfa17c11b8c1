"""The decoder-only GPT: equal to PyTorch's layers, causal, its KV cache exact, its sampler checked."""

import functools
import math
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from transformer_course import gpt, train, widgets
from transformer_course.attention import MultiHeadAttention, make_causal_mask
from transformer_course.experiments import generation
from transformer_course.reference import copy_encoder_layer, randomise_norms
from transformer_course.transformer import EncoderLayer

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

V = 11


def small_model(seed: int = 0, **overrides) -> gpt.GPT:
    torch.manual_seed(seed)
    config = gpt.GPTConfig(**{**dict(vocab_size=V, max_len=24, d_model=16, n_heads=4, d_ff=32,
                                     n_layers=2), **overrides})
    model = gpt.GPT(config).eval()
    with torch.no_grad():  # larger than the init, so that the logits differ clearly between tokens
        model.embed.weight.normal_(0, 1, generator=torch.Generator().manual_seed(seed))
    return model


def tokens(B: int, T: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- text and tokenizer

def test_the_shipped_text_loads_and_round_trips():
    text = gpt.load_text("small_stories")
    assert 20_000 <= len(text.encode()) <= 60_000
    tok = gpt.CharTokenizer(text)
    assert tok.vocab_size == len(set(text)) and tok.chars == sorted(set(text))
    ids = tok.encode(text[:500])
    assert ids.dtype == torch.long and ids.shape == (500,)
    assert tok.decode(ids) == text[:500]


def test_the_text_ships_as_package_data():
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["transformer_course"]
    assert "texts/*.txt" in patterns and "texts/*.md" in patterns


def test_tokenizer_and_loader_errors():
    tok = gpt.CharTokenizer("abc")
    with pytest.raises(ValueError, match=r"characters \['z'\] are not in the vocabulary"):
        tok.encode("abz")
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match="non-empty str"):
        gpt.CharTokenizer("")
    with pytest.raises(ValueError, match=r"load_text expects name .* to be one of \('small_stories',\), "
                                         "got 'shakespeare'"):
        gpt.load_text("shakespeare")


# ----------------------------------------------------------------------------- the model

def test_gpt_equals_a_pytorch_reference_outputs_and_gradients():
    """Embedding + positions -> nn.TransformerEncoderLayer(norm_first) with a causal mask -> norm, head."""
    model = small_model(seed=1)
    g = torch.Generator().manual_seed(1)
    c = model.config
    ref_layers = nn.ModuleList(nn.TransformerEncoderLayer(c.d_model, c.n_heads, c.d_ff, dropout=0.0,
                                                          batch_first=True, norm_first=True)
                               for _ in range(c.n_layers))
    for block, ref in zip(model.blocks, ref_layers, strict=True):
        randomise_norms(ref, g)
        copy_encoder_layer(block, ref)
    x = tokens(3, 9, seed=1)
    logits = model(x)
    h = model.embed(x) + model.positions.embedding.weight[:9]
    for ref in ref_layers:
        h = ref(h, src_mask=~make_causal_mask(9), is_causal=True)  # PyTorch's sign: True = blocked
    ref_logits = model.head(model.norm(h))
    assert torch.allclose(logits, ref_logits, atol=1e-5)
    upstream = torch.randn(logits.shape, generator=g)
    ours = torch.autograd.grad(logits, [model.blocks[0].self_attn.q_proj.weight, model.embed.weight],
                               upstream)
    theirs = torch.autograd.grad(ref_logits, [ref_layers[0].self_attn.in_proj_weight, model.embed.weight],
                                 upstream)
    assert torch.allclose(ours[0], theirs[0][: c.d_model], atol=1e-5)
    assert torch.allclose(ours[1], theirs[1], atol=1e-5)


def test_a_gpt_block_is_the_pre_ln_encoder_layer():
    block = gpt.GPTBlock(16, 4, 32)
    assert isinstance(block, EncoderLayer) and block.norm_first
    assert isinstance(block.self_attn, MultiHeadAttention)


def test_changing_future_characters_leaves_earlier_logits_unchanged():
    model = small_model()
    x = tokens(2, 12)
    changed = x.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % V
    a, b = model(x), model(changed)
    assert torch.allclose(a[:, :7], b[:, :7], atol=1e-6)
    assert (a[:, 7:] - b[:, 7:]).abs().amax() > 1e-3


def test_a_sequence_longer_than_max_len_is_refused():
    model = small_model()
    with pytest.raises(ValueError, match="do not fit the context max_len=24"):
        model(tokens(1, 25))
    with pytest.raises(TypeError, match=r"GPT expects tokens to be integer token ids of shape \(B, T\)"):
        model(torch.randn(1, 5))
    with pytest.raises(ValueError, match=r"tokens ids in \[0, 10\] \(the vocabulary\), got ids from 0 to 11"):
        model(torch.tensor([[0, 11]]))
    _, cache = model.forward_cached(tokens(1, 20))
    with pytest.raises(ValueError, match=r"positions 0\.\.24, which do not fit"):
        model.forward_cached(tokens(1, 5), cache)
    with pytest.raises(ValueError, match="one \\(k, v\\) pair per layer"):
        model.forward_cached(tokens(1, 1), cache[:1])


@pytest.mark.parametrize("kwargs, message", [
    (dict(vocab_size=0), "vocab_size to be a positive int"),
    (dict(vocab_size=5, d_model=10, n_heads=4), "d_model divisible by n_heads"),
    (dict(vocab_size=5, dropout=1.0), r"dropout to be in \[0, 1\)"),
    (dict(vocab_size=5, max_len=2.5), "max_len to be a positive int"),
])
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gpt.GPTConfig(**kwargs)
    with pytest.raises(TypeError, match="expects a GPTConfig"):
        gpt.GPT(dict(vocab_size=5))


# ----------------------------------------------------------------------------- the KV cache

@pytest.mark.parametrize("chunks", [[1] * 7, [4, 1, 1, 1], [3, 4], [7]])
def test_mha_forward_cached_equals_causal_attention_in_any_chunks(chunks):
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, sum(chunks), 16, generator=torch.Generator().manual_seed(2))
    full, full_w = mha(x, x, x, make_causal_mask(x.shape[1]))
    outs, cache, start = [], None, 0
    for n in chunks:
        out, w, cache = mha.forward_cached(x[:, start: start + n], cache)
        assert w.shape == (2, 4, n, start + n)
        assert torch.allclose(w, full_w[:, :, start: start + n, : start + n], atol=1e-6)
        outs.append(out)
        start += n
    assert torch.allclose(torch.cat(outs, 1), full, atol=1e-5)
    assert cache[0].shape == cache[1].shape == (2, 4, 7, 4)


def test_mha_forward_cached_has_the_gradients_of_causal_attention():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4)
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(3))
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_full, _ = mha(x1, x1, x1, make_causal_mask(6))
    out_cached, _, _ = mha.forward_cached(x2)
    assert torch.allclose(out_full, out_cached, atol=1e-6)
    upstream = torch.randn(out_full.shape, generator=torch.Generator().manual_seed(4))
    g1 = torch.autograd.grad(out_full, [x1, mha.k_proj.weight], upstream)
    g2 = torch.autograd.grad(out_cached, [x2, mha.k_proj.weight], upstream)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g1, g2, strict=True))


def test_mha_forward_cached_rejects_a_bad_cache():
    mha = MultiHeadAttention(16, 4)
    x = torch.randn(2, 1, 16)
    with pytest.raises(TypeError, match=r"a pair \(k, v\)"):
        mha.forward_cached(x, torch.zeros(2, 4, 3, 4))
    with pytest.raises(ValueError, match=r"cached k to be \(B, H, S_past, Dh\) = \(2, 4, S_past, 4\)"):
        mha.forward_cached(x, (torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 3, 4)))
    with pytest.raises(ValueError, match=r"cached k and v of one shape, got \(2, 4, 3, 4\) and \(2, 4, 2,"):
        mha.forward_cached(x, (torch.zeros(2, 4, 3, 4), torch.zeros(2, 4, 2, 4)))


def test_greedy_generation_with_the_cache_equals_without_tokens_and_logits():
    model = small_model(seed=3)
    prompt = tokens(3, 4, seed=3)
    a, la = gpt.generate(model, prompt, 20, greedy=True, use_cache=True, return_logits=True)
    b, lb = gpt.generate(model, prompt, 20, greedy=True, use_cache=False, return_logits=True)
    assert a.shape == (3, 24) and torch.equal(a[:, :4], prompt)
    assert torch.equal(a, b)
    assert la.shape == (3, 20, V) and torch.allclose(la, lb, atol=1e-5)
    assert torch.equal(la.argmax(-1), a[:, 4:])  # greedy: each token is the argmax of its logits


def test_sampling_with_the_cache_equals_without_for_the_same_seed():
    model = small_model(seed=4)
    prompt = tokens(2, 3, seed=4)
    kw = dict(temperature=1.5, top_k=5, seed=7)
    assert torch.equal(gpt.generate(model, prompt, 15, use_cache=True, **kw),
                       gpt.generate(model, prompt, 15, use_cache=False, **kw))


def test_gpt_forward_cached_in_chunks_equals_forward():
    model = small_model(seed=5)
    x = tokens(2, 10, seed=5)
    first, cache = model.forward_cached(x[:, :6])
    second, cache = model.forward_cached(x[:, 6:], cache)
    assert torch.allclose(torch.cat([first, second], 1), model(x), atol=1e-5)
    assert len(cache) == 2 and cache[0][0].shape == (2, 4, 10, 4)


def test_generate_rejects_bad_arguments():
    model = small_model()
    prompt = tokens(1, 4)
    with pytest.raises(ValueError, match="plus n_new=21 to be between 1 and max_len=24 tokens, got 25"):
        gpt.generate(model, prompt, 21)
    with pytest.raises(ValueError, match="n_new to be an int >= 0"):
        gpt.generate(model, prompt, -1)
    with pytest.raises(TypeError, match="expects a GPT model"):
        gpt.generate(nn.Linear(2, 2), prompt, 3)
    assert torch.equal(gpt.generate(model, prompt, 0), prompt)


# ----------------------------------------------------------------------------- sampling

def test_top_k_filter_keeps_exactly_the_k_largest():
    logits = torch.randn(4, 3, V, generator=torch.Generator().manual_seed(5))
    for k in (1, 3, V):
        kept = torch.isfinite(gpt.top_k_filter(logits, k))
        assert (kept.sum(-1) == k).all()
        assert torch.equal(kept, torch.zeros_like(kept).scatter(-1, logits.topk(k, -1).indices, True))
        assert torch.equal(gpt.top_k_filter(logits, k)[kept], logits[kept])


def test_sampling_probs_temperature_and_top_k():
    logits = torch.randn(5, V, generator=torch.Generator().manual_seed(6))
    p = gpt.sampling_probs(logits, 0.7, top_k=4)
    assert torch.allclose(p.sum(-1), torch.ones(5)) and ((p > 0).sum(-1) == 4).all()
    assert torch.allclose(p, torch.softmax(gpt.top_k_filter(logits / 0.7, 4), -1))
    assert torch.allclose(gpt.sampling_probs(logits, 1.0), torch.softmax(logits, -1))
    cold, hot = gpt.sampling_probs(logits, 0.01), gpt.sampling_probs(logits, 1000.0)
    assert torch.allclose(cold, nn.functional.one_hot(logits.argmax(-1), V).float(), atol=1e-4)
    assert torch.allclose(hot, torch.full_like(hot, 1 / V), atol=1e-3)


def test_sample_next_draws_from_the_sampling_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -3.0]])
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([gpt.sample_next(logits, 0.8, top_k=3, generator=g) for _ in range(4000)])
    freq = torch.bincount(draws.flatten(), minlength=5).float() / draws.numel()
    assert torch.allclose(freq, gpt.sampling_probs(logits, 0.8, 3)[0], atol=0.03)
    assert freq[3:].sum() == 0


def test_sampling_with_top_k_1_equals_greedy():
    model = small_model(seed=6)
    prompt = tokens(4, 3, seed=6)
    greedy = gpt.generate(model, prompt, 15, greedy=True)
    for temperature in (0.3, 1.0, 5.0):
        assert torch.equal(gpt.generate(model, prompt, 15, temperature=temperature, top_k=1, seed=1),
                           greedy)
    logits = torch.randn(6, V, generator=torch.Generator().manual_seed(7))
    assert torch.equal(gpt.sample_next(logits, 2.0, top_k=1), logits.argmax(-1))


@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), float("inf"), "1", True])
def test_bad_temperatures_raise(temperature):
    logits = torch.randn(2, V)
    for fn in (lambda: gpt.sampling_probs(logits, temperature),
               lambda: gpt.sample_next(logits, temperature),
               lambda: gpt.generate(small_model(), tokens(1, 2), 3, temperature=temperature)):
        with pytest.raises(ValueError, match="temperature to be a finite number > 0"):
            fn()


@pytest.mark.parametrize("top_k", [0, -2, V + 1, 2.5, True])
def test_bad_top_k_raise(top_k):
    logits = torch.randn(2, V)
    for fn in (lambda: gpt.top_k_filter(logits, top_k), lambda: gpt.sampling_probs(logits, 1.0, top_k),
               lambda: gpt.sample_next(logits, 1.0, top_k),
               lambda: gpt.generate(small_model(), tokens(1, 2), 3, top_k=top_k)):
        with pytest.raises(ValueError, match=rf"top_k to be None or an int in \[1, V={V}\]"):
            fn()
    with pytest.raises(TypeError, match=r"logits \(\.\.\., V\) to be a floating-point tensor"):
        gpt.top_k_filter(torch.ones(3, dtype=torch.long), 1)


# ----------------------------------------------------------------------------- training and measuring

def test_char_batches_are_shifted_windows_and_seeded():
    data = torch.arange(100)
    make = gpt.char_batches(data, block_size=8, batch_size=4, n_batches=3)
    batches = list(make(torch.Generator().manual_seed(0)))
    assert len(batches) == 3 and batches[0].shape == (4, 9)
    assert (batches[0][:, 1:] - batches[0][:, :-1] == 1).all()  # consecutive characters
    again = list(make(torch.Generator().manual_seed(0)))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    with pytest.raises(ValueError, match="too few for windows of 101"):
        gpt.char_batches(data, 100, 4)
    with pytest.raises(ValueError, match="block_size to be a positive int"):
        gpt.char_batches(data, 0, 4)


def test_the_loss_starts_near_log_v_and_falls_with_training():
    text = gpt.load_text()
    tok = gpt.CharTokenizer(text)
    data = tok.encode(text)
    torch.manual_seed(0)
    model = gpt.GPT(gpt.GPTConfig(vocab_size=tok.vocab_size, max_len=32, d_model=32, n_heads=4,
                                  d_ff=64, n_layers=1))
    before = gpt.evaluate_loss(model, data, 32)
    assert abs(before - math.log(tok.vocab_size)) < 0.3
    history = train.train(model, gpt.lm_loss, gpt.char_batches(data, 32, 16), steps=60, lr=3e-3)
    assert history.final_loss < before - 0.8


def _ngram_by_hand(train_ids: list[int], held_out: list[int], order: int, V: int, alpha: float) -> float:
    """The n-gram cross-entropy with Python dictionaries, one held-out token at a time."""
    counts: dict[tuple, int] = {}
    for i in range(len(train_ids) - order + 1):
        gram = tuple(train_ids[i:i + order])
        counts[gram] = counts.get(gram, 0) + 1
    total = 0.0
    for i in range(order - 1, len(held_out)):
        context = tuple(held_out[i - order + 1:i])
        row = sum(counts.get(context + (c,), 0) for c in range(V))
        total -= math.log((counts.get(context + (held_out[i],), 0) + alpha) / (row + alpha * V))
    return total / (len(held_out) - order + 1)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("alpha", [0.01, 1.0])
def test_ngram_loss_equals_counting_by_hand(order, alpha):
    g = torch.Generator().manual_seed(order)
    train_ids, held_out = torch.randint(0, 5, (300,), generator=g), torch.randint(0, 5, (60,), generator=g)
    want = _ngram_by_hand(train_ids.tolist(), held_out.tolist(), order, 5, alpha)
    assert generation.ngram_loss(train_ids, held_out, order, 5, alpha=alpha) == pytest.approx(want, rel=1e-9)


def test_ngram_loss_knows_what_each_order_can_see():
    text = torch.tensor([0, 1] * 50)  # "abab...": the previous token decides the next one
    assert generation.ngram_loss(text, text, 1, 2, alpha=1e-6) == pytest.approx(math.log(2), abs=1e-4)
    assert generation.ngram_loss(text, text, 2, 2, alpha=1e-6) < 1e-4
    full = gpt.load_text()
    tok = gpt.CharTokenizer(full)
    data = tok.encode(full)
    n = int(0.9 * len(data))
    losses = [generation.ngram_loss(data[:n], data[n:], order, tok.vocab_size) for order in (1, 2, 3)]
    assert losses[0] > losses[1] > losses[2] and losses[0] < math.log(tok.vocab_size)


def test_ngram_loss_rejects_bad_arguments():
    ids = torch.tensor([0, 1, 2, 1])
    with pytest.raises(ValueError, match="order to be an int in \\[1, 4\\]"):
        generation.ngram_loss(ids, ids, 0, 3)
    with pytest.raises(ValueError, match="alpha to be a finite number > 0"):
        generation.ngram_loss(ids, ids, 2, 3, alpha=0.0)
    with pytest.raises(ValueError, match="held_out ids in \\[0, 2\\]"):
        generation.ngram_loss(ids, torch.tensor([0, 3]), 1, 3)
    with pytest.raises(ValueError, match="texts of at least order=3 tokens"):
        generation.ngram_loss(ids, ids[:2], 3, 3)
    with pytest.raises(TypeError, match="train_data to be integer token ids"):
        generation.ngram_loss(ids.float(), ids, 1, 3)


def test_generation_times_measures_both_paths():
    model = small_model()
    times = generation.generation_times(model, tokens(1, 2), [3, 6], repeats=1)
    assert set(times) == {"no cache", "cache"}
    assert all(len(t) == 2 and min(t) > 0 for t in times.values())
    with pytest.raises(ValueError, match="lengths to be positive ints"):
        generation.generation_times(model, tokens(1, 2), [0])


# ----------------------------------------------------------------------------- the widget's logic

@pytest.mark.parametrize("temperature, top_k", [(0.1, 1), (0.1, V), (2.0, 1), (2.0, V), (1.0, None)])
def test_sampling_figure_at_the_ends_of_its_sliders(temperature, top_k):
    model = small_model()
    tok = gpt.CharTokenizer("abcdefghij ")
    fig = generation.sampling_figure(model, tok, "abc", temperature, top_k, n_chars=12, n_samples=2)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    samples = generation.sample_texts(model, tok, "abc", 12, temperature=temperature, top_k=top_k,
                                      n_samples=2)
    assert len(samples) == 2 and all(len(s) == 12 for s in samples)
    if top_k == 1:  # top-1 is greedy: every sample the same
        assert samples[0] == samples[1]


def test_sampling_figure_orders_the_bars_by_logit_so_cut_characters_show_at_zero():
    model, tok = small_model(), gpt.CharTokenizer("abcdefghij ")
    fig = generation.sampling_figure(model, tok, "abc", 1.0, 3, n_chars=4, n_samples=1)
    with torch.no_grad():
        logits = model(tok.encode("abc")[None])[0, -1]
    order = [repr(tok.chars[i])[1:-1].replace(" ", "␣") for i in logits.argsort(descending=True).tolist()]
    bars = fig.axes[0]
    assert [t.get_text() for t in bars.get_xticklabels()] == order
    heights = [p.get_height() for p in bars.patches]
    assert all(h > 0 for h in heights[:3]) and all(h == 0 for h in heights[3:])


def test_sampling_figure_wired_as_in_notebook_10_shows_two_sliders():
    import ipywidgets

    model, tok = small_model(), gpt.CharTokenizer("abcdefghij ")
    w = widgets.figure_widget(
        functools.partial(generation.sampling_figure, model, tok, "abc"),
        temperature=ipywidgets.FloatSlider(value=0.8, min=0.1, max=2.0, step=0.05),
        top_k=ipywidgets.IntSlider(value=10, min=1, max=V),
        n_chars=ipywidgets.fixed(12), n_samples=ipywidgets.fixed(2), seed=ipywidgets.fixed(0),
    )
    assert [type(c).__name__ for c in w.children] == ["FloatSlider", "IntSlider", "Output"]
