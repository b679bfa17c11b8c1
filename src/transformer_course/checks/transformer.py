"""Checks for solutions/07_transformer_block: LayerNorm, the pre-LN encoder layer, the warm-up curve.

Shapes: B batch, S source length, D d_model.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
from torch import nn

from ..transformer import EncoderLayer
from ._core import (
    SHORTCUTS,
    CheckFailed,
    as_float,
    backpropagate,
    call,
    close,
    compare,
    fmt_shape,
    run_check,
    unpack,
)

__all__ = ["check_layer_norm", "check_pre_ln_layer", "check_warmup_curve"]


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


# ----------------------------------------------------------------------------- LayerNorm

def _ln(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float, *, dim: int = -1,
        unbiased: bool = False, eps_outside: bool = False, affine: bool = True,
        constant_mean: bool = False, constant_var: bool = False) -> torch.Tensor:
    """LayerNorm, right by default; each option is one mistake the check recognises."""
    mean = x.mean(dim, keepdim=True)
    var = x.var(dim, keepdim=True, unbiased=unbiased)
    mean = mean.detach() if constant_mean else mean
    var = var.detach() if constant_var else var
    y = (x - mean) / (var.sqrt() + eps if eps_outside else torch.sqrt(var + eps))
    return y * weight + bias if affine else y


# LayerNorm by hand: the functional shortcuts, and nn.LayerNorm's forward (it calls one of them,
# but a learner who used the module should be told about the module).
_LN_SHORTCUTS = ("torch.nn:LayerNorm.forward", *SHORTCUTS["layer_norm"])


def _call_layer_norm(task: str, fn: Callable, *args) -> object:
    try:
        return call(task, fn, *args, forbid=_LN_SHORTCUTS)
    except CheckFailed as failed:
        if failed.__cause__ is None and "LayerNorm.forward`" in str(failed):
            raise CheckFailed(f"{task}: your function used `torch.nn.LayerNorm`, which computes the very "
                              "thing this task asks you to write by hand; it is switched off while the "
                              "check runs your code. Compute the mean and the variance over the last "
                              "axis yourself (see the task's text).") from None
        raise


def check_layer_norm(fn: Callable) -> bool:
    """Check ``fn(x, weight, bias, eps=1e-5)``: LayerNorm over the last axis by hand, in x's dtype."""
    task = "layer_norm"

    def body() -> str:
        g = torch.Generator().manual_seed(707)
        # shape, dtype, eps, the rows made constant (variance 0: only eps keeps the division finite),
        # a common offset of every feature (1000: E[x^2] - E[x]^2 cancels in float32)
        cases = [((2, 5, 8), torch.float32, 1e-5, False, 0.0), ((3, 16), torch.float32, 1e-5, True, 0.0),
                 ((1, 4, 2, 6), torch.float32, 0.5, False, 0.0), ((4, 12), torch.float64, 1e-5, True, 0.0),
                 ((4, 16), torch.float32, 1e-5, False, 1000.0)]
        graded = []  # the gradients are compared once every value is right: a value mistake is named first
        for shape, dtype, eps, constant_row, offset in cases:
            D = shape[-1]
            noise = torch.randn(shape, generator=g, dtype=torch.float64)
            x = (offset + noise if offset else 2 + 3 * noise).to(dtype)
            if constant_row:
                x[1] = 2.5  # a token whose features are all equal
            w = (1 + 0.5 * torch.randn(D, generator=g, dtype=torch.float64)).to(dtype)
            b = (0.5 * torch.randn(D, generator=g, dtype=torch.float64)).to(dtype)
            ref = _ln(x, w, b, eps)
            # float32 features near 1000 are stored to about 6e-5: the right answers agree to ~1e-4
            tol = {"atol": 2e-3, "rtol": 1e-3} if offset else {}
            got = _call_layer_norm(task, fn, x, w, b, eps)
            where = f"for x {fmt_shape(shape)} ({_dtype(x)}, eps = {eps:g})"
            if isinstance(got, torch.Tensor) and got.shape == ref.shape and not close(got, ref, **tol):
                if offset:
                    _diagnose_cancellation(task, fn, got, ref, x, w, b, eps, offset, where, tol)
                _diagnose_layer_norm(task, got, x, w, b, eps, where, constant_row)
            compare(task, got, ref, what=f"the result {where}", dtype=x.dtype, **tol)
            if not offset:  # near 1000, float32 gradients hold only a few digits; the others test them
                graded.append((x, w, b, eps, where, constant_row))
        for case in graded:
            _check_layer_norm_gradients(task, fn, *case)
        shapes = ", ".join(fmt_shape(c[0]) for c in cases)
        return (f"{len(cases)} random inputs {shapes} (float32 and float64, rows of equal features, "
                "features near 1000), random weight and bias; the gradients with respect to x, weight "
                "and bias")

    return run_check(task, body)


