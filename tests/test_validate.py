"""_validate: each helper accepts what it should and says what it got and what it expected."""

import numpy as np
import pytest
import torch

from transformer_course import _validate as V


def test_ints_and_numbers():
    assert V.positive_int(np.int64(3), "n", "f") == 3
    for bad in (0, -1, True, 2.0, "3"):
        with pytest.raises(ValueError, match=f"f expects n to be a positive int, got {bad!r}"):
            V.positive_int(bad, "n", "f")
    assert V.int_in(0, "head", "f", 0, 4) == 0
    with pytest.raises(ValueError, match=r"f expects head to be an int in \[0, 3\], got 4"):
        V.int_in(4, "head", "f", 0, 4)
    with pytest.raises(ValueError, match="f expects k to be an int >= 2, got 1"):
        V.int_in(1, "k", "f", 2)
    with pytest.raises(ValueError, match="finite number > 0, got inf"):
        V.positive_number(float("inf"), "t", "f")
    with pytest.raises(ValueError, match=r"dropout to be in \[0, 1\), got 1.0"):
        V.probability(1.0, "dropout", "f")
    with pytest.raises(ValueError, match=r"kind to be one of \('a', 'b'\), got 'c'"):
        V.one_of("c", ("a", "b"), "kind", "f")
    with pytest.raises(ValueError, match="got d_model=10 and n_heads=3"):
        V.divisible(10, 3, "f")


def test_tensors_and_shapes():
    x = torch.zeros(2, 3)
    assert V.tensor(x, "x", "f", dims=2) is x
    with pytest.raises(TypeError, match="f expects x to be a torch.Tensor, got list"):
        V.tensor([1.0], "x", "f")
    with pytest.raises(TypeError, match="floating-point tensor, got dtype torch.int64"):
        V.tensor(torch.zeros(2, dtype=torch.long), "x", "f")
    with pytest.raises(ValueError, match=r"x \(B, T, D\) with 3 dimensions, got shape \(2, 3\)"):
        V.tensor(x, "x", "f", dims=3, layout="(B, T, D)")
    assert V.shape(x, "x", (None, 3), "f", "(B, D)") is x
    with pytest.raises(ValueError, match=r"f expects x of shape \(B, D\) = \(B, 4\), got \(2, 3\)"):
        V.shape(x, "x", (None, 4), "f", "(B, D)")
    with pytest.raises(ValueError, match="non-empty x"):
        V.shape(torch.zeros(0, 3), "x", (None, 3), "f", "(B, D)")


def test_token_ids_count_axes_from_the_layout():
    assert V.token_ids(torch.zeros(4, dtype=torch.long), "ids", "f", "(B,)").dim() == 1
    assert V.token_ids(torch.zeros(2, 4, dtype=torch.long), "ids", "f", "(B, S)").dim() == 2
    with pytest.raises(ValueError, match=r"shape \(B, S\), got torch.int64 of shape \(4,\)"):
        V.token_ids(torch.zeros(4, dtype=torch.long), "ids", "f", "(B, S)")
    with pytest.raises(TypeError, match="integer token ids"):
        V.token_ids(torch.zeros(2, 4), "ids", "f")
    with pytest.raises(ValueError, match="empty batch"):
        V.token_ids(torch.zeros(0, 4, dtype=torch.long), "ids", "f")
    with pytest.raises(ValueError, match=r"ids in \[0, 9\] \(the vocabulary\), got ids from 0 to 10"):
        V.ids_below(torch.tensor([[0, 10]]), 10, "ids", "f")
    V.ids_below(torch.tensor([[0, 9]]), 10, "ids", "f")


def test_masks_qkv_and_seeds():
    q, k, v = torch.zeros(2, 3, 4), torch.zeros(2, 5, 4), torch.zeros(2, 5, 6)
    assert V.qkv(q, k, v, "f") == torch.Size([2])
    with pytest.raises(ValueError, match="same last dimension Dh"):
        V.qkv(q, torch.zeros(2, 5, 3), v, "f")
    with pytest.raises(ValueError, match="same leading"):
        V.qkv(q, k[None], v[None], "f", same_batch=True)
    V.mask(torch.ones(3, 5, dtype=torch.bool), (2, 3, 5), "f", "(B, T, S)")
    with pytest.raises(TypeError, match="use `mask == 0`"):
        V.mask(torch.zeros(3, 5), (2, 3, 5), "f", "(B, T, S)")
    with pytest.raises(ValueError, match=r"broadcasts to \(B, T, S\) = \(2, 3, 5\), got shape \(3, 3, 5\)"):
        V.mask(torch.ones(3, 3, 5, dtype=torch.bool), (2, 3, 5), "f", "(B, T, S)")
    with pytest.raises(TypeError, match="expects an int seed, got float"):
        V.seed(1.5, "f")
    with pytest.raises(ValueError, match=r"seed in \[0, 2\*\*32\), got -1"):
        V.seed(-1, "f")
