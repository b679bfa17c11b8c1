"""Notebook 07's checks accept right answers written in many ways and reject the usual mistakes, in words."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer_course import checks, transformer
from transformer_course.checks import CheckFailed
from transformer_course.transformer import warmup_schedule

# ----------------------------------------------------------------------------- LayerNorm


def _ln(x, w, b, eps=1e-5, *, dim=-1, unbiased=False, eps_outside=False, affine=True, bias=True):
    mean = x.mean(dim, keepdim=True)
    var = x.var(dim, keepdim=True, unbiased=unbiased)
    y = (x - mean) / (var.sqrt() + eps if eps_outside else torch.sqrt(var + eps))
    if not affine:
        return y
    return y * w + b if bias else y * w


def _ln_mean_of_squares(x, w, b, eps=1e-5):
    centred = x - x.mean(-1, keepdim=True)
    return centred / torch.sqrt((centred ** 2).mean(-1, keepdim=True) + eps) * w + b


def _ln_float64(x, w, b, eps=1e-5):
    x64 = x.double()
    y = (x64 - x64.mean(-1, keepdim=True)) / torch.sqrt(x64.var(-1, keepdim=True, unbiased=False) + eps)
    return (y * w.double() + b.double()).to(x.dtype)


def _ln_var_mean_rsqrt(x, w, b, eps=1e-5):
    var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
    return torch.addcmul(b, (x - mean) * torch.rsqrt(var + eps), w)


def _ln_moments(x, w, b, eps=1e-5):
    """E[x^2] - E[x]^2, with the means as einsum sums: right on paper, cancels in float32."""
    D = x.shape[-1]
    mean = torch.einsum("...d->...", x)[..., None] / D
    var = torch.einsum("...d,...d->...", x, x)[..., None] / D - mean ** 2
    return (x - mean) / (var + eps).sqrt() * w + b


def _ln_moments_float64(x, w, b, eps=1e-5):
    """E[x^2] - E[x]^2 in float64 (about 16 digits: enough at 1000), cast back."""
    return _ln_moments(x.double(), w.double(), b.double(), eps).to(x.dtype)


def _ln_two_passes_by_hand(x, w, b, eps=1e-5):
    """Sums in Python loops over the features (float32 sums, each rounded): mean, then squares."""
    D = x.shape[-1]
    total = sum(x[..., j] for j in range(D))
    centred = x - (total / D)[..., None]
    var = sum(centred[..., j] * centred[..., j] for j in range(D)) / D
    return centred / torch.sqrt(var[..., None] + eps) * w + b


def _ln_rows_in_a_loop(x, w, b, eps=1e-5):
    """One vector at a time, over the rows of x.reshape(-1, D); reshape back."""
    rows = x.reshape(-1, x.shape[-1])
    out = []
    for row in rows:
        mu = row.sum() / len(row)
        var = ((row - mu) ** 2).sum() / len(row)
        out.append((row - mu) / torch.sqrt(var + eps) * w + b)
    return torch.stack(out).view(x.shape)


def _ln_rows_into_empty(x, w, b, eps=1e-5):
    """Each row written into torch.empty_like (in place, but on a new tensor: autograd follows it)."""
    rows = x.reshape(-1, x.shape[-1])
    out = torch.empty_like(rows)
    for r in range(rows.shape[0]):
        c = rows[r] - rows[r].mean()
        out[r] = c / torch.sqrt(torch.einsum("d,d->", c, c) / len(c) + eps) * w + b
    return out.reshape(x.shape)


def _ln_stats_item(x, w, b, eps=1e-5):
    """Right values (first review: a loop and math.sqrt); the variance leaves autograd by .item()."""
    rows = x.reshape(-1, x.shape[-1])
    out = []
    for row in rows:
        c = row - row.mean()
        out.append(c / math.sqrt((c * c).mean().item() + eps) * w + b)
    return torch.stack(out).view(x.shape)


def _ln_stats_no_grad(x, w, b, eps=1e-5):
    """Right values (second review), but "the statistics are constants": no gradient through them."""
    with torch.no_grad():
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def _ln_mean_detached(x, w, b, eps=1e-5):
    centred = x - x.mean(-1, keepdim=True).detach()
    var = x.var(-1, keepdim=True, unbiased=False)
    return centred / torch.sqrt(var + eps) * w + b


def _ln_std_squared(x, w, b, eps=1e-5):
    """Right values, but sqrt(var) first: at variance 0 its derivative is infinite, the gradient NaN."""
    centred = x - x.mean(-1, keepdim=True)
    std = centred.pow(2).mean(-1, keepdim=True).sqrt()
    return centred / torch.sqrt(std ** 2 + eps) * w + b


LN_RIGHT = {
    "var(unbiased=False)": _ln,
    "mean of squares": _ln_mean_of_squares,
    "float64 inside, cast back": _ln_float64,
    "var_mean, rsqrt, addcmul": _ln_var_mean_rsqrt,
    "E[x^2] - E[x]^2 in float64, cast back": _ln_moments_float64,
    "mean then squares, sums in Python loops": _ln_two_passes_by_hand,
    "rows in a loop, reshape and view": _ln_rows_in_a_loop,
    "rows written into empty_like": _ln_rows_into_empty,
}


def _ln_in_place(x, w, b, eps=1e-5):
    mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
    x.sub_(mean).div_(torch.sqrt(var + eps))
    return x * w + b


def _ln_minus_equals(x, w, b, eps=1e-5):
    var = x.var(-1, keepdim=True, unbiased=False)
    x -= x.mean(-1, keepdim=True)
    return x / torch.sqrt(var + eps) * w + b


LN_WRONG = {
    "unbiased variance": (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, unbiased=True), "unbiased variance"),
    "eps outside the sqrt": (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, eps_outside=True),
                             "eps is added to the standard deviation"),
    "no weight or bias": (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, affine=False),
                          "weight and bias are not applied"),
    "no bias": (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, bias=False), "the bias is missing"),
    "no weight": (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, affine=False) + b, "the weight is missing"),
    "bias before the weight": (lambda x, w, b, eps=1e-5: (_ln(x, w, b, eps, affine=False) + b) * w,
                               "added the bias before scaling"),
    "over the first axis": (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, dim=0), "normalised over axis 0"),
    "one mean for the whole tensor": (lambda x, w, b, eps=1e-5: (x - x.mean()) / torch.sqrt(
        x.var(unbiased=False) + eps) * w + b, "one mean and variance over the whole tensor"),
    "forgot eps": (lambda x, w, b, eps=1e-5: (x - x.mean(-1, keepdim=True)) / x.std(
        -1, keepdim=True, unbiased=False) * w + b, "without eps you divide 0 by 0"),
    "eps ignored": (lambda x, w, b, eps=1e-5: _ln(x, w, b, 1e-5), "not eps = 0.5: use the `eps`"),
    "without keepdim": (lambda x, w, b, eps=1e-5: (x - x.mean(-1)) * w + b,
                        "your function raised RuntimeError"),
    "returns a list": (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps).tolist(), "should be a torch.Tensor"),
    "float32 for a float64 x": (lambda x, w, b, eps=1e-5: _ln(x.float(), w.float(), b.float(), eps),
                                "is float32, expected float64"),
    "F.layer_norm": (lambda x, w, b, eps=1e-5: F.layer_norm(x, x.shape[-1:], w, b, eps),
                     r"called `torch.nn.functional.layer_norm`.*by hand"),
    "nn.LayerNorm": (lambda x, w, b, eps=1e-5: _module_layer_norm(x, w, b, eps),
                     r"used `torch.nn.LayerNorm`.*by hand"),
    "E[x^2] - E[x]^2 in float32": (_ln_moments, r"features near 1000: .* the same vectors moved near 0 .*"
                                                r"come out right.*E\[x\^2\] - E\[x\]\^2.*cancellation.*"
                                                r"mean of \(x - mean\)\^2"),
    "E[x^2] - E[x]^2, clamped at 0": (lambda x, w, b, eps=1e-5: _ln_clamped_moments(x, w, b, eps),
                                       "cancellation"),
    "torch.layer_norm": (lambda x, w, b, eps=1e-5: torch.layer_norm(x, x.shape[-1:], w, b, eps),
                         r"called `torch.layer_norm`"),
    "statistics under no_grad": (_ln_stats_no_grad, r"result is right, but its gradient with respect to x is "
                                                    r"not: the mean and the variance reach autograd as a "
                                                    r"constant \(computed under torch.no_grad\(\)"),
    "variance through .item() and math.sqrt": (_ln_stats_item, "the variance reaches autograd as a constant"),
    "mean detached": (_ln_mean_detached, "the mean reaches autograd as a constant"),
    "the standard deviation squared back": (
        _ln_std_squared, r"gradient with respect to x holds NaN or infinity on the row whose features"),
    "result detached": (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps).detach(),
                        "your result is right, but no gradient reaches it"),
    "weight detached": (lambda x, w, b, eps=1e-5: _ln(x, w.detach(), b, eps),
                        "no gradient reaches weight"),
    "sub_ on the input": (_ln_in_place, "changed its input `x` in place"),
    "-= on the input": (_ln_minus_equals, "changed its input `x` in place"),
}


def _ln_clamped_moments(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x * x).mean(-1, keepdim=True) - mean * mean).clamp(min=0)
    return (x - mean) * torch.rsqrt(var + eps) * w + b


def _module_layer_norm(x, w, b, eps):
    ln = nn.LayerNorm(x.shape[-1], eps=eps).to(x.dtype)
    with torch.no_grad():
        ln.weight.copy_(w)
        ln.bias.copy_(b)
    return ln(x).detach()


@pytest.mark.parametrize("name", LN_RIGHT)
def test_layer_norm_check_accepts_right_answers(name, capsys):
    assert checks.check_layer_norm(LN_RIGHT[name])
    assert "[x] layer_norm" in capsys.readouterr().out


@pytest.mark.parametrize("name", LN_WRONG)
def test_layer_norm_check_rejects_mistakes(name):
    fn, message = LN_WRONG[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_layer_norm(fn)


def test_layer_norm_is_back_after_the_check():
    with pytest.raises(CheckFailed):
        checks.check_layer_norm(LN_WRONG["F.layer_norm"][0])
    with pytest.raises(CheckFailed):
        checks.check_layer_norm(LN_WRONG["nn.LayerNorm"][0])
    x = torch.randn(2, 4)
    assert torch.allclose(F.layer_norm(x, (4,)), nn.LayerNorm(4)(x), atol=1e-6)


# ----------------------------------------------------------------------------- pre-LN layer


def _pre_ln(x, attn, ff, n1, n2):
    x = x + attn(n1(x))
    return x + ff(n2(x))


def _pre_ln_plus_equals_on_new(x, attn, ff, n1, n2):
    """Right values, but h += changes the tensor norm2 saved: the backward pass fails (a wrong answer)."""
    h = x + attn(n1(x))  # a new tensor: += on it leaves x alone
    h += ff(n2(h))
    return h


def _pre_ln_clone_then_add(x, attn, ff, n1, n2):
    h = x.clone()
    h = h + attn(n1(h))
    return h + ff(n2(h))


def _pre_ln_skips_detached(x, attn, ff, n1, n2):
    h = x.detach() + attn(n1(x))  # the skip path carries no gradient
    return h.detach() + ff(n2(h))


def _pre_ln_ff_no_grad(x, attn, ff, n1, n2):
    h = x + attn(n1(x))
    with torch.no_grad():
        update = ff(n2(h))
    return h + update


def _pre_ln_loop(x, attn, ff, n1, n2):
    for norm, sublayer in ((n1, attn), (n2, ff)):
        x = torch.add(x, sublayer(norm(x)))
    return x


def _pre_ln_one_sequence_at_a_time(x, attn, ff, n1, n2):
    return torch.cat([_pre_ln(x[i: i + 1], attn, ff, n1, n2) for i in range(x.shape[0])], dim=0)


PRE_LN_RIGHT = {
    "two lines": _pre_ln,
    "a clone, then h = h + ...": _pre_ln_clone_then_add,
    "a loop over the sublayers, torch.add": _pre_ln_loop,
    "one sequence at a time": _pre_ln_one_sequence_at_a_time,
}


def _first_skip_detached(x, attn, ff, n1, n2):
    h = x.detach() + attn(n1(x))
    return h + ff(n2(h))


def _post(x, attn, ff, n1, n2):
    x = n1(x + attn(x))
    return n2(x + ff(x))


def _plus_equals_on_input(x, attn, ff, n1, n2):
    x += attn(n1(x))
    return x + ff(n2(x))


def _add_on_input(x, attn, ff, n1, n2):
    x.add_(attn(n1(x)))
    return x.add_(ff(n2(x)))


def _assign_into_input(x, attn, ff, n1, n2):
    x[:] = x + attn(n1(x))
    return x + ff(n2(x))


PRE_LN_WRONG = {
    "post-LN": (_post, "normalised after the residual add.*post-LN"),
    "no residual": (lambda x, attn, ff, n1, n2: ff(n2(attn(n1(x)))), "residual connections are missing"),
    "normalised skip": (lambda x, attn, ff, n1, n2: (lambda y: n2(y) + ff(n2(y)))(n1(x) + attn(n1(x))),
                        "skip path carries the normalised x"),
    "swapped norms": (lambda x, attn, ff, n1, n2: _pre_ln(x, attn, ff, n2, n1),
                      "norm1 and norm2 are swapped"),
    "norm1 twice": (lambda x, attn, ff, n1, n2: _pre_ln(x, attn, ff, n1, n1), "used norm1 before both"),
    "norm2 twice": (lambda x, attn, ff, n1, n2: _pre_ln(x, attn, ff, n2, n2), "used norm2 before both"),
    "final norm": (lambda x, attn, ff, n1, n2: n2(_pre_ln(x, attn, ff, n1, n2)),
                   "normalised the layer's output"),
    "no attention residual": (lambda x, attn, ff, n1, n2: (lambda y: y + ff(n2(y)))(attn(n1(x))),
                              "attention sublayer has no residual"),
    "no ff residual": (lambda x, attn, ff, n1, n2: ff(n2(x + attn(n1(x)))),
                       "feed-forward sublayer has no residual"),
    "ff first": (lambda x, attn, ff, n1, n2: (lambda y: y + attn(n2(y)))(x + ff(n1(x))),
                 "sublayers are in the wrong order"),
    "parallel sublayers": (lambda x, attn, ff, n1, n2: x + attn(n1(x)) + ff(n2(x)),
                           "the feed-forward network reads the layer's input x"),
    "no norms": (lambda x, attn, ff, n1, n2: _pre_ln(x, attn, ff, nn.Identity(), nn.Identity()),
                 "LayerNorms are not applied"),
    "attention only": (lambda x, attn, ff, n1, n2: x + attn(n1(x)), "feed-forward sublayer is missing"),
    "a small error": (lambda x, attn, ff, n1, n2: _pre_ln(x, attn, ff, n1, n2) + 1e-3,
                      "differs from the reference"),
    "wrong shape": (lambda x, attn, ff, n1, n2: _pre_ln(x, attn, ff, n1, n2).mean(1), "wrong shape"),
    "float64 result": (lambda x, attn, ff, n1, n2: _pre_ln(x, attn, ff, n1, n2).double(),
                       "is float64, expected float32"),
    "crashes": (lambda x, attn, ff, n1, n2: attn(x, x, x), "your function raised TypeError"),
    "+= on a new tensor": (_pre_ln_plus_equals_on_new,
                           r"your result is right, but backpropagating through it fails .*"
                           r"`h = h \+ \.\.\.`, not `h \+= \.\.\.`"),
    "both skip paths detached": (_pre_ln_skips_detached,
                                 r"output is right, but its gradient with respect to x is not: both skip "
                                 r"paths of the residual stream are cut"),
    "first skip path detached": (_first_skip_detached, "the first skip path of the residual stream is cut"),
    "feed-forward under no_grad": (_pre_ln_ff_no_grad, r"no gradient reaches ff\.[\w.]*weight"),
    "+= on the input": (_plus_equals_on_input, "changed its input `x` in place"),
    "add_ on the input": (_add_on_input, "changed its input `x` in place"),
    "x[:] = ...": (_assign_into_input, "changed its input `x` in place"),
}


@pytest.mark.parametrize("name", PRE_LN_RIGHT)
def test_pre_ln_check_accepts_right_answers(name, capsys):
    assert checks.check_pre_ln_layer(PRE_LN_RIGHT[name])
    assert "[x] pre_ln_layer" in capsys.readouterr().out


@pytest.mark.parametrize("name", PRE_LN_WRONG)
def test_pre_ln_check_rejects_mistakes(name):
    fn, message = PRE_LN_WRONG[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_pre_ln_layer(fn)


def test_pre_ln_check_catches_changed_weights():
    def scales_norm1(x, attn, ff, n1, n2):
        with torch.no_grad():
            n1.weight.mul_(1.0)  # a no-op write: allowed, nothing changes
            n1.bias.add_(0.1)  # a real change to a parameter
        return _pre_ln(x, attn, ff, n1, n2)

    with pytest.raises(CheckFailed, match=r"changed its input `n1.bias` in place"):
        checks.check_pre_ln_layer(scales_norm1)


def test_pre_ln_check_leaves_the_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    checks.check_pre_ln_layer(_pre_ln)
    assert torch.equal(torch.rand(3), expected)


# ----------------------------------------------------------------------------- warm-up curve


def _curve(n, d, w):
    """The right answer, vectorised: the loop's step t is the paper's s = t + 1."""
    s = torch.arange(1, n + 1, dtype=torch.float64)
    lrs = d ** -0.5 * torch.minimum(s ** -0.5, s * w ** -1.5)
    peak = int(lrs.argmax())
    return lrs, peak, lrs[peak].item()


def _curve_loop(n, d, w):
    """Python floats in a loop, the peak from the closed form min(n, w) - 1, a list."""
    rates = []
    for t in range(n):
        s = t + 1
        rates.append(d ** -0.5 * min(s ** -0.5, s * w ** -1.5))
    peak = min(n, w) - 1
    return [torch.tensor(rates, dtype=torch.float64), peak, rates[peak]]


def _curve_where(n, d, w):
    """torch.where on the two branches, rsqrt, the peak found with max(range, key=...)."""
    s = torch.arange(n, dtype=torch.float64) + 1
    lrs = torch.where(s < w, s * w ** -1.5, s.rsqrt()) / math.sqrt(d)
    peak = max(range(n), key=lambda t: lrs[t].item())
    return lrs, peak, lrs.max().item()


def _curve_division(n, d, w):
    s = torch.arange(1, n + 1).double()
    lrs = torch.minimum(s.rsqrt(), s / w ** 1.5) / d ** 0.5
    return lrs, int(torch.argmax(lrs).item()), float(lrs.max())


# Open case from the second review, decided: peak_step may be any integer that is not a bool (a Python
# int or a NumPy integer such as np.argmax's np.int64). The task asks for "the loop step", numpy values
# are accepted elsewhere (peak_lr as np.float64), and nothing in the task needs a Python int; the text
# says so. A float, a bool or a tensor is still refused, each with its own message.
def _curve_numpy(n, d, w):
    """numpy throughout; peak_step is np.argmax's np.int64 (accepted: any integer that is not a bool)."""
    s = np.arange(1, n + 1, dtype=np.float64)
    lrs = d ** -0.5 * np.minimum(s ** -0.5, s * w ** -1.5)
    i = np.argmax(lrs)
    return torch.from_numpy(lrs), i, float(lrs[i])