_CUT = ("part of the computation does not reach autograd: a .detach(), .data, torch.no_grad() or a "
        "detour through numpy or .item()?")


def _check_layer_norm_gradients(task: str, fn: Callable, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                                eps: float, where: str, constant_row: bool) -> None:
    """The gradients of the result with respect to x, weight and bias equal the reference's."""
    leaves = {"x": x, "weight": w, "bias": b}
    leaves = {name: t.clone().requires_grad_() for name, t in leaves.items()}
    got = _call_layer_norm(task, fn, *leaves.values(), eps)
    ref_leaves = {name: t.detach().double().requires_grad_() for name, t in leaves.items()}
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(7071), dtype=torch.float64)
    grads = _gradients(task, got, upstream, leaves, where)
    ref = _ln(*ref_leaves.values(), eps)
    ref_grads = torch.autograd.grad((ref * upstream).sum(), list(ref_leaves.values()))
    if constant_row and not torch.isfinite(grads[0]).all():
        raise CheckFailed(f"{task}: {where} your result is right, but its gradient with respect to x holds "
                          "NaN or infinity on the row whose features are all equal: its variance is 0, where "
                          "the square root has no finite derivative. Take sqrt(var + eps), eps inside the "
                          "root, and no sqrt of the variance alone.")
    if not close(grads[0], ref_grads[0], atol=1e-4, rtol=1e-3):
        slips = {"the mean and the variance reach": {"constant_mean": True, "constant_var": True},
                 "the mean reaches": {"constant_mean": True}, "the variance reaches": {"constant_var": True}}
        x64 = ref_leaves["x"].detach().requires_grad_()
        for stats, options in slips.items():
            wrong = _ln(x64, ref_leaves["weight"].detach(), ref_leaves["bias"].detach(), eps, **options)
            if close(grads[0], torch.autograd.grad((wrong * upstream).sum(), x64)[0], atol=1e-4, rtol=1e-3):
                raise CheckFailed(
                    f"{task}: {where} your result is right, but its gradient with respect to x is not: "
                    f"{stats} autograd as a constant (computed under torch.no_grad(), detached, or passed "
                    "through .item() and math.sqrt). The statistics depend on x, so the gradient that "
                    "reaches x (and every layer before this one) must flow through them too: compute them "
                    "with tensor operations, autograd on.")
    for (name, leaf), grad, ref_grad in zip(leaves.items(), grads, ref_grads, strict=True):
        try:
            compare(task, grad, ref_grad, atol=1e-4, rtol=1e-3, what=f"the gradient with respect to {name} "
                    f"{where}", dtype=leaf.dtype)
        except CheckFailed as err:
            raise CheckFailed(f"{err} The result is right, so {_CUT}") from None


def _gradients(task: str, got: torch.Tensor, upstream: torch.Tensor, leaves: dict[str, torch.Tensor],
               where: str) -> list[torch.Tensor]:
    """The gradients of (got * upstream).sum() with respect to each leaf; a message if one is cut."""
    grads = backpropagate(got, upstream, leaves.values(), prefix=f"{task}: {where} your result",
                          trained="The layer is trained", in_place_hint=(
                              ": an in-place operation (`+=`, `*=`, `add_`, `[...] =`) changed a tensor "
                              "that autograd had saved for the backward pass (a LayerNorm or a product "
                              "saves its input). Write a new tensor instead: `h = h + ...`, not `h += ...`."))
    cut = [name for name, grad in zip(leaves, grads, strict=True) if grad is None]
    if cut:
        raise CheckFailed(f"{task}: {where} your result is right, but no gradient reaches "
                          f"{', '.join(cut)}: {_CUT} The layer is trained, so every step must stay in "
                          "autograd.")
    return list(grads)


