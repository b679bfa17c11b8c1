"""The measurements of notebook 09 (why Transformers won): the paper's Table 1, measured.

Per-layer cost, sequential steps and path length against n.

Shapes: B batch, n sequence length (T elsewhere in the course), D d_model, H heads, Dh head size.

Three layers map ``(B, n, D) -> (B, n, D)``: ``"rnn_loop"``, the course's from-scratch
``rnn.RNN`` (a Python loop over time); ``"gru"``, PyTorch's ``nn.GRU`` (its loop runs in
C++, or inside one cuDNN kernel on CUDA); ``"attention"``, the course's
``MultiHeadAttention`` used as self-attention. For each, measured rather than asserted:

- time per layer, forward and forward + backward (:func:`time_against_length`);
- floating-point operations (:func:`count_flops`, PyTorch's ``FlopCounterMode``);
- sequential steps and the longest chain of dependent operators (:func:`trace_layer`, a
  ``TorchDispatchMode`` that sees every ATen operator the layer runs);
- the maximum path length, as how far a gradient reaches (:func:`gradient_reach`,
  :func:`path_length`) for a recurrence, a causal convolution and attention stacked L times;
- the bytes of the ``(B, H, n, n)`` attention weights and the peak memory of a forward pass.

The instruments come from ``measure``: ``OperatorTrace``, ``peak_memory``, ``cpu_threads``, ``sync``;
exponents are fitted on log-log axes with ``measure.fit_exponent``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .. import _validate
from ..attention import MultiHeadAttention
from ..measure import OperatorTrace, cpu_threads, peak_memory, sync
from ..rnn import RNN, RNNCell

if TYPE_CHECKING:  # at run time timing_figure imports it: the exercise checks import this module
    from matplotlib.figure import Figure

__all__ = [
    "LAYER_KINDS", "REACH_KINDS", "make_layer", "layer_forward", "trace_layer",
    "sequential_steps", "expected_steps", "count_flops", "expected_flops", "time_against_length",
    "attention_weight_bytes", "measured_weight_bytes", "peak_forward_memory", "gradient_reach",
    "influence_map", "path_length", "expected_path_length", "timing_report", "timing_figure",
]

LAYER_KINDS = ("rnn_loop", "gru", "attention")
REACH_KINDS = ("recurrent", "convolution", "attention")
# The operator that marks one step: a recurrent step ends in one tanh (the new state, or the
# GRU's candidate state); attention computes all positions with one softmax.
_STEP_OPERATOR = {"rnn_loop": "tanh", "gru": "tanh", "attention": "_softmax"}


# ----------------------------------------------------------------------------- input checks

def _check_sizes(n: object, d_model: object, n_heads: object, who: str) -> tuple[int, int, int]:
    """n, d_model and n_heads as positive ints, with n_heads dividing d_model."""
    n, d_model, n_heads = (_validate.positive_int(value, name, who) for name, value in
                           (("n", n), ("d_model", d_model), ("n_heads", n_heads)))
    _validate.divisible(d_model, n_heads, who)
    return n, d_model, n_heads


# ----------------------------------------------------------------------------- the three layers

def make_layer(kind: str, d_model: int, n_heads: int = 4, seed: int = 0) -> nn.Module:
    """A fresh, seeded layer of one kind that maps (B, n, D) to (B, n, D) (see ``layer_forward``)."""
    kind = _validate.one_of(kind, LAYER_KINDS, "kind", "make_layer")
    _check_sizes(1, d_model, n_heads, "make_layer")
    torch.manual_seed(seed)
    if kind == "rnn_loop":
        return RNN(d_model, d_model)
    if kind == "gru":
        return nn.GRU(d_model, d_model, batch_first=True)
    return MultiHeadAttention(d_model, n_heads)


def layer_forward(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One layer's outputs at every position: the hidden states of an RNN, self-attention's output.

    Shapes: x (B, n, D) -> (B, n, D).
    """
    if isinstance(layer, MultiHeadAttention):
        return layer(x, x, x)[0]  # (B, n, D); the weights (B, H, n, n) are dropped
    if isinstance(layer, (RNN, nn.GRU)):
        return layer(x)[0]  # (B, n, D): the state after every step
    raise TypeError(f"layer_forward expects an rnn.RNN, nn.GRU or MultiHeadAttention, "
                    f"got {type(layer).__name__}")


