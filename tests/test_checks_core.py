"""The checks' core: calls that vouch for the learner's code, and dtype-safe comparisons."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer_course.checks import CheckFailed
from transformer_course.checks._core import SHORTCUTS, as_float, blocked, call, close, compare, unpack

# ----------------------------------------------------------------------------- call: shortcuts


@pytest.mark.parametrize("shortcut, name", [
    (lambda x: F.softmax(x, -1), "torch.nn.functional.softmax"),
    (lambda x: torch.softmax(x, -1), "torch.softmax"),
    (lambda x: x.softmax(-1), "torch.Tensor.softmax"),
    (lambda x: nn.Softmax(-1)(x), "torch.nn.functional.softmax"),
    (lambda x: F.log_softmax(x, -1).exp(), "torch.nn.functional.log_softmax"),
    (lambda x: torch.special.log_softmax(x, -1).exp(), "torch.special.log_softmax"),
    (lambda x: torch.special.softmax(x, -1), "torch.special.softmax"),
    (lambda x: x.log_softmax(-1).exp(), "torch.Tensor.log_softmax"),
])
def test_a_blocked_softmax_is_named_in_the_message(shortcut, name):
    with pytest.raises(CheckFailed, match=f"called `{name}`.*by hand"):
        call("softmax", shortcut, torch.randn(2, 3), forbid=SHORTCUTS["softmax"])


@pytest.mark.parametrize("group, shortcut", [
    ("layer_norm", lambda x: nn.LayerNorm(4)(x)),
    ("layer_norm", lambda x: F.layer_norm(x, (4,))),
    ("rnn_cell", lambda x: nn.RNNCell(4, 4)(x)),
    ("attention", lambda x: F.scaled_dot_product_attention(x, x, x)),
])
def test_each_shortcut_group_blocks_its_library_function(group, shortcut):
    with pytest.raises(CheckFailed, match="by hand"):
        call("task", shortcut, torch.randn(2, 4), forbid=SHORTCUTS[group])


def test_shortcuts_are_restored_after_the_call_even_when_it_fails():
    x = torch.randn(2, 3)
    expected = torch.softmax(x, -1)
    with pytest.raises(CheckFailed):
        call("softmax", lambda t: t.softmax(-1), x, forbid=SHORTCUTS["softmax"])
    with pytest.raises(CheckFailed):
        call("layer_norm", lambda t: nn.LayerNorm(3)(t), x, forbid=SHORTCUTS["layer_norm"])
    assert torch.equal(x.softmax(-1), expected) and torch.equal(F.softmax(x, -1), expected)
    assert "softmax" not in torch.Tensor.__dict__, "the patch on torch.Tensor was not removed"
    assert nn.LayerNorm(3)(x).shape == x.shape and nn.RNNCell(3, 2)(x).shape == (2, 2)


def test_a_by_hand_answer_passes_while_shortcuts_are_blocked():
    def by_hand(x):
        e = (x - x.amax(-1, keepdim=True)).exp()
        return e / e.sum(-1, keepdim=True)

    x = torch.randn(3, 5)
    with blocked("softmax", SHORTCUTS["softmax"]):
        got = by_hand(x)
    assert torch.allclose(got, torch.softmax(x, -1))


# ----------------------------------------------------------------------------- call: in place


def test_an_in_place_change_of_an_input_is_named_by_the_learner_s_parameter():
    def sub_in_place(scores, mask):
        scores.sub_(1)
        return scores

    with pytest.raises(CheckFailed, match="changed its input `scores` in place"):
        call("task", sub_in_place, torch.randn(2, 3), torch.ones(2, 3, dtype=torch.bool))


@pytest.mark.parametrize("change, where", [
    (lambda xs, m: xs[1].add_(1), r"`xs\[1\]`"),  # inside a list
    (lambda xs, m: m.weight.data.mul_(2), "`m.weight`"),  # a module's parameter
])
def test_in_place_changes_inside_lists_and_modules_are_caught(change, where):
    with pytest.raises(CheckFailed, match=f"changed its input {where} in place"):
        call("task", change, [torch.randn(2), torch.randn(2)], nn.Linear(2, 2))


def test_masked_assignment_in_a_lambda_is_caught_by_position():
    def masked(*args):
        args[0][args[1]] = 0.0
        return args[0]

    with pytest.raises(CheckFailed, match="changed its input argument 1 in place"):
        call("task", masked, torch.randn(3, 3), torch.eye(3, dtype=torch.bool))


def test_may_modify_allows_the_named_argument_and_a_pure_function_passes():
    cache = torch.zeros(4)
    call("task", lambda c, x: c.add_(x), cache, torch.ones(4), may_modify=(0,))
    assert torch.equal(cache, torch.ones(4))
    assert torch.equal(call("task", lambda a, b: a + b, torch.ones(2), torch.ones(2)), torch.full((2,), 2.0))


def test_a_module_argument_is_named_by_its_class_in_an_error():
    with pytest.raises(CheckFailed, match=r"called with \(2, 3\), a Linear module\)$"):
        call("task", lambda x, layer: layer(x.T), torch.randn(2, 3), nn.Linear(3, 3))


def test_errors_of_the_learner_become_checkfailed_but_not_done_passes_through():
    with pytest.raises(CheckFailed, match=r"raised RuntimeError.*called with \(2, 3\)"):
        call("task", lambda x: x @ torch.ones(4, 4), torch.randn(2, 3))
    with pytest.raises(NotImplementedError):
        call("task", lambda x: (_ for _ in ()).throw(NotImplementedError()), torch.randn(1))


# ----------------------------------------------------------------------------- compare and close


@pytest.mark.parametrize("got, message", [
    (torch.ones(2, 2, dtype=torch.float64), "is float64, expected float32: the inputs are float32"),
    (torch.ones(2, 2, dtype=torch.int64), "is int64, expected float32"),
])
def test_compare_names_a_wrong_dtype(got, message):
    with pytest.raises(CheckFailed, match=message):
        compare("task", got, torch.ones(2, 2))


def test_a_lowered_precision_gets_its_own_hint():
    with pytest.raises(CheckFailed, match=r"is float32, expected float64.*a \.float\(\) or a buffer"):
        compare("task", torch.ones(2), torch.ones(2, dtype=torch.float64))


def test_compare_accepts_any_integer_width_but_not_floats_for_a_bool_mask():
    compare("task", torch.arange(3, dtype=torch.int32), torch.arange(3))
    with pytest.raises(CheckFailed, match="expected bool .*a comparison"):
        compare("task", torch.ones(2), torch.ones(2, dtype=torch.bool))


def test_compare_can_be_told_the_answer_s_dtype_when_the_reference_is_float64():
    reference = torch.randn(3, dtype=torch.float64)
    compare("task", reference.float(), reference, dtype=torch.float32, atol=1e-6)
    with pytest.raises(CheckFailed, match="is float64, expected float32"):
        compare("task", reference, reference, dtype=torch.float32)


@pytest.mark.parametrize("make, message", [
    (lambda x: torch.zeros_like(x), "all zeros where the reference is not"),
    (lambda x: -x, "sign flipped"),
    (lambda x: 2 * x, "times 2: a missing or extra scale factor"),
    (lambda x: x.T, "transpose of the expected one"),
    (lambda x: x + 0.1, r"differs from the reference: at index"),
])
def test_compare_diagnoses_and_never_says_times_zero(make, message):
    x = torch.randn(4, 4) + 0.5
    with pytest.raises(CheckFailed, match=message) as err:
        compare("task", make(x), x)
    assert "times 0" not in str(err.value)


def test_a_result_zero_in_half_its_entries_is_not_called_a_scale_factor():
    x = torch.rand(4, 4) + 0.5
    half = x.clone()
    half[:, :2] = 0  # e.g. a flipped mask: some entries are dropped, the others are right
    with pytest.raises(CheckFailed, match="differs from the reference") as err:
        compare("task", half, x)
    assert "scale factor" not in str(err.value)


def test_close_never_crashes_on_mixed_dtypes_or_shapes():
    x = torch.randn(3)
    assert close(x.double(), x) and close(x, x.double())
    assert not close(x[:2], x) and not close([1.0, 2.0, 3.0], x)


# ----------------------------------------------------------------------------- unpack and as_float


def test_unpack_accepts_lists_and_tuples_of_the_right_length():
    assert unpack("task", [1, 2], ["a", "b"]) == (1, 2)
    assert unpack("task", (1, 2), ["a", "b"]) == (1, 2)
    with pytest.raises(CheckFailed, match=r"return 2 values \(a, b\); got 3"):
        unpack("task", (1, 2, 3), ["a", "b"])
    with pytest.raises(CheckFailed, match=r"return 2 values \(a, b\) as a tuple.*got a Tensor"):
        unpack("task", torch.ones(2), ["a", "b"])


def test_as_float_refuses_a_tensor_with_a_hint():
    import fractions

    import numpy as np

    for number in (2, 0.5, fractions.Fraction(-1, 1), np.int64(-1), np.float32(-1.0)):
        assert as_float("task", number) == float(number)
    with pytest.raises(CheckFailed, match=r"Python float, got Tensor \(a tensor: use .item\(\)\)"):
        as_float("task", torch.tensor(0.5))
    for not_a_number in (True, "0.5", np.ones(1)):
        with pytest.raises(CheckFailed, match="should be a Python float"):
            as_float("task", not_a_number)


def test_a_shortcut_imported_under_its_bare_name_is_blocked_too():
    namespace = {"softmax": F.softmax, "torch": torch}
    exec("def by_import(x):\n    return softmax(x, -1)\n", namespace)
    with pytest.raises(CheckFailed, match="called `torch.nn.functional.softmax`"):
        call("softmax", namespace["by_import"], torch.randn(2, 3), forbid=SHORTCUTS["softmax"])
    assert namespace["softmax"] is F.softmax, "the learner's name was not put back"


def test_a_module_s_forward_namespace_is_searched():
    namespace = {"sdpa": F.scaled_dot_product_attention, "nn": nn}
    exec("class Attend(nn.Module):\n    def forward(self, x):\n        return sdpa(x, x, x)\n", namespace)
    with pytest.raises(CheckFailed, match="by hand"):
        call("attention", namespace["Attend"](), torch.randn(1, 2, 4), forbid=SHORTCUTS["attention"])
    assert namespace["sdpa"] is F.scaled_dot_product_attention


def test_switching_requires_grad_on_the_caller_s_tensor_is_caught():
    def grads_in_place(x):
        x.requires_grad_(True)
        return (x * 2).sum()

    with pytest.raises(CheckFailed, match="switched requires_grad on for its input `x`.*copy"):
        call("task", grads_in_place, torch.randn(3))
    call("task", lambda x: x.detach().clone().requires_grad_(True) * 2, torch.randn(3))


def test_a_module_that_calls_a_shortcut_is_named_in_the_message():
    with pytest.raises(CheckFailed, match=r"through nn\.RNNCell, which calls it"):
        call("rnn", lambda x: nn.RNNCell(2, 2)(x), torch.randn(1, 2), forbid=SHORTCUTS["rnn_cell"])


def test_close_can_count_matching_nan_and_inf_as_equal():
    a = torch.tensor([1.0, float("nan"), float("-inf")])
    assert not close(a, a.clone()) and close(a, a.clone(), nonfinite=True)
    assert not close(a, torch.tensor([1.0, float("-inf"), float("nan")]), nonfinite=True)
    assert not close(a, torch.tensor([1.5, float("nan"), float("-inf")]), nonfinite=True)


def test_backpropagate_names_a_cut_graph_and_a_failing_backward_pass():
    from transformer_course.checks._core import backpropagate

    x = torch.randn(3, requires_grad=True)
    grads = backpropagate(x * 2, torch.ones(3), [x], prefix="t: your output", trained="It is trained",
                          in_place_hint=".")
    assert torch.equal(grads[0], torch.full((3,), 2.0))
    with pytest.raises(CheckFailed, match="your output is right, but no gradient reaches it.*It is trained"):
        backpropagate((x * 2).detach(), torch.ones(3), [x], prefix="t: your output",
                      trained="It is trained", in_place_hint=".")
    saved = x.exp()
    out = saved * 1.0
    saved.add_(1)  # changes a tensor exp saved for the backward pass
    with pytest.raises(CheckFailed, match=r"backpropagating through it fails \(.*\): write a new tensor"):
        backpropagate(out, torch.ones(3), [x], prefix="t: your output", trained="It is trained",
                      in_place_hint=": write a new tensor")
