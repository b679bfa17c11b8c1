"""Measuring instruments: peak memory, operator traces, timers, power-law fits, the work-depth model.

Used by the experiments of notebooks 09 and 11 (and the benchmarks); nothing here is part
of a model. Memory is measured, not estimated. On CUDA: the allocator's peak
(``torch.cuda.max_memory_allocated``). On the CPU: :class:`AllocationTracker`, a
``TorchDispatchMode`` that sees every tensor each operator returns and frees.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakTensorKeyDictionary

from . import _validate

__all__ = ["Allocation", "AllocationTracker", "peak_memory", "OperatorTrace", "sync", "best_time",
           "cpu_threads", "fit_exponent", "fit_growth_exponent", "work_depth_time"]


# ----------------------------------------------------------------------------- memory

@dataclass(frozen=True)
class Allocation:
    """One allocation seen by :class:`AllocationTracker`."""

    op: str  # the operator that returned the tensor, e.g. "aten.mm.default"
    shape: tuple[int, ...]
    nbytes: int
    live_after: int  # bytes alive (allocated inside the tracker and not yet freed) afterwards


def _tensors(items: tuple) -> list[torch.Tensor]:
    """The tensors in nested tuples and lists (an operator's arguments or results)."""
    found = []
    for x in items:
        if isinstance(x, torch.Tensor):
            found.append(x)
        elif isinstance(x, (tuple, list)):
            found.extend(_tensors(x))
    return found


class AllocationTracker(TorchDispatchMode):
    """Count the bytes of every tensor storage created inside the ``with`` block; keep the peak.

    A ``TorchDispatchMode`` sees each ATen operator and what it returns. An output whose
    storage is not one of the operator's inputs' storages is a new allocation (a view or an
    in-place result shares its input's storage); a weak-reference finalizer on the storage
    subtracts its bytes the moment it is freed. The count is exact and deterministic: it does
    not depend on the allocator's caching, on other threads or on the operating system, unlike
    the process's resident memory. It does not see the scratch buffers a fused kernel allocates
    *inside* one operator (PyTorch's CPU flash kernel keeps a few per-thread blocks there,
    independent of n), and it ignores tensors made before the block (the inputs).
    ``keep_log=True`` records each allocation (operator, shape, bytes, bytes alive after it).
    """

    def __init__(self, keep_log: bool = False):
        super().__init__()
        self.keep_log = keep_log
        self.live = 0  # bytes allocated inside the block and not yet freed
        self.peak = 0  # the largest value ``live`` reached
        self.log: list[Allocation] = []
        self._sizes: dict[int, int] = {}  # storage address -> bytes, for the storages we track

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = {t.untyped_storage().data_ptr() for t in _tensors((args, tuple(kwargs.values())))}
        out = func(*args, **kwargs)
        for t in _tensors((out,)):
            self._track(t, inputs, func)
        return out

    def _track(self, t: torch.Tensor, inputs: set[int], op: object) -> None:
        storage = t.untyped_storage()
        ptr, nbytes = storage.data_ptr(), storage.nbytes()
        if nbytes == 0 or ptr in inputs or ptr in self._sizes:
            return
        self._sizes[ptr] = nbytes
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, ptr, nbytes)
        if self.keep_log:
            self.log.append(Allocation(str(op), tuple(t.shape), nbytes, self.live))

    def _free(self, ptr: int, nbytes: int) -> None:
        if self._sizes.pop(ptr, None) is not None:
            self.live -= nbytes


