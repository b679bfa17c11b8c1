"""Notebook 07's checks accept the right answers and reject the mistakes learners make, in words."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from transformer_course import checks
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


LN_MISTAKES = {
    "unbiased variance": (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, unbiased=True),
                          "unbiased variance"),
    "eps outside the sqrt": (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, eps_outside=True),
                             "inside the square root"),
    "no weight or bias": (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, affine=False),
                          "weight and bias are not applied"),
    "no bias": (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, bias=False), "the bias is missing"),
    "over the first axis": (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps, dim=0), "normalised over axis 0"),
    "one mean for the whole tensor": (lambda x, w, b, eps=1e-5: (x - x.mean()) / torch.sqrt(
        x.var(unbiased=False) + eps) * w + b, "one mean and variance over the whole tensor"),
    "forgot eps": (lambda x, w, b, eps=1e-5: (x - x.mean(-1, keepdim=True)) / x.std(
        -1, keepdim=True, unbiased=False) * w + b, "differs from the reference"),
    "without keepdim": (lambda x, w, b, eps=1e-5: (x - x.mean(-1)) * w + b,
                        "your function raised|wrong shape"),
    "returns a list": (lambda x, w, b, eps=1e-5: _ln(x, w, b, eps).tolist(), "should be a torch.Tensor"),
}


def test_layer_norm_check_accepts_right_answers(capsys):
    assert checks.check_layer_norm(_ln)
    assert checks.check_layer_norm(lambda x, w, b, eps=1e-5: F.layer_norm(x, x.shape[-1:], w, b, eps))
    assert "[x] layer_norm" in capsys.readouterr().out


@pytest.mark.parametrize("name", LN_MISTAKES)
def test_layer_norm_check_rejects_mistakes(name):
    fn, message = LN_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_layer_norm(fn)


# ----------------------------------------------------------------------------- pre-LN layer


def _pre_ln(x, attn, ff, n1, n2):
    x = x + attn(n1(x))
    return x + ff(n2(x))


def _post(x, attn, ff, n1, n2):
    x = n1(x + attn(x))
    return n2(x + ff(x))


PRE_LN_MISTAKES = {
    "post-LN": (_post, "normalised after the residual add.*post-LN"),
    "no residual": (lambda x, attn, ff, n1, n2: ff(n2(attn(n1(x)))), "residual connections are missing"),
    "normalised skip": (lambda x, attn, ff, n1, n2: (lambda y: n2(y) + ff(n2(y)))(n1(x) + attn(n1(x))),
                        "skip path carries the normalised x"),
    "swapped norms": (lambda x, attn, ff, n1, n2: _pre_ln(x, attn, ff, n2, n1),
                      "norm1 and norm2 are swapped"),
    "norm1 twice": (lambda x, attn, ff, n1, n2: _pre_ln(x, attn, ff, n1, n1), "used norm1 before both"),
    "final norm": (lambda x, attn, ff, n1, n2: n2(_pre_ln(x, attn, ff, n1, n2)),
                   "normalised the layer's output"),
    "no attention residual": (lambda x, attn, ff, n1, n2: (lambda y: y + ff(n2(y)))(attn(n1(x))),
                              "attention sublayer has no residual"),
    "no ff residual": (lambda x, attn, ff, n1, n2: ff(n2(x + attn(n1(x)))),
                       "feed-forward sublayer has no residual"),
    "ff first": (lambda x, attn, ff, n1, n2: (lambda y: y + attn(n2(y)))(x + ff(n1(x))),
                 "sublayers are in the wrong order"),
    "attention only": (lambda x, attn, ff, n1, n2: x + attn(n1(x)), "differs from the reference"),
    "wrong shape": (lambda x, attn, ff, n1, n2: _pre_ln(x, attn, ff, n1, n2).mean(1), "wrong shape"),
    "crashes": (lambda x, attn, ff, n1, n2: attn(x, x, x), "your function raised TypeError"),
}


def test_pre_ln_check_accepts_the_right_answer(capsys):
    assert checks.check_pre_ln_layer(_pre_ln)
    assert "[x] pre_ln_layer" in capsys.readouterr().out


@pytest.mark.parametrize("name", PRE_LN_MISTAKES)
def test_pre_ln_check_rejects_mistakes(name):
    fn, message = PRE_LN_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_pre_ln_layer(fn)


def test_pre_ln_check_leaves_the_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    checks.check_pre_ln_layer(_pre_ln)
    assert torch.equal(torch.rand(3), expected)


# ----------------------------------------------------------------------------- warm-up


def _noam(step, d_model, warmup):
    return d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


WARMUP_MISTAKES = {
    "step + 1": (lambda s, d, w: _noam(s + 1, d, w), "one step early"),
    "step - 1": (lambda s, d, w: d ** -0.5 * min((s - 1) ** -0.5, (s - 1) * w ** -1.5) if s > 1 else 0.0,
                 "at step 1 got 0"),
    "max instead of min": (lambda s, d, w: d ** -0.5 * max(s ** -0.5, s * w ** -1.5),
                           "max of the two branches"),
    "no min, keeps rising": (lambda s, d, w: d ** -0.5 * s * w ** -1.5, "keeps rising after the warm-up"),
    "no warm-up": (lambda s, d, w: d ** -0.5 * s ** -0.5, "no warm-up"),
    "no d_model factor": (lambda s, d, w: min(s ** -0.5, s * w ** -1.5),
                          "factor d_model \\*\\* -0.5 is missing"),
    "times sqrt(d_model)": (lambda s, d, w: d ** 0.5 * min(s ** -0.5, s * w ** -1.5), "multiplied by sqrt"),
    "warmup ** -0.5": (lambda s, d, w: d ** -0.5 * min(s ** -0.5, s * w ** -0.5), "warmup_steps \\*\\* -0.5"),
    "constant factor": (lambda s, d, w: 2 * _noam(s, d, w), "times 2"),
    "returns a string": (lambda s, d, w: str(_noam(s, d, w)), "return a number"),
    "0 ** -0.5 style crash": (lambda s, d, w: d ** -0.5 * min((s - 1) ** -0.5, s * w ** -1.5),
                              "your function raised ZeroDivisionError"),
}


def test_warmup_check_accepts_right_answers():
    assert checks.check_warmup_lr(_noam)
    assert checks.check_warmup_lr(lambda s, d, w: warmup_schedule(d, w)(s - 1))  # the package, 0-based
    assert checks.check_warmup_lr(lambda s, d, w: torch.tensor(_noam(s, d, w), dtype=torch.float64))


@pytest.mark.parametrize("name", WARMUP_MISTAKES)
def test_warmup_check_rejects_mistakes(name):
    fn, message = WARMUP_MISTAKES[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_warmup_lr(fn)