def _diagnose_cancellation(task: str, fn: Callable, got: torch.Tensor, ref: torch.Tensor, x: torch.Tensor,
                           w: torch.Tensor, b: torch.Tensor, eps: float, offset: float, where: str,
                           tol: dict) -> None:
    """Wrong near ``offset`` but right once the common offset is taken away: the variance cancels."""
    centred = call(task, fn, x - offset, w, b, eps, forbid=_LN_SHORTCUTS)  # exact in float32
    if close(centred, ref, **tol):  # LayerNorm ignores a shift common to all the features
        error = (got.double() - ref.double()).abs().max().item()
        raise CheckFailed(
            f"{task}: {where}, features near {offset:g}: your result is off by up to {error:.2g}, yet the "
            f"same vectors moved near 0 (minus {offset:g}, which LayerNorm ignores) come out right. "
            f"The variance as E[x^2] - E[x]^2 subtracts two numbers near {offset ** 2:,.0f}, and float32 "
            "keeps only about 7 digits of them, so the difference is lost (cancellation). Compute the "
            "mean first, then the mean of (x - mean)^2 (or x.var(-1, unbiased=False)).")


def _diagnose_layer_norm(task: str, got: torch.Tensor, x: torch.Tensor, w: torch.Tensor,
                         b: torch.Tensor, eps: float, where: str, constant_row: bool) -> None:
    if constant_row and not torch.isfinite(got).all():
        raise CheckFailed(f"{task}: {where} your result has NaN or infinity on the row whose features "
                          "are all equal: its variance is 0, and without eps you divide 0 by 0. Add eps "
                          "to the variance, inside the square root: sqrt(var + eps).")
    if eps > 1e-3 and (close(got, _ln(x, w, b, 1e-5)) or close(got, _ln(x, w, b, 0.0))):
        raise CheckFailed(f"{task}: {where} your result is what a tiny eps gives, not eps = {eps:g}: "
                          "use the `eps` your function is given, sqrt(var + eps).")
    if close(got, _ln(x, w, b, eps, unbiased=True)):
        raise CheckFailed(f"{task}: {where} you used the unbiased variance (dividing by D - 1); "
                          "LayerNorm divides by D: x.var(-1, unbiased=False), or mean of squares.")
    if close(got, _ln(x, w, b, eps, eps_outside=True)):
        raise CheckFailed(f"{task}: {where} eps is added to the standard deviation; add it to the "
                          "variance, inside the square root: sqrt(var + eps).")
    if close(got, _ln(x, w, b, eps, affine=False)):
        raise CheckFailed(f"{task}: {where} the weight and bias are not applied: multiply the "
                          "normalised x by weight, then add bias.")
    if close(got, _ln(x, w, b, eps) - b):
        raise CheckFailed(f"{task}: {where} the bias is missing: add it after scaling by weight.")
    if close(got, _ln(x, torch.ones_like(w), b, eps)):
        raise CheckFailed(f"{task}: {where} the weight is missing: multiply the normalised x by weight.")
    if close(got, (_ln(x, w, b, eps, affine=False) + b) * w):
        raise CheckFailed(f"{task}: {where} you added the bias before scaling: (x_hat + bias) * weight; "
                          "scale first, then shift: x_hat * weight + bias.")
    for dim in range(x.dim() - 1):
        if x.shape[dim] > 1 and close(got, _ln(x, w, b, eps, dim=dim)):
            raise CheckFailed(f"{task}: {where} you normalised over axis {dim}; LayerNorm "
                              "normalises each vector over its features, the last axis (dim=-1).")
    whole = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + eps) * w + b
    if close(got, whole):
        raise CheckFailed(f"{task}: {where} you took one mean and variance over the whole tensor; "
                          "each vector gets its own, over the last axis (keepdim=True).")


# ----------------------------------------------------------------------------- pre-LN layer

