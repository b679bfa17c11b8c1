"""Notebook 01 (RNNs and fading memory): how the gradient of h_T fades with the distance to x_t.

``gradient_norm_by_distance`` measures the lesson: the norm of the Jacobian d h_T / d x_t
against the distance T - t, for a plain RNN, a GRU and an LSTM whose recurrent weights are
scaled to a chosen size; ``gradient_figure`` is the widget's figure. ``RecallModel`` is the
small classifier of the "recall the token k steps back" task (``data.recall_batches``).

Shapes: B batch, T sequence length, D input size, H hidden size, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import _validate
from ..data import RecallBatch, make_recall, recall_batches
from ..train import History, train
from ..utils import generator, set_seed

__all__ = ["KINDS", "final_state", "jacobian_norms", "random_orthogonal", "make_recurrent",
           "gradient_norm_by_distance", "gradient_figure", "RecallConfig", "RecallModel", "recall_loss",
           "train_recall", "recall_accuracy"]

KINDS = ("rnn", "gru", "lstm")
_GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # blocks of H rows stacked in PyTorch's weight_hh_l0
_TORCH_RNN = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


# --- Fading memory: the gradient of h_T with respect to x_t ---------------------------------


def final_state(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last hidden state h_T of the course's ``rnn.RNN`` or of ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM``.

    Shapes: x (B, T, D) -> h_T (B, H).
    """
    outputs, _ = model(x)  # (B, T, H); the LSTM's second output is (h, c)
    return outputs[:, -1]


