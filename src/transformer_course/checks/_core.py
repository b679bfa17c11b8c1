"""The core of the exercise checks: compare, diagnose, report.

A check prints one short line when the answer is right, prints "not done yet" while the
task still raises ``NotImplementedError``, and otherwise raises ``CheckFailed`` with a
sentence that says what is wrong (a wrong shape, a forgotten scale, a transposed result,
rows that do not sum to one ...), not only that something is.

Every check uses its own seeded ``torch.Generator``: it never moves the notebook's global
random state, and a failure shows up the same way twice.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import numbers
import os
import re
from collections.abc import Callable, Iterator, Sequence

import torch

__all__ = ["CheckFailed", "run_check", "call", "compare", "close", "check_distribution", "fmt_shape",
           "CheckResult", "blocked", "backpropagate", "unpack", "as_float", "SHORTCUTS"]


class CheckFailed(AssertionError):
    """A learner's answer differs from the reference; the message says how."""


def fmt_shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


class CheckResult:
    """What a check returns: true when the task is done and correct.

    It prints nothing more in a notebook (the check already printed its one line).
    """

    def __init__(self, task: str, done: bool):
        self.task, self.done = task, done

    def __bool__(self) -> bool:
        return self.done

    def __repr__(self) -> str:
        return f"CheckResult({self.task!r}, done={self.done})"

    def _ipython_display_(self) -> None:
        pass


def run_check(task: str, body: Callable[[], str]) -> CheckResult:
    """Run ``body``; print "not done yet" on ``NotImplementedError``, a tick on success.

    ``body`` returns a short description of what it tried ("4 random inputs ...").
    Returns True when the task is done and correct; ``CheckFailed`` propagates.
    """
    try:
        tried = body()
    except NotImplementedError as err:
        if os.environ.get("NBGRADER_EXECUTION"):  # nbgrader's autograder: a missing answer fails
            raise CheckFailed(f"{task}: not done (the function still raises NotImplementedError)") from err
        print(f"[ ] {task}: not done yet (replace `raise NotImplementedError` with your code)")
        return CheckResult(task, False)
    print(f"[x] {task}: correct on {tried}")
    return CheckResult(task, True)


# ----------------------------------------------------------------------------- calling the learner

# The library functions that compute what a "by hand" task asks the learner to write. While
# the learner's function runs under ``call(..., forbid=SHORTCUTS["softmax"])`` each of them
# raises CheckFailed instead. Paths are "module:attribute" (the attribute may be dotted).
SHORTCUTS: dict[str, tuple[str, ...]] = {
    "softmax": ("torch:softmax", "torch.nn.functional:softmax", "torch:Tensor.softmax",
                "torch.special:softmax", "torch.special:log_softmax", "torch.nn.functional:log_softmax",
                "torch:log_softmax", "torch.nn.functional:softmin",
                "torch:Tensor.log_softmax", "torch._VF:softmax"),
    "attention": ("torch.nn.functional:scaled_dot_product_attention",
                  "torch.nn.functional:multi_head_attention_forward"),
    "layer_norm": ("torch.nn.functional:layer_norm", "torch:layer_norm", "torch:native_layer_norm",
                   "torch.nn.functional:group_norm", "torch.nn.functional:instance_norm",
                   "torch.nn.functional:batch_norm"),
    "rnn_cell": ("torch:rnn_tanh_cell", "torch:rnn_tanh", "torch._VF:rnn_tanh_cell", "torch._VF:rnn_tanh",
                 "torch:rnn_relu_cell", "torch._VF:rnn_relu_cell"),
}


# The modules that call a shortcut inside, named in the message (a learner who wrote
# nn.RNNCell would not recognise torch._VF.rnn_tanh_cell).
_CALLED_BY = {
    "torch.nn.functional:softmax": "nn.Softmax", "torch._VF:rnn_tanh_cell": "nn.RNNCell",
    "torch._VF:rnn_tanh": "nn.RNN", "torch.nn.functional:layer_norm": "nn.LayerNorm",
    "torch.nn.functional:multi_head_attention_forward": "nn.MultiheadAttention",
}


