"""measure: the memory tracker, operator trace, timer and power-law fits count what they should."""

from __future__ import annotations

import pytest
import torch

from transformer_course import efficient
from transformer_course.measure import (
    AllocationTracker,
    OperatorTrace,
    best_time,
    cpu_threads,
    fit_exponent,
    fit_growth_exponent,
    peak_memory,
    work_depth_time,
)

# ----------------------------------------------------------------------------- memory

def test_tracker_counts_new_storages_not_views_and_keeps_the_peak():
    x = torch.randn(1000)  # made before: not counted
    with AllocationTracker(keep_log=True) as tracker:
        view = x[10:].view(-1, 10)  # a view: no new memory
        x.mul_(2)  # in place: no new memory
        a = torch.empty(256, dtype=torch.float32)  # 1024 bytes
        b = torch.empty(512, dtype=torch.float64)  # 4096 bytes
        del a
        c = torch.empty(10, dtype=torch.float32)  # 40 bytes, after a was freed
    assert tracker.peak == 1024 + 4096
    assert tracker.live == 4096 + 40
    assert [entry.nbytes for entry in tracker.log] == [1024, 4096, 40]
    assert view.shape == (99, 10) and b.numel() == 512 and c.numel() == 10


def test_peak_memory_of_naive_attention_is_its_weights():
    q = torch.randn(1, 1, 512, 64)
    weights = 512 * 512 * 4
    peak = peak_memory(lambda: efficient.naive_attention(q, q, q))
    assert 2 * weights <= peak <= 2 * weights + 4 * q.numel() * 4  # scores and softmax, both (T, S)


def test_peak_memory_refuses_other_devices():
    with pytest.raises(ValueError, match="device"):
        peak_memory(lambda: None, device="meta")


# ----------------------------------------------------------------------------- operators

def test_operator_trace_counts_operators_and_their_longest_chain():
    a, b = torch.randn(3, 4), torch.randn(4, 5)
    with OperatorTrace() as trace:
        y = (a @ b).tanh()  # a chain of 2
        z = y.view(15)  # a view: no new depth
        w = z + a.sum()  # sum runs beside the chain; add sits after it: depth 3
    assert trace.counts["mm"] == 1 and trace.counts["tanh"] == 1 and trace.counts["add"] == 1
    assert trace.operators == 5  # mm, tanh, view, sum, add
    assert trace.critical_path == 3
    assert w.shape == (15,)
    assert trace.step_depth == 0  # no step operators named


def test_operator_trace_counts_the_step_operators_on_the_longest_chain():
    h, W = torch.randn(2, 4), torch.randn(4, 4)
    with OperatorTrace(step_operators=("tanh",)) as trace:
        side = torch.tanh(h)  # a step beside the chain, not on it
        for _ in range(5):
            h = torch.tanh(h @ W)  # five steps, each waiting for the one before
        h = h + side
    assert trace.counts["tanh"] == 6 and trace.step_depth == 5
    assert trace.critical_path == 11  # 5 x (mm, tanh), then add


# ----------------------------------------------------------------------------- time

def test_best_time_is_positive_and_runs_the_function_once_more_than_repeats():
    calls = []
    seconds = best_time(lambda: calls.append(torch.randn(64, 64) @ torch.randn(64, 64)), repeats=3)
    assert seconds > 0 and len(calls) == 4  # one warm-up, then 3 timed runs


def test_cpu_threads_sets_and_restores_the_thread_count():
    before = torch.get_num_threads()
    with cpu_threads(torch.device("cpu"), 1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads to be a positive int, got 0"):
        with cpu_threads(torch.device("cpu"), 0):
            pass


# ----------------------------------------------------------------------------- power laws

def test_fit_exponents():
    n = [100, 200, 400, 800]
    assert fit_exponent(n, [3 * x**2 for x in n]) == pytest.approx(2.0)
    assert fit_growth_exponent(n, [1e6 + 5 * x for x in n]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="fit_exponent expects at least 2"):
        fit_exponent([1], [1])
    with pytest.raises(ValueError, match="constant factor"):
        fit_growth_exponent([1, 2, 5], [1, 2, 3])
    with pytest.raises(ValueError, match="increase"):
        fit_growth_exponent([1, 2, 4], [3, 2, 1])


# ----------------------------------------------------------------------------- work and depth

def test_work_depth_time_is_work_shared_plus_the_chain():
    assert work_depth_time(1e9, 100, 1, 1e9, 1e-3) == pytest.approx(1.1)
    assert work_depth_time(1e9, 100, 1000, 1e9, 1e-3) == pytest.approx(0.101)  # the chain stays
    with pytest.raises(ValueError, match="work_depth_time expects processors to be a finite number > 0"):
        work_depth_time(1e9, 100, 0, 1e9, 1e-3)
