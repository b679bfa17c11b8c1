"""The from-scratch RNN equals nn.RNN; the gradient measurement and the recall task behave."""

import numpy as np
import pytest
import torch
from torch import nn

from transformer_course import data
from transformer_course.rnn import (
    KINDS,
    RNN,
    RecallConfig,
    RecallModel,
    RNNCell,
    final_state,
    gradient_figure,
    gradient_norm_by_distance,
    jacobian_norms,
    make_recurrent,
    random_orthogonal,
    recall_accuracy,
    train_recall,
)
from transformer_course.utils import generator


def _pair(D, H, seed):
    torch.manual_seed(seed)
    ours = RNN(D, H)
    ref = nn.RNN(D, H, batch_first=True)
    ours.copy_to(ref)
    return ours, ref


@pytest.mark.parametrize("B, T, D, H", [(1, 1, 3, 4), (2, 5, 3, 4), (4, 9, 8, 8), (3, 17, 6, 2)])
@pytest.mark.parametrize("with_h0", [False, True])
def test_rnn_equals_nn_rnn_outputs_and_gradients(B, T, D, H, with_h0):
    ours, ref = _pair(D, H, seed=B * 100 + T)
    g = generator(T * 7 + D)
    x = torch.randn(B, T, D, generator=g)
    h0 = torch.randn(B, H, generator=g) if with_h0 else None
    w = torch.randn(B, T, H, generator=g)  # a random upstream gradient for the outputs
    wh = torch.randn(B, H, generator=g)

    x1 = x.clone().requires_grad_(True)
    h1 = h0.clone().requires_grad_(True) if with_h0 else None
    out, h_T = ours(x1, h1)
    ((out * w).sum() + (h_T * wh).sum()).backward()

    x2 = x.clone().requires_grad_(True)
    h2 = h0.clone().unsqueeze(0).requires_grad_(True) if with_h0 else None
    out_ref, h_ref = ref(x2, h2)
    ((out_ref * w).sum() + (h_ref[0] * wh).sum()).backward()

    assert out.shape == (B, T, H) and h_T.shape == (B, H)
    assert torch.allclose(out, out_ref, atol=1e-6)
    assert torch.allclose(h_T, h_ref[0], atol=1e-6)
    assert torch.allclose(x1.grad, x2.grad, atol=1e-5)
    if with_h0:
        assert torch.allclose(h1.grad, h2.grad[0], atol=1e-5)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        assert torch.allclose(getattr(ours.cell, name).grad, getattr(ref, f"{name}_l0").grad, atol=1e-5), name


def test_cell_equals_nn_rnncell():
    torch.manual_seed(0)
    cell, ref = RNNCell(5, 3), nn.RNNCell(5, 3)
    ref.load_state_dict(cell.state_dict())  # same parameter names as nn.RNNCell
    x, h = torch.randn(4, 5), torch.randn(4, 3)
    assert torch.allclose(cell(x, h), ref(x, h), atol=1e-6)


def test_last_output_is_the_final_state():
    ours, _ = _pair(3, 5, seed=1)
    out, h_T = ours(torch.randn(2, 6, 3))
    assert torch.equal(out[:, -1], h_T)


def test_changing_a_late_input_leaves_earlier_states_unchanged():
    ours, _ = _pair(3, 4, seed=2)
    x = torch.randn(2, 8, 3)
    x2 = x.clone()
    x2[:, 5] += 1.0
    out, _ = ours(x)
    out2, _ = ours(x2)
    assert torch.equal(out[:, :5], out2[:, :5])
    assert not torch.allclose(out[:, 5:], out2[:, 5:])


@pytest.mark.parametrize("x, h0, message", [
    (torch.randn(5, 3), None, r"shape \(B, T, D\).*got 2 dims"),
    (torch.randn(2, 4, 7), None, r"input size D=3, got x of shape \(2, 4, 7\)"),
    (torch.randn(2, 4, 3), torch.randn(2, 5), r"h0 of shape \(B, H\) = \(2, 4\), got \(2, 5\)"),
    (torch.randn(2, 4, 3), torch.randn(1, 2, 4), r"h0 of shape \(B, H\) = \(2, 4\), got \(1, 2, 4\)"),
    (torch.randn(0, 4, 3), None, r"empty batch or sequence.*\(0, 4, 3\)"),
    (torch.randn(2, 0, 3), None, r"empty batch or sequence.*\(2, 0, 3\)"),
])
def test_rnn_rejects_bad_input(x, h0, message):
    with pytest.raises(ValueError, match=message):
        RNN(3, 4)(x, h0)