WARMUP_RIGHT = {
    "vectorised, argmax": _curve,
    "numpy, np.int64 peak step": _curve_numpy,
    "a loop, closed-form peak, a list": _curve_loop,
    "torch.where, rsqrt, max over range": _curve_where,
    "s / w ** 1.5, float(max)": _curve_division,
}


def _with_rate(rate):
    """A learner's curve from a (possibly wrong) rate of the loop step t; the peak measured from it."""
    def fn(n, d, w):
        lrs = torch.tensor([rate(t, d, w) for t in range(n)], dtype=torch.float64)
        peak = int(lrs.argmax())
        return lrs, peak, lrs[peak].item()
    return fn


def _paper(s, d, w):
    return d ** -0.5 * min(s ** -0.5, s * w ** -1.5)


def _one_step_late_tensor(n, d, w):
    s = torch.arange(0, n, dtype=torch.float64)  # the paper's formula on the loop's 0-based steps
    lrs = d ** -0.5 * torch.minimum(s ** -0.5, s * w ** -1.5)
    return lrs, int(lrs.argmax()), lrs.max().item()


def _max_on_zero_based(n, d, w):
    s = torch.arange(0, n, dtype=torch.float64)
    lrs = d ** -0.5 * torch.maximum(s ** -0.5, s * w ** -1.5)
    return lrs, 0, 0.0