def _input(n: int, d_model: int, batch: int, seed: int = 0, device: torch.device | str = "cpu",
           requires_grad: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n, d_model, generator=g).to(device)  # (B, n, D)
    return x.requires_grad_(requires_grad)


# ----------------------------------------------------------------------------- sequential steps

def trace_layer(kind: str, n: int, d_model: int = 32, batch: int = 1, n_heads: int = 4) -> dict[str, int]:
    """Operators, critical path and sequential steps of one forward pass, traced on the CPU.

    Returns {"operators": ATen calls, "critical_path": the longest chain of dependent operators,
    "sequential_steps": calls of the step operator (tanh for the RNNs: one per time step;
    softmax for attention: one for all positions)}. Traced on the CPU, where ``nn.GRU``'s loop
    goes through the dispatcher operator by operator (on CUDA, cuDNN runs the same n steps
    inside one kernel, invisible to the trace).
    """
    kind = _validate.one_of(kind, LAYER_KINDS, "kind", "trace_layer")
    n, d_model, n_heads = _check_sizes(n, d_model, n_heads, "trace_layer")
    _validate.positive_int(batch, "batch", "trace_layer")
    layer = make_layer(kind, d_model, n_heads)
    x = _input(n, d_model, batch)
    with torch.no_grad(), OperatorTrace() as trace:
        layer_forward(layer, x)
    return {"operators": trace.operators, "critical_path": trace.critical_path,
            "sequential_steps": trace.counts.get(_STEP_OPERATOR[kind], 0)}


def sequential_steps(kind: str, n: int, d_model: int = 32) -> int:
    """Measured: how many steps one forward pass runs one after another (see ``trace_layer``)."""
    return trace_layer(kind, n, d_model)["sequential_steps"]


def expected_steps(kind: str, n: int) -> int:
    """The closed form of ``sequential_steps``, the paper's O(n) and O(1): n for the RNNs, 1 for attention."""
    kind = _validate.one_of(kind, LAYER_KINDS, "kind", "expected_steps")
    return 1 if kind == "attention" else _validate.positive_int(n, "n", "expected_steps")


# ----------------------------------------------------------------------------- per-layer cost

def count_flops(kind: str, n: int, d_model: int, batch: int = 1, n_heads: int = 4) -> int:
    """Floating-point operations of one forward pass, counted by PyTorch's ``FlopCounterMode``.

    It counts the matrix products (2 per multiply-add), which dominate; the elementwise
    operations (tanh, softmax, the gates) are not counted.
    """
    kind = _validate.one_of(kind, LAYER_KINDS, "kind", "count_flops")
    n, d_model, n_heads = _check_sizes(n, d_model, n_heads, "count_flops")
    _validate.positive_int(batch, "batch", "count_flops")
    layer = make_layer(kind, d_model, n_heads)
    x = _input(n, d_model, batch)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        layer_forward(layer, x)
    return int(counter.get_total_flops())


def expected_flops(kind: str, n: int, d_model: int, batch: int = 1) -> int:
    """The closed form of ``count_flops``: the per-layer column of the paper's Table 1, with constants.

    RNN: two (D, D) products per position, 4 n D^2. GRU: three gates, 12 n D^2. Attention:
    four (D, D) projections, 8 n D^2, plus Q K^T and weights @ V, 4 n^2 D (the paper's O(n^2 d)).
    """
    kind = _validate.one_of(kind, LAYER_KINDS, "kind", "expected_flops")
    per_position = {"rnn_loop": 4, "gru": 12, "attention": 8}[kind] * n * d_model**2
    pairs = 4 * n * n * d_model if kind == "attention" else 0
    return batch * (per_position + pairs)


# ----------------------------------------------------------------------------- time

def _check_sweep(lengths: Sequence[object], kinds: Sequence[object], d_model: object, n_heads: object,
                 who: str, **counts: object) -> None:
    """Non-empty lengths, each valid with d_model and n_heads; known kinds; positive counts (None: unset)."""
    if len(lengths) == 0:
        raise ValueError(f"{who} expects lengths to be a non-empty list of positive ints, "
                         f"got {list(lengths)}")
    for n in lengths:
        _check_sizes(n, d_model, n_heads, who)
    for kind in kinds:
        _validate.one_of(kind, LAYER_KINDS, "kind", who)
    for name, value in counts.items():
        if value is not None:
            _validate.positive_int(value, name, who)


