"""Checks for solutions/01_rnns_and_fading_memory: the RNN cell, the unrolled RNN, the gradient norms.

Shapes: B batch, T sequence length, D input size, H hidden size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._core import CheckFailed, call, compare, fmt_shape, run_check

__all__ = ["check_rnn_cell", "check_rnn_unroll", "check_gradient_norms"]

Weights = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # W_ih, W_hh, b_ih, b_hh


def _weights(D: int, H: int, g: torch.Generator) -> Weights:
    return (torch.randn(H, D, generator=g) * 0.6, torch.randn(H, H, generator=g) * 0.6,
            torch.randn(H, generator=g) * 0.5, torch.randn(H, generator=g) * 0.5)


def _cell(x, h, W_ih, W_hh, b_ih, b_hh):
    return torch.tanh(x @ W_ih.T + b_ih + h @ W_hh.T + b_hh)  # (B, H)


def _close(got: object, expected: torch.Tensor) -> bool:
    return (isinstance(got, torch.Tensor) and got.shape == expected.shape
            and torch.allclose(got.detach().to(expected.dtype), expected, atol=1e-5, rtol=1e-4))


def _diagnose(task: str, got: object, expected: torch.Tensor,
              mistakes: list[tuple[torch.Tensor, str]]) -> None:
    """Name the mistake ``got`` matches; a mistake that happens to equal the answer is skipped."""
    for wrong, message in mistakes:
        if _close(got, wrong) and not _close(wrong, expected):
            raise CheckFailed(f"{task}: {message}")


def _cell_mistakes(x, h, W_ih, W_hh, b_ih, b_hh) -> list[tuple[torch.Tensor, str]]:
    pre = x @ W_ih.T + b_ih + h @ W_hh.T + b_hh  # (B, H)
    b = b_ih + b_hh
    return [
        (pre, "you forgot the tanh: the new state is tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)."),
        (torch.sigmoid(pre), "you used a sigmoid; the plain RNN cell uses tanh."),
        (torch.relu(pre), "you used a ReLU; the plain RNN cell uses tanh."),
        (torch.tanh(x @ W_ih.T + h @ W_hh + b),
         "W_hh is used transposed: PyTorch stores weights as (out, in), so the product is h @ W_hh.T."),
        (torch.tanh(x @ W_ih + h @ W_hh.T + b),
         "W_ih is used transposed: PyTorch stores weights as (out, in), so the product is x @ W_ih.T."),
        (torch.tanh(x @ W_ih + h @ W_hh + b),
         "both weights are used transposed: PyTorch stores them as (out, in): x @ W_ih.T and h @ W_hh.T."),
        (torch.tanh(x @ W_hh.T + h @ W_ih.T + b),
         "the weights are swapped: W_ih multiplies the input x, W_hh the previous state h."),
        (torch.tanh(x @ W_ih.T + b),
         "the previous state h is ignored: add h @ W_hh.T, the recurrence is what carries memory."),
        (torch.tanh(h @ W_hh.T + b), "the input x is ignored: add x @ W_ih.T."),
        (torch.tanh(pre - b_hh), "the bias b_hh is missing."),
        (torch.tanh(pre - b_ih), "the bias b_ih is missing."),
        (torch.tanh(pre - b), "both biases b_ih and b_hh are missing."),
    ]


def check_rnn_cell(rnn_cell: Callable[..., torch.Tensor]) -> bool:
    """Check ``rnn_cell(x, h, W_ih, W_hh, b_ih, b_hh) -> tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)``."""
    task = "rnn_cell"

    def body() -> str:
        g = torch.Generator().manual_seed(101)
        shapes = [(3, 4, 4), (2, 3, 5), (1, 6, 2), (4, 5, 3)]  # (B, D, H); the first is square
        for B, D, H in shapes:
            x, h = torch.randn(B, D, generator=g), torch.randn(B, H, generator=g) * 0.8
            w = _weights(D, H, g)
            got = call(task, rnn_cell, x.clone(), h.clone(), *(t.clone() for t in w))
            expected = _cell(x, h, *w)
            if D == H:  # square weights: a transposed or swapped weight still runs, so name it
                _diagnose(task, got, expected, _cell_mistakes(x, h, *w))
            compare(task, got, expected,
                    what=f"the new state for x {fmt_shape(x.shape)}, h {fmt_shape(h.shape)}")
        return f"{len(shapes)} random (x, h, weights) with D == H and D != H"

    return run_check(task, body)


def _unroll(x, h0, *w) -> tuple[torch.Tensor, torch.Tensor]:
    h, outs = h0, []
    for t in range(x.shape[1]):
        h = _cell(x[:, t], h, *w)  # (B, H)
        outs.append(h)
    return torch.stack(outs, dim=1), h  # (B, T, H), (B, H)


def check_rnn_unroll(rnn_unroll: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> bool:
    """Check ``rnn_unroll(x, h0, W_ih, W_hh, b_ih, b_hh) -> (outputs (B, T, H), h_T (B, H))``."""
    task = "rnn_unroll"

    def body() -> str:
        g = torch.Generator().manual_seed(202)
        shapes = [(2, 5, 3, 4), (3, 1, 2, 2), (1, 7, 4, 3)]  # (B, T, D, H), B != T in most
        for B, T, D, H in shapes:
            x, h0 = torch.randn(B, T, D, generator=g), torch.randn(B, H, generator=g)
            w = _weights(D, H, g)
            got = call(task, rnn_unroll, x.clone(), h0.clone(), *(t.clone() for t in w))
            if not (isinstance(got, tuple) and len(got) == 2):
                raise CheckFailed(f"{task}: return a pair (outputs, h_T), got {type(got).__name__}"
                                  + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""))
            outputs, h_T = got
            out_ref, h_ref = _unroll(x, h0, *w)
            if isinstance(outputs, torch.Tensor) and outputs.shape == (T, B, H) and B != T:
                raise CheckFailed(f"{task}: outputs has shape {fmt_shape(outputs.shape)} = (T, B, H): "
                                  "stack the states along the time axis, dim=1, to get (B, T, H).")
            _diagnose(task, outputs, out_ref, [
                (torch.cat([h0[:, None], out_ref[:, :-1]], dim=1),
                 "outputs is shifted by one step: outputs[:, t] is the state *after* reading x_t "
                 "(you stored the state before each step)."),
                (torch.stack([_cell(x[:, t], h0, *w) for t in range(T)], dim=1),
                 "every step starts from h0: feed each step the state the previous step returned."),
                (_unroll(x, torch.zeros_like(h0), *w)[0],
                 "you started from zeros; start from the h0 you are given."),
            ] if T > 1 else [])
            compare(task, outputs, out_ref, what=f"outputs for x {fmt_shape(x.shape)}")
            if _close(h_T, h0):
                raise CheckFailed(f"{task}: h_T is h0: return the state after the last step.")
            if T > 1 and _close(h_T, out_ref[:, 0]):
                raise CheckFailed(f"{task}: h_T is the state after the first step; return the last.")
            compare(task, h_T, h_ref, what="h_T (the state after the last step)")
        return f"{len(shapes)} random sequences {', '.join(fmt_shape(s[:3]) for s in shapes)} (B, T, D)"

    return run_check(task, body)


class _Model:
    """A recurrent model for the gradient check: ``model(x) -> (outputs (B, T, H), h_T (B, H))``."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs, _ = self.module(x)  # (B, T, H)
        return outputs, outputs[:, -1]


