"""Input checks for the whole package, in one message style: "f expects X, got Y".

Public functions call these in a line or two at their top and then read like the equation
they implement. Each helper raises ``TypeError`` for a wrong kind of object (a list where a
tensor belongs, a float tensor where ids belong) and ``ValueError`` for a wrong value or
shape, and returns the checked value so a call can double as an assignment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


def describe(x: object) -> str:
    """How an error message shows a value: a tensor by dtype and shape, anything else by repr."""
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} of shape {tuple(x.shape)}"
    return f"{type(x).__name__} {x!r}" if not isinstance(x, (int, float, str, type(None))) else repr(x)


def is_int(value: object) -> bool:
    """A Python or numpy integer, but not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def positive_int(value: object, name: str, who: str) -> int:
    """``value`` as an int >= 1."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{who} expects {name} to be a positive int, got {value!r}")
    return int(value)


def int_in(value: object, name: str, who: str, low: int, high: int | None = None) -> int:
    """``value`` as an int with low <= value < high (no upper bound when ``high`` is None)."""
    if not is_int(value) or value < low or (high is not None and value >= high):
        where = f"an int >= {low}" if high is None else f"an int in [{low}, {high - 1}]"
        raise ValueError(f"{who} expects {name} to be {where}, got {value!r}")
    return int(value)


def positive_number(value: object, name: str, who: str) -> float:
    """``value`` as a finite float > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{who} expects {name} to be a finite number > 0, got {value!r}")
    return float(value)


def probability(value: object, name: str, who: str) -> float:
    """A dropout rate: a float in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{who} expects {name} to be in [0, 1), got {value!r}")
    return float(value)


def one_of(value: object, options: Sequence[object], name: str, who: str):
    """``value``, which must be one of ``options``."""
    if value not in options:
        raise ValueError(f"{who} expects {name} to be one of {tuple(options)}, got {value!r}")
    return value


def divisible(d_model: int, n_heads: int, who: str) -> None:
    """Each head gets d_model // n_heads dimensions, so n_heads must divide d_model."""
    if d_model % n_heads:
        raise ValueError(f"{who} expects d_model divisible by n_heads (each head gets d_model // "
                         f"n_heads dimensions), got d_model={d_model} and n_heads={n_heads}")


def tensor(x: object, name: str, who: str, *, dims: int | None = None, min_dims: int = 0,
           layout: str = "") -> torch.Tensor:
    """A floating-point tensor with ``dims`` (or at least ``min_dims``) dimensions.

    ``layout`` names the axes for the message, e.g. "(B, T, D)".
    """
    shape = f" {layout}" if layout else ""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who} expects {name}{shape} to be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{who} expects {name}{shape} to be a floating-point tensor, got dtype {x.dtype} "
                        "(token ids go through an nn.Embedding first)")
    if dims is not None and x.dim() != dims:
        raise ValueError(f"{who} expects {name}{shape} with {dims} dimensions, got shape {tuple(x.shape)}")
    if x.dim() < min_dims:
        raise ValueError(f"{who} expects {name}{shape} with at least {min_dims} dimensions, "
                         f"got shape {tuple(x.shape)}")
    return x


def shape(x: object, name: str, sizes: tuple[int | None, ...], who: str, layout: str) -> torch.Tensor:
    """A non-empty float tensor of the given ``sizes`` (None: any size on that axis).

    ``layout`` names the axes for the message, e.g. "(B, T, D)" with sizes (None, None, 8).
    """
    tensor(x, name, who, layout=layout)
    axes = layout.strip("()").split(", ")
    want = "(" + ", ".join(a if n is None else str(n) for a, n in zip(axes, sizes, strict=True)) + ")"
    wrong = any(n is not None and n != got for n, got in zip(sizes, x.shape, strict=False))
    if x.dim() != len(sizes) or wrong:
        raise ValueError(f"{who} expects {name} of shape {layout} = {want}, got {tuple(x.shape)}")
    if 0 in x.shape:
        raise ValueError(f"{who} expects a non-empty {name} of shape {layout}, got {tuple(x.shape)}")
    return x


