"""Checks for solutions/07_transformer_block: LayerNorm, the pre-LN encoder layer, warm-up.

Shapes: B batch, S source length, D d_model.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..transformer import EncoderLayer
from ._core import CheckFailed, call, compare, fmt_shape, run_check

__all__ = ["check_layer_norm", "check_pre_ln_layer", "check_warmup_lr"]


def _close(a: object, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return (isinstance(a, torch.Tensor) and a.shape == b.shape
            and bool(torch.allclose(a.detach().to(b.dtype), b, atol=atol, rtol=1e-4)))


# ----------------------------------------------------------------------------- LayerNorm

def _ln(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float, *, dim: int = -1,
        unbiased: bool = False, eps_outside: bool = False, affine: bool = True) -> torch.Tensor:
    """LayerNorm, right by default; each option is one mistake the check recognises."""
    mean = x.mean(dim, keepdim=True)
    var = x.var(dim, keepdim=True, unbiased=unbiased)
    y = (x - mean) / (var.sqrt() + eps if eps_outside else torch.sqrt(var + eps))
    return y * weight + bias if affine else y


def check_layer_norm(fn: Callable) -> bool:
    """Check ``fn(x, weight, bias, eps=1e-5)``: LayerNorm over the last axis, like ``F.layer_norm``."""
    task = "layer_norm"

    def body() -> str:
        g = torch.Generator().manual_seed(707)
        shapes = [(2, 5, 8), (3, 16), (1, 4, 2, 6)]
        for shape in shapes:
            D = shape[-1]
            x = 2 + 3 * torch.randn(shape, generator=g)
            w = 1 + 0.5 * torch.randn(D, generator=g)
            b = 0.5 * torch.randn(D, generator=g)
            eps = 1e-5 if D != 6 else 0.5  # a large eps shows where it is added
            got = call(task, fn, x.clone(), w.clone(), b.clone(), eps)
            ref = _ln(x, w, b, eps)
            where = f"for x {fmt_shape(shape)}"
            if not isinstance(got, torch.Tensor) or got.shape != ref.shape:
                compare(task, got, ref, what=f"the result {where}")
            if _close(got, ref):
                continue
            _diagnose_layer_norm(task, got, x, w, b, eps, where)
            compare(task, got, ref, what=f"the result {where}")
        return f"{len(shapes)} random inputs {', '.join(map(fmt_shape, shapes))}, random weight and bias"

    return run_check(task, body)


def _diagnose_layer_norm(task: str, got: torch.Tensor, x: torch.Tensor, w: torch.Tensor,
                         b: torch.Tensor, eps: float, where: str) -> None:
    if _close(got, _ln(x, w, b, eps, unbiased=True)):
        raise CheckFailed(f"{task}: {where} you used the unbiased variance (dividing by D - 1); "
                          "LayerNorm divides by D: x.var(-1, unbiased=False), or mean of squares.")
    if _close(got, _ln(x, w, b, eps, eps_outside=True)):
        raise CheckFailed(f"{task}: {where} eps is added to the standard deviation; add it to the "
                          "variance, inside the square root: sqrt(var + eps).")
    if _close(got, _ln(x, w, b, eps, affine=False)):
        raise CheckFailed(f"{task}: {where} the weight and bias are not applied: multiply the "
                          "normalised x by weight, then add bias.")
    if _close(got, (_ln(x, w, b, eps) - b)):
        raise CheckFailed(f"{task}: {where} the bias is missing: add it after scaling by weight.")
    if x.dim() >= 2:
        for dim in range(x.dim() - 1):
            if x.shape[dim] > 1 and _close(got, _ln(x, w, b, eps, dim=dim)):
                raise CheckFailed(f"{task}: {where} you normalised over axis {dim}; LayerNorm "
                                  "normalises each vector over its features, the last axis (dim=-1).")
    if x.dim() >= 2 and _close(got, _normalise_all(x, eps) * w + b):
        raise CheckFailed(f"{task}: {where} you took one mean and variance over the whole tensor; "
                          "each vector gets its own, over the last axis (keepdim=True).")


def _normalise_all(x: torch.Tensor, eps: float) -> torch.Tensor:
    return (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + eps)


# ----------------------------------------------------------------------------- pre-LN layer

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
        "final norm": n2(a + ff(n2(a))),
        "no attention residual": (lambda y: y + ff(n2(y)))(attn(n1(x))),
        "no ff residual": ff(n2(a)),
        "ff first": (lambda y: y + attn(n2(y)))(x + ff(n1(x))),
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
    "final norm": "you normalised the layer's output: in pre-LN the layer ends with the residual "
                  "add, x + ff(norm2(x)); the stack adds one final LayerNorm, not each layer.",
    "no attention residual": "the attention sublayer has no residual: x = x + attn(norm1(x)).",
    "no ff residual": "the feed-forward sublayer has no residual: return x + ff(norm2(x)).",
    "ff first": "the sublayers are in the wrong order: attention first, then the feed-forward "
                "network.",
}


def check_pre_ln_layer(fn: Callable) -> bool:
    """Check ``fn(x, attn, ff, norm1, norm2) -> (B, S, D)``: the pre-LN encoder layer's forward."""
    task = "pre_ln_layer"

    def body() -> str:
        g = torch.Generator().manual_seed(717)
        cases = [(2, 5, 16, 4), (3, 7, 8, 2), (1, 3, 12, 3)]  # (B, S, D, H)
        for B, S, D, H in cases:
            with torch.random.fork_rng():
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
                layer = EncoderLayer(D, H, 2 * D, dropout=0.0, norm_first=True).eval()
            with torch.no_grad():  # random norms: a swapped or missing norm must show
                for norm in (layer.norm1, layer.norm2):
                    norm.weight.copy_(1 + 0.4 * torch.randn(D, generator=g))
                    norm.bias.copy_(0.4 * torch.randn(D, generator=g))
            x = torch.randn(B, S, D, generator=g)

            def attn(h, layer=layer):
                return layer.self_attn(h, h, h)[0]

            with torch.no_grad():
                ref = layer(x)
                got = call(task, fn, x.clone(), attn, layer.ff, layer.norm1, layer.norm2)
                where = f"for x {fmt_shape(x.shape)}"
                if isinstance(got, torch.Tensor) and got.shape == ref.shape and not _close(got, ref):
                    for name, out in _variants(x, attn, layer.ff, layer.norm1, layer.norm2).items():
                        if _close(got, out):
                            raise CheckFailed(f"{task}: {where} {MESSAGES[name]}")
            compare(task, got, ref, what=f"the layer's output {where}")
        return f"{len(cases)} random layers (random LayerNorm weights) and inputs"

    return run_check(task, body)