def _resolve(path: str) -> tuple[object, str]:
    module, _, attr = path.partition(":")
    owner: object = importlib.import_module(module) if module != "torch._VF" else torch._VF
    *parents, name = attr.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    return owner, name


@contextlib.contextmanager
def blocked(task: str, paths: Sequence[str], namespaces: Sequence[dict] = ()) -> Iterator[None]:
    """Make each library function in ``paths`` raise CheckFailed while the block runs.

    For tasks that ask for something by hand: the shortcut is switched off only during the
    learner's call and put back afterwards, whatever happens. ``namespaces`` are the learner's
    global namespaces: a shortcut imported there under its bare name
    (``from torch.nn.functional import softmax``) is switched off too.
    """
    saved: list[tuple[object, str, bool, object]] = []
    names_saved: list[tuple[dict, str, object]] = []
    try:
        for path in paths:
            owner, name = _resolve(path)
            if not hasattr(owner, name):
                continue
            own = isinstance(owner, type) and name in owner.__dict__
            original = owner.__dict__[name] if own else getattr(owner, name)
            shown = f"`{path.replace(':', '.')}`"
            if path in _CALLED_BY:
                shown += f" (directly, or through {_CALLED_BY[path]}, which calls it)"

            def shortcut(*args, _shown=shown, **kwargs):
                raise _Shortcut(f"{task}: your code called {_shown}, which computes the very thing "
                                "this task asks you to write by hand; it is switched off while the check "
                                "runs your code. Write it from simpler operations (see the task's text).")

            saved.append((owner, name, own or not isinstance(owner, type), original))
            setattr(owner, name, shortcut)
            for namespace in namespaces:
                for bare, value in list(namespace.items()):
                    if value is original:
                        names_saved.append((namespace, bare, value))
                        namespace[bare] = shortcut
        yield
    finally:
        for namespace, bare, value in reversed(names_saved):
            namespace[bare] = value
        for owner, name, restore, original in reversed(saved):
            if restore:
                setattr(owner, name, original)
            else:
                delattr(owner, name)


def _namespaces(fn: object) -> list[dict]:
    """The global namespaces the learner's code looks names up in (function, method, module, partial)."""
    found: list[dict] = []
    targets = [fn, getattr(fn, "func", None), getattr(fn, "__func__", None)]
    if isinstance(fn, torch.nn.Module):
        targets += [getattr(type(fn), "forward", None)]
    for target in targets:
        namespace = getattr(target, "__globals__", None)
        if isinstance(namespace, dict) and not any(namespace is f for f in found):
            found.append(namespace)
    return found


class _Shortcut(CheckFailed):
    """Raised by a blocked library function; passes through ``call`` unchanged."""