def peak_memory(fn: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Peak bytes allocated while ``fn()`` runs, above what was allocated before it.

    CUDA: the caching allocator's statistics (``torch.cuda.max_memory_allocated``), after one
    warm-up call. CPU: :class:`AllocationTracker`. Runs without autograd; the result is dropped.
    """
    device = torch.device(device)
    if device.type == "cuda":
        with torch.no_grad():
            fn()  # warm-up: one-time allocations (cuBLAS workspace, kernels) are not the algorithm's
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        with torch.no_grad():
            result = fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        del result
        return int(peak)
    if device.type != "cpu":
        raise ValueError(f"peak_memory measures on 'cpu' or 'cuda', got device {device}")
    with torch.no_grad(), AllocationTracker() as tracker:
        result = fn()
        del result
    return tracker.peak


# ----------------------------------------------------------------------------- operators

class OperatorTrace(TorchDispatchMode):
    """Count the ATen operators run inside the ``with`` block and their longest dependency chain.

    Each tensor an operator returns gets a depth: 1 + the largest depth among the operator's
    input tensors (0 for tensors made before the block). A view (``x.view``, ``x[:, t]``)
    computes nothing and keeps its input's depth. ``critical_path`` is the largest depth: the
    number of operators that must run one after another, however many processors there are.
    ``counts`` maps each operator's name (``"mm"``, ``"tanh"``, ``"_softmax"``) to its calls.
    ``step_operators`` (names such as ``("tanh",)``) marks the operators that end one step of a
    layer: ``step_depth`` is then the largest number of them on one chain of dependent operators,
    the sequential steps of whatever ran (L recurrent cells stepped position by position over n
    positions: n + L - 1; a step whose result is stored in one tensor with later steps' results
    counts as finished only when they are, since the trace follows tensors, not their elements).
    """

    def __init__(self, step_operators: Sequence[str] = ()):
        super().__init__()
        self.operators = 0
        self.critical_path = 0
        self.step_depth = 0
        self.counts: dict[str, int] = {}
        self._step_operators = frozenset(step_operators)
        self._depth = WeakTensorKeyDictionary()  # tensor -> (operators, steps) on its longest chain

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        name = func.overloadpacket.__name__.rstrip("_")  # in-place "tanh_" counts as "tanh"
        before = [self._depth.get(t, (0, 0)) for t in inputs]
        depth = max((d for d, _ in before), default=0) + (0 if func.is_view else 1)
        steps = max((s for _, s in before), default=0) + (name in self._step_operators)
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._depth[t] = (depth, steps)
        self.counts[name] = self.counts.get(name, 0) + 1
        self.operators += 1
        self.critical_path = max(self.critical_path, depth)
        self.step_depth = max(self.step_depth, steps)
        return out


# ----------------------------------------------------------------------------- time

def sync(device: torch.device | str) -> None:
    """Wait for the GPU's queued work (a no-op on the CPU), so that a timer measures it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], object], repeats: int = 3, device: torch.device | str = "cpu") -> float:
    """The best of ``repeats`` wall-clock times of ``fn()`` in seconds, after one warm-up call."""
    with torch.no_grad():
        fn()
        best = float("inf")
        for _ in range(max(1, repeats)):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            best = min(best, time.perf_counter() - start)
    return best


@contextmanager
def cpu_threads(device: torch.device, threads: int | None) -> Iterator[None]:
    """On the CPU, run with ``threads`` threads (None: as set) and restore the setting afterwards."""
    before = torch.get_num_threads()
    if device.type == "cpu" and threads is not None:
        torch.set_num_threads(_validate.positive_int(threads, "threads", "cpu_threads"))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- power laws

def fit_exponent(lengths: Sequence[float], values: Sequence[float]) -> float:
    """The slope of log(values) against log(lengths): values ~ c * n^slope."""
    x, y = np.log(np.asarray(lengths, dtype=float)), np.log(np.asarray(values, dtype=float))
    if x.size < 2 or x.size != y.size:
        raise ValueError(f"fit_exponent expects at least 2 (length, value) pairs of equal count, "
                         f"got {x.size} lengths and {y.size} values")
    return float(np.polyfit(x, y, 1)[0])


def fit_growth_exponent(lengths: Sequence[float], values: Sequence[float]) -> float:
    """The exponent p of the part of ``values`` that grows, for values = a + c * n^p, a constant.

    ``lengths`` must grow by a constant factor r (e.g. doubling): then the increments
    values[i+1] - values[i] = c (r^p - 1) n_i^p, and their log-log slope is p; the constant
    a (here: tiled attention's fixed block workspace) drops out.
    """
    n, y = np.asarray(lengths, dtype=float), np.asarray(values, dtype=float)
    if n.size < 3 or n.size != y.size:
        raise ValueError(f"fit_growth_exponent expects at least 3 (length, value) pairs of equal count, "
                         f"got {n.size} lengths and {y.size} values")
    ratios = n[1:] / n[:-1]
    if not np.allclose(ratios, ratios[0]) or ratios[0] <= 1:
        raise ValueError(f"fit_growth_exponent expects lengths that grow by a constant factor "
                         f"(e.g. double), got {list(lengths)}")
    growth = np.diff(y)
    if (growth <= 0).any():
        raise ValueError(f"fit_growth_exponent expects values that increase with the length, "
                         f"got {list(values)}")
    return fit_exponent(n[:-1], growth)


# ----------------------------------------------------------------------------- work and depth

def work_depth_time(work: float, depth: float, processors: float, flop_rate: float,
                    latency: float) -> float:
    """The work-depth model of run time: T(P) = W / (P r) + D tau, a model, not a measurement.

    W floating-point operations shared by P processors that each do r per second, and a chain
    of D operators that must run one after another, each taking at least tau seconds however
    many processors there are (Brent's bound, with the latency written out).
    """
    for name, value in (("work", work), ("depth", depth), ("processors", processors),
                        ("flop_rate", flop_rate), ("latency", latency)):
        _validate.positive_number(value, name, "work_depth_time")
    return work / (processors * flop_rate) + depth * latency

