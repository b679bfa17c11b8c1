"""The checks of exercise 01 name each typical mistake and accept right answers written differently."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer_course import checks
from transformer_course.checks import CheckFailed

# --- task 1: the RNN, one cell unrolled over time ---------------------------------------------


def good_cell(x, h, W_ih, W_hh, b_ih, b_hh):
    return torch.tanh(x @ W_ih.T + b_ih + h @ W_hh.T + b_hh)


def _unrolled(cell):
    """An unroll that is right except for its ``cell``."""
    def unroll(x, h0, *w):
        h, outs = h0, []
        for t in range(x.shape[1]):
            h = cell(x[:, t], h, *w)
            outs.append(h)
        return torch.stack(outs, dim=1), h
    return unroll


good_unroll = _unrolled(good_cell)


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


def overwrites_h0(x, h0, *w):
    h, outs = h0, []
    for t in range(x.shape[1]):
        h[:] = good_cell(x[:, t], h, *w)  # writes into h0 itself
        outs.append(h.clone())
    return torch.stack(outs, dim=1), h


def via(module_cls):
    """An unroll that loads the weights into ``module_cls`` (nn.RNNCell or the package's RNNCell)."""
    def unroll(x, h0, W_ih, W_hh, b_ih, b_hh):
        cell = module_cls(x.shape[-1], h0.shape[-1])
        with torch.no_grad():
            for name, w in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), (W_ih, W_hh, b_ih, b_hh),
                               strict=True):
                getattr(cell, name).copy_(w)
        return _unrolled(lambda xt, h, *_: cell(xt, h))(x, h0)
    return unroll


def via_nn_rnn(x, h0, W_ih, W_hh, b_ih, b_hh):
    rnn = nn.RNN(x.shape[-1], h0.shape[-1], batch_first=True)
    with torch.no_grad():
        for name, w in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), (W_ih, W_hh, b_ih, b_hh),
                           strict=True):
            getattr(rnn, f"{name}_l0").copy_(w)
    outputs, h = rnn(x, h0[None])
    return outputs, h[0]


def via_rnn_tanh_cell(x, h0, *w):
    return _unrolled(lambda xt, h, *ws: torch.rnn_tanh_cell(xt, h, *ws))(x, h0, *w)


def unroll_under_no_grad(x, h0, *w):
    with torch.no_grad():  # right values, but no graph for task 4 to differentiate
        return good_unroll(x, h0, *w)


def detaches_h_each_step(x, h0, *w):  # the truncated-BPTT habit: right values, a cut graph
    return _unrolled(lambda xt, h, *ws: good_cell(xt, h.detach(), *ws))(x, h0, *w)


def through_numpy(x, h0, *w):  # right values, computed outside autograd
    outputs, h = good_unroll(x.detach(), h0.detach(), *(t.detach() for t in w))
    return torch.from_numpy(outputs.numpy()), torch.from_numpy(h.numpy())


def outputs_rebuilt_by_tensor(x, h0, *w):  # h_T keeps its graph, outputs lose theirs
    outputs, h = good_unroll(x, h0, *w)
    return torch.tensor(outputs.tolist(), dtype=x.dtype), h


def h_T_rebuilt_by_tensor(x, h0, *w):  # outputs keep their graph, h_T loses its
    outputs, h = good_unroll(x, h0, *w)
    return outputs, torch.tensor(h.tolist(), dtype=x.dtype)


def earlier_outputs_detached(x, h0, *w):  # the states stored for outputs are detached copies but the last
    h, outs = h0, []
    for t in range(x.shape[1]):
        h = good_cell(x[:, t], h, *w)
        outs.append(h if t == x.shape[1] - 1 else h.detach())
    return torch.stack(outs, dim=1), h


def _package_cell():
    from transformer_course.rnn import RNNCell
    return RNNCell