class _SelfAttention(nn.Module):
    """``attn(h)``: the layer's self-attention as a one-argument module (its weights are snapshotted)."""

    def __init__(self, mha: nn.Module):
        super().__init__()
        self.mha = mha

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, S, D) -> (B, S, D)
        return self.mha(h, h, h)[0]


def _variants(x, attn, ff, n1, n2) -> dict[str, torch.Tensor]:
    """Outputs of the usual wrong orders, named by what is wrong."""
    h = n1(x + attn(x))
    a = x + attn(n1(x))
    return {
        "post-LN": n2(h + ff(h)),
        "no residual": ff(n2(attn(n1(x)))),
        "normalised skip": (lambda y: n2(y) + ff(n2(y)))(n1(x) + attn(n1(x))),
        "swapped norms": (lambda y: y + ff(n1(y)))(x + attn(n2(x))),
        "norm1 twice": a + ff(n1(a)),
        "norm2 twice": (lambda y: y + ff(n2(y)))(x + attn(n2(x))),
        "final norm": n2(a + ff(n2(a))),
        "no attention residual": (lambda y: y + ff(n2(y)))(attn(n1(x))),
        "no ff residual": ff(n2(a)),
        "ff first": (lambda y: y + attn(n2(y)))(x + ff(n1(x))),
        "parallel": x + attn(n1(x)) + ff(n2(x)),
        "no norms": (lambda y: y + ff(y))(x + attn(x)),
        "attention only": a,
    }


MESSAGES = {
    "post-LN": "you normalised after the residual add, norm(x + f(x)): that is post-LN (the "
               "paper's order). Pre-LN normalises the sublayer's input and adds to the raw x: "
               "x = x + attn(norm1(x)).",
    "no residual": "the residual connections are missing: each sublayer's output is added to "
                   "its input, x = x + attn(norm1(x)), then x = x + ff(norm2(x)).",
    "normalised skip": "the skip path carries the normalised x: add the sublayer's output to the "
                       "raw x, x = x + attn(norm1(x)), not norm1(x) + attn(norm1(x)).",
    "swapped norms": "norm1 and norm2 are swapped: norm1 goes before attention, norm2 before "
                     "the feed-forward network.",
    "norm1 twice": "you used norm1 before both sublayers: the feed-forward network gets norm2.",
    "norm2 twice": "you used norm2 before both sublayers: attention gets norm1.",
    "final norm": "you normalised the layer's output: in pre-LN the layer ends with the residual "
                  "add, x + ff(norm2(x)); the stack adds one final LayerNorm, not each layer.",
    "no attention residual": "the attention sublayer has no residual: x = x + attn(norm1(x)).",
    "no ff residual": "the feed-forward sublayer has no residual: return x + ff(norm2(x)).",
    "ff first": "the sublayers are in the wrong order: attention first, then the feed-forward "
                "network.",
    "parallel": "the feed-forward network reads the layer's input x; it reads the stream after "
                "attention: first x = x + attn(norm1(x)), then x + ff(norm2(x)) with that new x.",
    "attention only": "the feed-forward sublayer is missing: after x = x + attn(norm1(x)) comes "
                      "x + ff(norm2(x)).",
    "no norms": "the LayerNorms are not applied: each sublayer reads norm(x), attn(norm1(x)) and "
                "ff(norm2(x)).",
}