def _runner(kind: str, n: int, d_model: int, batch: int, n_heads: int, backward: bool,
            device: torch.device) -> Callable[[], None]:
    """A closure that runs one forward (and backward) pass of a fresh layer on a fixed input."""
    layer = make_layer(kind, d_model, n_heads).to(device)
    x = _input(n, d_model, batch, device=device, requires_grad=backward)

    def run() -> None:
        if not backward:
            with torch.no_grad():
                layer_forward(layer, x)
            return
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer_forward(layer, x).sum().backward()

    return run


def time_against_length(
    lengths: Sequence[int], kinds: Sequence[str] = LAYER_KINDS, d_model: int = 64, *, batch: int = 1,
    n_heads: int = 4, repeats: int = 3, backward: bool = True, device: torch.device | str = "cpu",
    threads: int | None = 1,
) -> dict[str, list[float]]:
    """Seconds per forward (+ backward) pass of each layer at each length: the best of ``repeats``.

    Every (kind, n) is run once to warm up, then the repeats go round all of them in turn, so
    that a burst of load from another process hits every measurement alike; the minimum is
    the least disturbed run. On the CPU ``threads`` sets the number of threads while timing
    (default 1: with other programs on the same cores, multi-threaded kernels stall waiting
    for each other and the numbers become a lottery); ``None`` keeps PyTorch's setting.
    Returns {kind: [seconds for each n]}.
    """
    _check_sweep(lengths, kinds, d_model, n_heads, "time_against_length", repeats=repeats, batch=batch,
                 threads=threads)
    device = torch.device(device)
    # one CPU thread: count the CPU time this thread used, not the time other programs took from it
    clock = time.thread_time if device.type == "cpu" and threads == 1 else time.perf_counter
    with cpu_threads(device, threads):
        runs = {(kind, n): _runner(kind, n, d_model, batch, n_heads, backward, device)
                for kind in kinds for n in lengths}
        best = dict.fromkeys(runs, math.inf)
        for run in runs.values():
            run()  # warm-up: the first call pays for allocation
        for _ in range(repeats):
            for key, run in runs.items():
                sync(device)
                start = clock()
                run()
                sync(device)
                best[key] = min(best[key], clock() - start)
    return {kind: [best[kind, n] for n in lengths] for kind in kinds}


# ----------------------------------------------------------------------------- memory

def attention_weight_bytes(batch: int, n_heads: int, n: int, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of one layer's attention weights, a (B, H, n, n) tensor: B H n^2 times the element size."""
    for name, value in (("batch", batch), ("n_heads", n_heads), ("n", n)):
        _validate.positive_int(value, name, "attention_weight_bytes")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"attention_weight_bytes expects dtype to be a floating torch.dtype, got {dtype!r}")
    return batch * n_heads * n * n * torch.finfo(dtype).bits // 8


def measured_weight_bytes(n: int, d_model: int = 64, n_heads: int = 4, batch: int = 2) -> int:
    """Bytes of the weights tensor that ``MultiHeadAttention`` actually returns for length n.

    Shapes: x (batch, n, D) -> weights (batch, H, n, n).
    """
    n, d_model, n_heads = _check_sizes(n, d_model, n_heads, "measured_weight_bytes")
    layer = make_layer("attention", d_model, n_heads)
    with torch.no_grad():
        x = _input(n, d_model, _validate.positive_int(batch, "batch", "measured_weight_bytes"))
        weights = layer(x, x, x)[1]  # (B, H, n, n)
    return weights.nelement() * weights.element_size()


def peak_forward_memory(kind: str, n: int, d_model: int = 64, batch: int = 1, n_heads: int = 4,
                        device: torch.device | str = "cpu") -> int:
    """Peak bytes allocated during one forward pass (no autograd), above its input and weights.

    Measured with ``measure.peak_memory``: the allocator's peak on CUDA, an exact count of
    every tensor made and freed on the CPU.
    """
    kind = _validate.one_of(kind, LAYER_KINDS, "kind", "peak_forward_memory")
    n, d_model, n_heads = _check_sizes(n, d_model, n_heads, "peak_forward_memory")
    layer = make_layer(kind, d_model, n_heads).to(device)
    x = _input(n, d_model, _validate.positive_int(batch, "batch", "peak_forward_memory"), device=device)
    return peak_memory(lambda: layer_forward(layer, x), device)


# ----------------------------------------------------------------------------- path length

