"""experiments.complexity: the measurements of notebook 09 count, time and reach what they claim to."""

import os
from fractions import Fraction

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from transformer_course.attention import MultiHeadAttention
from transformer_course.experiments import complexity as C
from transformer_course.measure import fit_exponent
from transformer_course.rnn import RNN

# ----------------------------------------------------------------------------- layers

@pytest.mark.parametrize(("kind", "cls"), [("rnn_loop", RNN), ("rnn", nn.RNN), ("gru", nn.GRU),
                                           ("attention", MultiHeadAttention)])
def test_make_layer_and_layer_forward_keep_the_shape(kind, cls):
    layer = C.make_layer(kind, 16, n_heads=4)
    assert isinstance(layer, cls)
    x = torch.randn(3, 7, 16)
    assert C.layer_forward(layer, x).shape == (3, 7, 16)


def test_make_layer_is_seeded():
    a, b = C.make_layer("attention", 8, 2, seed=3), C.make_layer("attention", 8, 2, seed=3)
    assert torch.equal(a.q_proj.weight, b.q_proj.weight)


def test_layer_forward_rejects_other_modules():
    with pytest.raises(TypeError, match="an rnn.RNN, nn.RNN, nn.GRU or MultiHeadAttention, got Linear"):
        C.layer_forward(nn.Linear(4, 4), torch.randn(1, 2, 4))


@pytest.mark.parametrize(("args", "message"), [
    (("lstm", 8), r"make_layer expects kind to be one of \('rnn_loop', 'gru', 'attention', 'rnn'\), "
                  r"got 'lstm'"),
    (("attention", 10, 4), "d_model divisible by n_heads .*got d_model=10 and n_heads=4"),
    (("gru", 0), "d_model to be a positive int, got 0"),
])
def test_make_layer_rejects_bad_configs(args, message):
    with pytest.raises(ValueError, match=message):
        C.make_layer(*args)


# ----------------------------------------------------------------------------- sequential steps

@pytest.mark.parametrize("n", [1, 5, 33])
def test_sequential_steps_are_n_for_the_rnns_and_one_for_attention(n):
    assert C.sequential_steps("rnn_loop", n) == n
    assert C.sequential_steps("rnn", n) == n
    assert C.sequential_steps("gru", n) == n
    assert C.sequential_steps("attention", n) == 1
    for kind in (*C.LAYER_KINDS, "rnn"):
        assert C.expected_steps(kind, n) == C.sequential_steps(kind, n)


@pytest.mark.parametrize("kind", ["rnn_loop", "rnn", "gru", "attention"])
def test_the_backward_pass_walks_the_steps_back_once_more(kind):
    n = 9
    forward, both = C.trace_layer(kind, n), C.trace_layer(kind, n, backward=True)
    assert both["sequential_steps"] == 2 * forward["sequential_steps"]
    assert both["critical_path"] > forward["critical_path"] and both["operators"] > forward["operators"]


@pytest.mark.parametrize("kind", ["rnn", "gru", "attention"])
def test_the_traced_depth_depends_on_n_not_on_the_width_or_a_batch_above_one(kind):
    small, wide = (C.trace_layer(kind, 12, d_model=d, batch=b, backward=True) for d, b in ((8, 2), (64, 5)))
    assert small == wide
    longer = C.trace_layer(kind, 24, d_model=8, batch=2, backward=True)
    assert (longer["critical_path"] > small["critical_path"]) == (kind != "attention")


@pytest.mark.parametrize("kind", ["rnn_loop", "rnn", "gru", "attention"])
@pytest.mark.parametrize("n", [1, 6])
@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_stacked_layers_need_the_steps_of_the_closed_form(kind, n, n_layers):
    assert C.stack_steps(kind, n, n_layers) == C.expected_stack_steps(kind, n, n_layers)


