"""The checks of exercise 01 accept the right answers and name each typical mistake."""

import pytest
import torch

from transformer_course import checks
from transformer_course.checks import CheckFailed

# --- task 1: the cell -----------------------------------------------------------------------


def good_cell(x, h, W_ih, W_hh, b_ih, b_hh):
    return torch.tanh(x @ W_ih.T + b_ih + h @ W_hh.T + b_hh)


def no_tanh(x, h, W_ih, W_hh, b_ih, b_hh):
    return x @ W_ih.T + b_ih + h @ W_hh.T + b_hh


def sigmoid_cell(x, h, W_ih, W_hh, b_ih, b_hh):
    return torch.sigmoid(x @ W_ih.T + b_ih + h @ W_hh.T + b_hh)


def w_hh_transposed(x, h, W_ih, W_hh, b_ih, b_hh):
    return torch.tanh(x @ W_ih.T + b_ih + h @ W_hh + b_hh)


def w_ih_transposed(x, h, W_ih, W_hh, b_ih, b_hh):
    return torch.tanh(x @ W_ih + b_ih + h @ W_hh.T + b_hh)


def w_hh_on_x(x, h, W_ih, W_hh, b_ih, b_hh):
    return torch.tanh(x @ W_hh.T + b_ih + h @ W_ih.T + b_hh)


def no_bias_hh(x, h, W_ih, W_hh, b_ih, b_hh):
    return torch.tanh(x @ W_ih.T + b_ih + h @ W_hh.T)


def no_biases(x, h, W_ih, W_hh, b_ih, b_hh):
    return torch.tanh(x @ W_ih.T + h @ W_hh.T)


def ignores_h(x, h, W_ih, W_hh, b_ih, b_hh):
    return torch.tanh(x @ W_ih.T + b_ih + b_hh)


def cell_returns_numpy(x, h, W_ih, W_hh, b_ih, b_hh):
    return good_cell(x, h, W_ih, W_hh, b_ih, b_hh).numpy()


@pytest.mark.parametrize("wrong, message", [
    (no_tanh, "forgot the tanh"),
    (sigmoid_cell, "used a sigmoid"),
    (w_hh_transposed, r"W_hh is used transposed.*h @ W_hh\.T"),
    (w_ih_transposed, r"W_ih is used transposed.*x @ W_ih\.T"),
    (w_hh_on_x, "the weights are swapped: W_ih multiplies the input x"),
    (no_bias_hh, "the bias b_hh is missing"),
    (no_biases, "both biases b_ih and b_hh are missing"),
    (ignores_h, "the previous state h is ignored"),
    (cell_returns_numpy, "should be a torch.Tensor, got ndarray"),
])
def test_check_rnn_cell_rejects_each_typical_mistake(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        checks.check_rnn_cell(wrong)


def test_check_rnn_cell_accepts_the_right_answer(capsys):
    assert checks.check_rnn_cell(good_cell)
    assert capsys.readouterr().out.startswith("[x] rnn_cell: correct")


def test_check_rnn_cell_accepts_the_package_cell():
    from transformer_course.rnn import RNNCell

    def via_module(x, h, W_ih, W_hh, b_ih, b_hh):
        cell = RNNCell(x.shape[1], h.shape[1])
        with torch.no_grad():
            for name, w in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), (W_ih, W_hh, b_ih, b_hh),
                               strict=True):
                getattr(cell, name).copy_(w)
        return cell(x, h)

    assert checks.check_rnn_cell(via_module)


# --- task 2: the unrolled RNN ---------------------------------------------------------------


def good_unroll(x, h0, W_ih, W_hh, b_ih, b_hh):
    h, outs = h0, []
    for t in range(x.shape[1]):
        h = good_cell(x[:, t], h, W_ih, W_hh, b_ih, b_hh)
        outs.append(h)
    return torch.stack(outs, dim=1), h


def stacked_on_time_first(x, h0, *w):
    outputs, h = good_unroll(x, h0, *w)
    return outputs.transpose(0, 1), h


def stores_state_before_step(x, h0, *w):
    h, outs = h0, []
    for t in range(x.shape[1]):
        outs.append(h)
        h = good_cell(x[:, t], h, *w)
    return torch.stack(outs, dim=1), h


def always_from_h0(x, h0, *w):
    outs = [good_cell(x[:, t], h0, *w) for t in range(x.shape[1])]
    return torch.stack(outs, dim=1), outs[-1]


def starts_from_zeros(x, h0, *w):
    return good_unroll(x, torch.zeros_like(h0), *w)


def returns_h0_as_final(x, h0, *w):
    return good_unroll(x, h0, *w)[0], h0


def returns_first_state_as_final(x, h0, *w):
    outputs, _ = good_unroll(x, h0, *w)
    return outputs, outputs[:, 0]


def returns_only_outputs(x, h0, *w):
    return good_unroll(x, h0, *w)[0]