def jacobian_norms(fn, x: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of d fn(x)[b] / d x[b, t], averaged over the batch, ordered by distance.

    ``fn`` maps x (B, T, D) to h_T (B, H), each sequence on its own. Entry d of the result
    belongs to the input d steps before the last (d = T - 1 - t for 0-based t): entry 0 is
    the last input. One backward pass per hidden unit, all in one batch: the batch is
    repeated H times and copy i backpropagates the unit vector e_i.

    Shapes: x (B, T, D) -> (T,).
    """
    _validate.tensor(x, "x", "jacobian_norms", dims=3, layout="(B, T, D)")
    if 0 in x.shape:
        raise ValueError(f"jacobian_norms expects a non-empty x (B, T, D), got shape {tuple(x.shape)}")
    B, T, D = x.shape
    H = fn(x[:1]).shape[-1]
    xr = x.detach().unsqueeze(0).expand(H, B, T, D).reshape(H * B, T, D).requires_grad_(True)
    h_T = fn(xr)  # (H*B, H)
    seeds = torch.eye(H, dtype=x.dtype, device=x.device)[:, None, :].expand(H, B, H).reshape(H * B, H)
    (grad,) = torch.autograd.grad(h_T, xr, grad_outputs=seeds)  # (H*B, T, D)
    norms = grad.reshape(H, B, T, D).pow(2).sum(dim=(0, 3)).sqrt()  # (B, T): sum over units and D
    return norms.mean(0).flip(0)  # (T,), by distance


def random_orthogonal(n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A random (n, n) orthogonal matrix (uniformly distributed: QR of a Gaussian, signs fixed)."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).to(dtype)


def _check_weight_scale(weight_scale: object) -> None:
    if weight_scale is None:  # PyTorch's own initialisation
        return
    if isinstance(weight_scale, bool) or not isinstance(weight_scale, (int, float)) \
            or not math.isfinite(weight_scale) or weight_scale < 0:
        raise ValueError(f"make_recurrent expects weight_scale to be a finite number >= 0 or None, "
                         f"got {weight_scale!r}")


def make_recurrent(
    kind: str, input_size: int, hidden_size: int, *, weight_scale: float | None = None,
    gate_bias: float = 0.0, seed: int = 0,
) -> nn.Module:
    """A one-layer batch-first ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` with controlled recurrent weights.

    ``weight_scale=s``: each H x H block of ``weight_hh_l0`` (one per gate) becomes s times a
    random orthogonal matrix, so all its singular values, its norm and its spectral radius
    equal s. ``None`` keeps PyTorch's initialisation. ``gate_bias`` is added to the bias of
    the GRU's update gate z (h_t = (1 - z) n + z h_{t-1}: z near 1 keeps the old state) and
    of the LSTM's forget gate f (c_t = f c_{t-1} + i g); it is ignored by the plain RNN.
    """
    _validate.one_of(kind, KINDS, "kind", "make_recurrent")
    _validate.positive_int(input_size, "input_size", "make_recurrent")
    H = _validate.positive_int(hidden_size, "hidden_size", "make_recurrent")
    _check_weight_scale(weight_scale)
    g = torch.Generator().manual_seed(_validate.seed(seed, "make_recurrent"))
    torch.manual_seed(seed)  # PyTorch's own initialisation of the other weights
    model = _TORCH_RNN[kind](input_size, H, batch_first=True)
    with torch.no_grad():
        if weight_scale is not None:
            blocks = [weight_scale * random_orthogonal(H, g) for _ in range(_GATES[kind])]
            model.weight_hh_l0.copy_(torch.cat(blocks))  # (gates*H, H)
        if kind != "rnn":  # gates stacked as (r, z, n) in nn.GRU and (i, f, g, o) in nn.LSTM
            model.bias_hh_l0[H : 2 * H] += gate_bias
    return model


def gradient_norm_by_distance(
    kind: str = "rnn", weight_scale: float | None = 1.0, seq_len: int = 50, hidden_size: int = 32, *,
    gate_bias: float = 0.0, input_size: int = 16, batch_size: int = 8, seed: int = 0,
) -> np.ndarray:
    """||d h_T / d x_t|| (Frobenius, mean over a batch) against the distance T - 1 - t, at initialisation.

    The model is ``make_recurrent(kind, ..., weight_scale, gate_bias, seed)``; the inputs are
    standard normal. Computed in float64 so that curves spanning 1e-60 to 1e+20 stay exact.
    Entry d of the returned array of length ``seq_len`` is the input d steps before the last.
    """
    _validate.positive_int(seq_len, "seq_len", "gradient_norm_by_distance")
    _validate.positive_int(batch_size, "batch_size", "gradient_norm_by_distance")
    model = make_recurrent(kind, input_size, hidden_size, weight_scale=weight_scale,
                           gate_bias=gate_bias, seed=seed).double()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch_size, seq_len, input_size, generator=g, dtype=torch.float64)  # (B, T, D)
    return jacobian_norms(lambda inp: final_state(model, inp), x).numpy()


def gradient_figure(weight_scale: float = 1.0, seq_len: int = 50, gate_bias: float = 0.0, *, seed: int = 0):
    """The widget's figure: gradient norm against distance for the RNN, GRU and LSTM, log scale.

    Each curve is ``gradient_norm_by_distance(kind, ..., seed=seed)``: weights and inputs drawn from ``seed``.
    """
    from matplotlib.figure import Figure

    seed = _validate.seed(seed, "gradient_figure")
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    d = np.arange(seq_len)
    curves = [gradient_norm_by_distance(kind, weight_scale, seq_len, gate_bias=gate_bias, seed=seed)
              for kind in KINDS]
    curves = [np.maximum(norms, 1e-300) for norms in curves]
    for kind, norms, color in zip(KINDS, curves, ("tab:red", "tab:blue", "tab:green"), strict=True):
        ax.semilogy(d, norms, color=color, marker=".", ms=3, label=kind.upper())
    ax.semilogy(d, np.maximum(curves[0][0] * float(weight_scale) ** d, 1e-300), "k:", lw=1,
                label=f"{weight_scale:g}^d, the slope of the plain RNN's bound")
    lo, hi = min(c.min() for c in curves), max(c.max() for c in curves)
    ax.set_ylim(lo / 10, hi * 10)  # the curves decide the range, not the bound
    ax.set_xlabel("distance d (steps between reading x_t and h_T)")
    ax.set_ylabel("||d h_T / d x_t||")
    ax.set_title(f"recurrent weight scale {weight_scale:g}, gate bias {gate_bias:g}, T = {seq_len}")
    ax.legend(fontsize=8, loc="best")
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    return fig


# --- The recall task: which token came k steps before the last? -----------------------------


@dataclass(frozen=True)
class RecallConfig:
    """The sizes of the recall classifier."""

    kind: str = "rnn"  # "rnn", "gru" or "lstm"
    vocab_size: int = 8  # the symbols to recall
    d_model: int = 32  # token embedding size
    hidden_size: int = 32  # recurrent state size

    def __post_init__(self) -> None:
        _validate.one_of(self.kind, KINDS, "kind", "RecallConfig")
        for name in ("vocab_size", "d_model", "hidden_size"):
            _validate.positive_int(getattr(self, name), name, "RecallConfig")


class RecallModel(nn.Module):
    """Embed the tokens, run a recurrent layer, classify the last state: which token was first?"""

    def __init__(self, config: RecallConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.rnn = _TORCH_RNN[config.kind](config.d_model, config.hidden_size, batch_first=True)
        self.out = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        """Logits for the token to recall.

        Shapes: src (B, T) token ids -> logits (B, V).
        """
        _validate.token_ids(src, "src", "RecallModel", "(B, T)")
        _validate.ids_below(src, self.config.vocab_size, "src", "RecallModel")
        h = self.embed(src)  # (B, T, D)
        return self.out(final_state(self.rnn, h))  # (B, H) -> (B, V)


def recall_loss(model: nn.Module, batch: RecallBatch) -> torch.Tensor:
    """Cross-entropy of the recalled symbol (the ``loss_fn`` of ``train.train``)."""
    return F.cross_entropy(model(batch.src), batch.target)


def train_recall(
    config: RecallConfig, k: int, *, steps: int = 400, lr: float = 1e-2, batch_size: int = 64,
    seed: int = 0, device: torch.device | str = "cpu", desc: str | None = None,
) -> tuple[RecallModel, History]:
    """Train a fresh ``RecallModel`` on the recall task with distance k (fresh data every step)."""
    set_seed(seed)
    model = RecallModel(config).to(device)

    def make_batches(g: torch.Generator):
        return recall_batches(k, config.vocab_size, batch_size, g)

    history = train(model, recall_loss, make_batches, steps=steps, lr=lr, seed=seed, device=device,
                    desc=desc or f"{config.kind} k={k}")
    return model, history


@torch.no_grad()
def recall_accuracy(model: RecallModel, k: int, *, n: int = 1000, seed: int = 10_000) -> float:
    """Share of ``n`` fresh test sequences (their own seed) whose first symbol is recalled."""
    device = next(model.parameters()).device
    batch = make_recall(n, k, model.config.vocab_size, generator(seed)).to(device)
    model.eval()
    return (model(batch.src).argmax(-1) == batch.target).float().mean().item()