def _tensors(value: object, where: str) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor inside an argument (tensors, lists, tuples, dicts, modules), with a name."""
    if isinstance(value, torch.Tensor):
        yield where, value
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _tensors(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f"{where}[{key!r}]")
    elif isinstance(value, torch.nn.Module):
        for name, tensor in value.state_dict(keep_vars=True).items():
            yield f"{where}.{name}", tensor


def _argument_names(fn: Callable, args: tuple, kwargs: dict) -> dict[str, object]:
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return {**{f"argument {i + 1}": a for i, a in enumerate(args)}, **kwargs}
    named: dict[str, object] = {}
    for name, value in bound.arguments.items():
        kind = inspect.signature(fn).parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            named.update({f"argument {i + 1}": a for i, a in enumerate(value, start=len(named))})
        elif kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        else:
            named[name] = value
    return named


def call(task: str, fn: Callable, *args, forbid: Sequence[str] = (), may_modify: Sequence[int] = (),
         **kwargs):
    """Call the learner's ``fn`` and vouch for how it behaved.

    - An error other than NotImplementedError becomes CheckFailed, with the arguments' shapes.
    - ``forbid``: library functions (see ``SHORTCUTS``) blocked during the call.
    - Every tensor argument (also inside lists, dicts and modules) is compared with a copy
      taken before the call: an answer that changes its input in place is rejected, except
      the positional arguments whose indices are in ``may_modify``.
    """
    before = [(name, tensor, tensor.detach().clone(), tensor.requires_grad)
              for i, arg in enumerate(args) if i not in may_modify
              for name, tensor in _tensors(arg, f"#{i}")]
    before += [(name, tensor, tensor.detach().clone(), tensor.requires_grad)
               for key, arg in kwargs.items() for name, tensor in _tensors(arg, key)]
    try:
        with blocked(task, forbid, _namespaces(fn) if forbid else ()):
            out = fn(*args, **kwargs)
    except (NotImplementedError, _Shortcut):
        raise
    except Exception as err:  # the learner's code may raise anything
        shapes = ", ".join(fmt_shape(a.shape) if isinstance(a, torch.Tensor) else _short_repr(a)
                           for a in args)
        raise CheckFailed(f"{task}: your function raised {type(err).__name__}: {err} "
                          f"(called with {shapes})") from err
    names = _argument_names(fn, args, kwargs)
    for name, tensor, copy, requires_grad in before:
        same = (tensor.shape == copy.shape and tensor.dtype == copy.dtype
                and torch.equal(tensor.detach(), copy))
        if same and tensor.requires_grad != requires_grad:
            raise CheckFailed(f"{task}: your function switched requires_grad "
                              f"{'on' if tensor.requires_grad else 'off'} for its input "
                              f"{_name_of(name, names)}, which changes the caller's tensor; work on a "
                              "copy instead: x = x.detach().clone().requires_grad_(True).")
        if not same:
            shown = _name_of(name, names)
            raise CheckFailed(f"{task}: your function changed its input {shown} in place (an in-place "
                              "operation such as `x += ...`, `x.sub_(...)`, `x.masked_fill_(...)` or "
                              "`x[...] = ...`); compute a new tensor and leave the inputs as they were.")
    return out


def _name_of(name: str, names: dict[str, object]) -> str:
    """'#1[0]' -> '`k[0]`', using the learner's own parameter names where they are known."""
    match = re.fullmatch(r"#(\d+)(.*)", name)
    if not match:
        return f"`{name}`"
    index, rest = int(match.group(1)), match.group(2)
    keys = list(names)
    if index < len(keys) and not keys[index].startswith("argument"):
        return f"`{keys[index]}{rest}`"
    return f"argument {index + 1}{' ' + rest if rest else ''}"


def _short_repr(value: object) -> str:
    if isinstance(value, torch.nn.Module):
        return f"a {type(value).__name__} module"
    text = " ".join(repr(value).split())  # one line
    return text if len(text) <= 40 else text[:37] + "..."


def backpropagate(got: torch.Tensor, upstream: torch.Tensor, leaves: Sequence[torch.Tensor], *,
                  prefix: str, trained: str, in_place_hint: str) -> tuple[torch.Tensor | None, ...]:
    """The gradients of ``(got * upstream).sum()`` with respect to ``leaves`` (None where cut).

    For checks of trained components whose values are already right. ``prefix`` begins the
    message ("task: where: your output"); ``trained`` says why gradients matter ("The layer is
    trained"); ``in_place_hint`` follows the error when the backward pass itself fails.
    """
    if not got.requires_grad:
        raise CheckFailed(f"{prefix} is right, but no gradient reaches it: did you use .detach(), .data, "
                          f"torch.no_grad() or numpy? {trained}, so every step must stay in autograd.")
    try:
        return torch.autograd.grad((got * upstream.to(got.dtype)).sum(), list(leaves), allow_unused=True)
    except RuntimeError as err:
        reason = str(err).split(". Hint")[0]
        raise CheckFailed(f"{prefix} is right, but backpropagating through it fails "
                          f"({reason}){in_place_hint}") from None