def _unit_grads(model: _Model, x: torch.Tensor, pick: Callable) -> torch.Tensor:
    """The gradient of every unit of ``pick(outputs, h_T)`` (B, U) w.r.t. x: (U, B, T, D)."""
    xs = x.clone().requires_grad_(True)
    y = pick(*model(xs))  # (B, U)
    return torch.stack([torch.autograd.grad(y[:, i].sum(), xs, retain_graph=True)[0]
                        for i in range(y.shape[1])])


def _by_distance(per_bt: torch.Tensor) -> torch.Tensor:
    return per_bt.mean(0).flip(0)  # (B, T) -> (T,), entry d = distance d


def _gradient_mistakes(model: _Model, x: torch.Tensor) -> tuple[torch.Tensor, list]:
    g = _unit_grads(model, x, lambda out, h: h)  # (H, B, T, D)
    ref = _by_distance(g.pow(2).sum((0, 3)).sqrt())  # (T,)
    B = x.shape[0]
    acc = g.cumsum(0)  # what x.grad holds after each unit when it is never reset
    mistakes = [
        (ref.flip(0), "the norms are in time order; return them by distance: entry d belongs to the "
                      "input d steps before the last (entry 0 = the last input)."),
        (_by_distance(g.sum(0).norm(dim=-1)),
         "this is the gradient of h_T.sum(), a single row-sum of the Jacobian. d h_T / d x_t has one "
         "row per hidden unit: backpropagate each unit separately and add their squares."),
        (_by_distance(acc.pow(2).sum((0, 3)).sqrt()),
         "x.grad accumulates over backward calls: reset it (x.grad = None) before each unit, or use "
         "torch.autograd.grad."),
        (_by_distance(g.norm(dim=-1).sum(0)),
         "you added the norms of the units' gradients; the Frobenius norm adds their *squares* and "
         "takes one square root."),
        (ref * B, f"you summed the sequences' norms over the batch (x{B}); average them."),
        (g.pow(2).sum((0, 1, 3)).sqrt().flip(0),
         "you took one norm over the whole batch; take each sequence's norm, then average over the batch."),
        (_by_distance(_unit_grads(model, x, lambda out, h: out[:, 0]).pow(2).sum((0, 3)).sqrt()),
         "you differentiated the state of the first step (outputs[:, 0]); differentiate h_T, the last."),
        (_by_distance(_unit_grads(model, x, lambda out, h: out.flatten(1)).pow(2).sum((0, 3)).sqrt()),
         "you differentiated the states of every step (all of outputs); differentiate h_T only."),
    ]
    return ref, mistakes


