"""Checks for solutions/01_rnns_and_fading_memory: the unrolled RNN, the gradient norms, a prediction
of the curve, and the measurement made with the learner's own RNN.

Shapes: B batch, T sequence length, D input size, H hidden size, S number of recurrent matrices.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import numpy as np
import torch

from ..experiments.fading_memory import random_orthogonal
from ._core import (
    SHORTCUTS,
    CheckFailed,
    CheckResult,
    as_float,
    call,
    close,
    compare,
    fmt_shape,
    run_check,
    unpack,
)

__all__ = ["check_rnn_unroll", "check_gradient_norms", "check_predict_curve", "check_measure_fading"]

# An RNN written by hand: PyTorch's fused cells (nn.RNNCell and nn.RNN call torch._VF's) and the
# course's own rnn.RNNCell and rnn.RNN are switched off while the learner's code runs.
RNN_SHORTCUTS = (*SHORTCUTS["rnn_cell"], "transformer_course.rnn:RNNCell.forward",
                 "transformer_course.rnn:RNN.forward")
# The package's measurement of notebook 01: the very thing the gradient task asks for.
MEASURED = ("transformer_course.experiments.fading_memory:jacobian_norms",
            "transformer_course.experiments.fading_memory:gradient_norm_by_distance")
TINY = 1e-5  # input size at which every state stays near 0, where tanh' = 1
TOLERANCE = 0.05  # a prediction is right within 5% of the measured norm

Weights = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # W_ih, W_hh, b_ih, b_hh


def _weights(D: int, H: int, g: torch.Generator) -> Weights:
    return (torch.randn(H, D, generator=g) * 0.6, torch.randn(H, H, generator=g) * 0.6,
            torch.randn(H, generator=g) * 0.5, torch.randn(H, generator=g) * 0.5)


def _cell(x, h, W_ih, W_hh, b_ih, b_hh):
    return torch.tanh(x @ W_ih.T + b_ih + h @ W_hh.T + b_hh)  # (B, H)


def _unroll(x, h0, *w, cell=_cell) -> tuple[torch.Tensor, torch.Tensor]:
    h, outs = h0, []
    for t in range(x.shape[1]):
        h = cell(x[:, t], h, *w)  # (B, H)
        outs.append(h)
    return torch.stack(outs, dim=1), h  # (B, T, H), (B, H)


def _diagnose(task: str, got: object, expected: torch.Tensor, mistakes: list) -> None:
    """Name the mistake ``got`` matches; a mistake that happens to equal the answer is skipped."""
    for wrong, message in mistakes:
        if close(got, wrong) and not close(wrong, expected):
            raise CheckFailed(f"{task}: {message}")


# --- task 1: the RNN, one cell unrolled over time --------------------------------------------


def _cell_mistakes() -> list:
    """Wrong cells ``(x, h, W_ih, W_hh, b_ih, b_hh) -> h'``, each with what it gets wrong."""
    def pre(x, h, W_ih, W_hh, b_ih, b_hh):
        return x @ W_ih.T + b_ih + h @ W_hh.T + b_hh  # (B, H)

    return [
        (pre, "you forgot the tanh: the new state is tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)."),
        (lambda *a: torch.sigmoid(pre(*a)), "you used a sigmoid; the plain RNN cell uses tanh."),
        (lambda *a: torch.relu(pre(*a)), "you used a ReLU; the plain RNN cell uses tanh."),
        (lambda x, h, Wi, Wh, bi, bh: torch.tanh(x @ Wi.T + h @ Wh + bi + bh),
         "W_hh is used transposed: PyTorch stores weights as (out, in), so the product is h @ W_hh.T."),
        (lambda x, h, Wi, Wh, bi, bh: torch.tanh(x @ Wi + h @ Wh.T + bi + bh),
         "W_ih is used transposed: PyTorch stores weights as (out, in), so the product is x @ W_ih.T."),
        (lambda x, h, Wi, Wh, bi, bh: torch.tanh(x @ Wi + h @ Wh + bi + bh),
         "both weights are used transposed: PyTorch stores them as (out, in): x @ W_ih.T and h @ W_hh.T."),
        (lambda x, h, Wi, Wh, bi, bh: torch.tanh(x @ Wh.T + h @ Wi.T + bi + bh),
         "the weights are swapped: W_ih multiplies the input x, W_hh the previous state h."),
        (lambda x, h, Wi, Wh, bi, bh: torch.tanh(x @ Wi.T + bi + bh),
         "the previous state h is ignored: add h @ W_hh.T, the recurrence is what carries memory."),
        (lambda x, h, Wi, Wh, bi, bh: torch.tanh(h @ Wh.T + bi + bh),
         "the input x is ignored: add x @ W_ih.T."),
        (lambda x, h, Wi, Wh, bi, bh: torch.tanh(x @ Wi.T + bi + h @ Wh.T),
         "the bias b_hh is missing."),
        (lambda x, h, Wi, Wh, bi, bh: torch.tanh(x @ Wi.T + h @ Wh.T + bh),
         "the bias b_ih is missing."),
        (lambda x, h, Wi, Wh, bi, bh: torch.tanh(x @ Wi.T + h @ Wh.T),
         "both biases b_ih and b_hh are missing."),
    ]