@pytest.mark.parametrize("wrong, message", [
    (stacked_on_time_first, r"= \(T, B, H\): stack the states along the time axis, dim=1"),
    (stores_state_before_step, "shifted by one step"),
    (always_from_h0, "every step starts from h0"),
    (starts_from_zeros, "you started from zeros"),
    (returns_h0_as_final, "h_T is h0"),
    (returns_first_state_as_final, "h_T is the state after the first step"),
    (returns_only_outputs, r"return a pair \(outputs, h_T\), got Tensor"),
])
def test_check_rnn_unroll_rejects_each_typical_mistake(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        checks.check_rnn_unroll(wrong)


def test_check_rnn_unroll_accepts_the_right_answer(capsys):
    assert checks.check_rnn_unroll(good_unroll)
    assert capsys.readouterr().out.startswith("[x] rnn_unroll: correct")


# --- task 3: the gradient norms -------------------------------------------------------------


def _per_unit(model, x, pick=lambda out, h: h):
    x = x.clone().requires_grad_(True)
    y = pick(*model(x))
    return [torch.autograd.grad(y[:, i].sum(), x, retain_graph=True)[0] for i in range(y.shape[1])]


def good_norms(model, x):
    grads = torch.stack(_per_unit(model, x))  # (H, B, T, D)
    return grads.pow(2).sum(dim=(0, 3)).sqrt().mean(0).flip(0)


def good_norms_with_backward(model, x):  # the other correct way: .backward() and reset x.grad
    x = x.clone().requires_grad_(True)
    _, h_T = model(x)
    squares = torch.zeros(x.shape[:2])
    for i in range(h_T.shape[1]):
        x.grad = None
        h_T[:, i].sum().backward(retain_graph=True)
        squares += x.grad.pow(2).sum(-1)
    return squares.sqrt().mean(0).flip(0)


def time_order(model, x):
    return good_norms(model, x).flip(0)


def gradient_of_sum(model, x):
    x = x.clone().requires_grad_(True)
    model(x)[1].sum().backward()
    return x.grad.norm(dim=-1).mean(0).flip(0)


def grad_accumulates(model, x):
    x = x.clone().requires_grad_(True)
    _, h_T = model(x)
    squares = torch.zeros(x.shape[:2])
    for i in range(h_T.shape[1]):
        h_T[:, i].sum().backward(retain_graph=True)  # x.grad is never reset
        squares += x.grad.pow(2).sum(-1)
    return squares.sqrt().mean(0).flip(0)


def sums_unit_norms(model, x):
    return torch.stack(_per_unit(model, x)).norm(dim=-1).sum(0).mean(0).flip(0)


def sums_over_batch(model, x):
    return good_norms(model, x) * x.shape[0]


def one_norm_over_batch(model, x):
    return torch.stack(_per_unit(model, x)).pow(2).sum(dim=(0, 1, 3)).sqrt().flip(0)


def first_step(model, x):
    grads = torch.stack(_per_unit(model, x, lambda out, h: out[:, 0]))
    return grads.pow(2).sum(dim=(0, 3)).sqrt().mean(0).flip(0)


def every_step(model, x):
    grads = torch.stack(_per_unit(model, x, lambda out, h: out.flatten(1)))
    return grads.pow(2).sum(dim=(0, 3)).sqrt().mean(0).flip(0)


def per_sequence(model, x):
    return torch.stack(_per_unit(model, x)).pow(2).sum(dim=(0, 3)).sqrt().flip(1)


def forgets_requires_grad(model, x):
    _, h_T = model(x)
    return torch.autograd.grad(h_T.sum(), x)[0]


@pytest.mark.parametrize("wrong, message", [
    (time_order, "in time order; return them by distance"),
    (gradient_of_sum, r"gradient of h_T\.sum\(\), a single row-sum of the Jacobian"),
    (grad_accumulates, "x.grad accumulates over backward calls"),
    (sums_unit_norms, "added the norms of the units' gradients"),
    (sums_over_batch, r"summed the sequences' norms over the batch \(x3\)"),
    (one_norm_over_batch, "one norm over the whole batch"),
    (first_step, r"state of the first step \(outputs\[:, 0\]\)"),
    (every_step, "states of every step"),
    (per_sequence, r"one norm per sequence and step, shape \(B, T\)"),
    (forgets_requires_grad, r"x does not require grad: .*requires_grad_\(True\)"),
])
def test_check_gradient_norms_rejects_each_typical_mistake(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        checks.check_gradient_norms(wrong)


@pytest.mark.parametrize("right", [good_norms, good_norms_with_backward])
def test_check_gradient_norms_accepts_the_right_answers(right, capsys):
    assert checks.check_gradient_norms(right)
    assert capsys.readouterr().out.startswith("[x] gradient_norms: correct")


def test_check_gradient_norms_accepts_the_package_measurement():
    from transformer_course.experiments.fading_memory import jacobian_norms

    assert checks.check_gradient_norms(lambda model, x: jacobian_norms(lambda inp: model(inp)[1], x))


def test_check_gradient_norms_leaves_the_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    checks.check_gradient_norms(good_norms)
    assert torch.equal(torch.rand(3), expected)