def unpack(task: str, got: object, names: Sequence[str]) -> tuple:
    """The learner's several results as a tuple: any list or tuple of the right length will do."""
    n = len(names)
    listed = ", ".join(names)
    if isinstance(got, torch.Tensor) or not isinstance(got, (list, tuple)):
        raise CheckFailed(f"{task}: return {n} values ({listed}) as a tuple, e.g. `return {listed}`; "
                          f"got a {type(got).__name__}.")
    if len(got) != n:
        raise CheckFailed(f"{task}: return {n} values ({listed}); got {len(got)}.")
    return tuple(got)


def as_float(task: str, got: object, what: str = "the result") -> float:
    """A real number where the task asks for one (int, float, Fraction, a numpy scalar).

    A tensor, an array, a string or a bool is refused, with a hint for the tensor.
    """
    if isinstance(got, bool) or not isinstance(got, numbers.Real):
        hint = " (a tensor: use .item())" if isinstance(got, torch.Tensor) else ""
        raise CheckFailed(f"{task}: {what} should be a Python float, got {type(got).__name__}{hint}.")
    return float(got)


def _kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    return "float" if dtype.is_floating_point else "int"


def close(got: object, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4,
          nonfinite: bool = False) -> bool:
    """True when ``got`` is a tensor of ``expected``'s shape and values (compared in float64).

    ``nonfinite``: NaN, inf and -inf count as equal where both have them in the same places
    (for comparing with a mistake that produces them).
    """
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return False
    a, b = got.detach(), expected.detach()
    if nonfinite:
        a, b = a.double(), b.double()
        finite = torch.isfinite(a)
        if not torch.equal(finite, torch.isfinite(b)):
            return False
        signs = {"nan": 0.0, "posinf": 1.0, "neginf": -1.0}
        return (torch.equal(a[~finite].nan_to_num(**signs), b[~finite].nan_to_num(**signs))
                and close(a[finite], b[finite], atol=atol, rtol=rtol))
    if a.dtype.is_complex or b.dtype.is_complex:
        return bool(torch.allclose(a.to(torch.complex128), b.to(torch.complex128), atol=atol, rtol=rtol))
    return bool(torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol, equal_nan=False))


def compare(
    task: str, got: object, expected: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-4,
    what: str = "the result", dtype: torch.dtype | None = None,
) -> None:
    """Raise ``CheckFailed`` with a diagnosis unless ``got`` equals ``expected``.

    ``dtype`` is the dtype the answer must have (default: ``expected``'s). Floats must match
    exactly (a float32 input gives a float32 result); any integer dtype passes for an integer
    one. The values are compared in float64, so an answer computed in another precision
    inside never crashes the check.

    Diagnoses, in order: not a tensor, wrong shape (and whether it is the transpose), wrong
    dtype, NaN or infinity, all zeros, transposed values, off by a constant factor, then the
    largest error.
    """
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{task}: {what} should be a torch.Tensor, got {type(got).__name__}")
    if got.shape != expected.shape:
        hint = ""
        if got.dim() >= 2 and got.transpose(-1, -2).shape == expected.shape:
            hint = " It has the last two axes swapped: is something transposed?"
        raise CheckFailed(f"{task}: {what} has the wrong shape: got {fmt_shape(got.shape)}, "
                          f"expected {fmt_shape(expected.shape)}.{hint}")
    want = expected.dtype if dtype is None else dtype
    if _kind(got.dtype) != _kind(want) or (_kind(want) == "float" and got.dtype != want):
        name = str(want).removeprefix("torch.")
        hint = {"bool": " (a boolean tensor: a comparison such as `a <= b` gives one)",
                "int": " (integer ids or counts: an index, not a float)"}.get(_kind(want), "")
        if _kind(want) == "float" and _kind(got.dtype) == "float" and got.dtype.itemsize < want.itemsize:
            hint = (f": the inputs are {name}, keep their dtype (a .float() or a buffer made with "
                    "torch.zeros(...) without dtype= lowers it; .to(x.dtype) or dtype=x.dtype keeps it)")
        elif _kind(want) == "float":
            hint = (f": the inputs are {name}, keep their dtype (a float64 constant or "
                    "torch.tensor(..., dtype=torch.float64) promotes the result; .to(x.dtype) puts it back)")
        got_name = str(got.dtype).removeprefix("torch.")
        raise CheckFailed(f"{task}: {what} is {got_name}, expected {name}{hint}.")
    got = got.detach().double() if not got.dtype.is_complex else got.detach()
    expected = expected.detach().double() if not expected.dtype.is_complex else expected.detach()
    if not torch.isfinite(got).all():
        bad = "NaN" if torch.isnan(got).any() else "infinity"
        raise CheckFailed(f"{task}: {what} contains {bad} where the reference is finite.")
    if torch.allclose(got, expected, atol=atol, rtol=rtol):
        return
    if not got.any() and expected.abs().max() > atol:
        raise CheckFailed(f"{task}: {what} is all zeros where the reference is not: did you return an "
                          "empty or initial value, or multiply by a mask that hides everything?")
    if (got.dim() >= 2 and got.shape[-1] == got.shape[-2]
            and torch.allclose(got.transpose(-1, -2), expected, atol=atol, rtol=rtol)):
        raise CheckFailed(f"{task}: {what} is the transpose of the expected one: "
                          "check which axis is which.")
    factor = _constant_factor(got, expected)
    if factor is not None and abs(factor + 1) < 1e-3:
        raise CheckFailed(f"{task}: {what} is the expected one with its sign flipped: a minus too many?")
    if factor is not None:
        raise CheckFailed(f"{task}: {what} is the expected one times {factor:.4g}: "
                          "a missing or extra scale factor?")
    err = (got - expected).abs()
    idx = tuple(int(i) for i in torch.unravel_index(err.argmax(), err.shape))
    raise CheckFailed(f"{task}: {what} differs from the reference: at index {idx} got "
                      f"{got[idx].item():.5g}, expected {expected[idx].item():.5g} "
                      f"(largest error {err.max().item():.3g}).")