def test_rnn_rejects_token_ids_and_non_tensors():
    with pytest.raises(TypeError, match="float tensor, got dtype torch.int64"):
        RNN(3, 4)(torch.zeros(2, 4, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor, got list"):
        RNN(3, 4)([[1.0, 2.0, 3.0]])


def test_cell_rejects_bad_shapes_and_sizes():
    cell = RNNCell(3, 4)
    with pytest.raises(ValueError, match=r"x of shape \(B, 3\), got \(2, 5\)"):
        cell(torch.randn(2, 5), torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"h of shape \(2, 4\) = \(B, hidden_size\), got \(2, 3\)"):
        cell(torch.randn(2, 3), torch.randn(2, 3))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="hidden_size to be a positive int"):
            RNNCell(3, bad)


def test_copy_to_rejects_mismatched_reference():
    with pytest.raises(ValueError, match="sizes differ"):
        RNN(3, 4).copy_to(nn.RNN(3, 5, batch_first=True))
    with pytest.raises(TypeError, match="one-layer"):
        RNN(3, 4).copy_to(nn.RNN(3, 4, num_layers=2))
    with pytest.raises(TypeError, match="one-layer"):
        RNN(3, 4).copy_to(nn.GRU(3, 4))


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


def test_jacobian_norms_rejects_bad_input():
    with pytest.raises(ValueError, match=r"non-empty x of shape \(B, T, D\)"):
        jacobian_norms(lambda x: x[:, -1], torch.randn(3, 4))
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


def test_gradient_norm_is_deterministic():
    a = gradient_norm_by_distance("lstm", 1.0, seq_len=20, seed=5)
    b = gradient_norm_by_distance("lstm", 1.0, seq_len=20, seed=5)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="transformer"), "kind must be one of"),
    (dict(weight_scale=-1.0), "weight_scale must be a finite number >= 0"),
    (dict(weight_scale=float("nan")), "weight_scale must be a finite number >= 0"),
    (dict(seq_len=0), "seq_len to be a positive int"),
    (dict(hidden_size=0), "hidden_size to be a positive int"),
    (dict(batch_size=0), "batch_size to be a positive int"),
])
def test_gradient_norm_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gradient_norm_by_distance(**kwargs)


# --- the recall task ------------------------------------------------------------------------


def test_recall_data_answer_is_the_first_symbol():
    batch = data.make_recall(50, 7, 5, generator(0))
    assert batch.src.shape == (50, 8) and batch.target.shape == (50,)
    assert torch.equal(batch.target, batch.src[:, 0])
    assert batch.src.min() >= 0 and batch.src.max() < 5
    again = data.make_recall(50, 7, 5, generator(0))
    assert torch.equal(batch.src, again.src)
    batches = list(data.recall_batches(3, 4, 8, generator(1), n_batches=5))
    assert len(batches) == 5 and not torch.equal(batches[0].src, batches[1].src)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=0, k=3, vocab_size=4), "n to be an int >= 1"),
    (dict(n=2, k=0, vocab_size=4), "k to be an int >= 1"),
    (dict(n=2, k=3, vocab_size=1), "vocab_size to be an int >= 2"),
])
def test_recall_data_rejects_bad_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.make_recall(generator=generator(0), **kwargs)


def test_recall_model_shapes_and_errors():
    model = RecallModel(RecallConfig(kind="lstm", vocab_size=6, d_model=8, hidden_size=5))
    assert model(torch.randint(0, 6, (3, 4))).shape == (3, 6)
    with pytest.raises(ValueError, match=r"token ids of shape \(B, T\), got \(4,\)"):
        model(torch.randint(0, 6, (4,)))
    with pytest.raises(ValueError, match="non-empty"):
        model(torch.zeros(0, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="RecallConfig.kind must be one of"):
        RecallConfig(kind="cnn")
    with pytest.raises(ValueError, match="hidden_size to be a positive int"):
        RecallConfig(hidden_size=0)


def test_recall_is_learned_at_short_distance_and_training_is_reproducible():
    config = RecallConfig(kind="gru", vocab_size=4, d_model=8, hidden_size=16)
    model, history = train_recall(config, k=2, steps=150, batch_size=32, seed=0)
    _, again = train_recall(config, k=2, steps=150, batch_size=32, seed=0)
    assert history.losses == again.losses
    assert recall_accuracy(model, 2, n=500) > 0.9  # chance is 0.25
