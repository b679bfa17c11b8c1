"""Weight copies between the course's modules and PyTorch's, for the proofs of equality.

Each ``copy_*(ours, ref)`` copies the weights of PyTorch's module ``ref`` into the course's
module ``ours``, so that the two compute the same function; the tests and notebooks then
compare outputs and gradients on random inputs. One place for every copy: the tests and the
notebooks use the same functions.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import MultiHeadAttention
from .rnn import RNN
from .transformer import DecoderLayer, EncoderLayer, Transformer

__all__ = ["copy_rnn", "copy_mha", "mha_to_torch", "copy_encoder_layer", "copy_decoder_layer",
           "copy_transformer", "randomise_norms"]


@torch.no_grad()
def copy_rnn(ours: RNN, ref: nn.RNN) -> None:
    """``nn.RNN``'s ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0`` into ``RNN``'s cell."""
    if not isinstance(ref, nn.RNN) or ref.num_layers != 1 or ref.bidirectional or not ref.bias:
        raise TypeError(f"copy_rnn expects a one-layer, one-direction nn.RNN with biases, got {ref!r}")
    if (ref.input_size, ref.hidden_size) != (ours.input_size, ours.hidden_size):
        raise ValueError(f"copy_rnn expects equal sizes, got (input {ours.input_size}, hidden "
                         f"{ours.hidden_size}) for ours and ({ref.input_size}, {ref.hidden_size}) for "
                         "the nn.RNN: the sizes differ")
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(ours.cell, name).copy_(getattr(ref, f"{name}_l0"))


@torch.no_grad()
def copy_mha(ours: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    """``nn.MultiheadAttention``'s stacked ``in_proj`` (q, k, v) and ``out_proj`` into ours."""
    w_q, w_k, w_v = ref.in_proj_weight.chunk(3)
    biases = ref.in_proj_bias.chunk(3) if ref.in_proj_bias is not None else (None,) * 3
    for proj, w, b in zip((ours.q_proj, ours.k_proj, ours.v_proj), (w_q, w_k, w_v), biases, strict=True):
        proj.weight.copy_(w)
        if b is not None:
            proj.bias.copy_(b)
    ours.out_proj.load_state_dict(ref.out_proj.state_dict())


def mha_to_torch(ours: MultiHeadAttention) -> nn.MultiheadAttention:
    """A new ``nn.MultiheadAttention`` (batch first) holding a copy of ours's weights."""
    bias = ours.q_proj.bias is not None
    ref = nn.MultiheadAttention(ours.d_model, ours.n_heads, bias=bias, batch_first=True)
    ref = ref.to(ours.q_proj.weight.dtype)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        if bias:
            ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
    ref.out_proj.load_state_dict(ours.out_proj.state_dict())
    return ref


@torch.no_grad()
def copy_encoder_layer(ours: EncoderLayer, ref: nn.TransformerEncoderLayer) -> None:
    """``nn.TransformerEncoderLayer`` into ``EncoderLayer``: attention, feed-forward, both norms."""
    copy_mha(ours.self_attn, ref.self_attn)
    ours.ff.linear1.load_state_dict(ref.linear1.state_dict())
    ours.ff.linear2.load_state_dict(ref.linear2.state_dict())
    ours.norm1.load_state_dict(ref.norm1.state_dict())
    ours.norm2.load_state_dict(ref.norm2.state_dict())


@torch.no_grad()
def copy_decoder_layer(ours: DecoderLayer, ref: nn.TransformerDecoderLayer) -> None:
    """``nn.TransformerDecoderLayer`` into ``DecoderLayer``: both attentions, feed-forward, three norms."""
    copy_mha(ours.self_attn, ref.self_attn)
    copy_mha(ours.cross_attn, ref.multihead_attn)
    ours.ff.linear1.load_state_dict(ref.linear1.state_dict())
    ours.ff.linear2.load_state_dict(ref.linear2.state_dict())
    for i in (1, 2, 3):
        getattr(ours, f"norm{i}").load_state_dict(getattr(ref, f"norm{i}").state_dict())


@torch.no_grad()
def copy_transformer(ours: Transformer, ref: nn.Transformer) -> None:
    """Every layer of ``nn.Transformer`` into ``Transformer`` (and the final norms of pre-LN stacks).

    ``nn.Transformer`` has no embeddings or output layer: those stay ours.
    """
    for a, b in zip(ours.encoder.layers, ref.encoder.layers, strict=True):
        copy_encoder_layer(a, b)
    for a, b in zip(ours.decoder.layers, ref.decoder.layers, strict=True):
        copy_decoder_layer(a, b)
    for a, b in ((ours.encoder.norm, ref.encoder.norm), (ours.decoder.norm, ref.decoder.norm)):
        if isinstance(a, nn.LayerNorm) and isinstance(b, nn.LayerNorm):
            a.load_state_dict(b.state_dict())


@torch.no_grad()
def randomise_norms(module: nn.Module, g: torch.Generator) -> None:
    """LayerNorms start at weight 1 and bias 0; make them random, so that a swapped norm shows."""
    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g, dtype=m.weight.dtype))
            m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g, dtype=m.bias.dtype))
