"""The measurements of notebook 09 (why Transformers won): the paper's Table 1, measured.

Per-layer cost, sequential steps and path length against n.

Shapes: B batch, n sequence length (T elsewhere in the course), D d_model, H heads, Dh head size.

Three layers map ``(B, n, D) -> (B, n, D)``: ``"rnn_loop"``, the course's from-scratch
``rnn.RNN`` (a Python loop over time); ``"gru"``, PyTorch's ``nn.GRU`` (its loop runs in
C++, or inside one cuDNN kernel on CUDA); ``"attention"``, the course's
``MultiHeadAttention`` used as self-attention. ``"rnn"``, PyTorch's ``nn.RNN`` (the plain
tanh recurrence with its loop in C++), joins ``"gru"`` and ``"attention"`` in
``bench/parallel.py``, which times the layers against the number of threads
(:data:`PARALLEL_KINDS`). For each, measured rather than asserted:

- time per layer, forward and forward + backward (:func:`time_against_length`);
- floating-point operations (:func:`count_flops`, PyTorch's ``FlopCounterMode``);
- sequential steps and the longest chain of dependent operators (:func:`trace_layer`, a
  ``TorchDispatchMode`` that sees every ATen operator the layer runs), also for stacks of
  layers (:func:`stack_steps`) and whole encoder-decoders (:func:`encoder_decoder_steps`);
- the maximum path length, as how far a gradient reaches (:func:`gradient_reach`,
  :func:`path_length`) for a recurrence, a causal convolution and attention stacked L times;
- the bytes of the ``(B, H, n, n)`` attention weights, the peak memory of a forward pass
  (no autograd) and what a forward pass with autograd keeps for the backward pass.

The instruments come from ``measure``: ``OperatorTrace``, ``peak_memory``, ``cpu_threads``, ``sync``;
exponents are fitted on log-log axes with ``measure.fit_exponent``; the work-depth model of time
against processors is ``measure.work_depth_time`` with ``measure.fit_work_depth``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .. import _validate
from ..attention import MultiHeadAttention
from ..measure import AllocationTracker, OperatorTrace, cpu_threads, peak_memory, sync
from ..rnn import RNN, RNNCell

if TYPE_CHECKING:  # at run time timing_figure imports it: the exercise checks import this module
    from matplotlib.figure import Figure

__all__ = [
    "LAYER_KINDS", "PARALLEL_KINDS", "REACH_KINDS", "make_layer", "layer_forward", "trace_layer",
    "operator_counts", "sequential_steps", "expected_steps", "stack_steps", "expected_stack_steps",
    "encoder_decoder_steps", "count_flops", "expected_flops", "forward_backward_pass", "time_against_length",
    "attention_weight_bytes", "measured_weight_bytes", "peak_forward_memory", "kept_for_backward",
    "gradient_reach", "influence_map", "path_length", "expected_path_length", "timing_report",
    "timing_figure",
]

LAYER_KINDS = ("rnn_loop", "gru", "attention")  # the notebook's three
PARALLEL_KINDS = ("rnn", "gru", "attention")  # bench/parallel.py's: both recurrences with C++ loops
_KINDS = (*LAYER_KINDS, "rnn")  # every kind make_layer builds
REACH_KINDS = ("recurrent", "convolution", "attention")
# The operator that marks one step: a recurrent step ends in one tanh (the new state, or the
# GRU's candidate state); attention computes all positions with one softmax. The backward pass
# runs each step's derivative once: tanh_backward, _softmax_backward_data.
_STEP_OPERATOR = {"rnn_loop": "tanh", "rnn": "tanh", "gru": "tanh", "attention": "_softmax"}
_BACKWARD_STEP = {"tanh": "tanh_backward", "_softmax": "_softmax_backward_data"}


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
    kind = _validate.one_of(kind, _KINDS, "kind", "make_layer")
    _check_sizes(1, d_model, n_heads, "make_layer")
    torch.manual_seed(seed)
    if kind == "rnn_loop":
        return RNN(d_model, d_model)
    if kind == "rnn":
        return nn.RNN(d_model, d_model, batch_first=True)  # tanh, the same recurrence as rnn.RNN
    if kind == "gru":
        return nn.GRU(d_model, d_model, batch_first=True)
    return MultiHeadAttention(d_model, n_heads)


def layer_forward(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One layer's outputs at every position: the hidden states of an RNN, self-attention's output.

    Shapes: x (B, n, D) -> (B, n, D).
    """
    if isinstance(layer, MultiHeadAttention):
        return layer(x, x, x)[0]  # (B, n, D); the weights (B, H, n, n) are dropped
    if isinstance(layer, (RNN, nn.RNN, nn.GRU)):
        return layer(x)[0]  # (B, n, D): the state after every step
    raise TypeError(f"layer_forward expects an rnn.RNN, nn.RNN, nn.GRU or MultiHeadAttention, "
                    f"got {type(layer).__name__}")


