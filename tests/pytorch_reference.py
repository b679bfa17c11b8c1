"""Copy the course's weights into PyTorch's reference modules, for the equality proofs."""

import torch
from torch import nn

from transformer_course.attention import MultiHeadAttention
from transformer_course.transformer import DecoderLayer, EncoderLayer


def copy_mha(ours: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    with torch.no_grad():
        w_q, w_k, w_v = ref.in_proj_weight.chunk(3)
        b_q, b_k, b_v = ref.in_proj_bias.chunk(3)
        for proj, w, b in ((ours.q_proj, w_q, b_q), (ours.k_proj, w_k, b_k), (ours.v_proj, w_v, b_v)):
            proj.weight.copy_(w)
            proj.bias.copy_(b)
        ours.out_proj.load_state_dict(ref.out_proj.state_dict())


def copy_encoder_layer(ours: EncoderLayer, ref: nn.TransformerEncoderLayer) -> None:
    copy_mha(ours.self_attn, ref.self_attn)
    ours.ff.linear1.load_state_dict(ref.linear1.state_dict())
    ours.ff.linear2.load_state_dict(ref.linear2.state_dict())
    ours.norm1.load_state_dict(ref.norm1.state_dict())
    ours.norm2.load_state_dict(ref.norm2.state_dict())


def copy_decoder_layer(ours: DecoderLayer, ref: nn.TransformerDecoderLayer) -> None:
    copy_mha(ours.self_attn, ref.self_attn)
    copy_mha(ours.cross_attn, ref.multihead_attn)
    ours.ff.linear1.load_state_dict(ref.linear1.state_dict())
    ours.ff.linear2.load_state_dict(ref.linear2.state_dict())
    for i in (1, 2, 3):
        getattr(ours, f"norm{i}").load_state_dict(getattr(ref, f"norm{i}").state_dict())


def randomise_norms(module: nn.Module, g: torch.Generator) -> None:
    """LayerNorms start at weight 1, bias 0; make them random so a swapped norm shows."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