def _unroll_mistakes(x: torch.Tensor, h0: torch.Tensor, w: Weights) -> list:
    out_ref = _unroll(x, h0, *w)[0]
    T = x.shape[1]
    loop = [
        (torch.cat([h0[:, None], out_ref[:, :-1]], dim=1),
         "outputs is shifted by one step: outputs[:, t] is the state *after* reading x_t "
         "(you stored the state before each step)."),
        (torch.stack([_cell(x[:, t], h0, *w) for t in range(T)], dim=1),
         "every step starts from h0: feed each step the state the previous step returned."),
        (_unroll(x, torch.zeros_like(h0), *w)[0], "you started from zeros; start from the h0 you are given."),
    ]
    cells = []
    for cell, message in _cell_mistakes():
        try:
            cells.append((_unroll(x, h0, *w, cell=cell)[0], message))
        except RuntimeError:  # a transposed weight multiplies only when D == H
            continue
    return cells + loop


def _check_unroll_gradients(task: str, rnn_unroll: Callable, x: torch.Tensor, h0: torch.Tensor, w: Weights,
                            g: torch.Generator) -> None:
    """The unroll must stay differentiable: task 4 backpropagates through it, from h_T to early inputs.

    The gradients that flow back through ``outputs`` and through ``h_T`` are compared with the
    reference's one at a time, so that the message names the result whose graph is cut.
    """
    where = f"for x {fmt_shape(x.shape)}, h0 {fmt_shape(h0.shape)}"
    cut = f"{task}: your unroll cuts the graph (torch.no_grad or .detach()) {where}:"
    why = ("The values are right, but task 4 backpropagates from h_T to the early inputs through this very "
           "function, so gradients must flow back through every step.")
    names = ("x", "h0", "W_ih", "W_hh", "b_ih", "b_hh")
    leaves = [t.clone().requires_grad_(True) for t in (x, h0, *w)]
    outputs, h_T = unpack(task, call(task, rnn_unroll, *leaves, forbid=RNN_SHORTCUTS), ["outputs", "h_T"])
    ref_leaves = [t.detach().double().requires_grad_(True) for t in leaves]
    ref_out, ref_h = _unroll(*ref_leaves)
    compare(task, outputs, ref_out.detach(), what=f"the tensor `outputs` {where}", dtype=x.dtype)
    compare(task, h_T, ref_h.detach(), what=f"h_T {where}", dtype=x.dtype)
    if not (outputs.requires_grad or h_T.requires_grad):
        raise CheckFailed(f"{cut} neither outputs nor h_T carries a gradient back to x, h0 or the weights; "
                          f"compute without torch.no_grad() and without .detach(). {why}")
    rebuilt = "(torch.tensor(...), .tolist(), .numpy() or .detach() rebuilds them without their graph)"
    if not outputs.requires_grad:
        raise CheckFailed(f"{task}: the outputs you return have no graph {where} {rebuilt}: stack the states "
                          "you computed, torch.stack(states, dim=1). h_T has its graph; outputs must keep "
                          "theirs too, since a model trained on every step backpropagates through them.")
    if not h_T.requires_grad:
        raise CheckFailed(f"{task}: the h_T you return has no graph {where} {rebuilt}: return the last "
                          f"state you computed, h itself. {why}")
    results = {"h_T": (h_T, ref_h), "outputs": (outputs, ref_out)}  # h_T first: task 4 needs it
    for which, (got, ref_got) in results.items():
        up = torch.randn(ref_got.shape, generator=g)
        grads = torch.autograd.grad((got * up).sum(), leaves, allow_unused=True, retain_graph=True)
        ref_grads = torch.autograd.grad((ref_got * up).sum(), ref_leaves, retain_graph=True)  # all used
        for name, grad, ref in zip(names, grads, ref_grads, strict=True):
            if grad is None:
                raise CheckFailed(f"{cut} no gradient reaches {name} from {which} (a .detach(), .data, numpy "
                                  f"or .item() on its path?). {why}")
            if close(grad, ref, atol=1e-4, rtol=1e-3):
                continue
            err = (grad.detach().double() - ref).abs().max().item()
            if which == "h_T":
                raise CheckFailed(f"{cut} the gradient of h_T with respect to {name} differs from the "
                                  f"reference (largest error {err:.3g}): a .detach() on h between steps cuts "
                                  f"the path from h_T back to the earlier steps. {why}")
            raise CheckFailed(f"{cut} the gradient that flows back through outputs, with respect to {name}, "
                              f"differs from the reference (largest error {err:.3g}), while the one through "
                              "h_T is right: are the states you stack the ones your loop computed, with "
                              "their graph (not copies cut by .detach() or rebuilt by torch.tensor(...))? "
                              "A model trained on every step backpropagates through outputs.")