def token_ids(x: object, name: str, who: str, layout: str = "(B, S)") -> torch.Tensor:
    """A tensor of integer token ids with the dimensions of ``layout``, and at least one row."""
    dims = len([axis for axis in layout.strip("()").split(",") if axis.strip()])  # "(B,)" is 1-D
    if not isinstance(x, torch.Tensor) or x.is_floating_point() or x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"{who} expects {name} to be integer token ids of shape {layout}, "
                        f"got {describe(x)}")
    if x.dim() != dims:
        raise ValueError(f"{who} expects {name} to be integer token ids of shape {layout}, "
                         f"got {describe(x)}")
    if x.shape[0] == 0:
        raise ValueError(f"{who} expects a non-empty batch of {name}, got an empty batch "
                         f"(shape {tuple(x.shape)})")
    return x


def ids_below(x: torch.Tensor, vocab_size: int, name: str, who: str) -> None:
    """Every id in [0, vocab_size). Checked only on the CPU: on a GPU, ``.min()`` and ``.max()``
    would wait for the device on every call (and an embedding lookup fails there anyway)."""
    if x.device.type == "cpu" and x.numel() and (x.min() < 0 or x.max() >= vocab_size):
        raise ValueError(f"{who} expects {name} ids in [0, {vocab_size - 1}] (the vocabulary), got "
                         f"ids from {x.min().item()} to {x.max().item()}")


def mask(m: object, shape: tuple[int, ...], who: str, layout: str) -> torch.Tensor:
    """A boolean mask (True = attention allowed) that broadcasts to ``shape`` without growing it."""
    if not isinstance(m, torch.Tensor):
        raise TypeError(f"{who} expects mask to be a boolean torch.Tensor, got {type(m).__name__}")
    if m.dtype != torch.bool:
        raise TypeError(f"{who} expects mask of dtype torch.bool (True = attention allowed), got "
                        f"{m.dtype}; an additive float mask (0 / -inf) is not this course's "
                        "convention: use `mask == 0` to convert it")
    try:
        ok = m.dim() <= len(shape) and torch.broadcast_shapes(m.shape, shape) == torch.Size(shape)
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"{who} expects a mask that broadcasts to {layout} = {tuple(shape)}, "
                         f"got shape {tuple(m.shape)}")
    return m


def qkv(q: object, k: object, v: object, who: str, same_batch: bool = False) -> torch.Size:
    """Queries (..., T, Dh), keys (..., S, Dh), values (..., S, Dv); returns the broadcast batch shape.

    ``same_batch`` asks for identical leading dimensions instead of broadcastable ones.
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        tensor(x, name, who, min_dims=2)
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"{who} expects q (..., T, Dh) and k (..., S, Dh) with the same last "
                         f"dimension Dh, got {tuple(q.shape)} and {tuple(k.shape)}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{who} expects k (..., S, Dh) and v (..., S, Dv) with the same number of "
                         f"positions S, got {tuple(k.shape)} and {tuple(v.shape)}")
    if same_batch and not q.shape[:-2] == k.shape[:-2] == v.shape[:-2]:
        raise ValueError(f"{who} expects q, k and v with the same leading (batch) dimensions, got "
                         f"{tuple(q.shape)}, {tuple(k.shape)} and {tuple(v.shape)}")
    try:
        return torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError as err:
        raise ValueError(f"{who} expects q, k and v whose leading (batch) dimensions broadcast, got "
                         f"{tuple(q.shape)}, {tuple(k.shape)} and {tuple(v.shape)}") from err


def seed(value: object, who: str) -> int:
    """A seed for ``torch.Generator.manual_seed``: an int in [0, 2**32)."""
    if not is_int(value):
        raise TypeError(f"{who} expects an int seed, got {type(value).__name__} ({value!r})")
    if not 0 <= int(value) < 2**32:
        raise ValueError(f"{who} expects a seed in [0, 2**32), got {value}")
    return int(value)