def _input(n: int, d_model: int, batch: int, seed: int = 0, device: torch.device | str = "cpu",
           requires_grad: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n, d_model, generator=g).to(device)  # (B, n, D)
    return x.requires_grad_(requires_grad)


# ----------------------------------------------------------------------------- sequential steps

def _trace(layers: Sequence[nn.Module], kind: str, x: torch.Tensor, backward: bool) -> OperatorTrace:
    """Trace the layers applied one after another to x (and the backward pass of their sum)."""
    step = _STEP_OPERATOR[kind]
    trace = OperatorTrace(step_operators=(step, _BACKWARD_STEP[step]))
    with torch.set_grad_enabled(backward), trace:
        for layer in layers:
            x = layer_forward(layer, x)  # (B, n, D)
        if backward:
            x.sum().backward()
    return trace


def trace_layer(kind: str, n: int, d_model: int = 32, batch: int = 1, n_heads: int = 4,
                backward: bool = False) -> dict[str, int]:
    """Operators, critical path and sequential steps of one forward pass, traced on the CPU.

    Returns {"operators": ATen calls, "critical_path": the longest chain of dependent operators,
    "sequential_steps": the step operators on the longest chain (tanh for the RNNs: one per
    time step; softmax for attention: one for all positions)}. ``backward=True`` traces the
    backward pass of the outputs' sum too (the gradients of the input and every weight), whose
    steps are the derivatives of the same operators. Traced on the CPU, where the C++ loops of
    ``nn.RNN`` and ``nn.GRU`` go through the dispatcher operator by operator (on CUDA, cuDNN
    runs the same n steps inside one kernel, invisible to the trace). The counts depend on n,
    not on d_model; a batch of 1 saves attention a few copies (a reshape that can be a view).
    """
    kind = _validate.one_of(kind, _KINDS, "kind", "trace_layer")
    n, d_model, n_heads = _check_sizes(n, d_model, n_heads, "trace_layer")
    _validate.positive_int(batch, "batch", "trace_layer")
    x = _input(n, d_model, batch, requires_grad=backward)  # (B, n, D)
    trace = _trace([make_layer(kind, d_model, n_heads)], kind, x, backward)
    return {"operators": trace.operators, "critical_path": trace.critical_path,
            "sequential_steps": trace.step_depth}


def operator_counts(kind: str, n: int, d_model: int = 32, batch: int = 1, n_heads: int = 4,
                    backward: bool = False) -> dict[str, int]:
    """How often each ATen operator runs in one layer's pass: {"mm": 8, "clone": 3, ...}.

    The same trace as ``trace_layer``, by operator name (a view such as ``view`` counts as a call).
    """
    kind = _validate.one_of(kind, _KINDS, "kind", "operator_counts")
    n, d_model, n_heads = _check_sizes(n, d_model, n_heads, "operator_counts")
    layer = make_layer(kind, d_model, n_heads)
    x = _input(n, d_model, _validate.positive_int(batch, "batch", "operator_counts"), requires_grad=backward)
    return dict(_trace([layer], kind, x, backward).counts)


def sequential_steps(kind: str, n: int, d_model: int = 32) -> int:
    """Measured: how many steps one forward pass runs one after another (see ``trace_layer``)."""
    return trace_layer(kind, n, d_model)["sequential_steps"]


def expected_steps(kind: str, n: int) -> int:
    """The closed form of ``sequential_steps``, the paper's O(n) and O(1): n for the RNNs, 1 for attention."""
    kind = _validate.one_of(kind, _KINDS, "kind", "expected_steps")
    return 1 if kind == "attention" else _validate.positive_int(n, "n", "expected_steps")