class _RecurrentStep(nn.Module):
    """One step of a recurrence for all positions at once: h_t <- cell(x_t, h_{t-1})."""

    def __init__(self, d_model: int):
        super().__init__()
        self.cell = RNNCell(d_model, d_model)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Shapes: x (B, n, D), h (B, n, D) -> (B, n, D)."""
        B, n, D = x.shape
        before = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)  # (B, n, D): h_{t-1}, h_{-1} = 0
        return self.cell(x.reshape(B * n, D), before.reshape(B * n, D)).view(B, n, D)


class _CausalConv(nn.Module):
    """A causal convolution: position t sees positions t - k + 1 ... t, then tanh."""

    def __init__(self, d_model: int, kernel_size: int):
        super().__init__()
        self.pad = kernel_size - 1
        self.conv = nn.Conv1d(d_model, d_model, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shapes: x (B, n, D) -> (B, n, D)."""
        y = nn.functional.pad(x.transpose(1, 2), (self.pad, 0))  # (B, D, n + k - 1)
        return torch.tanh(self.conv(y)).transpose(1, 2)  # (B, n, D)


def _reach_layer(kind: str, d_model: int, kernel_size: int, seed: int) -> Callable:
    """One seeded float64 layer as ``step(x, y) -> y'`` (the same weights at every depth).

    The recurrence applied to all positions at once (h^L_t = cell(x_t, h^{L-1}_{t-1}), h^0 = 0)
    is exact for t < L: after n steps it equals the step-by-step ``rnn.RNN``.
    """
    torch.manual_seed(seed)
    if kind == "recurrent":
        step = _RecurrentStep(d_model).double()
        return lambda x, y: step(x, y)
    if kind == "convolution":
        conv = _CausalConv(d_model, kernel_size).double()
        return lambda x, y: conv(y)
    mha = MultiHeadAttention(d_model, 2).double()
    return lambda x, y: mha(y, y, y)[0]


def _check_reach(kind: object, n: object, kernel_size: object, d_model: object, who: str) -> tuple[str, int]:
    """A known kind, n >= 1, kernel_size >= 2 and a d_model two heads can share; returns (kind, n)."""
    kind = _validate.one_of(kind, REACH_KINDS, "kind", who)
    _validate.int_in(kernel_size, "kernel_size", who, 2)  # a kernel of 1 would never mix positions
    return kind, _check_sizes(n, d_model, 2, who)[0]


def _influence_rows(kind: str, n: int, kernel_size: int, d_model: int, seed: int) -> Iterator[torch.Tensor]:
    """After each layer L = 1, 2, ...: which outputs depend on x_0, as (n,) booleans.

    Forward-mode differentiation: x_0 gets a random tangent v, and the tangent of out_j
    is the Jacobian entry d out_j / d x_0 applied to v, in one pass for every j and L.
    """
    layer = _reach_layer(kind, d_model, kernel_size, seed)
    x = _input(n, d_model, 1, seed=seed + 1).double()  # (1, n, D)
    tangent = torch.zeros_like(x)
    tangent[:, 0] = _input(1, d_model, 1, seed=seed + 2).double()[:, 0]  # only x_0 moves
    with torch.no_grad(), fwAD.dual_level():
        x = fwAD.make_dual(x, tangent)
        y = torch.zeros_like(x) if kind == "recurrent" else x
        while True:
            y = layer(x, y)  # (1, n, D)
            yield fwAD.unpack_dual(y).tangent[0].ne(0).any(-1)  # (n,)


def influence_map(kind: str, n: int, max_depth: int, kernel_size: int = 3, d_model: int = 8,
                  seed: int = 0) -> torch.Tensor:
    """Which outputs input 0 reaches after L = 1 .. max_depth layers: d out_j / d x_0 != 0.

    Computed in float64, so that a derivative that merely fades is not mistaken for none.
    Shapes: -> (max_depth, n) booleans, row L - 1, column j.
    """
    kind, n = _check_reach(kind, n, kernel_size, d_model, "influence_map")
    max_depth = _validate.positive_int(max_depth, "max_depth", "influence_map")
    rows = _influence_rows(kind, n, kernel_size, d_model, seed)
    return torch.stack([next(rows) for _ in range(max_depth)])  # (max_depth, n)