def check_gradient_norms(gradient_norms: Callable[[Callable, torch.Tensor], torch.Tensor]) -> bool:
    """Check ``gradient_norms(model, x) -> (T,)``: mean over the batch of ||d h_T / d x_t||_F, by distance."""
    task = "gradient_norms"

    def body() -> str:
        torch.manual_seed(303)  # the check's own models; the global RNG is restored below
        cases = [(torch.nn.RNN, 3, 6, 3, 4), (torch.nn.GRU, 2, 5, 2, 3), (torch.nn.LSTM, 4, 4, 3, 2)]
        for cls, B, T, D, H in cases:
            model = _Model(cls(D, H, batch_first=True))
            x = torch.randn(B, T, D)
            try:
                got = gradient_norms(model, x.clone())
            except NotImplementedError:  # a RuntimeError too: let run_check report "not done yet"
                raise
            except RuntimeError as err:
                if "does not require grad" in str(err):
                    raise CheckFailed(f"{task}: x does not require grad: make a copy that does, x = "
                                      "x.clone().requires_grad_(True), before running the model.") from err
                raise CheckFailed(f"{task}: your function raised RuntimeError: {err}") from err
            except Exception as err:  # the learner's code may raise anything
                raise CheckFailed(f"{task}: your function raised {type(err).__name__}: {err}") from err
            ref, mistakes = _gradient_mistakes(model, x)
            if isinstance(got, torch.Tensor) and got.shape == (B, T):
                raise CheckFailed(f"{task}: got one norm per sequence and step, shape (B, T) = "
                                  f"{fmt_shape(got.shape)}; average over the batch to get (T,).")
            _diagnose(task, got, ref, mistakes)
            compare(task, got, ref, what=f"the norms for a {cls.__name__} on x {fmt_shape(x.shape)}")
        return f"an RNN, a GRU and an LSTM on {len(cases)} random batches"

    state = torch.get_rng_state()
    try:
        return run_check(task, body)
    finally:
        torch.set_rng_state(state)