def check_pre_ln_layer(fn: Callable) -> bool:
    """Check ``fn(x, attn, ff, norm1, norm2) -> (B, S, D)``: the pre-LN encoder layer's forward."""
    task = "pre_ln_layer"

    def body() -> str:
        g = torch.Generator().manual_seed(717)
        cases = [(2, 5, 16, 4, torch.float32), (3, 7, 8, 2, torch.float32),
                 (1, 3, 12, 3, torch.float64)]  # (B, S, D, H, dtype)
        graded = []  # the gradients are compared once every value is right: a value mistake is named first
        for B, S, D, H, dtype in cases:
            with torch.random.fork_rng():
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
                layer = EncoderLayer(D, H, 2 * D, dropout=0.0, norm_first=True).to(dtype).eval()
            with torch.no_grad():  # random norms: a swapped or missing norm must show
                for norm in (layer.norm1, layer.norm2):
                    norm.weight.copy_(1 + 0.4 * torch.randn(D, generator=g))
                    norm.bias.copy_(0.4 * torch.randn(D, generator=g))
            x = torch.randn(B, S, D, generator=g, dtype=torch.float64).to(dtype)
            attn = _SelfAttention(layer.self_attn)
            where = f"for x {fmt_shape(x.shape)} ({_dtype(x)})"
            with torch.no_grad():
                ref = layer(x)
                got = call(task, fn, x, attn, layer.ff, layer.norm1, layer.norm2)
                if isinstance(got, torch.Tensor) and got.shape == ref.shape and not close(got, ref):
                    for name, out in _variants(x, attn, layer.ff, layer.norm1, layer.norm2).items():
                        if close(got, out):
                            raise CheckFailed(f"{task}: {where} {MESSAGES[name]}")
            compare(task, got, ref, what=f"the layer's output {where}", dtype=x.dtype)
            graded.append((x, attn, layer, where))
        for case in graded:
            _check_pre_ln_gradients(task, fn, *case)
        return (f"{len(cases)} random layers (random LayerNorm weights, float32 and float64) and inputs: "
                "the output, and its gradients with respect to x and every weight")

    return run_check(task, body)


def _skips_cut(x: torch.Tensor, attn: nn.Module, ff: nn.Module, n1: nn.Module, n2: nn.Module, *,
               first: bool, second: bool) -> torch.Tensor:
    """The pre-LN layer with its skip paths (the residual x) detached: right values, cut gradients."""
    h = (x.detach() if first else x) + attn(n1(x))
    return (h.detach() if second else h) + ff(n2(h))


def _check_pre_ln_gradients(task: str, fn: Callable, x: torch.Tensor, attn: nn.Module, layer: nn.Module,
                            where: str) -> None:
    """The gradients of the output with respect to x and every weight equal the course's layer's."""
    x_in = x.clone().requires_grad_()
    got = call(task, fn, x_in, attn, layer.ff, layer.norm1, layer.norm2)
    parts = {"attn": attn, "ff": layer.ff, "norm1": layer.norm1, "norm2": layer.norm2}  # the learner's names
    params = {f"{part}.{name}": p for part, module in parts.items() for name, p in module.named_parameters()}
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(7171), dtype=torch.float64)
    grads = _gradients(task, got, upstream, {"x": x_in, **params}, where)
    x_ref = x.clone().requires_grad_()
    ref_grads = torch.autograd.grad((layer(x_ref) * upstream.to(x.dtype)).sum(), [x_ref, *params.values()])
    if not close(grads[0], ref_grads[0], atol=1e-4, rtol=1e-3):
        cuts = {(True, False): "the first skip path", (False, True): "the second skip path",
                (True, True): "both skip paths"}
        for (first, second), which in cuts.items():
            x_cut = x.clone().requires_grad_()
            wrong = _skips_cut(x_cut, attn, layer.ff, layer.norm1, layer.norm2, first=first, second=second)
            if close(grads[0], torch.autograd.grad((wrong * upstream.to(x.dtype)).sum(), x_cut)[0],
                     atol=1e-4, rtol=1e-3):
                raise CheckFailed(
                    f"{task}: {where} your output is right, but its gradient with respect to x is not: "
                    f"{which} of the residual stream {'are' if first and second else 'is'} cut from "
                    "autograd (x.detach() + attn(norm1(x))). The skip path carries the gradient straight "
                    "through the layer, which is what lets a deep stack train: add the sublayer's output "
                    "to x itself, x + attn(norm1(x)).")
    for (name, leaf), grad, ref_grad in zip({"x": x_in, **params}.items(), grads, ref_grads, strict=True):
        try:
            compare(task, grad, ref_grad, atol=1e-4, rtol=1e-3,
                    what=f"the gradient with respect to {name} {where}", dtype=leaf.dtype)
        except CheckFailed as err:
            raise CheckFailed(f"{err} The output is right, so {_CUT}") from None


# ----------------------------------------------------------------------------- warm-up

def _paper(s: int, d_model: int, warmup: int) -> float:
    """The paper's rate at its step s = 1, 2, ..."""
    return d_model ** -0.5 * min(s ** -0.5, s * warmup ** -1.5)


