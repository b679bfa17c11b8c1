"""The from-scratch RNN equals nn.RNN, step by step and over time, with clear errors on bad input."""

import pytest
import torch
from torch import nn

from transformer_course.reference import copy_rnn
from transformer_course.rnn import RNN, RNNCell
from transformer_course.utils import generator


def _pair(D, H, seed):
    torch.manual_seed(seed)
    ref = nn.RNN(D, H, batch_first=True)
    ours = RNN(D, H)
    copy_rnn(ours, ref)
    return ours, ref


@pytest.mark.parametrize("B, T, D, H", [(1, 1, 3, 4), (2, 5, 3, 4), (4, 9, 8, 8), (3, 17, 6, 2)])
@pytest.mark.parametrize("with_h0", [False, True])
def test_rnn_equals_nn_rnn_outputs_and_gradients(B, T, D, H, with_h0):
    ours, ref = _pair(D, H, seed=B * 100 + T)
    g = generator(T * 7 + D)
    x = torch.randn(B, T, D, generator=g)
    h0 = torch.randn(B, H, generator=g) if with_h0 else None
    w = torch.randn(B, T, H, generator=g)  # a random upstream gradient for the outputs
    wh = torch.randn(B, H, generator=g)

    x1 = x.clone().requires_grad_(True)
    h1 = h0.clone().requires_grad_(True) if with_h0 else None
    out, h_T = ours(x1, h1)
    ((out * w).sum() + (h_T * wh).sum()).backward()

    x2 = x.clone().requires_grad_(True)
    h2 = h0.clone().unsqueeze(0).requires_grad_(True) if with_h0 else None
    out_ref, h_ref = ref(x2, h2)
    ((out_ref * w).sum() + (h_ref[0] * wh).sum()).backward()

    assert out.shape == (B, T, H) and h_T.shape == (B, H)
    assert torch.allclose(out, out_ref, atol=1e-6)
    assert torch.allclose(h_T, h_ref[0], atol=1e-6)
    assert torch.allclose(x1.grad, x2.grad, atol=1e-5)
    if with_h0:
        assert torch.allclose(h1.grad, h2.grad[0], atol=1e-5)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        assert torch.allclose(getattr(ours.cell, name).grad, getattr(ref, f"{name}_l0").grad, atol=1e-5), name


def test_cell_equals_nn_rnncell():
    torch.manual_seed(0)
    cell, ref = RNNCell(5, 3), nn.RNNCell(5, 3)
    ref.load_state_dict(cell.state_dict())  # same parameter names as nn.RNNCell
    x, h = torch.randn(4, 5), torch.randn(4, 3)
    assert torch.allclose(cell(x, h), ref(x, h), atol=1e-6)


def test_last_output_is_the_final_state():
    ours, _ = _pair(3, 5, seed=1)
    out, h_T = ours(torch.randn(2, 6, 3))
    assert torch.equal(out[:, -1], h_T)


def test_changing_a_late_input_leaves_earlier_states_unchanged():
    ours, _ = _pair(3, 4, seed=2)
    x = torch.randn(2, 8, 3)
    x2 = x.clone()
    x2[:, 5] += 1.0
    out, _ = ours(x)
    out2, _ = ours(x2)
    assert torch.equal(out[:, :5], out2[:, :5])
    assert not torch.allclose(out[:, 5:], out2[:, 5:])


@pytest.mark.parametrize("x, h0, message", [
    (torch.randn(5, 3), None, r"RNN expects x of shape \(B, T, D\) = \(B, T, 3\), got \(5, 3\)"),
    (torch.randn(2, 4, 7), None, r"x of shape \(B, T, D\) = \(B, T, 3\), got \(2, 4, 7\)"),
    (torch.randn(2, 4, 3), torch.randn(2, 5), r"h0 of shape \(B, H\) = \(2, 4\), got \(2, 5\)"),
    (torch.randn(2, 4, 3), torch.randn(1, 2, 4), r"h0 of shape \(B, H\) = \(2, 4\), got \(1, 2, 4\)"),
    (torch.randn(0, 4, 3), None, r"non-empty x of shape \(B, T, D\), got \(0, 4, 3\)"),
    (torch.randn(2, 0, 3), None, r"non-empty x of shape \(B, T, D\), got \(2, 0, 3\)"),
])
def test_rnn_rejects_bad_input(x, h0, message):
    with pytest.raises(ValueError, match=message):
        RNN(3, 4)(x, h0)


def test_rnn_rejects_token_ids_and_non_tensors():
    with pytest.raises(TypeError, match="floating-point tensor, got dtype torch.int64"):
        RNN(3, 4)(torch.zeros(2, 4, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor, got list"):
        RNN(3, 4)([[1.0, 2.0, 3.0]])


def test_cell_rejects_bad_shapes_and_sizes():
    cell = RNNCell(3, 4)
    with pytest.raises(ValueError, match=r"RNNCell expects x of shape \(B, D\) = \(B, 3\), got \(2, 5\)"):
        cell(torch.randn(2, 5), torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"h of shape \(B, H\) = \(2, 4\), got \(2, 3\)"):
        cell(torch.randn(2, 3), torch.randn(2, 3))
    with pytest.raises(TypeError, match="h.*floating-point tensor"):
        cell(torch.randn(2, 3), torch.zeros(2, 4, dtype=torch.long))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="hidden_size to be a positive int"):
            RNNCell(3, bad)


def test_copy_rnn_rejects_mismatched_reference():
    with pytest.raises(ValueError, match="sizes differ"):
        copy_rnn(RNN(3, 4), nn.RNN(3, 5, batch_first=True))
    with pytest.raises(TypeError, match="one-layer"):
        copy_rnn(RNN(3, 4), nn.RNN(3, 4, num_layers=2))
    with pytest.raises(TypeError, match="one-layer"):
        copy_rnn(RNN(3, 4), nn.GRU(3, 4))