def test_encoder_decoder_steps_count_every_layer_that_waits():
    # notebook 08's shapes: one GRU layer on each side, a Transformer of 2 + 2 layers
    assert C.encoder_decoder_steps("recurrent", 11, 12) == 23
    assert C.encoder_decoder_steps("attention", 11, 12, n_layers=2) == 4  # not 2
    assert C.encoder_decoder_steps("recurrent", 11, 12, decoding=True) == 23
    assert C.encoder_decoder_steps("attention", 11, 12, n_layers=2, decoding=True) == 2 + 2 * 12
    assert C.encoder_decoder_steps("recurrent", 11, 12, n_layers=3) == (11 + 2) + (12 + 2)
    with pytest.raises(ValueError, match="encoder_decoder_steps expects kind to be one of"):
        C.encoder_decoder_steps("gru", 4, 4)
    with pytest.raises(ValueError, match="tgt_len to be a positive int, got 0"):
        C.encoder_decoder_steps("attention", 4, 0)


def test_critical_path_grows_with_n_for_the_rnns_only():
    for kind in ("rnn_loop", "gru"):
        short, long = (C.trace_layer(kind, n)["critical_path"] for n in (8, 32))
        assert long >= 3.5 * short, (kind, short, long)
    paths = {C.trace_layer("attention", n)["critical_path"] for n in (2, 8, 64)}
    assert len(paths) == 1 and paths.pop() <= 12


def test_operator_count_of_attention_does_not_depend_on_n():
    counts = {C.trace_layer("attention", n)["operators"] for n in (4, 16, 64)}
    assert len(counts) == 1
    assert C.trace_layer("rnn_loop", 64)["operators"] > 8 * C.trace_layer("rnn_loop", 4)["operators"]


# ----------------------------------------------------------------------------- FLOPs

@pytest.mark.parametrize("kind", [*C.LAYER_KINDS, "rnn"])
@pytest.mark.parametrize(("n", "d_model", "batch"), [(1, 8, 1), (12, 16, 2), (40, 32, 1)])
@pytest.mark.parametrize("backward", [False, True])
def test_counted_flops_equal_the_closed_form(kind, n, d_model, batch, backward):
    counted = C.count_flops(kind, n, d_model, batch, backward=backward)
    assert counted == C.expected_flops(kind, n, d_model, batch, backward=backward)


@pytest.mark.parametrize(("n", "d"), [(1, 64), (32, 64), (64, 64), (1000, 8)])
def test_attention_over_a_plain_rnn_is_two_plus_n_over_d_at_every_n(n, d):
    ratio = Fraction(C.expected_flops("attention", n, d), C.expected_flops("rnn", n, d))
    assert ratio == 2 + Fraction(n, d) and ratio > 1
    over_gru = Fraction(C.expected_flops("attention", n, d), C.expected_flops("gru", n, d))
    assert over_gru == (2 + Fraction(n, d)) / 3 and (over_gru < 1) == (n < d)


def test_attention_is_cheaper_than_a_gru_exactly_when_n_is_below_d():
    d = 64
    assert C.expected_flops("attention", 32, d) < C.expected_flops("gru", 32, d)
    assert C.expected_flops("attention", 64, d) == C.expected_flops("gru", 64, d)
    assert C.expected_flops("attention", 128, d) > C.expected_flops("gru", 128, d)


# ----------------------------------------------------------------------------- time

def test_time_against_length_returns_positive_times_and_restores_threads():
    torch.set_num_threads(2)
    times = C.time_against_length([8, 16], d_model=16, repeats=1, threads=1)
    assert torch.get_num_threads() == 2
    assert set(times) == set(C.LAYER_KINDS)
    assert all(len(v) == 2 and all(t > 0 for t in v) for v in times.values())
    forward = C.time_against_length([8], ["attention"], d_model=16, repeats=1, backward=False)
    assert list(forward) == ["attention"] and forward["attention"][0] > 0