def _curve(n_steps: int, d_model: int, warmup: int) -> torch.Tensor:
    """The reference: the rate at the training loop's steps 0 .. n_steps - 1 (the paper's s = t + 1)."""
    return torch.tensor([_paper(t + 1, d_model, warmup) for t in range(n_steps)], dtype=torch.float64)


def _curve_mistakes(n: int, d: int, w: int) -> list[tuple[Callable[[int], float], str]]:
    """Rates at loop step t under the usual mistakes, each with what to say."""
    zero_based = ("loop step t is the paper's step s = t + 1 (the formula counts from 1, the loop "
                  "from 0)")
    return [
        (lambda t: d ** -0.5 * min(t ** -0.5, t * w ** -1.5) if t else 0.0,
         f"your rates are one step late and step 0 gives 0: {zero_based}."),
        (lambda t: _paper(max(t, 1), d, w),
         f"you clamped step 0 to 1, so steps 0 and 1 share a rate and every later step is one step "
         f"late: {zero_based}."),
        (lambda t: _paper(t + 2, d, w), f"your rates are one step early: {zero_based}, not t + 2."),
        (lambda t: d ** -0.5 * max((t + 1) ** -0.5, (t + 1) * w ** -1.5),
         "you took the max of the two branches; the rate is their min: the linear rise while "
         "warming up, then the 1/sqrt(s) decay."),
        (lambda t: d ** -0.5 * (t + 1) * w ** -1.5,
         "the rate keeps rising after the warm-up: take the min with the decay branch s ** -0.5."),
        (lambda t: d ** -0.5 * (t + 1) ** -0.5,
         "there is no warm-up (the rate only decays): take the min with the rising branch "
         "s * warmup_steps ** -1.5."),
        (lambda t: min((t + 1) ** -0.5, (t + 1) * w ** -1.5), "the factor d_model ** -0.5 is missing."),
        (lambda t: d ** 0.5 * min((t + 1) ** -0.5, (t + 1) * w ** -1.5),
         "you multiplied by sqrt(d_model); multiply by d_model ** -0.5 (divide by its square root)."),
        (lambda t: d ** -0.5 * min((t + 1) ** -0.5, (t + 1) * w ** -0.5),
         "the rising branch uses warmup_steps ** -0.5; it is warmup_steps ** -1.5, so that the two "
         "branches meet at s = warmup_steps."),
    ]


def _check_rates(task: str, lrs: object, n: int, d: int, w: int, where: str) -> None:
    ref = _curve(n, d, w)
    if isinstance(lrs, torch.Tensor) and lrs.shape == ref.shape and lrs.is_floating_point():
        if lrs.dtype != torch.float64:
            raise CheckFailed(f"{task}: {where} lrs is {_dtype(lrs)}; return float64, the precision of "
                              "Python floats (torch.tensor of a list of floats gives float32, and so do "
                              "powers of an integer torch.arange: pass dtype=torch.float64).")
        if torch.isfinite(lrs).all() and not close(lrs, ref, atol=0.0, rtol=1e-6):
            for rate, message in _curve_mistakes(n, d, w):
                wrong = torch.tensor([rate(t) for t in range(n)], dtype=torch.float64)
                if close(lrs, wrong, atol=0.0, rtol=1e-6):
                    raise CheckFailed(f"{task}: {where} {message}")
            ratio = lrs / ref
            if torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-6):
                raise CheckFailed(f"{task}: {where} your rates are the expected ones times "
                                  f"{ratio[0].item():.4g} at every step: the shape is right, the scale "
                                  "is not; the only constant factor is d_model ** -0.5.")
    if isinstance(lrs, torch.Tensor) and lrs.shape == (n - 1,):
        raise CheckFailed(f"{task}: {where} lrs has {n - 1} values; a run of n_steps = {n} steps has "
                          f"the loop steps 0 .. {n - 1}, {n} of them.")
    if isinstance(lrs, torch.Tensor) and lrs.shape == (n,) and not torch.isfinite(lrs).all():
        raise CheckFailed(f"{task}: {where} lrs holds infinity or NaN: the paper's s ** -0.5 at s = 0 "
                          "divides by zero; loop step t is the paper's step s = t + 1.")
    compare(task, lrs, ref, atol=0.0, rtol=1e-6, what=f"lrs {where}")