def check_rnn_unroll(rnn_unroll: Callable[..., tuple]) -> CheckResult:
    """Check ``rnn_unroll(x, h0, W_ih, W_hh, b_ih, b_hh) -> (outputs (B, T, H), h_T (B, H))``, by hand."""
    task = "rnn_unroll"

    def body() -> str:
        g = torch.Generator().manual_seed(202)
        shapes = [(3, 5, 4, 4), (2, 6, 3, 5), (3, 1, 2, 2), (1, 7, 4, 3)]  # (B, T, D, H); D == H first
        for B, T, D, H in shapes:
            x, h0 = torch.randn(B, T, D, generator=g), torch.randn(B, H, generator=g) * 0.8
            w = _weights(D, H, g)
            got = call(task, rnn_unroll, x, h0, *w, forbid=RNN_SHORTCUTS)
            outputs, h_T = unpack(task, got, ["outputs", "h_T"])
            out_ref, h_ref = _unroll(x, h0, *w)
            if isinstance(outputs, torch.Tensor) and outputs.shape == (T, B, H) and B != T:
                raise CheckFailed(f"{task}: outputs has shape {fmt_shape(outputs.shape)} = (T, B, H): "
                                  "stack the states along the time axis, dim=1, to get (B, T, H).")
            _diagnose(task, outputs, out_ref, _unroll_mistakes(x, h0, w))
            compare(task, outputs, out_ref,
                    what=f"the tensor `outputs` for x {fmt_shape(x.shape)}, h0 {fmt_shape(h0.shape)}")
            if close(h_T, h0):
                raise CheckFailed(f"{task}: h_T is h0: return the state after the last step.")
            if T > 1 and close(h_T, out_ref[:, 0]):
                raise CheckFailed(f"{task}: h_T is the state after the first step; return the last.")
            compare(task, h_T, h_ref, what="h_T (the state after the last step)")
            _check_unroll_gradients(task, rnn_unroll, x, h0, w, g)
        return (f"{len(shapes)} random sequences {', '.join(fmt_shape(s[:3]) for s in shapes)} (B, T, D), "
                "with D == H and D != H: values and gradients")

    return run_check(task, body)