def gradient_reach(kind: str, n: int, depth: int, kernel_size: int = 3, d_model: int = 8,
                   seed: int = 0) -> torch.Tensor:
    """Which inputs x_i have a nonzero gradient d out_{n-1} / d x_i after ``depth`` layers (backward).

    Shapes: -> (n,) booleans, entry i.
    """
    kind, n = _check_reach(kind, n, kernel_size, d_model, "gradient_reach")
    depth = _validate.positive_int(depth, "depth", "gradient_reach")
    layer = _reach_layer(kind, d_model, kernel_size, seed)
    x = _input(n, d_model, 1, seed=seed + 1).double().requires_grad_(True)  # (1, n, D)
    y = torch.zeros_like(x) if kind == "recurrent" else x
    for _ in range(depth):
        y = layer(x, y)  # (1, n, D)
    (grad,) = torch.autograd.grad(y[0, -1].sum(), x)  # (1, n, D)
    return grad[0].ne(0).any(-1)  # (n,)


def path_length(kind: str, n: int, kernel_size: int = 3, d_model: int = 8, seed: int = 0) -> int:
    """Measured: the fewest layers (recurrent steps) after which d out_{n-1} / d x_0 is nonzero."""
    kind, n = _check_reach(kind, n, kernel_size, d_model, "path_length")
    for depth, reached in enumerate(_influence_rows(kind, n, kernel_size, d_model, seed), start=1):
        if reached[-1]:
            return depth
        if depth > n:
            raise RuntimeError(f"path_length: input 0 did not reach output {n - 1} in {depth} layers")
    raise AssertionError("unreachable")


def expected_path_length(kind: str, n: int, kernel_size: int = 3) -> int:
    """The closed form of ``path_length``: the paper's "maximum path length" column, with constants.

    Recurrent: n steps (x_0 enters at the first, then one position per step). Causal
    convolution of kernel k: each layer reaches k - 1 positions back, ceil((n - 1) / (k - 1))
    layers, at least 1. Attention: 1 layer, whatever n.
    """
    kind = _validate.one_of(kind, REACH_KINDS, "kind", "expected_path_length")
    n = _validate.positive_int(n, "n", "expected_path_length")
    _validate.int_in(kernel_size, "kernel_size", "expected_path_length", 2)
    if kind == "recurrent":
        return n
    if kind == "convolution":
        return max(1, math.ceil((n - 1) / (kernel_size - 1)))
    return 1


# ----------------------------------------------------------------------------- the widget's logic

def timing_report(n: int, d_model: int, repeats: int = 2, device: torch.device | str = "cpu",
                  n_heads: int = 4) -> dict[str, dict[str, float]]:
    """One (n, d_model): forward + backward seconds (measured), forward FLOPs and sequential steps.

    The FLOPs and steps come from ``expected_flops`` and ``expected_steps``, which the tests
    (and notebook 09) check equal to ``count_flops`` and ``sequential_steps``; counting them
    live would cost more than the timing itself.
    """
    n, d_model, n_heads = _check_sizes(n, d_model, n_heads, "timing_report")
    seconds = time_against_length([n], LAYER_KINDS, d_model, n_heads=n_heads, repeats=repeats,
                                  device=device)
    return {kind: {"seconds": seconds[kind][0], "flops": float(expected_flops(kind, n, d_model)),
                   "steps": float(expected_steps(kind, n))} for kind in LAYER_KINDS}


_COLORS = {"rnn_loop": "tab:red", "gru": "tab:orange", "attention": "tab:blue"}
_LABELS = {"rnn_loop": "RNN loop", "gru": "nn.GRU", "attention": "self-attention"}


def timing_figure(n: int = 256, d_model: int = 64, repeats: int = 2,
                  device: torch.device | str = "cpu") -> Figure:
    """The widget's figure: time, FLOPs and sequential steps of the three layers at one (n, d_model)."""
    from matplotlib.figure import Figure  # here, not at the top: the exercise checks import this module

    report = timing_report(n, d_model, repeats, device)
    fig = Figure(figsize=(10, 3.4))
    axes = fig.subplots(1, 3)
    panels = (("seconds", 1e3, "forward + backward (ms)"), ("flops", 1e-6, "forward MFLOPs (matmuls)"),
              ("steps", 1, "sequential steps"))
    labels = [_LABELS[k] for k in LAYER_KINDS]
    for ax, (key, scale, title) in zip(axes, panels, strict=True):
        values = [report[k][key] * scale for k in LAYER_KINDS]
        bars = ax.bar(labels, values, color=[_COLORS[k] for k in LAYER_KINDS])
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in values], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, max(values) * 1.2)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"one layer at n = {n}, d_model = {d_model} on {torch.device(device).type} "
                 f"(FLOPs and steps: same on any device)", fontsize=10)
    fig.tight_layout()
    return fig