def _integer_arange(n, d, w):
    s = torch.arange(1, n + 1)  # int64: its powers come out float32
    lrs = d ** -0.5 * torch.minimum(s ** -0.5, s * w ** -1.5)
    return lrs, int(lrs.argmax()), lrs.max().item()


def _replace(index, value):
    """The right answer with one of its three results replaced."""
    def fn(n, d, w):
        got = list(_curve(n, d, w))
        got[index] = value(n, d, w, got)
        return tuple(got)
    return fn


WARMUP_WRONG = {
    "the paper's formula on step 0": (_one_step_late_tensor, "one step late and step 0 gives 0"),
    "0 ** -0.5 in Python": (_with_rate(lambda t, d, w: _paper(t, d, w)),
                            "raised ZeroDivisionError.*loop step t is the paper's step s = t \\+ 1"),
    "step 0 clamped to 1": (_with_rate(lambda t, d, w: _paper(max(t, 1), d, w)), "clamped step 0 to 1"),
    "t + 2": (_with_rate(lambda t, d, w: _paper(t + 2, d, w)), "one step early"),
    "max instead of min": (_with_rate(lambda t, d, w: d ** -0.5 * max((t + 1) ** -0.5, (t + 1) * w ** -1.5)),
                           "max of the two branches"),
    "max and 0-based": (_max_on_zero_based, "holds infinity or NaN"),
    "keeps rising": (_with_rate(lambda t, d, w: d ** -0.5 * (t + 1) * w ** -1.5),
                     "keeps rising after the warm-up"),
    "no warm-up": (_with_rate(lambda t, d, w: d ** -0.5 * (t + 1) ** -0.5), "no warm-up"),
    "no d_model factor": (_with_rate(lambda t, d, w: min((t + 1) ** -0.5, (t + 1) * w ** -1.5)),
                          r"factor d_model \*\* -0.5 is missing"),
    "times sqrt(d_model)": (_with_rate(lambda t, d, w: d ** 0.5 * min((t + 1) ** -0.5, (t + 1) * w ** -1.5)),
                            "multiplied by sqrt"),
    "warmup ** -0.5": (_with_rate(lambda t, d, w: d ** -0.5 * min((t + 1) ** -0.5, (t + 1) * w ** -0.5)),
                       r"warmup_steps \*\* -0.5"),
    "twice the rate": (_with_rate(lambda t, d, w: 2 * _paper(t + 1, d, w)), r"the expected ones times 2"),
    "float32 rates": (lambda n, d, w: (torch.tensor(_curve(n, d, w)[0].tolist()), *_curve(n, d, w)[1:]),
                      r"lrs is float32; return float64.*dtype=torch.float64"),
    "powers of an integer arange": (_integer_arange, r"lrs is float32; .*powers of an integer torch.arange"),
    "a list of rates": (_replace(0, lambda n, d, w, got: got[0].tolist()), "lrs .* should be a torch.Tensor"),
    "n_steps - 1 rates": (lambda n, d, w: (_curve(n, d, w)[0][1:], *_curve(n, d, w)[1:]),
                          r"lrs has 11999 values; a run of n_steps = 12000 steps"),
    "the paper's step as the peak": (_replace(1, lambda n, d, w, got: got[1] + 1),
                                     r"peak_step is 4000, expected 3999: you gave the paper's step s"),
    "peak assumed after the warm-up": (_replace(1, lambda n, d, w, got: w - 1),
                                       r"peak_step is 6, expected 4: this run has only 5 steps"),
    "peak_lr assumed after the warm-up": (_replace(2, lambda n, d, w, got: (d * w) ** -0.5),
                                          r"peak_lr is .*the rate at loop step 4. "
                                          r"\(d_model \* warmup_steps\)"),
    "peak_step as a tensor": (_replace(1, lambda n, d, w, got: torch.tensor(got[1])),
                              r"peak_step should be an int, got a tensor: use .item\(\)"),
    "peak_step as a float": (_replace(1, lambda n, d, w, got: float(got[1])),
                             r"peak_step should be an int \(a loop step\), got float"),
    "peak_step as a bool": (_replace(1, lambda n, d, w, got: True), "peak_step should be an int .*got bool"),
    "peak_lr as a tensor": (_replace(2, lambda n, d, w, got: torch.tensor(got[2])),
                            r"peak_lr should be a Python float, got Tensor \(a tensor: use .item\(\)\)"),
    "results in another order": (lambda n, d, w: (*_curve(n, d, w)[1:], _curve(n, d, w)[0]),
                                 r"the rates \(n_steps = 12000 values\) are not your first result: "
                                 r".*\(lrs, peak_step, peak_lr\)"),
    "rates as the last result, a list": (lambda n, d, w: (_curve(n, d, w)[2], _curve(n, d, w)[1],
                                                         _curve(n, d, w)[0].tolist()),
                                         "are not your first result"),
    "two results": (lambda n, d, w: _curve(n, d, w)[:2],
                    r"return 3 values \(lrs, peak_step, peak_lr\); got 2"),
    "calls the package": (_with_rate(lambda t, d, w: transformer.warmup_schedule(d, w)(t)),
                          "called `transformer_course.transformer.warmup_schedule`"),
}


@pytest.mark.parametrize("name", WARMUP_RIGHT)
def test_warmup_check_accepts_right_answers(name, capsys):
    assert checks.check_warmup_curve(WARMUP_RIGHT[name])
    assert "[x] warmup_curve" in capsys.readouterr().out


@pytest.mark.parametrize("name", WARMUP_WRONG)
def test_warmup_check_rejects_mistakes(name):
    fn, message = WARMUP_WRONG[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_warmup_curve(fn)


def test_the_reference_is_the_package_schedule():
    lrs, peak, peak_lr = _curve(50, 64, 20)
    package = torch.tensor([warmup_schedule(64, 20)(t) for t in range(50)], dtype=torch.float64)
    assert torch.allclose(lrs, package)
    assert (peak, peak_lr) == (19, pytest.approx((64 * 20) ** -0.5))