# --- task 2: the gradient norms against the distance -----------------------------------------


class _Model(torch.nn.Module):
    """A recurrent model for the gradient check: ``model(x) -> (outputs (B, T, H), h_T (B, H))``.

    A module, so that ``call`` also guards its weights against in-place changes.
    """

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs, _ = self.module(x)  # (B, T, H)
        return outputs, outputs[:, -1]


def _unit_grads(model: Callable, x: torch.Tensor, pick: Callable) -> torch.Tensor:
    """The gradient of every unit of ``pick(outputs, h_T)`` (B, U) w.r.t. x: (U, B, T, D)."""
    xs = x.detach().clone().requires_grad_(True)
    y = pick(*model(xs))  # (B, U)
    return torch.stack([torch.autograd.grad(y[:, i].sum(), xs, retain_graph=True)[0]
                        for i in range(y.shape[1])])


def _by_distance(per_bt: torch.Tensor) -> torch.Tensor:
    return per_bt.mean(0).flip(0)  # (B, T) -> (T,), entry d = distance d


def _frobenius(grads: torch.Tensor) -> torch.Tensor:
    return _by_distance(grads.pow(2).sum((0, 3)).sqrt())  # (U, B, T, D) -> (T,)


def _gradient_mistakes(model: Callable, x: torch.Tensor) -> tuple[torch.Tensor, list]:
    g = _unit_grads(model, x, lambda out, h: h)  # (H, B, T, D)
    ref = _frobenius(g)  # (T,)
    B = x.shape[0]
    mistakes = [
        (ref.flip(0), "the norms are in time order; return them by distance: entry d belongs to the "
                      "input d steps before the last (entry 0 = the last input)."),
        (_by_distance(g.sum(0).norm(dim=-1)),
         "this is the gradient of h_T.sum(), a single row-sum of the Jacobian. d h_T / d x_t has one "
         "row per hidden unit: backpropagate each unit separately and add their squares."),
        (_frobenius(g.cumsum(0)),  # what x.grad holds after each unit when it is never reset
         "x.grad accumulates over backward calls: reset it (x.grad = None) before each unit, or use "
         "torch.autograd.grad."),
        (_by_distance(g.norm(dim=-1).sum(0)),
         "you added the norms of the units' gradients; the Frobenius norm adds their *squares* and "
         "takes one square root."),
        (ref * B, f"you summed the sequences' norms over the batch (x{B}); average them."),
        (g.pow(2).sum((0, 1, 3)).sqrt().flip(0),
         "you took one norm over the whole batch; take each sequence's norm, then average over the batch."),
        (_frobenius(_unit_grads(model, x, lambda out, h: out[:, 0])),
         "you differentiated the state of the first step (outputs[:, 0]); differentiate h_T, the last."),
        (_frobenius(_unit_grads(model, x, lambda out, h: out.flatten(1))),
         "you differentiated the states of every step (all of outputs); differentiate h_T only."),
    ]
    return ref, mistakes


@contextlib.contextmanager
def _watching_autograd(found: list[str]) -> Iterator[None]:
    """Record, for each backward pass of the learner's code that has nothing to differentiate, why.

    "input": a differentiated tensor (x) does not require grad; "graph": x does, but the output
    has no grad_fn (the graph is cut between them); "backward": .backward() on a tensor without a
    graph (either of the two). The original functions run unchanged.
    """
    grad, backward = torch.autograd.grad, torch.autograd.backward

    def as_list(tensors):
        return [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)

    def watched_grad(outputs, inputs, *args, **kwargs):
        if not all(t.requires_grad for t in as_list(inputs)):
            found.append("input")
        elif not any(t.requires_grad for t in as_list(outputs)):
            found.append("graph")
        return grad(outputs, inputs, *args, **kwargs)

    def watched_backward(tensors, *args, **kwargs):
        if not any(t.requires_grad for t in as_list(tensors)):
            found.append("backward")
        return backward(tensors, *args, **kwargs)

    torch.autograd.grad, torch.autograd.backward = watched_grad, watched_backward
    try:
        yield
    finally:
        torch.autograd.grad, torch.autograd.backward = grad, backward


