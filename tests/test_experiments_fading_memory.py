"""Notebook 01's experiments: the gradient of h_T against the distance to x_t, and the recall task."""

import numpy as np
import pytest
import torch

from transformer_course.experiments.fading_memory import (
    KINDS,
    RecallConfig,
    RecallModel,
    final_state,
    gradient_figure,
    gradient_norm_by_distance,
    jacobian_norms,
    make_recurrent,
    random_orthogonal,
    recall_accuracy,
    train_recall,
)
from transformer_course.rnn import RNN
from transformer_course.utils import generator

# --- the gradient measurement ---------------------------------------------------------------


def test_jacobian_norms_equal_the_full_jacobian():
    model = make_recurrent("gru", 3, 4, seed=0).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    got = jacobian_norms(lambda inp: final_state(model, inp), x)
    expected = torch.zeros(5, dtype=torch.float64)
    for b in range(2):
        J = torch.autograd.functional.jacobian(lambda xb: final_state(model, xb[None])[0], x[b])  # (H, T, D)
        expected += J.pow(2).sum(dim=(0, 2)).sqrt().flip(0) / 2
    assert torch.allclose(got, expected, atol=1e-10)


def test_final_state_of_the_course_rnn_is_its_h_T():
    torch.manual_seed(0)
    model = RNN(3, 4)
    x = torch.randn(2, 5, 3)
    assert torch.equal(final_state(model, x), model(x)[1])