def _constant_factor(got: torch.Tensor, expected: torch.Tensor) -> float | None:
    """The c with got = c * expected everywhere (c not 0 or 1), or None."""
    mask = expected.abs() > 1e-6
    if mask.sum() < 2 or not torch.equal(mask, got.abs() > 1e-6 * abs(float(got.abs().max()) or 1.0)):
        return None
    ratio = got[mask] / expected[mask]
    c = ratio.median().item()
    if abs(c) < 1e-3 or abs(c - 1) <= 1e-3:
        return None
    if torch.allclose(ratio, torch.full_like(ratio, c), rtol=1e-3, atol=1e-6):
        return c
    return None


def check_distribution(task: str, got: torch.Tensor, expected: torch.Tensor, dim: int = -1,
                       what: str = "the result") -> None:
    """Diagnose probability outputs before comparing: log-probs, wrong axis, bad sums.

    ``what`` names the output (and its case) in the final comparison's diagnoses.
    """
    if isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.isfinite(got).all():
        got_d = got.detach().double()
        if (got_d <= 0).all() and torch.allclose(got_d.exp(), expected.detach().double(), atol=1e-5):
            raise CheckFailed(f"{task}: you returned log-probabilities (all values <= 0, and their "
                              "exp matches): return probabilities, not their log.")
        if (got_d < -1e-6).any():
            raise CheckFailed(f"{task}: some probabilities are negative (min "
                              f"{got_d.min().item():.3g}): did you exponentiate?")
        sums = got_d.sum(dim)
        if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
            for other in range(got_d.dim()):
                if other % got_d.dim() == dim % got_d.dim() or got_d.shape[other] == 1:
                    continue
                s = got_d.sum(other)
                if torch.allclose(s, torch.ones_like(s), atol=1e-4):
                    raise CheckFailed(f"{task}: the values sum to 1 along axis {other} instead "
                                      f"of axis {dim % got_d.dim()}: did you take the softmax "
                                      "over the wrong axis?")
            raise CheckFailed(f"{task}: the values along axis {dim % got_d.dim()} should sum to "
                              f"1, but they sum to between {sums.min().item():.4g} and "
                              f"{sums.max().item():.4g}.")
    compare(task, got, expected, what=what)
