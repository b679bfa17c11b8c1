"""The checks framework, shown to reject the mistakes learners make (the warm-up exercise)."""

import pytest
import torch

from transformer_course import checks
from transformer_course.checks import CheckFailed


def good_softmax(x):
    e = (x - x.max(-1, keepdim=True).values).exp()
    return e / e.sum(-1, keepdim=True)


def wrong_axis(x):
    e = (x - x.max(0, keepdim=True).values).exp()
    return e / e.sum(0, keepdim=True)


def no_max_subtraction(x):
    return x.exp() / x.exp().sum(-1, keepdim=True)


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


def not_done(x):
    raise NotImplementedError("softmax")


@pytest.mark.parametrize("wrong, message", [
    (wrong_axis, "sum to 1 along axis 0 instead of axis 1: did you take the softmax over the wrong axis"),
    (no_max_subtraction, "large inputs such as 1000 .* subtract each row's maximum"),
    (off_by_one, r"should sum to 1, but they sum to between 0\.\d+ and 0\.\d+"),
    (squeezed, r"wrong shape: got \(3\), expected \(1, 3\)"),
    (log_probabilities, "returned log-probabilities"),
    (returns_numpy, "should be a torch.Tensor, got ndarray"),
    (crashes, "your function raised RuntimeError"),
])
def test_check_softmax_rejects_each_typical_mistake(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        checks.check_softmax(wrong)


def test_check_softmax_accepts_the_right_answer(capsys):
    assert checks.check_softmax(good_softmax)
    assert capsys.readouterr().out.startswith("[x] softmax: correct")


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


@pytest.mark.parametrize("wrong, message", [
    (lambda q, k: k @ q.transpose(-2, -1), "last two axes swapped|transpose"),
    (lambda q, k: q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, r"times 0\.5.*scale factor"),
    (lambda q, k: q.flatten(0, 1) @ k.flatten(0, 1).T, r"wrong shape: got \(6, 8\), expected \(2, 3, 4\)"),
    (lambda q, k: q @ k.transpose(-2, -1) + 0.1, "differs from the reference"),
])
def test_check_attention_scores_rejects_mistakes(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        checks.check_attention_scores(wrong)


def test_check_attention_scores_accepts_the_right_answer():
    assert checks.check_attention_scores(lambda q, k: torch.einsum("btd,bsd->bts", q, k))


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