@pytest.mark.parametrize("kind", ["rnn_loop", "rnn", "gru", "attention"])
def test_forward_backward_pass_fills_every_gradient_afresh_each_time(kind):
    run = C.forward_backward_pass(kind, 5, 8, batch=2)
    state = dict(zip(run.__code__.co_freevars, (c.cell_contents for c in run.__closure__), strict=True))
    layer, x = state["layer"], state["x"]
    run()
    first = [p.grad.clone() for p in layer.parameters()] + [x.grad.clone()]
    run()  # gradients are reset, not accumulated
    assert all(torch.equal(a, b.grad) for a, b in zip(first, [*layer.parameters(), x], strict=True))
    assert x.shape == (2, 5, 8) and x.grad.abs().sum() > 0


def test_forward_backward_pass_without_backward_and_its_input_check():
    run = C.forward_backward_pass("attention", 5, 8, batch=2, backward=False)
    run()
    assert all(p.grad is None for p in run.__closure__[run.__code__.co_freevars.index("layer")]
               .cell_contents.parameters())
    with pytest.raises(ValueError, match="forward_backward_pass expects kind to be one of"):
        C.forward_backward_pass("lstm", 5, 8)


# ----------------------------------------------------------------------------- crossover, speed-up

def test_crossover_length_interpolates_between_the_bracketing_lengths():
    assert C.crossover_length([1, 4], [1, 4], [2, 2]) == pytest.approx(2)  # ratio 1/2 -> 2: halfway in log n
    assert C.crossover_length([1, 2, 4], [1, 2, 4], [2, 2, 2]) == pytest.approx(2)  # met exactly at 2
    assert C.crossover_length([1, 2, 4], [1, 1, 1], [2, 2, 2]) is None  # never in this range
    assert C.crossover_length([8, 16], [3, 1], [2, 2]) == 8  # already slower at the first length
    with pytest.raises(ValueError, match="crossover_length expects lengths and two series of the same"):
        C.crossover_length([1, 2], [1], [1, 2])


def test_speedup_is_median_over_median_with_the_range():
    s = C.speedup([[2.0, 2.0, 3.0], [1.0, 1.25, 0.8]])
    assert s["median"] == pytest.approx([1, 2]) and s["low"] == pytest.approx([2 / 3, 1.6])
    assert s["high"] == pytest.approx([1, 2.5])
    with pytest.raises(ValueError, match="speedup expects a non-empty list"):
        C.speedup([[1.0], []])


def test_time_against_length_times_each_run_right_after_an_untimed_run_of_the_same_layer(monkeypatch):
    calls = []  # (kind, n, timed?) in the order they ran

    def fake_pass(kind, n, *args):
        return lambda: calls.append((kind, n))

    monkeypatch.setattr(C, "forward_backward_pass", fake_pass)
    ticks = iter(range(10**6))
    monkeypatch.setattr(C.time, "thread_time", lambda: next(ticks))
    C.time_against_length([8, 16], ["rnn_loop", "attention"], d_model=16, repeats=2)
    keys = [("rnn_loop", 8), ("rnn_loop", 16), ("attention", 8), ("attention", 16)]
    assert calls == [key for key in keys for _ in range(2)] * 2  # each key twice in a row, each round


def test_the_rnn_loop_takes_longer_for_a_longer_sequence():
    t = C.time_against_length([16, 256], ["rnn_loop"], d_model=16, repeats=3)["rnn_loop"]
    assert t[1] > 4 * t[0], t  # 16 times the steps; a generous margin for a loaded machine


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lengths": []}, "lengths to be a non-empty list"),
    ({"lengths": [8, 0]}, "n to be a positive int, got 0"),
    ({"lengths": [8], "kinds": ["lstm"]}, "kind to be one of"),
    ({"lengths": [8], "repeats": 0}, "repeats to be a positive int, got 0"),
    ({"lengths": [8], "threads": 0}, "time_against_length expects threads to be a positive int, got 0"),
])
def test_time_against_length_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        C.time_against_length(d_model=16, **kwargs)