# ----------------------------------------------------------------------------- warm-up

def _noam(step: int, d_model: int, warmup: int) -> float:
    return d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


def check_warmup_lr(fn: Callable) -> bool:
    """Check ``fn(step, d_model, warmup_steps)``: the paper's learning rate at step 1, 2, ..."""
    task = "warmup_lr"

    def body() -> str:
        settings = [(512, 4000), (64, 100), (16, 7)]
        for d_model, warmup in settings:
            steps = sorted({1, 2, warmup // 2, warmup - 1, warmup, warmup + 1, 2 * warmup, 10 * warmup})
            steps = [s for s in steps if s >= 1]
            got = [call(task, fn, s, d_model, warmup) for s in steps]
            ref = [_noam(s, d_model, warmup) for s in steps]
            where = f"for d_model={d_model}, warmup_steps={warmup}"
            for s, v in zip(steps, got, strict=True):
                if isinstance(v, torch.Tensor) and v.numel() == 1:
                    v = v.item()
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    raise CheckFailed(f"{task}: return a number (a float), got {type(v).__name__} "
                                      f"at step {s}")
                if not math.isfinite(v):
                    raise CheckFailed(f"{task}: {where} step {s} gives {v}: is a power negative "
                                      "where it should not be, or did you divide by zero?")
            got = [float(v) for v in got]
            if all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(got, ref, strict=True)):
                continue
            _diagnose_warmup(task, fn, got, steps, d_model, warmup, where)
            s, a, b = next((s, a, b) for s, a, b in zip(steps, got, ref, strict=True)
                           if not math.isclose(a, b, rel_tol=1e-6))
            raise CheckFailed(f"{task}: {where} at step {s} got {a:.6g}, expected {b:.6g}: "
                              "d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5).")
        return f"{len(settings)} settings (d_model, warmup_steps) at steps from 1 to 10 x warm-up"

    return run_check(task, body)


def _diagnose_warmup(task: str, fn: Callable, got: list[float], steps: list[int], d_model: int,
                     warmup: int, where: str) -> None:
    def same(formula: Callable[[int], float]) -> bool:
        return all(math.isclose(a, formula(s), rel_tol=1e-6) for a, s in zip(got, steps, strict=True))

    if same(lambda s: _noam(s + 1, d_model, warmup)):
        raise CheckFailed(f"{task}: {where} your values are one step early (you used step + 1): "
                          "`step` already counts from 1, as in the paper.")
    if same(lambda s: _noam(s - 1, d_model, warmup) if s > 1 else float("nan")):
        raise CheckFailed(f"{task}: {where} your values are one step late (you used step - 1).")
    if same(lambda s: d_model ** -0.5 * max(s ** -0.5, s * warmup ** -1.5)):
        raise CheckFailed(f"{task}: {where} you took the max of the two branches; the rate is "
                          "their min: the linear rise while warming up, then the 1/sqrt(step) decay.")
    if same(lambda s: d_model ** -0.5 * s * warmup ** -1.5):
        raise CheckFailed(f"{task}: {where} the rate keeps rising after the warm-up: take the min "
                          "with the decay branch step ** -0.5.")
    if same(lambda s: d_model ** -0.5 * s ** -0.5):
        raise CheckFailed(f"{task}: {where} there is no warm-up (the rate only decays): take the min "
                          "with the rising branch step * warmup_steps ** -1.5.")
    if same(lambda s: min(s ** -0.5, s * warmup ** -1.5)):
        raise CheckFailed(f"{task}: {where} the factor d_model ** -0.5 is missing.")
    if same(lambda s: d_model ** 0.5 * min(s ** -0.5, s * warmup ** -1.5)):
        raise CheckFailed(f"{task}: {where} you multiplied by sqrt(d_model); multiply by "
                          "d_model ** -0.5 (divide by its square root).")
    if same(lambda s: d_model ** -0.5 * min(s ** -0.5, s * warmup ** -0.5)):
        raise CheckFailed(f"{task}: {where} the rising branch uses warmup_steps ** -0.5; it is "
                          "warmup_steps ** -1.5, so that the two branches meet at step = warmup_steps.")
    ratios = [a / _noam(s, d_model, warmup) for a, s in zip(got, steps, strict=True)]
    if all(math.isclose(r, ratios[0], rel_tol=1e-6) for r in ratios):
        raise CheckFailed(f"{task}: {where} your values are the expected ones times {ratios[0]:.4g}: "
                          "a missing or extra constant factor?")
