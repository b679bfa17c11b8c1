"""The checks framework, shown to reject the mistakes learners make (the warm-up exercise)."""

import math

import pytest
import torch
import torch.nn.functional as F

from transformer_course import checks
from transformer_course.checks import CheckFailed

# ----------------------------------------------------------------------------- task 1: softmax by hand


def good_softmax(x):
    e = (x - x.amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


def wrong_axis(x):
    e = (x - x.max(0, keepdim=True).values).exp()
    return e / e.sum(0, keepdim=True)


def no_max_subtraction(x):
    return x.exp() / x.exp().sum(-1, keepdim=True)


def global_max(x):  # one maximum for the whole tensor
    e = (x - x.max()).exp()
    return e / e.sum(-1, keepdim=True)


def min_shift(x):
    e = (x - x.amin(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


def mean_shift(x):
    e = (x - x.mean(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


def no_keepdim(x):
    e = (x - x.max(-1).values).exp()
    return e / e.sum(-1, keepdim=True)


def whole_tensor_sum(x):
    e = (x - x.max()).exp()
    return e / e.sum()


def off_by_one(x):  # an extra 1 in the denominator
    e = (x - x.max(-1, keepdim=True).values).exp()
    return e / (e.sum(-1, keepdim=True) + 1)


def squeezed(x):  # drops axes of size one
    return good_softmax(x).squeeze()


def log_probabilities(x):
    return x - x.logsumexp(-1, keepdim=True)


def returns_numpy(x):
    return good_softmax(x).numpy()


def crashes(x):
    return x @ torch.ones(3, 3)


def shifts_in_place(x):
    x.sub_(x.amax(-1, keepdim=True))
    e = x.exp()
    return e / e.sum(-1, keepdim=True)


def subtracts_in_place(x):
    x -= x.amax(-1, keepdim=True)
    return x.exp() / x.exp().sum(-1, keepdim=True)


def returns_float64(x):
    return good_softmax(x.double())


def always_float32(x):
    return good_softmax(x.float())


def not_done(x):
    raise NotImplementedError("softmax")


WRONG_SOFTMAX = {
    "wrong axis": (wrong_axis, "sum to 1 along axis 0 instead of axis 1: did you take the softmax over"),
    "no shift": (no_max_subtraction, r"near 1000 \(exp\(1000\) overflows.*subtract each row's maximum"),
    "one global max": (global_max, "one maximum for the whole tensor.*subtract each row's own maximum"),
    "row minimum": (min_shift, "spans -1000 to 1000.*not its minimum or its mean"),
    "row mean": (mean_shift, "spans -1000 to 1000.*not its minimum or its mean"),
    "no keepdim": (no_keepdim, "without keepdim=True"),
    "whole-tensor sum": (whole_tensor_sum, "sum over the whole tensor"),
    "extra 1": (off_by_one, r"should sum to 1, but they sum to between 0\.\d+ and 0\.\d+"),
    "squeezed": (squeezed, r"wrong shape: got \(3\), expected \(1, 3\)"),
    "log-probabilities": (log_probabilities, "returned log-probabilities"),
    "numpy": (returns_numpy, "should be a torch.Tensor, got ndarray"),
    "crash": (crashes, "your function raised RuntimeError"),
    "F.softmax": (lambda x: F.softmax(x, dim=-1), r"called `torch\.nn\.functional\.softmax`.*by hand"),
    "torch.softmax": (lambda x: torch.softmax(x, dim=-1), r"called `torch\.softmax`.*by hand"),
    "x.softmax": (lambda x: x.softmax(-1), r"called `torch\.Tensor\.softmax`.*by hand"),
    "log_softmax": (lambda x: F.log_softmax(x, -1).exp(), r"called `torch\.nn\.functional\.log_softmax`"),
    "special.log_softmax": (lambda x: torch.special.log_softmax(x, -1).exp(),
                            r"called `torch\.special\.log_softmax`.*by hand"),
    "softmin of -x": (lambda x: F.softmin(-x, -1), r"called `torch\.nn\.functional\.softmin`.*by hand"),
    "nn.Softmax": (lambda x: torch.nn.Softmax(dim=-1)(x),
                   r"called `torch\.nn\.functional\.softmax` \(directly, or through nn\.Softmax, "
                   "which calls it"),
    "sub_": (shifts_in_place, "changed its input `x` in place"),
    "-=": (subtracts_in_place, "changed its input `x` in place"),
    "float64 out": (returns_float64, "is float64, expected float32"),
    "always float32": (always_float32, "is float32, expected float64"),
}


@pytest.mark.parametrize("name", WRONG_SOFTMAX)
def test_check_softmax_rejects_each_typical_mistake(name):
    wrong, message = WRONG_SOFTMAX[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_softmax(wrong)


def softmax_by_rows(x):  # a loop over the rows of a 2-D view
    rows = []
    for row in x.reshape(-1, x.shape[-1]):
        e = torch.exp(row - torch.max(row))
        rows.append(e / torch.sum(e))
    return torch.stack(rows).reshape(x.shape)


def softmax_in_place_on_a_copy(x):
    e = x - x.max(dim=-1, keepdim=True).values  # a new tensor: changing it in place is fine
    e.exp_()
    e /= e.sum(dim=-1, keepdim=True)
    return e


RIGHT_SOFTMAX = {
    "amax, keepdim": good_softmax,
    "max().values[..., None]": lambda x: (lambda e: e / e.sum(-1)[..., None])(
        (x - x.max(-1).values[..., None]).exp()),
    "logsumexp": lambda x: (x - x.logsumexp(-1, keepdim=True)).exp(),
    "float64 inside, cast back": lambda x: good_softmax(x.double()).to(x.dtype),
    "loop over rows": softmax_by_rows,
    "in place on a copy": softmax_in_place_on_a_copy,
    "times the reciprocal": lambda x: (lambda e: e * e.sum(-1, keepdim=True).reciprocal())(
        torch.exp(x - x.amax(-1, keepdim=True))),
}


@pytest.mark.parametrize("name", RIGHT_SOFTMAX)
def test_check_softmax_accepts_right_answers_written_differently(name, capsys):
    assert checks.check_softmax(RIGHT_SOFTMAX[name])
    assert capsys.readouterr().out.startswith("[x] softmax: correct")


def test_softmax_shortcuts_work_again_after_the_check():
    x = torch.randn(2, 3)
    with pytest.raises(CheckFailed):
        checks.check_softmax(lambda t: torch.softmax(t, -1))
    assert torch.allclose(torch.softmax(x, -1), good_softmax(x))


def test_not_done_yet_is_reported_not_raised(capsys):
    result = checks.check_softmax(not_done)
    assert not result
    assert "[ ] softmax: not done yet" in capsys.readouterr().out


def test_under_nbgrader_a_missing_answer_fails(monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(CheckFailed, match="not done"):
        checks.check_softmax(not_done)


def test_checkfailed_is_an_assertion_error():
    assert issubclass(CheckFailed, AssertionError)


# ----------------------------------------------------------------------------- task 2: attention weights


def _log_weights(q, k, temperature):
    scores = q @ k.transpose(-2, -1) / temperature  # (B, T, S)
    return scores - scores.logsumexp(-1, keepdim=True)


def good_weights(q, k, temperature):
    log_w = _log_weights(q, k, temperature)
    w = log_w.exp()
    return w, -(w * log_w).sum(-1) / math.log(2)


def _with_entropy(entropy):
    """An answer whose weights are right and whose entropy is ``entropy(w)``."""
    def answer(q, k, temperature):
        w = _log_weights(q, k, temperature).exp()
        return w, entropy(w)
    return answer


def _with_scores(scores):
    """An answer that turns ``scores(q, k, temperature)`` into weights over the last axis, with entropy."""
    def answer(q, k, temperature):
        s = scores(q, k, temperature)
        w = (s - s.logsumexp(-1, keepdim=True)).exp()
        return w, -torch.special.xlogy(w, w).sum(-1) / math.log(2)
    return answer


def exp_of_special_log_softmax(q, k, temperature):
    log_w = torch.special.log_softmax(q @ k.transpose(-2, -1) / temperature, dim=-1)
    return log_w.exp(), -(log_w.exp() * log_w).sum(-1) / math.log(2)


def queries_axis(q, k, temperature):
    s = q @ k.transpose(-2, -1) / temperature
    w = (s - s.logsumexp(-2, keepdim=True)).exp()
    return w, -torch.special.xlogy(w, w).sum(-1) / math.log(2)


def divides_q_in_place(q, k, temperature):
    q /= temperature
    return good_weights(q, k, 1.0)


def entropy_first(q, k, temperature):
    w, h = good_weights(q, k, temperature)
    return h, w


def float64_weights(q, k, temperature):
    return good_weights(q.double(), k.double(), temperature)


def float32_buffers(q, k, temperature):  # preallocated torch.zeros: float32 whatever q's dtype
    B, T, _ = q.shape
    weights, entropy = torch.zeros(B, T, k.shape[1]), torch.zeros(B, T)
    for b in range(B):
        w = good_softmax(q[b] @ k[b].T / temperature)  # (T, S)
        weights[b] = w
        entropy[b] = -torch.special.xlogy(w, w).sum(-1) / math.log(2)
    return weights, entropy


def buffers_of_q_dtype(q, k, temperature):  # float32_buffers, right: the buffers take q's dtype
    B, T, _ = q.shape
    weights, entropy = q.new_zeros(B, T, k.shape[1]), torch.zeros(B, T, dtype=q.dtype)
    for b in range(B):
        w = good_softmax(q[b] @ k[b].T / temperature)  # (T, S)
        weights[b] = w
        entropy[b] = -torch.special.xlogy(w, w).sum(-1) / math.log(2)
    return weights, entropy


def one_global_max(q, k, temperature):  # a query far below the tensor's maximum underflows to 0 / 0
    s = q @ k.transpose(-2, -1) / temperature
    e = (s - s.max()).exp()
    w = e / e.sum(-1, keepdim=True)
    return w, -torch.special.xlogy(w, w).sum(-1) / math.log(2)


WRONG_WEIGHTS = {
    "no temperature": (_with_scores(lambda q, k, t: q @ k.transpose(-2, -1)), "ignore the temperature"),
    "times temperature": (_with_scores(lambda q, k, t: q @ k.transpose(-2, -1) * t),
                          "multiplied the scores by the temperature"),
    "sqrt(D)": (_with_scores(lambda q, k, t: q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5),
                r"divided the scores by sqrt\(D\)"),
    "over the queries": (queries_axis, "sum to 1 over the queries"),
    "k @ q^T": (_with_scores(lambda q, k, t: k @ q.transpose(-2, -1) / t), "last two axes swapped"),
    "0 log 0": (_with_entropy(lambda w: -(w * w.log2()).sum(-1)), r"0 \* log2\(0\) = 0 \* \(-inf\) = NaN"),
    "nats": (_with_entropy(lambda w: -torch.special.xlogy(w, w).sum(-1)), "in nats"),
    "log10": (_with_entropy(lambda w: -(w * w.clamp_min(1e-30).log10()).sum(-1)), "base-10 logarithm"),
    "no minus": (_with_entropy(lambda w: torch.special.xlogy(w, w).sum(-1) / math.log(2)),
                 "entropy is negative"),
    "mean over keys": (_with_entropy(lambda w: -torch.special.xlogy(w, w).mean(-1) / math.log(2)),
                       "averaged -p log2 p over the keys"),
    "sum over queries": (_with_entropy(lambda w: -torch.special.xlogy(w, w).sum(-2) / math.log(2)),
                         r"entropy has shape \(2, 5\), expected \(2, 3\): one entropy per query"),
    "one total": (_with_entropy(lambda w: (-torch.special.xlogy(w, w).sum() / math.log(2)).item()),
                  "one number, the total over every query"),
    "swapped order": (entropy_first, r"you returned \(entropy, weights\)"),
    "weights only": (lambda q, k, t: good_weights(q, k, t)[0], r"return 2 values \(weights, entropy\)"),
    "torch.softmax": (lambda q, k, t: (lambda w: (w, -torch.special.xlogy(w, w).sum(-1) / math.log(2)))(
        torch.softmax(q @ k.transpose(-2, -1) / t, -1)), r"called `torch\.softmax`"),
    "exp of special.log_softmax": (exp_of_special_log_softmax,
                                   r"called `torch\.special\.log_softmax`"),
    "float32 buffers": (float32_buffers,
                        r"the tensor of weights for float64 q \(2, 3, 4\), k \(2, 6, 4\) at temperature "
                        r"0\.25 is float32, expected float64"),
    "q /= temperature": (divides_q_in_place, "changed its input `q` in place"),
    "float64 out": (float64_weights,
                    r"the tensor of weights for q \(2, 3, 4\), k \(2, 5, 4\) at temperature 1 is float64, "
                    "expected float32"),
    "k reshaped, not transposed": (_with_scores(lambda q, k, t: q @ k.reshape(len(k), -1, k.shape[1]) / t),
                                   r"you reshaped k from \(B, S, D\) to \(B, D, S\).*k\.transpose\(-2, -1\)"),
    "one global maximum": (one_global_max,
                           r"the tensor of weights for q \(2, 5, 4\), k \(2, 7, 4\) at temperature 0\.01 "
                           "holds NaN or infinity.*each query's own maximum"),
    "temperature + 0.1": (_with_scores(lambda q, k, t: q @ k.transpose(-2, -1) / (t + 0.1)),
                          r"the tensor of weights for q \(2, 3, 4\), k \(2, 5, 4\) at temperature 1 differs "
                          "from the reference"),
    "entropy, log2(w + 1e-3)": (_with_entropy(lambda w: -(w * torch.log2(w + 1e-3)).sum(-1)),
                                r"the entropy for q \(2, 3, 4\), k \(2, 5, 4\) at temperature 1 differs"),
}


@pytest.mark.parametrize("name", WRONG_WEIGHTS)
def test_check_attention_weights_rejects_each_typical_mistake(name):
    wrong, message = WRONG_WEIGHTS[name]
    with pytest.raises(CheckFailed, match=message):
        checks.check_attention_weights(wrong)


def weights_by_loops(q, k, temperature):
    weights, entropies = [], []
    for qb, kb in zip(q, k, strict=True):  # one sequence at a time
        w = good_softmax(qb @ kb.T / temperature)  # (T, S)
        weights.append(w)
        entropies.append(torch.where(w > 0, -w * torch.log2(w), torch.zeros_like(w)).sum(-1))
    return torch.stack(weights), torch.stack(entropies)


RIGHT_WEIGHTS = {
    "log-sum-exp": good_weights,
    "einsum, own softmax, xlogy, a list": lambda q, k, t: (
        lambda w: [w, -torch.special.xlogy(w, w).sum(-1) / math.log(2)])(
        good_softmax(torch.einsum("btd,bsd->bts", q, k) / t)),
    "float64 inside, cast back": lambda q, k, t: tuple(
        r.to(q.dtype) for r in good_weights(q.double(), k.double(), t)),
    "loops, torch.where": weights_by_loops,
    "clamped log2": _with_entropy(lambda w: -(w * w.clamp_min(1e-12).log2()).sum(-1)),
    "special.entr": _with_entropy(lambda w: torch.special.entr(w).sum(-1) / math.log(2)),
    "Categorical": _with_entropy(lambda w: torch.distributions.Categorical(probs=w).entropy() / math.log(2)),
    "nansum of w log2 w": _with_entropy(lambda w: -(w * w.log2()).nansum(-1)),
    "bmm in float64, masked_fill, a list": lambda q, k, t: (lambda w: [
        w.to(q.dtype), -(w * torch.log2(w).masked_fill(w == 0, 0.0)).sum(-1).to(q.dtype)])(
        good_softmax(torch.bmm(q.double(), k.double().transpose(1, 2)) / t)),
    "buffers of q's dtype": buffers_of_q_dtype,
}


@pytest.mark.parametrize("name", RIGHT_WEIGHTS)
def test_check_attention_weights_accepts_right_answers_written_differently(name, capsys):
    assert checks.check_attention_weights(RIGHT_WEIGHTS[name])
    assert capsys.readouterr().out.startswith("[x] attention_weights: correct")


def test_compare_diagnoses_nan_and_transpose():
    x = torch.randn(4, 4)
    with pytest.raises(CheckFailed, match="contains NaN"):
        checks.compare("demo", torch.full((4, 4), float("nan")), x)
    with pytest.raises(CheckFailed, match="is the transpose of the expected one"):
        checks.compare("demo", x.T, x)
    checks.compare("demo", x.clone(), x)  # equal: no error


# ----------------------------------------------------------------------------- every check, one table

# Every exercise's check (check_distribution is a helper the checks share, not a task's check).
ALL_CHECKS = sorted(name for name in dir(checks)
                    if name.startswith("check_") and name != "check_distribution")


def _untouched(*args, **kwargs):
    raise NotImplementedError("the exercise's placeholder")


def test_the_table_holds_every_check():
    assert len(ALL_CHECKS) >= 30, ALL_CHECKS  # two or three tasks for each of the 12 notebooks


@pytest.mark.parametrize("name", ALL_CHECKS)
def test_every_check_reports_an_untouched_task_as_not_done(name, capsys):
    before = torch.random.get_rng_state()
    assert not getattr(checks, name)(_untouched)
    assert "not done yet" in capsys.readouterr().out
    assert torch.equal(torch.random.get_rng_state(), before), f"{name} changed the global RNG"


@pytest.mark.parametrize("name", ALL_CHECKS)
def test_every_check_fails_an_untouched_task_under_nbgrader(name, monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(CheckFailed, match="not done"):
        getattr(checks, name)(_untouched)