_NO_GRAD_X = ("x does not require grad: make a copy that does, x = x.detach().clone().requires_grad_(True), "
              "before running the model (leave the x you are given as it is).")


def _call_with_grad_hint(task: str, fn: Callable, *args, cut_in: str = "your code", **kwargs):
    """``call``, naming why a backward pass found no graph: x without requires_grad, or a cut graph.

    ``cut_in`` says where a torch.no_grad() or .detach() may sit.
    """
    found: list[str] = []
    try:
        with _watching_autograd(found):
            return call(task, fn, *args, **kwargs)
    except CheckFailed as err:
        if not (isinstance(err.__cause__, RuntimeError) and "does not require grad" in str(err.__cause__)):
            raise
        why = found[0] if found else "backward"
        if why == "input":
            raise CheckFailed(f"{task}: {_NO_GRAD_X}") from err
        if why == "graph":
            raise CheckFailed(f"{task}: the graph is cut: x requires grad, but the output you differentiate "
                              f"has no grad_fn, so no gradient can flow back to x. A torch.no_grad() or a "
                              f".detach() in {cut_in} stops it: compute without them.") from err
        raise CheckFailed(f"{task}: the tensor you call .backward() on has no graph. Either x does not "
                          "require grad (make a copy that does, x = x.detach().clone().requires_grad_(True), "
                          "before running the model), or the graph is cut by a torch.no_grad() or a "
                          f".detach() in {cut_in}.") from err


def check_gradient_norms(gradient_norms: Callable[[Callable, torch.Tensor], torch.Tensor]) -> CheckResult:
    """Check ``gradient_norms(model, x) -> (T,)``: mean over the batch of ||d h_T / d x_t||_F, by distance."""
    task = "gradient_norms"

    def body() -> str:
        torch.manual_seed(303)  # the check's own models; the global RNG is restored below
        # (module, B, T, D, H, dtype): the last in float64, whose norms stay float64
        cases = [(torch.nn.RNN, 3, 6, 3, 4, torch.float32), (torch.nn.GRU, 2, 5, 2, 3, torch.float32),
                 (torch.nn.LSTM, 4, 4, 3, 2, torch.float32), (torch.nn.RNN, 2, 5, 3, 3, torch.float64)]
        for cls, B, T, D, H, dtype in cases:
            model = _Model(cls(D, H, batch_first=True)).to(dtype)
            x = torch.randn(B, T, D, dtype=dtype)
            got = _call_with_grad_hint(task, gradient_norms, model, x, forbid=MEASURED)
            ref, mistakes = _gradient_mistakes(model, x)
            if isinstance(got, torch.Tensor) and got.shape == (B, T):
                raise CheckFailed(f"{task}: got one norm per sequence and step, shape (B, T) = "
                                  f"{fmt_shape(got.shape)}; average over the batch to get (T,).")
            _diagnose(task, got, ref, mistakes)
            compare(task, got, ref,
                    what=f"the vector of norms for the {cls.__name__} on "
                         f"{'a float64 ' if dtype == torch.float64 else ''}x {fmt_shape(x.shape)}")
        return f"an RNN, a GRU and an LSTM on {len(cases)} random batches, the last in float64"

    state = torch.get_rng_state()
    try:
        return run_check(task, body)
    finally:
        torch.set_rng_state(state)


# --- tasks 3 and 4: predict the curve, then measure it with your own RNN ---------------------


def _measured_norms(x: torch.Tensor, W_ih: torch.Tensor, W_hh: torch.Tensor) -> torch.Tensor:
    """||d h_T / d x_t||_F by distance for the RNN with zero biases and h0 = 0, in float64: (T,)."""
    x64, W_ih64, W_hh64 = x.double(), W_ih.double(), W_hh.double()
    zeros = torch.zeros(W_hh.shape[0], dtype=torch.float64)

    def model(inp):
        return _unroll(inp, torch.zeros(inp.shape[0], W_hh.shape[0], dtype=torch.float64),
                       W_ih64, W_hh64, zeros, zeros)

    return _frobenius(_unit_grads(model, x64, lambda out, h: h))