WRONG_UNROLL = {
    "no tanh": (_unrolled(lambda x, h, Wi, Wh, bi, bh: x @ Wi.T + bi + h @ Wh.T + bh), "forgot the tanh"),
    "sigmoid": (_unrolled(lambda x, h, Wi, Wh, bi, bh: torch.sigmoid(x @ Wi.T + bi + h @ Wh.T + bh)),
                "used a sigmoid"),
    "relu": (_unrolled(lambda x, h, Wi, Wh, bi, bh: torch.relu(x @ Wi.T + bi + h @ Wh.T + bh)),
             "used a ReLU"),
    "W_hh transposed": (_unrolled(lambda x, h, Wi, Wh, bi, bh: torch.tanh(x @ Wi.T + bi + h @ Wh + bh)),
                        r"W_hh is used transposed.*h @ W_hh\.T"),
    "W_ih transposed": (_unrolled(lambda x, h, Wi, Wh, bi, bh: torch.tanh(x @ Wi + bi + h @ Wh.T + bh)),
                        r"W_ih is used transposed.*x @ W_ih\.T"),
    "both transposed": (_unrolled(lambda x, h, Wi, Wh, bi, bh: torch.tanh(x @ Wi + bi + h @ Wh + bh)),
                        "both weights are used transposed"),
    "swapped weights": (_unrolled(lambda x, h, Wi, Wh, bi, bh: torch.tanh(x @ Wh.T + bi + h @ Wi.T + bh)),
                        "the weights are swapped: W_ih multiplies the input x"),
    "ignores h": (_unrolled(lambda x, h, Wi, Wh, bi, bh: torch.tanh(x @ Wi.T + bi + bh)),
                  "the previous state h is ignored"),
    "ignores x": (_unrolled(lambda x, h, Wi, Wh, bi, bh: torch.tanh(h @ Wh.T + bi + bh)),
                  "the input x is ignored"),
    "no b_hh": (_unrolled(lambda x, h, Wi, Wh, bi, bh: torch.tanh(x @ Wi.T + bi + h @ Wh.T)),
                "the bias b_hh is missing"),
    "no b_ih": (_unrolled(lambda x, h, Wi, Wh, bi, bh: torch.tanh(x @ Wi.T + h @ Wh.T + bh)),
                "the bias b_ih is missing"),
    "no biases": (_unrolled(lambda x, h, Wi, Wh, bi, bh: torch.tanh(x @ Wi.T + h @ Wh.T)),
                  "both biases b_ih and b_hh are missing"),
    "(T, B, H)": (stacked_on_time_first, r"= \(T, B, H\): stack the states along the time axis, dim=1"),
    "state before the step": (stores_state_before_step, "shifted by one step"),
    "always from h0": (always_from_h0, "every step starts from h0"),
    "from zeros": (lambda x, h0, *w: good_unroll(x, torch.zeros_like(h0), *w), "you started from zeros"),
    "h_T is h0": (lambda x, h0, *w: (good_unroll(x, h0, *w)[0], h0), "h_T is h0"),
    "h_T is the first state": (lambda x, h0, *w: (lambda o: (o, o[:, 0]))(good_unroll(x, h0, *w)[0]),
                               "h_T is the state after the first step"),
    "outputs only": (lambda x, h0, *w: good_unroll(x, h0, *w)[0],
                     r"return 2 values \(outputs, h_T\) as a tuple.*got a Tensor"),
    "numpy": (lambda x, h0, *w: tuple(t.numpy() for t in good_unroll(x, h0, *w)),
              "should be a torch.Tensor, got ndarray"),
    "float64 out": (lambda x, h0, *w: good_unroll(x.double(), h0.double(), *(t.double() for t in w)),
                    "is float64, expected float32"),
    "h0 overwritten": (overwrites_h0, "changed its input `h0` in place"),
    "torch.no_grad": (unroll_under_no_grad,
                      r"your unroll cuts the graph \(torch\.no_grad or \.detach\(\)\).*"
                      "neither outputs nor h_T"),
    "h.detach() at each step": (detaches_h_each_step,
                                r"your unroll cuts the graph.*gradient of h_T with respect to x differs.*"
                                r"\.detach\(\) on h"),
    "through numpy": (through_numpy, r"your unroll cuts the graph.*neither outputs nor h_T"),
    "outputs rebuilt by torch.tensor": (outputs_rebuilt_by_tensor,
                                        r"the outputs you return have no graph.*torch\.tensor\(\.\.\.\), "
                                        r"\.tolist\(\).*stack the states you computed"),
    "h_T rebuilt by torch.tensor": (h_T_rebuilt_by_tensor,
                                    r"the h_T you return has no graph.*return the last state you computed"),
    "earlier outputs detached": (earlier_outputs_detached,
                                 r"the gradient that flows back through outputs, with respect to x, differs.*"
                                 "while the one through h_T is right"),
    "nn.RNNCell": (via(nn.RNNCell), r"called `torch\._VF\.rnn_tanh_cell` \(directly, or through "
                                    r"nn\.RNNCell, which calls it\).*by hand"),
    "nn.RNN": (via_nn_rnn, r"called `torch\._VF\.rnn_tanh` \(directly, or through nn\.RNN, which "
                           r"calls it\).*by hand"),
    "torch.rnn_tanh_cell": (via_rnn_tanh_cell, r"called `torch\.rnn_tanh_cell`.*by hand"),
    "the package's RNNCell": (via(_package_cell()), r"called `transformer_course\.rnn\.RNNCell\.forward`"),
}