# ----------------------------------------------------------------------------- memory

@pytest.mark.parametrize(("dtype", "size"), [(torch.float32, 4), (torch.float16, 2), (torch.float64, 8)])
def test_attention_weight_bytes(dtype, size):
    assert C.attention_weight_bytes(2, 4, 10, dtype) == 2 * 4 * 100 * size


@pytest.mark.parametrize(("n", "batch", "heads"), [(1, 1, 1), (17, 2, 4), (64, 3, 2)])
def test_measured_weight_bytes_equal_the_formula(n, batch, heads):
    assert C.measured_weight_bytes(n, 8, heads, batch) == C.attention_weight_bytes(batch, heads, n)


def test_attention_weight_bytes_rejects_bad_input():
    with pytest.raises(TypeError, match="dtype to be a floating torch.dtype, got torch.int64"):
        C.attention_weight_bytes(1, 1, 4, torch.int64)
    with pytest.raises(ValueError, match="n to be a positive int, got 0"):
        C.attention_weight_bytes(1, 1, 0)


def test_peak_memory_grows_as_n_squared_for_attention_and_linearly_for_the_rnn():
    lengths = [256, 512, 1024]
    att = [C.peak_forward_memory("attention", n, d_model=32) for n in lengths]
    rnn = [C.peak_forward_memory("rnn_loop", n, d_model=32) for n in lengths]
    assert 1.8 <= fit_exponent(lengths, att) <= 2.1, att
    assert 0.9 <= fit_exponent(lengths, rnn) <= 1.1, rnn
    assert att[-1] >= C.attention_weight_bytes(1, 4, 1024)  # the weights themselves are in there


# ----------------------------------------------------------------------------- path length

def test_influence_map_draws_the_expected_cones():
    conv = C.influence_map("convolution", 10, 5, kernel_size=3)
    expected = torch.tensor([[j <= 2 * L for j in range(10)] for L in range(1, 6)])
    assert torch.equal(conv, expected)
    rec = C.influence_map("recurrent", 6, 7)
    assert torch.equal(rec, torch.tensor([[j < L for j in range(6)] for L in range(1, 8)]))
    assert C.influence_map("attention", 12, 2).all()


@pytest.mark.parametrize(("kind", "depth"), [("recurrent", 3), ("recurrent", 9), ("convolution", 2),
                                             ("convolution", 5), ("attention", 1)])
def test_backward_gradient_and_forward_derivative_agree(kind, depth):
    n = 9
    grad = C.gradient_reach(kind, n, depth)  # which inputs reach output n - 1 (backward)
    assert bool(grad[0]) == bool(C.influence_map(kind, n, depth)[-1, -1])  # x_0 -> out_{n-1} (forward)
    if kind == "recurrent":  # output n-1 sees the last `depth` inputs
        assert torch.equal(grad, torch.arange(n) >= n - depth)


@pytest.mark.parametrize("kind", C.REACH_KINDS)
@pytest.mark.parametrize("n", [1, 2, 7, 20])
@pytest.mark.parametrize("kernel_size", [2, 3, 5])
def test_measured_path_length_equals_the_closed_form(kind, n, kernel_size):
    assert C.path_length(kind, n, kernel_size) == C.expected_path_length(kind, n, kernel_size)


def test_path_lengths_of_the_paper():
    assert [C.path_length("attention", n) for n in (2, 16, 64)] == [1, 1, 1]
    assert [C.path_length("recurrent", n) for n in (2, 16, 64)] == [2, 16, 64]
    assert [C.path_length("convolution", n, kernel_size=3) for n in (2, 16, 64)] == [1, 8, 32]