def _experiment(g: torch.Generator, scales, B: int, T: int, D: int, H: int, amplitude: float,
                drive: float = 0.5):
    """The seeded inputs of the measurement: x (B, T, D), W_ih (H, D), one s * orthogonal (H, H) per s.

    ``drive`` is the size of the input term x W_ih^T for inputs of size 1.
    """
    x = torch.randn(B, T, D, generator=g) * amplitude
    W_ih = torch.randn(H, D, generator=g) * drive / math.sqrt(D)
    return x, W_ih, [s * random_orthogonal(H, g) for s in scales]


def _within(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs() <= TOLERANCE * b.abs()


def _prediction_mistakes(scales, T: int, w_norm: float) -> list:
    s = torch.tensor(scales, dtype=torch.float64)[:, None]  # (S, 1)
    d = torch.arange(T, dtype=torch.float64)[None]  # (1, T)
    return [
        (s ** d, "your curve starts at 1 at distance 0. There, d h_T / d x_T = diag(tanh') W_ih: "
                 "where does that put the curve's start, given w_ih_norm?"),
        (w_norm * s ** (d + 1), "your curve has one factor of the scale too many: between x_t and h_T "
                                "there are d recurrent steps (none at distance 0)."),
        (w_norm * s ** (d - 1), "your curve has one factor of the scale too few: between x_t and h_T "
                                "there are d recurrent steps (none at distance 0)."),
        (w_norm * s.clamp(max=1) ** d,
         "your curve is right below scale 1 but never rises above it: with the states near 0, "
         f"nothing caps the growth; the measured curve at scale {max(scales)} rises with distance."),
    ]


def check_predict_curve(predict_curve: Callable[[float, int, float], float]) -> CheckResult:
    """Check ``predict_curve(scale, distance, w_ih_norm) -> float`` against the curve the check measures.

    The experiment: tiny inputs (x * 1e-5), zero biases, h0 = 0, W_hh = scale * a random orthogonal
    matrix. A prediction is right within 5% of the measured ||d h_T / d x_t||_F, at every point.
    """
    task = "predict_curve"

    def body() -> str:
        g = torch.Generator().manual_seed(404)
        scales, (B, T, D, H) = (0.5, 0.9, 1.2, 1.6), (4, 10, 3, 6)
        x, W_ih, W_hhs = _experiment(g, scales, B, T, D, H, TINY, drive=1.0)
        w_norm = W_ih.norm().item()  # far from 1, so that a curve without it is told apart
        measured = torch.stack([_measured_norms(x, W_ih, W) for W in W_hhs])  # (S, T)
        predicted = torch.tensor([[as_float(task, call(task, predict_curve, s, d, w_norm), "the prediction")
                                   for d in range(T)] for s in scales], dtype=torch.float64)  # (S, T)
        if not torch.isfinite(predicted).all():
            raise CheckFailed(f"{task}: some predictions are NaN or infinite; predict a finite norm.")
        right = _within(predicted, measured)
        if right.all():
            return (f"scales {', '.join(map(str, scales))} at distances 0 to {T - 1}, each within "
                    f"{TOLERANCE:.0%} of the measured norm")
        for pattern, message in _prediction_mistakes(scales, T, w_norm):
            if _within(predicted, pattern).all() and not _within(pattern, measured).all():
                raise CheckFailed(f"{task}: {message}")
        if torch.allclose(predicted, predicted[:, :1].expand_as(predicted), rtol=1e-6):
            raise CheckFailed(f"{task}: your curve does not change with the distance; the measured one "
                              "does, by the same factor at every step.")
        i, d = (int(j) for j in torch.nonzero(~right)[0])
        hint = ""
        if (predicted[:, 1:] < measured[:, 1:]).all():
            hint = (" Your curve falls faster than the measured one at every scale: with inputs this "
                    "small every state stays near 0. What is tanh' there, and what does an orthogonal "
                    "matrix do to the norm of a vector?")
        raise CheckFailed(f"{task}: at scale {scales[i]} and distance {d} you predicted "
                          f"{predicted[i, d].item():.4g}; the check measured {measured[i, d].item():.4g} "
                          f"(right means within {TOLERANCE:.0%}).{hint}")

    return run_check(task, body)


def _fit(norms: torch.Tensor) -> torch.Tensor:
    """exp of the least-squares slope of log(norm) against the distance d = 0 ... T-1: (S, T) -> (S,)."""
    logs = norms.detach().double().log()  # (S, T)
    d = torch.arange(norms.shape[-1], dtype=torch.float64)
    dc = d - d.mean()
    return ((dc * (logs - logs.mean(-1, keepdim=True))).sum(-1) / dc.pow(2).sum()).exp()


def _as_numbers(task: str, got: object, n: int, what: str) -> torch.Tensor:
    """Any tensor, array, list or tuple of ``n`` numbers, as a float64 tensor (n,)."""
    try:
        if isinstance(got, torch.Tensor):
            values = got.detach().double().reshape(-1) if got.numel() == n else None
        elif isinstance(got, (np.ndarray, list, tuple)):
            values = torch.tensor([float(v) for v in np.asarray(got, dtype=np.float64).reshape(-1)],
                                  dtype=torch.float64)
        else:
            values = None
    except (TypeError, ValueError, RuntimeError):
        values = None
    if values is None or values.shape != (n,):
        raise CheckFailed(f"{task}: {what} should be {n} numbers (a tensor of shape ({n},) or a list), "
                          f"one per recurrent matrix; got {type(got).__name__}"
                          + (f" of shape {fmt_shape(got.shape)}" if hasattr(got, "shape") else "") + ".")
    return values


def _as_rows(got: object) -> object:
    """The learner's norms: an (S, T) tensor, or a list of S tensors (T,) stacked into one."""
    if isinstance(got, (list, tuple)) and got and all(isinstance(r, torch.Tensor) for r in got):
        try:
            return torch.stack(list(got))
        except RuntimeError:
            return got
    return got


def _norm_mistakes(x: torch.Tensor, W_ih: torch.Tensor, W_hhs: list, ref: torch.Tensor) -> list:
    def sum_gradient(W_hh):  # the gradient of h_T.sum(): a single row-sum of the Jacobian
        zeros = torch.zeros(W_hh.shape[0], dtype=x.dtype)
        xs = x.clone().requires_grad_(True)
        _, h_T = _unroll(xs, torch.zeros(x.shape[0], W_hh.shape[0], dtype=x.dtype), W_ih, W_hh, zeros, zeros)
        return _by_distance(torch.autograd.grad(h_T.sum(), xs)[0].norm(dim=-1))

    return [
        (ref.flip(-1), "the norms are in time order; return them by distance: entry d belongs to the "
                       "input d steps before the last (entry 0 = the last input)."),
        (ref[:1].expand_as(ref), "every row holds the same curve: use each matrix of W_hhs in turn."),
        (torch.stack([sum_gradient(W) for W in W_hhs]),
         "these are the norms of the gradient of h_T.sum(); measure the Jacobian's Frobenius norm, one "
         "backward pass per hidden unit, as your gradient_norms of task 2 does."),
        (torch.zeros_like(ref),
         "your norms are all zero: no gradient reaches x. The graph is cut between x and h_T (a "
         "torch.no_grad() or .detach() in your rnn_unroll of task 1, which the model runs?); "
         "autograd.functional.jacobian returns zeros where it finds no path."),
        (torch.cat([ref[:, :1], torch.zeros_like(ref[:, 1:])], dim=1),
         "only distance 0 has a gradient: the graph is cut between steps (a .detach() on h in your "
         "rnn_unroll of task 1?), so nothing flows back from h_T past the last step."),
    ]


def _factor_mistakes(norms: torch.Tensor) -> list:
    logs, T = norms.double().log(), norms.shape[-1]
    slope = _fit(norms).log()
    return [
        (slope, "your factors are the slope of log(norm) against d; the factor per step is exp(slope)."),
        (1 / slope.exp(), "your factors are the inverse of the fitted ones, exp(-slope): the exponent's "
                          "sign is flipped. Did you fit against the time step t instead of the distance d "
                          "(the norms are ordered by distance), or put a minus in exp(-b)? The factor per "
                          "step is exp(+b)."),
        ((logs[:, -1] - logs[:, 0]).div(T - 1).exp(),
         "you took the ratio of the last and the first norm; fit a least-squares line through all T "
         "points (d, log norm_d) and take exp of its slope."),
        ((norms[:, 1:] / norms[:, :-1]).double().mean(-1),
         "you averaged the step-by-step ratios; fit a least-squares line through all T points "
         "(d, log norm_d) and take exp of its slope."),
        ((slope / math.log(10)).exp(),
         "you fitted log10(norm) but took exp of the slope: use one base on both sides (10 ** slope, "
         "or the natural log and exp)."),
    ]


def check_measure_fading(measure_fading: Callable[..., tuple]) -> CheckResult:
    """Check ``measure_fading(x, W_ih, W_hhs) -> (norms (S, T), factors (S,))`` on seeded weights.

    The norms against a reference measurement on the same weights, at tiny and at unit-size
    inputs; the factors against the least-squares fit of the learner's own norms.
    """
    task = "measure_fading"

    def body() -> str:
        g = torch.Generator().manual_seed(505)
        scales, (B, T, D, H) = (0.5, 1.0, 1.5, 2.0), (4, 10, 3, 6)
        # (input size, dtype): the last run in float64, whose norms stay float64
        for amplitude, dtype in ((TINY, torch.float32), (1.0, torch.float32), (1.0, torch.float64)):
            x, W_ih, W_hhs = _experiment(g, scales, B, T, D, H, amplitude)
            x, W_ih, W_hhs = x.to(dtype), W_ih.to(dtype), [W.to(dtype) for W in W_hhs]
            got = _call_with_grad_hint(task, measure_fading, x, W_ih, W_hhs, forbid=RNN_SHORTCUTS + MEASURED,
                                       cut_in="your rnn_unroll of task 1 (which the model runs) or your "
                                              "measurement")
            norms, factors = unpack(task, got, ["norms", "factors"])
            norms, swapped = _as_rows(norms), _as_rows(factors)
            if (isinstance(swapped, torch.Tensor) and swapped.shape == (len(scales), T)
                    and not (isinstance(norms, torch.Tensor) and norms.shape == swapped.shape)):
                raise CheckFailed(f"{task}: you returned (factors, norms); return (norms, factors), the "
                                  f"norms (S, T) = {fmt_shape(swapped.shape)} first.")
            ref = torch.stack([_measured_norms(x, W_ih, W) for W in W_hhs]).to(dtype)  # (S, T)
            what = f"at inputs of size {amplitude:g}" + (", all in float64" if dtype == torch.float64 else "")
            _diagnose(task, norms, ref, _norm_mistakes(x, W_ih, W_hhs, ref))
            compare(task, norms, ref, atol=1e-7,
                    what=f"the matrix of norms {what} (row i: W_hhs[i], entry d: distance d)")
            factors = _as_numbers(task, factors, len(scales), "factors")
            fitted = _fit(norms)  # the conclusion drawn from the learner's own numbers
            _diagnose(task, factors, fitted, _factor_mistakes(norms))
            compare(task, factors, fitted, atol=0.0, rtol=1e-3, dtype=torch.float64,
                    what=f"the vector of factors {what} (the exp of the least-squares slope of log norm "
                         "against d)")
        return (f"scales {', '.join(map(str, scales))}, at inputs of size {TINY:g} and 1 (and 1 in float64): "
                "the norms and the fitted factors")

    return run_check(task, body)