def _is_curve(value: object, n: int) -> bool:
    """A sequence of n rates (a tensor, an array or a list), whatever its dtype."""
    if isinstance(value, (str, bytes)):
        return False
    try:
        return len(value) == n  # a 0-d tensor or a number has no len()
    except TypeError:
        return False


def _as_step(task: str, got: object, where: str) -> int:
    """An integer loop step: a Python int or a NumPy integer (np.argmax gives one); not a bool or tensor."""
    if isinstance(got, torch.Tensor):
        raise CheckFailed(f"{task}: {where} peak_step should be an int, got a tensor: use .item() "
                          "or int(...).")
    if isinstance(got, bool) or not isinstance(got, numbers.Integral):
        raise CheckFailed(f"{task}: {where} peak_step should be an int (a loop step), got "
                          f"{type(got).__name__}.")
    return int(got)


def check_warmup_curve(fn: Callable) -> bool:
    """Check ``fn(n_steps, d_model, warmup_steps) -> (lrs, peak_step, peak_lr)`` for 0-based loop steps."""
    task = "warmup_curve"

    def body() -> str:
        settings = [(12000, 512, 4000), (1000, 64, 100), (5, 16, 7), (10, 16, 10), (6, 128, 1)]
        for n, d, w in settings:
            where = f"for n_steps={n}, d_model={d}, warmup_steps={w}"
            try:
                got = call(task, fn, n, d, w, forbid=("transformer_course.transformer:warmup_schedule",))
            except CheckFailed as failed:
                if isinstance(failed.__cause__, ZeroDivisionError):
                    raise CheckFailed(f"{failed} At loop step 0 the paper's s ** -0.5 divides by zero: "
                                      "loop step t is the paper's step s = t + 1.") from failed.__cause__
                raise
            lrs, peak_step, peak_lr = unpack(task, got, ("lrs", "peak_step", "peak_lr"))
            if not _is_curve(lrs, n) and any(_is_curve(v, n) for v in (peak_step, peak_lr)):
                raise CheckFailed(f"{task}: {where} the rates (n_steps = {n} values) are not your first "
                                  "result: return the three in the order the task asks, "
                                  "(lrs, peak_step, peak_lr).")
            _check_rates(task, lrs, n, d, w, where)
            step = _as_step(task, peak_step, where)
            value = as_float(task, peak_lr, "peak_lr")
            want = min(n, w) - 1  # the rate rises until the paper's s = w, the loop's t = w - 1
            want_lr = _paper(want + 1, d, w)
            if step != want:
                raise CheckFailed(f"{task}: {where} peak_step is {step}, expected {want}: "
                                  + _peak_hint(step, want, n, w))
            if not math.isclose(value, want_lr, rel_tol=1e-6):
                hint = ""
                if math.isclose(value, (d * w) ** -0.5, rel_tol=1e-6):
                    hint = (f" (d_model * warmup_steps) ** -0.5 is the peak of a run that reaches the end "
                            f"of the warm-up; this run stops at loop step {n - 1}: measure the largest "
                            "rate of lrs.")
                raise CheckFailed(f"{task}: {where} peak_lr is {value:.6g}, expected {want_lr:.6g}, the "
                                  f"rate at loop step {want}.{hint}")
        return (f"{len(settings)} runs (d_model, warm-up, length; runs that stop before the warm-up "
                "ends) at every step")

    return run_check(task, body)


def _peak_hint(step: int, want: int, n: int, w: int) -> str:
    if step == want + 1:
        return ("you gave the paper's step s; the loop counts from 0, so the peak at s = warmup_steps is "
                "loop step warmup_steps - 1.")
    if n < w and step == w - 1:
        return (f"this run has only {n} steps and stops before the warm-up ends: the rate is still "
                f"rising at its last step, {n - 1}. Measure the largest rate of lrs (argmax), do not "
                "assume the warm-up is over.")
    if n < w and step == w:
        return (f"this run has only {n} steps and stops before the warm-up ends; its largest rate is at "
                f"its last step, {n - 1}.")
    return "the loop step at which lrs is largest (lrs.argmax())."