@pytest.mark.parametrize("name", WRONG_UNROLL)
def test_check_rnn_unroll_rejects_each_typical_mistake(name):
    wrong, message = WRONG_UNROLL[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_rnn_unroll(wrong)


def unroll_preallocated(x, h0, W_ih, W_hh, b_ih, b_hh):  # projects every input at once, fills a buffer
    B, T, _ = x.shape
    inputs = x @ W_ih.T + b_ih  # (B, T, H)
    outputs = torch.empty(B, T, h0.shape[-1])
    h = h0
    for t in range(T):
        h = torch.tanh(inputs[:, t] + F.linear(h, W_hh, b_hh))
        outputs[:, t] = h
    return [outputs, h]  # a list


def unroll_einsum_float64(x, h0, W_ih, W_hh, b_ih, b_hh):
    h, outs = h0.double(), []
    for t in range(x.shape[1]):
        h = torch.tanh(torch.einsum("bd,hd->bh", x[:, t].double(), W_ih.double()) + b_ih.double()
                       + torch.einsum("bk,hk->bh", h, W_hh.double()) + b_hh.double())
        outs.append(h.unsqueeze(1))
    outputs = torch.cat(outs, dim=1).float()
    return outputs, outputs[:, -1]


def unroll_time_major_addmm(x, h0, W_ih, W_hh, b_ih, b_hh):  # over x.transpose(0, 1), addmm
    h, states = h0, []
    for x_t in x.transpose(0, 1):  # (B, D) each
        h = torch.tanh(torch.addmm(b_ih, x_t, W_ih.t()) + torch.addmm(b_hh, h, W_hh.t()))
        states.append(h)
    return torch.stack(states).transpose(0, 1), h


def unroll_unbind_linear(x, h0, W_ih, W_hh, b_ih, b_hh):  # unbind, F.linear, .tanh() method
    h, outs = h0, []
    for x_t in x.unbind(1):
        h = (F.linear(x_t, W_ih, b_ih) + F.linear(h, W_hh, b_hh)).tanh()
        outs.append(h)
    return [torch.stack(outs, 1), h]


RIGHT_UNROLL = {
    "loop and stack": good_unroll,
    "inputs projected at once, buffer, list": unroll_preallocated,
    "einsum in float64, cat, cast back": unroll_einsum_float64,
    "time-major loop, addmm": unroll_time_major_addmm,
    "unbind, F.linear, a list": unroll_unbind_linear,
}


@pytest.mark.parametrize("name", RIGHT_UNROLL)
def test_check_rnn_unroll_accepts_right_answers_written_differently(name, capsys):
    assert checks.check_rnn_unroll(RIGHT_UNROLL[name])
    assert capsys.readouterr().out.startswith("[x] rnn_unroll: correct")


def test_the_rnn_shortcuts_work_again_after_the_check():
    with pytest.raises(CheckFailed):
        checks.check_rnn_unroll(via(nn.RNNCell))
    assert nn.RNNCell(3, 2)(torch.randn(4, 3)).shape == (4, 2)
    assert _package_cell()(3, 2)(torch.randn(4, 3), torch.zeros(4, 2)).shape == (4, 2)


# --- task 2: the gradient norms -------------------------------------------------------------


def _per_unit(model, x, pick=lambda out, h: h):
    x = x.clone().requires_grad_(True)
    y = pick(*model(x))
    return [torch.autograd.grad(y[:, i].sum(), x, retain_graph=True)[0] for i in range(y.shape[1])]


def good_norms(model, x):
    grads = torch.stack(_per_unit(model, x))  # (H, B, T, D)
    return grads.pow(2).sum(dim=(0, 3)).sqrt().mean(0).flip(0)


def good_norms_with_backward(model, x):  # .backward() and x.grad reset before each unit
    x = x.clone().requires_grad_(True)
    _, h_T = model(x)
    squares = torch.zeros(x.shape[:2], dtype=x.dtype)
    for i in range(h_T.shape[1]):
        x.grad = None
        h_T[:, i].sum().backward(retain_graph=True)
        squares += x.grad.pow(2).sum(-1)
    return squares.sqrt().mean(0).flip(0)


def good_norms_jacobian(model, x):  # the whole Jacobian at once, in float64, cast back
    jac = torch.autograd.functional.jacobian(lambda inp: model(inp)[1].sum(0), x)  # (H, B, T, D)
    return jac.double().pow(2).sum(dim=(0, 3)).sqrt().mean(0).flip(0).to(x.dtype)


def good_norms_reversed_loop(model, x):  # distance by an index loop instead of flip
    per_bt = torch.stack(_per_unit(model, x)).pow(2).sum(dim=(0, 3)).sqrt().mean(0)  # (T,)
    T = x.shape[1]
    return torch.stack([per_bt[T - 1 - d] for d in range(T)])


def time_order(model, x):
    return good_norms(model, x).flip(0)


def gradient_of_sum(model, x):
    x = x.clone().requires_grad_(True)
    model(x)[1].sum().backward()
    return x.grad.norm(dim=-1).mean(0).flip(0)


def grad_accumulates(model, x):
    x = x.clone().requires_grad_(True)
    _, h_T = model(x)
    squares = torch.zeros(x.shape[:2], dtype=x.dtype)
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


def requires_grad_on_the_input(model, x):
    x.requires_grad_(True)  # switches it on for the caller's tensor, not a copy
    _, h_T = model(x)
    squares = sum(torch.autograd.grad(h_T[:, i].sum(), x, retain_graph=True)[0].pow(2).sum(-1)
                  for i in range(h_T.shape[1]))
    return squares.sqrt().mean(0).flip(0).detach()


def package_measurement(model, x):
    from transformer_course.experiments import fading_memory
    return fading_memory.jacobian_norms(lambda inp: model(inp)[1], x)


def float64_norms(model, x):
    return good_norms(model, x).double()


def always_float32_norms(model, x):
    return good_norms(model, x).float()


def float32_buffer_norms(model, x):  # torch.zeros without dtype: float32 whatever x's dtype
    x = x.clone().requires_grad_(True)
    _, h_T = model(x)
    squares = torch.zeros(x.shape[:2])
    for i in range(h_T.shape[1]):
        squares += torch.autograd.grad(h_T[:, i].sum(), x, retain_graph=True)[0].pow(2).sum(-1)
    return squares.sqrt().mean(0).flip(0)


WRONG_NORMS = {
    "time order": (time_order, "in time order; return them by distance"),
    "gradient of the sum": (gradient_of_sum, r"gradient of h_T\.sum\(\), a single row-sum of the Jacobian"),
    "x.grad accumulates": (grad_accumulates, "x.grad accumulates over backward calls"),
    "sum of unit norms": (sums_unit_norms, "added the norms of the units' gradients"),
    "batch sum": (sums_over_batch, r"summed the sequences' norms over the batch \(x3\)"),
    "one norm over the batch": (one_norm_over_batch, "one norm over the whole batch"),
    "first state": (first_step, r"state of the first step \(outputs\[:, 0\]\)"),
    "every state": (every_step, "states of every step"),
    "per sequence": (per_sequence, r"one norm per sequence and step, shape \(B, T\)"),
    "no requires_grad": (forgets_requires_grad, r"x does not require grad: .*requires_grad_\(True\)"),
    "requires_grad_ on the caller's x": (requires_grad_on_the_input,
                                         r"switched requires_grad on for its input `x`.*work on a copy"),
    "the package's measurement": (package_measurement,
                                  r"called `transformer_course\.experiments\.fading_memory\.jacobian_norms`"),
    "float64 out": (float64_norms, "is float64, expected float32"),
    ".float() at the end": (always_float32_norms,
                            r"the vector of norms for the RNN on a float64 x \(2, 5, 3\) is float32, "
                            "expected float64"),
    "a float32 buffer": (float32_buffer_norms, r"on a float64 x \(2, 5, 3\) is float32"),
}


@pytest.mark.parametrize("name", WRONG_NORMS)
def test_check_gradient_norms_rejects_each_typical_mistake(name):
    wrong, message = WRONG_NORMS[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_gradient_norms(wrong)


def norms_float64_inside(model, x):  # the squares summed in float64, cast back to x's dtype
    squares = sum(g.double().pow(2).sum(-1) for g in _per_unit(model, x))  # (B, T)
    return squares.sqrt().mean(0).flip(0).to(x.dtype)


RIGHT_NORMS = {
    "autograd.grad per unit": good_norms,
    "float64 inside, cast back": norms_float64_inside,
    "backward with x.grad reset": good_norms_with_backward,
    "autograd.functional.jacobian": good_norms_jacobian,
    "index loop instead of flip": good_norms_reversed_loop,
}


@pytest.mark.parametrize("name", RIGHT_NORMS)
def test_check_gradient_norms_accepts_right_answers_written_differently(name, capsys):
    assert checks.check_gradient_norms(RIGHT_NORMS[name])
    assert capsys.readouterr().out.startswith("[x] gradient_norms: correct")


def test_check_gradient_norms_leaves_the_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    checks.check_gradient_norms(good_norms)
    assert torch.equal(torch.rand(3), expected)


# --- task 3: predict the curve --------------------------------------------------------------


def good_prediction(scale, distance, w_ih_norm):
    return w_ih_norm * scale ** distance


WRONG_PREDICTIONS = {
    "forgets W_ih": (lambda s, d, w: s ** d, "your curve starts at 1 at distance 0"),
    "one factor too many": (lambda s, d, w: w * s ** (d + 1), "one factor of the scale too many"),
    "one factor too few": (lambda s, d, w: w * s ** (d - 1), "one factor of the scale too few"),
    "capped at 1": (lambda s, d, w: w * min(s, 1.0) ** d, "never rises above it"),
    "flat": (lambda s, d, w: w, "does not change with the distance"),
    "tanh' < 1 guessed": (lambda s, d, w: w * (0.8 * s) ** d,
                          r"falls faster than the measured one at every scale.*What is tanh' there"),
    "squared": (lambda s, d, w: w * s ** (2 * d),
                r"at scale 0\.5 and distance 1 you predicted [\d.]+; the check measured [\d.]+ "
                r"\(right means within 5%\)"),
    "a tensor": (lambda s, d, w: torch.tensor(w * s ** d),
                 r"should be a Python float, got Tensor \(a tensor: use \.item\(\)\)"),
    "a string": (lambda s, d, w: "falls", "should be a Python float, got str"),
    "NaN": (lambda s, d, w: float("nan") if d == 3 else w * s ** d, "NaN or infinite"),
}


@pytest.mark.parametrize("name", WRONG_PREDICTIONS)
def test_check_predict_curve_rejects_each_wrong_prediction(name):
    wrong, message = WRONG_PREDICTIONS[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_predict_curve(wrong)


def prediction_by_loop(scale, distance, w_ih_norm):
    norm = w_ih_norm
    for _ in range(distance):  # one factor per recurrent step
        norm *= scale
    return norm


RIGHT_PREDICTIONS = {
    "power": good_prediction,
    "math.pow": lambda s, d, w: w * math.pow(s, d),
    "numpy exp-log": lambda s, d, w: w * np.exp(d * np.log(s)),  # np.float64 is a float
    "loop": prediction_by_loop,
    "3% high, within tolerance": lambda s, d, w: 1.03 * w * s ** d,
    "torch then .item()": lambda s, d, w: (torch.tensor(s) ** d * w).item(),
}


@pytest.mark.parametrize("name", RIGHT_PREDICTIONS)
def test_check_predict_curve_accepts_right_predictions_written_differently(name, capsys):
    assert checks.check_predict_curve(RIGHT_PREDICTIONS[name])
    assert capsys.readouterr().out.startswith("[x] predict_curve: correct")


# --- task 4: measure the curve with your own RNN, and fit its factor -----------------------


def _model(W_ih, W_hh, dtype=torch.float32):
    """The measured RNN (zero biases, h0 = 0) as ``model(x) -> (outputs, h_T)``, with good_unroll."""
    H = W_hh.shape[0]
    zeros = torch.zeros(H, dtype=dtype)
    return lambda inp: good_unroll(inp, torch.zeros(inp.shape[0], H, dtype=dtype), W_ih.to(dtype),
                                   W_hh.to(dtype), zeros, zeros)


def _slope(norms, log=torch.log):
    d = torch.arange(norms.shape[-1], dtype=norms.dtype)
    logs = log(norms)
    dc = d - d.mean()
    return (dc * (logs - logs.mean(-1, keepdim=True))).sum(-1) / dc.pow(2).sum()


def good_measure(x, W_ih, W_hhs):
    norms = torch.stack([good_norms(_model(W_ih, W_hh, x.dtype), x) for W_hh in W_hhs])  # (S, T)
    return norms, _slope(norms).exp()


def measure_with(factors):
    """Right norms, and ``factors(norms)`` as the conclusion."""
    def measure(x, W_ih, W_hhs):
        norms = good_measure(x, W_ih, W_hhs)[0]
        return norms, factors(norms)
    return measure


def measure_with_norms(norms_of):
    """``norms_of(x, W_ih, W_hh)`` for each matrix, and the right fit of them."""
    def measure(x, W_ih, W_hhs):
        norms = torch.stack([norms_of(x, W_ih, W_hh) for W_hh in W_hhs])
        return norms, _slope(norms).exp()
    return measure


def gradient_of_sum_norms(x, W_ih, W_hh):
    return gradient_of_sum(_model(W_ih, W_hh, x.dtype), x)


def measure_with_nn_rnn(x, W_ih, W_hhs):
    rows = []
    for W_hh in W_hhs:
        rnn = nn.RNN(x.shape[-1], W_hh.shape[0], batch_first=True)
        with torch.no_grad():
            rnn.weight_ih_l0.copy_(W_ih)
            rnn.weight_hh_l0.copy_(W_hh)
            rnn.bias_ih_l0.zero_()
            rnn.bias_hh_l0.zero_()
        rows.append(good_norms(lambda inp, rnn=rnn: (rnn(inp)[0], rnn(inp)[0][:, -1]), x))
    norms = torch.stack(rows)
    return norms, _slope(norms).exp()


def measure_scaling_in_place(x, W_ih, W_hhs):
    for W_hh in W_hhs:
        W_hh.mul_(1.0 + 1e-3)  # "a little more recurrence"
    return good_measure(x, W_ih, W_hhs)


def measure_into_float32_buffer(x, W_ih, W_hhs):  # torch.zeros without dtype: float32 whatever x's dtype
    norms = torch.zeros(len(W_hhs), x.shape[1])
    for i, W_hh in enumerate(W_hhs):
        norms[i] = good_norms(_model(W_ih, W_hh, x.dtype), x)
    return norms, _slope(norms).exp()


def measure_into_buffer_of_x_dtype(x, W_ih, W_hhs):
    norms = x.new_zeros(len(W_hhs), x.shape[1])
    for i, W_hh in enumerate(W_hhs):
        norms[i] = good_norms(_model(W_ih, W_hh, x.dtype), x)
    return norms, _slope(norms).exp()


def measure_with_package(x, W_ih, W_hhs):
    from transformer_course.experiments import fading_memory
    norms = torch.stack([fading_memory.jacobian_norms(lambda inp, W=W_hh: _model(W_ih, W)(inp)[1], x)
                         for W_hh in W_hhs])
    return norms, _slope(norms).exp()


def _measure_with_unroll(unroll, norms_of=good_norms):
    """The right measurement, with the learner's own ``unroll`` of task 1 and ``norms_of`` of task 2."""
    def measure(x, W_ih, W_hhs):
        H = W_ih.shape[0]
        zeros = torch.zeros(H, dtype=x.dtype)
        norms = torch.stack([norms_of(lambda inp, W=W_hh: unroll(inp, inp.new_zeros(inp.shape[0], H), W_ih, W,
                                                                 zeros, zeros), x) for W_hh in W_hhs])
        return norms, _slope(norms).exp()
    return measure


def norms_by_backward(model, x):  # .backward() and x.grad, on a copy
    x = x.clone().requires_grad_(True)
    squares = x.new_zeros(x.shape[:2])
    for i in range(model(x)[1].shape[1]):
        x.grad = None
        model(x)[1][:, i].sum().backward()
        squares += x.grad.pow(2).sum(-1)
    return squares.sqrt().mean(0).flip(0)


def norms_by_jacobian(model, x):  # autograd.functional.jacobian finds zeros where the graph is cut
    jac = torch.autograd.functional.jacobian(lambda inp: model(inp)[1].sum(0), x)  # (H, B, T, D)
    return jac.pow(2).sum(dim=(0, 3)).sqrt().mean(0).flip(0)


WRONG_MEASUREMENTS = {
    "time order": (measure_with_norms(lambda x, Wi, Wh: good_norms(_model(Wi, Wh, x.dtype), x).flip(0)),
                   "the norms are in time order"),
    "the first matrix only": (lambda x, Wi, Whs: good_measure(x, Wi, [Whs[0]] * len(Whs)),
                              "every row holds the same curve"),
    "gradient of h_T.sum()": (measure_with_norms(gradient_of_sum_norms), r"gradient of h_T\.sum\(\)"),
    "slope, not exp": (measure_with(_slope),
                       r"slope of log\(norm\) against d; the factor per step is exp\(slope\)"),
    "fitted against t": (measure_with(lambda n: _slope(n.flip(-1)).exp()), "inverse of the fitted ones"),
    "exp(-slope)": (measure_with(lambda n: (-_slope(n)).exp()),
                    r"inverse of the fitted ones, exp\(-slope\): the exponent's sign is flipped"),
    "(factors, norms)": (lambda x, Wi, Whs: good_measure(x, Wi, Whs)[::-1],
                         r"you returned \(factors, norms\); return \(norms, factors\)"),
    "own unroll under no_grad": (_measure_with_unroll(unroll_under_no_grad),
                                 r"the graph is cut: x requires grad, but the output you differentiate has "
                                 r"no grad_fn.*your rnn_unroll of task 1"),
    "own unroll under no_grad, .backward()": (_measure_with_unroll(unroll_under_no_grad, norms_by_backward),
                                              r"\.backward\(\) on has no graph.*x does not require grad.*"
                                              r"or the graph is cut.*your rnn_unroll of task 1"),
    "own unroll under no_grad, jacobian": (_measure_with_unroll(unroll_under_no_grad, norms_by_jacobian),
                                           r"your norms are all zero: no gradient reaches x"),
    "own unroll detaches h": (_measure_with_unroll(detaches_h_each_step),
                              r"only distance 0 has a gradient: the graph is cut between steps"),
    "no copy of x": (_measure_with_unroll(good_unroll, forgets_requires_grad),
                     r"x does not require grad: make a copy that does"),
    "last / first": (measure_with(lambda n: (n[:, -1] / n[:, 0]) ** (1 / (n.shape[-1] - 1))),
                     "ratio of the last and the first norm"),
    "mean step ratio": (measure_with(lambda n: (n[:, 1:] / n[:, :-1]).mean(-1)),
                        "averaged the step-by-step ratios"),
    "log10, then exp": (measure_with(lambda n: _slope(n, torch.log10).exp()), "fitted log10"),
    "one factor": (measure_with(lambda n: _slope(n.flatten()[None]).exp()), r"factors should be 4 numbers"),
    "norms only": (lambda x, Wi, Whs: good_measure(x, Wi, Whs)[0], r"return 2 values \(norms, factors\)"),
    "float64 norms": (measure_with_norms(
        lambda x, Wi, Wh: good_norms(_model(Wi, Wh, torch.float64), x.double())),
                      "is float64, expected float32"),
    "a float32 buffer": (measure_into_float32_buffer,
                         r"the matrix of norms at inputs of size 1, all in float64 .*is float32, "
                         "expected float64"),
    "nn.RNN": (measure_with_nn_rnn, r"called `torch\._VF\.rnn_tanh`"),
    "the package's measurement": (measure_with_package,
                                  r"called `transformer_course\.experiments\.fading_memory"),
    "W_hh scaled in place": (measure_scaling_in_place, r"changed its input `W_hhs\[0\]` in place"),
}


@pytest.mark.parametrize("name", WRONG_MEASUREMENTS)
def test_check_measure_fading_rejects_each_typical_mistake(name):
    wrong, message = WRONG_MEASUREMENTS[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_measure_fading(wrong)


def measure_polyfit(x, W_ih, W_hhs):  # a list of rows, numpy's fit, a list of floats
    rows = [good_norms_with_backward(_model(W_ih, W_hh, x.dtype), x) for W_hh in W_hhs]
    d = np.arange(x.shape[1])
    return [rows, [float(np.exp(np.polyfit(d, np.log(r.numpy()), 1)[0])) for r in rows]]


def measure_lstsq_float64(x, W_ih, W_hhs):  # float64 inside, norms cast back; torch.linalg.lstsq
    norms = torch.stack([good_norms(_model(W_ih, W_hh, torch.float64), x.double()) for W_hh in W_hhs])
    d = torch.arange(x.shape[1], dtype=torch.float64)
    A = torch.stack([torch.ones_like(d), d], dim=1)  # (T, 2)
    coef = torch.linalg.lstsq(A, norms.log().T).solution  # (2, S)
    return norms.to(x.dtype), coef[1].exp()


def measure_log2(x, W_ih, W_hhs):  # log2 and 2 ** slope, factors as a numpy array
    norms = good_measure(x, W_ih, W_hhs)[0]
    return norms, (2 ** _slope(norms, torch.log2)).numpy()


RIGHT_MEASUREMENTS = {
    "closed-form fit": good_measure,
    ".backward() on a copy of x": _measure_with_unroll(good_unroll, norms_by_backward),
    "autograd.functional.jacobian": _measure_with_unroll(unroll_unbind_linear, norms_by_jacobian),
    "polyfit, lists": measure_polyfit,
    "lstsq in float64": measure_lstsq_float64,
    "log2, numpy array": measure_log2,
    "a buffer of x's dtype": measure_into_buffer_of_x_dtype,
}


@pytest.mark.parametrize("name", RIGHT_MEASUREMENTS)
def test_check_measure_fading_accepts_right_answers_written_differently(name, capsys):
    assert checks.check_measure_fading(RIGHT_MEASUREMENTS[name])
    assert capsys.readouterr().out.startswith("[x] measure_fading: correct")


def test_the_measured_factors_show_the_lesson():
    """Tiny inputs: the factor is the scale; inputs of size 1: tanh' < 1 pulls every factor below it."""
    g = torch.Generator().manual_seed(0)
    W_ih = torch.randn(6, 3, generator=g) / 3 ** 0.5
    scales = (0.5, 1.0, 1.5, 2.0)
    W_hhs = [s * torch.linalg.qr(torch.randn(6, 6, generator=g))[0] for s in scales]
    x = torch.randn(4, 10, 3, generator=g)
    tiny = good_measure(x * 1e-5, W_ih, W_hhs)[1]
    unit = good_measure(x, W_ih, W_hhs)[1]
    assert torch.allclose(tiny, torch.tensor(scales), rtol=1e-3), tiny
    assert (unit < torch.tensor(scales)).all(), unit