class _StackedCells(nn.Module):
    """L recurrent cells run position by position, the way a stacked decoder steps: at each t,
    layer l reads layer l - 1's new state. (A layer-by-layer loop returns each layer's states as
    one tensor, which a tensor-level trace must treat as finished only after its last step.)"""

    def __init__(self, kind: str, d_model: int, n_layers: int):
        super().__init__()
        cell = {"rnn_loop": RNNCell, "rnn": nn.RNNCell, "gru": nn.GRUCell}[kind]
        self.cells = nn.ModuleList(cell(d_model, d_model) for _ in range(n_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shapes: x (B, n, D) -> the last layer's states (B, n, D)."""
        h = [x.new_zeros(x.shape[0], x.shape[2]) for _ in self.cells]  # L x (B, D)
        outputs = []
        for t in range(x.shape[1]):
            below = x[:, t]  # (B, D)
            for layer, cell in enumerate(self.cells):
                h[layer] = below = cell(below, h[layer])  # (B, D)
            outputs.append(below)
        return torch.stack(outputs, dim=1)  # (B, n, D)


def stack_steps(kind: str, n: int, n_layers: int, d_model: int = 16) -> int:
    """Measured: the sequential steps of ``n_layers`` layers of one kind stacked, one forward pass.

    Traced like ``trace_layer``: the most step operators on one chain of dependent operators.
    Attention layers run one after another; recurrent ones position by position (``_StackedCells``).
    """
    kind = _validate.one_of(kind, _KINDS, "kind", "stack_steps")
    n, d_model, _ = _check_sizes(n, d_model, 4, "stack_steps")
    n_layers = _validate.positive_int(n_layers, "n_layers", "stack_steps")
    torch.manual_seed(0)
    x = _input(n, d_model, 1)  # (1, n, D)
    if kind == "attention":
        return _trace([make_layer(kind, d_model, seed=i) for i in range(n_layers)], kind, x, False).step_depth
    stack = _StackedCells(kind, d_model, n_layers)
    with torch.no_grad(), OperatorTrace(step_operators=(_STEP_OPERATOR[kind],)) as trace:
        stack(x)
    return trace.step_depth


def expected_stack_steps(kind: str, n: int, n_layers: int) -> int:
    """The closed form of ``stack_steps``: each layer that must wait for a result is one step.

    Recurrent: n + L - 1 (a wavefront: layer l at position t waits for layer l at t - 1 and for
    layer l - 1 at t). Attention: L (each layer waits for the whole output of the one below).
    """
    kind = _validate.one_of(kind, _KINDS, "kind", "expected_stack_steps")
    n = _validate.positive_int(n, "n", "expected_stack_steps")
    n_layers = _validate.positive_int(n_layers, "n_layers", "expected_stack_steps")
    return n_layers if kind == "attention" else n + n_layers - 1


def encoder_decoder_steps(kind: str, src_len: int, tgt_len: int, n_layers: int = 1,
                          decoding: bool = False) -> int:
    """Sequential steps of an encoder-decoder with ``n_layers`` layers on each side, counted one
    way for every model: each layer that must wait for another's result is a step.

    The decoder waits for the encoder (its first state, or the keys its attention reads). In
    training (teacher forcing) each side is a stack (``expected_stack_steps``): recurrent
    (S + L - 1) + (T + L - 1), attention L + L. In greedy decoding each target token waits for
    the one before it, through all L decoder layers: the encoder's stack, then T L for both kinds.
    """
    kind = _validate.one_of(kind, ("recurrent", "attention"), "kind", "encoder_decoder_steps")
    layer = "rnn" if kind == "recurrent" else "attention"
    encoder = expected_stack_steps(layer, src_len, n_layers)
    tgt_len = _validate.positive_int(tgt_len, "tgt_len", "encoder_decoder_steps")
    return encoder + (tgt_len * n_layers if decoding else expected_stack_steps(layer, tgt_len, n_layers))


# ----------------------------------------------------------------------------- per-layer cost

def count_flops(kind: str, n: int, d_model: int, batch: int = 1, n_heads: int = 4,
                backward: bool = False) -> int:
    """Floating-point operations of one forward pass, counted by PyTorch's ``FlopCounterMode``.

    It counts the matrix products (2 per multiply-add), which dominate; the elementwise
    operations (tanh, softmax, the gates) are not counted. ``backward=True`` counts the backward
    pass of the outputs' sum as well (gradients of the input and every weight): about three
    times the forward, since each product (A B) needs two more for the gradients of A and B.
    """
    kind = _validate.one_of(kind, _KINDS, "kind", "count_flops")
    n, d_model, n_heads = _check_sizes(n, d_model, n_heads, "count_flops")
    _validate.positive_int(batch, "batch", "count_flops")
    layer = make_layer(kind, d_model, n_heads)
    x = _input(n, d_model, batch, requires_grad=backward)
    with torch.set_grad_enabled(backward), FlopCounterMode(display=False) as counter:
        out = layer_forward(layer, x)
        if backward:
            out.sum().backward()
    return int(counter.get_total_flops())


def expected_flops(kind: str, n: int, d_model: int, batch: int = 1, backward: bool = False) -> int:
    """The closed form of ``count_flops``: the per-layer column of the paper's Table 1, with constants.

    RNN (``rnn_loop`` and ``rnn``): two (D, D) products per position, 4 n D^2. GRU: three gates,
    12 n D^2. Attention: four (D, D) projections, 8 n D^2, plus Q K^T and weights @ V, 4 n^2 D
    (the paper's O(n^2 d)). So attention over a plain RNN is (8 n D^2 + 4 n^2 D) / 4 n D^2 =
    2 + n / D, more at every n; over a GRU (2 + n / D) / 3, more exactly when n > D.
    With ``backward``: three times the forward, less the gradient of the zero initial state,
    which the recurrences skip (one (D, D) product per gate).
    """
    kind = _validate.one_of(kind, _KINDS, "kind", "expected_flops")
    gates = {"rnn_loop": 1, "rnn": 1, "gru": 3, "attention": 0}[kind]
    per_position = (8 if kind == "attention" else 4 * gates) * n * d_model**2
    pairs = 4 * n * n * d_model if kind == "attention" else 0
    forward = batch * (per_position + pairs)
    return 3 * forward - 2 * batch * gates * d_model**2 if backward else forward


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
        _validate.one_of(kind, _KINDS, "kind", who)
    for name, value in counts.items():
        if value is not None:
            _validate.positive_int(value, name, who)


def forward_backward_pass(kind: str, n: int, d_model: int, batch: int = 1, n_heads: int = 4,
                          backward: bool = True, device: torch.device | str = "cpu") -> Callable[[], None]:
    """A function that runs one forward (and backward) pass of a fresh layer on a fixed input.

    The backward pass is that of the outputs' sum: the gradients of the input and every weight.
    """
    kind = _validate.one_of(kind, _KINDS, "kind", "forward_backward_pass")
    n, d_model, n_heads = _check_sizes(n, d_model, n_heads, "forward_backward_pass")
    layer = make_layer(kind, d_model, n_heads).to(device)
    x = _input(n, d_model, _validate.positive_int(batch, "batch", "forward_backward_pass"), device=device,
               requires_grad=backward)

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

    The repeats go round all the (kind, n) in turn, so that a burst of load from another
    process hits every measurement alike; the minimum is the least disturbed run. Each timed
    run directly follows an untimed run of the same layer at the same n: it measures a layer
    run again and again at one size, as in training, not the cost of coming back to it after
    another layer (cold caches, memory the allocator must fetch afresh), which at the shortest
    n can double the time. On the CPU ``threads`` sets the number of threads while timing
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
        runs = {(kind, n): forward_backward_pass(kind, n, d_model, batch, n_heads, backward, device)
                for kind in kinds for n in lengths}
        best = dict.fromkeys(runs, math.inf)
        for _ in range(repeats):
            for key, run in runs.items():
                run()  # untimed: the timed run below follows a run of the same layer and n
                sync(device)
                start = clock()
                run()
                sync(device)
                best[key] = min(best[key], clock() - start)
    return {kind: [best[kind, n] for n in lengths] for kind in kinds}


def crossover_length(lengths: Sequence[float], a: Sequence[float], b: Sequence[float]) -> float | None:
    """The length at which the times ``a`` first reach the times ``b`` (None: never in this range).

    Between the two measured lengths that bracket it, the ratio a / b is interpolated on log-log
    axes. If a >= b already at the first length, that length is returned.
    """
    if not len(lengths) == len(a) == len(b) >= 1:
        raise ValueError(f"crossover_length expects lengths and two series of the same non-zero size, "
                         f"got {len(lengths)}, {len(a)} and {len(b)}")
    log_ratio = [math.log(x / y) for x, y in zip(a, b, strict=True)]  # < 0 while a is faster
    if log_ratio[0] >= 0:
        return float(lengths[0])
    for i in range(1, len(lengths)):
        if log_ratio[i] >= 0:
            lo, hi = math.log(lengths[i - 1]), math.log(lengths[i])
            w = -log_ratio[i - 1] / (log_ratio[i] - log_ratio[i - 1])
            return float(math.exp(lo + w * (hi - lo)))
    return None


def speedup(seconds_by_threads: Sequence[Sequence[float]]) -> dict[str, list[float]]:
    """Speed-up over one thread from repeated timings (the first list: one thread).

    Returns {"median": median T(1) / median T(P), "low": median T(1) / max T(P), "high":
    median T(1) / min T(P)} for each thread count P, as ``bench/parallel.py`` reports them.
    """
    if len(seconds_by_threads) == 0 or any(len(s) == 0 for s in seconds_by_threads):
        raise ValueError("speedup expects a non-empty list of timings for each thread count")
    one = statistics.median(seconds_by_threads[0])
    return {"median": [one / statistics.median(s) for s in seconds_by_threads],
            "low": [one / max(s) for s in seconds_by_threads],
            "high": [one / min(s) for s in seconds_by_threads]}


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
    kind = _validate.one_of(kind, _KINDS, "kind", "peak_forward_memory")
    n, d_model, n_heads = _check_sizes(n, d_model, n_heads, "peak_forward_memory")
    layer = make_layer(kind, d_model, n_heads).to(device)
    x = _input(n, d_model, _validate.positive_int(batch, "batch", "peak_forward_memory"), device=device)
    return peak_memory(lambda: layer_forward(layer, x), device)


def kept_for_backward(kind: str, n: int, d_model: int = 64, batch: int = 1, n_heads: int = 4) -> int:
    """Bytes a forward pass with autograd on leaves alive for the backward pass, beyond its output.

    The training case that ``peak_forward_memory`` leaves out: counted on the CPU by
    ``measure.AllocationTracker``, every tensor the pass made that the autograd graph still
    holds once the pass has returned (the output itself is not counted).
    """
    kind = _validate.one_of(kind, _KINDS, "kind", "kept_for_backward")
    n, d_model, n_heads = _check_sizes(n, d_model, n_heads, "kept_for_backward")
    layer = make_layer(kind, d_model, n_heads)  # its weights require gradients: autograd records the pass
    x = _input(n, d_model, _validate.positive_int(batch, "batch", "kept_for_backward"))
    with torch.enable_grad(), AllocationTracker() as tracker:
        out = layer_forward(layer, x)  # (B, n, D)
    kept = tracker.live - out.untyped_storage().nbytes()
    del out  # frees the graph, and what it kept
    return kept


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
                  n_heads: int = 4, threads: int = 1) -> dict[str, dict[str, float]]:
    """One (n, d_model): forward + backward seconds (measured), forward FLOPs and sequential steps.

    The FLOPs and steps come from ``expected_flops`` and ``expected_steps``, which the tests
    (and notebook 09) check equal to ``count_flops`` and ``sequential_steps``; counting them
    live would cost more than the timing itself. ``threads``: CPU threads while timing.
    """
    n, d_model, n_heads = _check_sizes(n, d_model, n_heads, "timing_report")
    seconds = time_against_length([n], LAYER_KINDS, d_model, n_heads=n_heads, repeats=repeats,
                                  device=device, threads=threads)
    return {kind: {"seconds": seconds[kind][0], "flops": float(expected_flops(kind, n, d_model)),
                   "steps": float(expected_steps(kind, n))} for kind in LAYER_KINDS}


_COLORS = {"rnn_loop": "tab:red", "gru": "tab:orange", "attention": "tab:blue"}
_LABELS = {"rnn_loop": "RNN loop", "gru": "nn.GRU", "attention": "self-attention"}


def timing_figure(n: int = 256, d_model: int = 64, repeats: int = 2,
                  device: torch.device | str = "cpu", threads: int = 1) -> Figure:
    """The widget's figure: time, FLOPs and sequential steps of the three layers at one (n, d_model).

    ``threads``: CPU threads while timing (on a GPU it changes nothing).
    """
    from matplotlib.figure import Figure  # here, not at the top: the exercise checks import this module

    report = timing_report(n, d_model, repeats, device, threads=threads)
    fig = Figure(figsize=(10, 3.4))
    axes = fig.subplots(1, 3)
    panels = (("seconds", 1e3, "forward + backward (ms)"), ("flops", 1e-6, "MFLOPs, forward only (matmuls)"),
              ("steps", 1, "sequential steps"))
    labels = [_LABELS[k] for k in LAYER_KINDS]
    for ax, (key, scale, title) in zip(axes, panels, strict=True):
        values = [report[k][key] * scale for k in LAYER_KINDS]
        bars = ax.bar(labels, values, color=[_COLORS[k] for k in LAYER_KINDS])
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in values], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, max(values) * 1.2)
        ax.tick_params(axis="x", labelsize=8)
    where = f"{threads} CPU thread{'s' * (threads > 1)}" if torch.device(device).type == "cpu" else "cuda"
    fig.suptitle(f"one layer at n = {n}, d_model = {d_model}, {where} "
                 f"(FLOPs and steps: the same on any device)", fontsize=10)
    fig.tight_layout()
    return fig
