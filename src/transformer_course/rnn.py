"""A recurrent network from scratch, and how its gradient fades with distance.

``RNNCell`` is one step of an Elman RNN, ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)``,
with its weights named as in ``nn.RNN`` (``weight_ih``, ``weight_hh``, ``bias_ih``,
``bias_hh``: copy them into ``weight_ih_l0`` ...). ``RNN`` runs the cell over time, one step
after the other: step t needs the state of step t-1, which is why an RNN cannot run in
parallel over time.

``gradient_norm_by_distance`` measures the lesson of notebook 01: the norm of the Jacobian
d h_T / d x_t against the distance T - t, for a plain RNN, a GRU and an LSTM whose recurrent
weights are scaled to a chosen size. ``RecallModel`` is the small classifier of the
"recall the token k steps back" task (``data.recall_batches``).

Shapes: B batch, T sequence length, D input size, H hidden size, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import RecallBatch, make_recall, recall_batches
from .train import History, train
from .utils import _check_seed, generator, set_seed

KINDS = ("rnn", "gru", "lstm")
_GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # blocks of H rows stacked in PyTorch's weight_hh_l0
_TORCH_RNN = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def _check_size(name: str, value: object, who: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{who} expects {name} to be a positive int, got {value!r}")
    return value


def _check_float_tensor(name: str, x: object, who: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who} expects {name} to be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{who} expects {name} to be a float tensor, got dtype {x.dtype} "
                        "(token ids go through an nn.Embedding first)")
    return x


class RNNCell(nn.Module):
    """One tanh RNN step with explicit weights: ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)``."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size = _check_size("input_size", input_size, "RNNCell")
        self.hidden_size = _check_size("hidden_size", hidden_size, "RNNCell")
        # PyTorch's layout: (out, in), so the products below use the transpose.
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))   # W_ih (H, D)
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))  # W_hh (H, H)
        self.bias_ih = nn.Parameter(torch.empty(hidden_size))                 # b_ih (H,)
        self.bias_hh = nn.Parameter(torch.empty(hidden_size))                 # b_hh (H,)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's initialisation: every weight uniform in [-1/sqrt(H), 1/sqrt(H)]."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step.

        Shapes: x (B, D), h (B, H) -> h' (B, H).
        """
        x = _check_float_tensor("x", x, "RNNCell")
        h = _check_float_tensor("h", h, "RNNCell")
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"RNNCell expects x of shape (B, {self.input_size}), got {tuple(x.shape)}")
        if h.shape != (x.shape[0], self.hidden_size):
            raise ValueError(f"RNNCell expects h of shape ({x.shape[0]}, {self.hidden_size}) = "
                             f"(B, hidden_size), got {tuple(h.shape)}")
        pre = x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh  # (B, H)
        return torch.tanh(pre)


class RNN(nn.Module):
    """A one-layer tanh RNN unrolled over time with a Python loop (batch first, like ``nn.RNN``)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.cell = RNNCell(input_size, hidden_size)
        self.input_size, self.hidden_size = input_size, hidden_size

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the cell over every step; ``h0`` defaults to zeros.

        Shapes: x (B, T, D), h0 (B, H) -> outputs (B, T, H) (the state after each step), h_T (B, H).
        Unlike ``nn.RNN``, h0 and h_T have no leading layer axis.
        """
        x = _check_float_tensor("x", x, "RNN")
        if x.dim() != 3:
            raise ValueError(f"RNN expects x of shape (B, T, D) (batch first), got {x.dim()} dims: "
                             f"{tuple(x.shape)}")
        B, T, D = x.shape
        if B == 0 or T == 0:
            raise ValueError(f"RNN got an empty batch or sequence: x has shape {tuple(x.shape)}")
        if D != self.input_size:
            raise ValueError(f"RNN expects input size D={self.input_size}, got x of shape {tuple(x.shape)}")
        if h0 is None:
            h = x.new_zeros(B, self.hidden_size)  # (B, H)
        else:
            h = _check_float_tensor("h0", h0, "RNN")
            if h.shape != (B, self.hidden_size):
                raise ValueError(f"RNN expects h0 of shape (B, H) = ({B}, {self.hidden_size}), got "
                                 f"{tuple(h.shape)}")
        outputs = []
        for t in range(T):  # sequential: step t needs h from step t-1
            h = self.cell(x[:, t], h)  # (B, H)
            outputs.append(h)
        return torch.stack(outputs, dim=1), h  # (B, T, H), (B, H)

    @torch.no_grad()
    def copy_to(self, ref: nn.RNN) -> None:
        """Copy these weights into a one-layer ``nn.RNN`` (``weight_ih_l0`` ...)."""
        if not isinstance(ref, nn.RNN) or ref.num_layers != 1 or ref.bidirectional or not ref.bias:
            raise TypeError(f"copy_to expects a one-layer, one-direction nn.RNN with biases, got {ref!r}")
        if (ref.input_size, ref.hidden_size) != (self.input_size, self.hidden_size):
            raise ValueError(f"copy_to: sizes differ: this RNN is (input {self.input_size}, hidden "
                             f"{self.hidden_size}), the nn.RNN is ({ref.input_size}, {ref.hidden_size})")
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ref, f"{name}_l0").copy_(getattr(self.cell, name))


# --- Fading memory: the gradient of h_T with respect to x_t ---------------------------------


def final_state(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last hidden state h_T of this module's ``RNN`` or of ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM``.

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
    x = _check_float_tensor("x", x, "jacobian_norms")
    if x.dim() != 3 or 0 in x.shape:
        raise ValueError(f"jacobian_norms expects a non-empty x of shape (B, T, D), got {tuple(x.shape)}")
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
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    _check_size("input_size", input_size, "make_recurrent")
    H = _check_size("hidden_size", hidden_size, "make_recurrent")
    g = torch.Generator().manual_seed(_check_seed(seed, "make_recurrent"))
    torch.manual_seed(seed)  # PyTorch's own initialisation of the other weights
    model = _TORCH_RNN[kind](input_size, H, batch_first=True)
    with torch.no_grad():
        if weight_scale is not None:
            if not (isinstance(weight_scale, (int, float)) and math.isfinite(weight_scale)
                    and weight_scale >= 0):
                raise ValueError(f"weight_scale must be a finite number >= 0 or None, got {weight_scale!r}")
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
    _check_size("seq_len", seq_len, "gradient_norm_by_distance")
    _check_size("batch_size", batch_size, "gradient_norm_by_distance")
    model = make_recurrent(kind, input_size, hidden_size, weight_scale=weight_scale,
                           gate_bias=gate_bias, seed=seed).double()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch_size, seq_len, input_size, generator=g, dtype=torch.float64)  # (B, T, D)
    return jacobian_norms(lambda inp: final_state(model, inp), x).numpy()


def gradient_figure(weight_scale: float = 1.0, seq_len: int = 50, gate_bias: float = 0.0):
    """The widget's figure: gradient norm against distance for the RNN, GRU and LSTM, log scale."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    d = np.arange(seq_len)
    curves = [np.maximum(gradient_norm_by_distance(kind, weight_scale, seq_len, gate_bias=gate_bias), 1e-300)
              for kind in KINDS]
    for kind, norms, color in zip(KINDS, curves, ("tab:red", "tab:blue", "tab:green"), strict=True):
        ax.semilogy(d, norms, color=color, marker=".", ms=3, label=kind.upper())
    ax.semilogy(d, np.maximum(curves[0][0] * float(weight_scale) ** d, 1e-300), "k:", lw=1,
                label=f"{weight_scale:g}^d, the slope of the plain RNN's bound")
    lo, hi = min(c.min() for c in curves), max(c.max() for c in curves)
    ax.set_ylim(lo / 10, hi * 10)  # the curves decide the range, not the bound
    ax.set_xlabel("distance d = T - 1 - t (steps between x_t and h_T)")
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
        if self.kind not in KINDS:
            raise ValueError(f"RecallConfig.kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("vocab_size", "d_model", "hidden_size"):
            _check_size(name, getattr(self, name), "RecallConfig")


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
        if src.dim() != 2 or src.shape[0] == 0 or src.shape[1] == 0:
            raise ValueError(f"RecallModel expects non-empty token ids of shape (B, T), "
                             f"got {tuple(src.shape)}")
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


__all__ = ["KINDS", "RNNCell", "RNN", "final_state", "jacobian_norms", "random_orthogonal",
           "make_recurrent", "gradient_norm_by_distance", "gradient_figure", "RecallConfig", "RecallModel",
           "recall_loss", "train_recall", "recall_accuracy"]