def test_jacobian_norms_rejects_bad_input():
    with pytest.raises(ValueError, match=r"x \(B, T, D\) with 3 dimensions, got shape \(3, 4\)"):
        jacobian_norms(lambda x: x[:, -1], torch.randn(3, 4))
    with pytest.raises(TypeError, match="floating-point"):
        jacobian_norms(lambda x: x[:, -1], torch.zeros(3, 4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="non-empty"):
        jacobian_norms(lambda x: x[:, -1], torch.randn(0, 4, 2))


def test_random_orthogonal_is_orthogonal():
    q = random_orthogonal(6, generator(0), dtype=torch.float64)
    assert torch.allclose(q @ q.T, torch.eye(6, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_weight_scale_sets_every_singular_value(kind):
    model = make_recurrent(kind, 4, 6, weight_scale=0.7, seed=3)
    for block in model.weight_hh_l0.detach().split(6):
        assert torch.allclose(torch.linalg.svdvals(block), torch.full((6,), 0.7), atol=1e-5)


def test_gate_bias_moves_the_update_and_forget_gates_only():
    base = make_recurrent("lstm", 4, 6, seed=3)
    biased = make_recurrent("lstm", 4, 6, gate_bias=2.0, seed=3)
    diff = (biased.bias_hh_l0 - base.bias_hh_l0).detach()
    assert torch.allclose(diff[6:12], torch.full((6,), 2.0)) and diff[:6].abs().max() == 0
    assert diff[12:].abs().max() == 0


def test_plain_rnn_gradient_is_bounded_by_the_weight_scale():
    # d h_T / d x_t = (prod of diag(tanh') W_hh) diag(tanh') W_ih, and |tanh'| <= 1, ||W_hh|| = 0.5:
    # so ||d h_T / d x_t||_F <= 0.5^d ||W_ih||_F at distance d.
    n = gradient_norm_by_distance("rnn", 0.5, seq_len=40, seed=0)
    w_ih = make_recurrent("rnn", 16, 32, weight_scale=0.5, seed=0).weight_ih_l0.detach().double()
    bound = 0.5 ** np.arange(40) * torch.linalg.matrix_norm(w_ih).item()
    assert np.all(n <= bound * (1 + 1e-9))
    assert n[30] < 1e-4 * n[1]


def test_scale_above_one_explodes_and_below_vanishes():
    small = gradient_norm_by_distance("rnn", 0.5, seq_len=60)
    big = gradient_norm_by_distance("rnn", 3.0, seq_len=60)
    assert small[59] < small[1] * 1e-10
    assert big[59] > big[1] * 1e3


def test_biased_gate_keeps_the_gradient():
    rnn = gradient_norm_by_distance("rnn", 0.5, seq_len=40)
    gru = gradient_norm_by_distance("gru", 0.5, seq_len=40, gate_bias=2.0)
    assert gru[30] / gru[1] > 1e4 * rnn[30] / rnn[1]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scale, seq_len, gate_bias", [(0.0, 2, 0.0), (0.25, 100, 0.0), (3.0, 100, 4.0),
                                                        (3.0, 10, 0.0), (1.0, 1, 4.0)])
def test_gradient_norm_at_the_ends_of_the_widget_ranges(kind, scale, seq_len, gate_bias):
    n = gradient_norm_by_distance(kind, scale, seq_len=seq_len, gate_bias=gate_bias)
    assert n.shape == (seq_len,) and np.all(np.isfinite(n)) and n[0] > 0


@pytest.mark.parametrize("scale, seq_len, gate_bias", [(0.25, 10, 0.0), (3.0, 100, 4.0), (0.25, 100, 4.0)])
def test_gradient_figure_draws_at_the_ends_of_the_sliders(scale, seq_len, gate_bias):
    fig = gradient_figure(scale, seq_len, gate_bias)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and len(ax.lines) == 4  # RNN, GRU, LSTM and the bound's slope
    for line in ax.lines[:3]:
        y = line.get_ydata()
        assert len(y) == seq_len and np.all(np.isfinite(y)) and np.all(y > 0)


def test_gradient_figure_draws_the_curves_of_its_seed():
    fig = gradient_figure(1.0, 20, 2.0, seed=3)
    for kind, line in zip(KINDS, fig.axes[0].lines[:3], strict=True):
        expected = gradient_norm_by_distance(kind, 1.0, 20, gate_bias=2.0, seed=3)
        assert np.array_equal(line.get_ydata(), np.maximum(expected, 1e-300))
    other = gradient_figure(1.0, 20, 2.0, seed=4).axes[0].lines[0].get_ydata()
    assert not np.array_equal(fig.axes[0].lines[0].get_ydata(), other)


@pytest.mark.parametrize("seed, error, message", [
    (-1, ValueError, r"gradient_figure expects a seed in \[0, 2\*\*32\), got -1"),
    (1.5, TypeError, r"gradient_figure expects an int seed, got float"),
])
def test_gradient_figure_rejects_a_bad_seed(seed, error, message):
    with pytest.raises(error, match=message):
        gradient_figure(1.0, 10, 0.0, seed=seed)


def test_gradient_norm_is_deterministic():
    a = gradient_norm_by_distance("lstm", 1.0, seq_len=20, seed=5)
    b = gradient_norm_by_distance("lstm", 1.0, seq_len=20, seed=5)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="transformer"), r"make_recurrent expects kind to be one of \('rnn', 'gru', 'lstm'\)"),
    (dict(weight_scale=-1.0), "weight_scale to be a finite number >= 0"),
    (dict(weight_scale=float("nan")), "weight_scale to be a finite number >= 0"),
    (dict(seq_len=0), "seq_len to be a positive int"),
    (dict(hidden_size=0), "hidden_size to be a positive int"),
    (dict(batch_size=0), "batch_size to be a positive int"),
])
def test_gradient_norm_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gradient_norm_by_distance(**kwargs)


# --- the recall model ---------------------------------------------------------------------


def test_recall_model_shapes_and_errors():
    model = RecallModel(RecallConfig(kind="lstm", vocab_size=6, d_model=8, hidden_size=5))
    assert model(torch.randint(0, 6, (3, 4))).shape == (3, 6)
    with pytest.raises(ValueError, match=r"token ids of shape \(B, T\), got torch.int64 of shape \(4,\)"):
        model(torch.randint(0, 6, (4,)))
    with pytest.raises(ValueError, match="non-empty"):
        model(torch.zeros(0, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"src ids in \[0, 5\]"):
        model(torch.full((2, 3), 6))
    with pytest.raises(ValueError, match="RecallConfig expects kind to be one of"):
        RecallConfig(kind="cnn")
    with pytest.raises(ValueError, match="hidden_size to be a positive int"):
        RecallConfig(hidden_size=0)


def test_recall_is_learned_at_short_distance_and_training_is_reproducible():
    config = RecallConfig(kind="gru", vocab_size=4, d_model=8, hidden_size=16)
    model, history = train_recall(config, k=2, steps=150, batch_size=32, seed=0)
    _, again = train_recall(config, k=2, steps=150, batch_size=32, seed=0)
    assert history.losses == again.losses
    assert recall_accuracy(model, 2, n=500) > 0.9  # chance is 0.25