def test_the_parallel_recurrence_equals_the_loop_after_n_steps():
    n, D = 6, 5
    torch.manual_seed(0)
    step = C._RecurrentStep(D).double()
    loop = RNN(D, D).double()
    loop.cell = step.cell
    x = torch.randn(2, n, D, dtype=torch.float64)
    expected, _ = loop(x)  # (2, n, D)
    h = torch.zeros_like(x)
    for L in range(1, n + 1):
        h = step(x, h)
        assert torch.allclose(h[:, :L], expected[:, :L], atol=1e-12)  # exact for t < L
        if L < n:
            assert not torch.allclose(h[:, L:], expected[:, L:], atol=1e-6)
    assert torch.allclose(h, expected, atol=1e-12)


@pytest.mark.parametrize(("fn", "args", "message"), [
    (C.influence_map, ("lstm", 4, 2), "kind to be one of"),
    (C.influence_map, ("convolution", 4, 2, 1), "kernel_size to be an int >= 2, got 1"),
    (C.influence_map, ("attention", 4, 0), "max_depth to be a positive int"),
    (C.path_length, ("recurrent", 0), "n to be a positive int, got 0"),
    (C.gradient_reach, ("attention", 4, 0), "depth to be a positive int"),
    (C.expected_path_length, ("convolution", 4, 1), "kernel_size to be an int >= 2, got 1"),
    (C.expected_path_length, ("tree", 4), "kind to be one of"),
])
def test_reach_functions_reject_bad_input(fn, args, message):
    with pytest.raises(ValueError, match=message):
        fn(*args)


# ----------------------------------------------------------------------------- the widget

@pytest.mark.parametrize(("n", "d_model", "threads"), [(16, 16, 1), (1024, 256, 1), (16, 256, os.cpu_count()),
                                                      (1024, 16, os.cpu_count())])
def test_timing_figure_draws_at_the_ends_of_the_sliders(n, d_model, threads):
    fig = C.timing_figure(n, d_model, repeats=1, threads=threads)
    assert f"{threads} CPU thread" in fig._suptitle.get_text()
    assert isinstance(fig, Figure)
    time_ax, flop_ax, step_ax = fig.axes
    assert len(time_ax.patches) == 3 and all(p.get_height() > 0 for p in time_ax.patches)
    assert [p.get_height() for p in step_ax.patches] == [n, n, 1]
    assert flop_ax.patches[2].get_height() == pytest.approx(C.expected_flops("attention", n, d_model) / 1e6)


def test_timing_report_rejects_bad_sizes():
    message = "timing_report expects d_model divisible by n_heads .*got d_model=18 and n_heads=4"
    with pytest.raises(ValueError, match=message):
        C.timing_report(16, 18)


# ----------------------------------------------------------------------------- memory with autograd

def test_kept_for_backward_is_one_weights_tensor_and_four_projections_for_attention():
    n, d = 64, 16
    kept = C.kept_for_backward("attention", n, d_model=d, n_heads=4)
    # the softmax's output (the weights, also the input of weights @ v), and q * scale, k, v and
    # the merged heads, each (n, d): what the backward pass of these operators reads
    assert kept == C.attention_weight_bytes(1, 4, n) + 4 * n * d * 4


def test_kept_for_backward_grows_like_n_for_the_rnn_loop_and_rejects_an_unknown_kind():
    small, large = (C.kept_for_backward("rnn_loop", n, d_model=8) for n in (16, 64))
    assert small > 0 and large - small == (64 - 16) * 8 * 4  # one (1, D) state per extra position
    with pytest.raises(ValueError, match="kept_for_backward expects kind to be one of"):
        C.kept_for_backward("lstm", 8)


def test_operator_counts_sees_fewer_copies_at_batch_one():
    one, two = (C.operator_counts("attention", 16, d_model=16, batch=b, backward=True) for b in (1, 2))
    assert one["_softmax"] == two["_softmax"] == 1 and one["_softmax_backward_data"] == 1
    assert one.get("clone", 0) < two.get("clone", 0)
    assert sum(one.values()) == C.trace_layer("attention", 16, 16, batch=1, backward=True)["operators"]
