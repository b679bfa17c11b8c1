"""The Transformer, proven equal to PyTorch's own layers and model after copying weights."""

import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer_course.attention import make_causal_mask, make_padding_mask
from transformer_course.data import PAD
from transformer_course.reference import (
    copy_decoder_layer,
    copy_encoder_layer,
    copy_transformer,
    randomise_norms,
)
from transformer_course.transformer import (
    DecoderLayer,
    EncoderLayer,
    Transformer,
    TransformerConfig,
    label_smoothing_floor,
    label_smoothing_loss,
    translate_config,
    warmup_schedule,
)

D, H, FF = 16, 4, 24


def grads(module: nn.Module) -> list[torch.Tensor]:
    return [p.grad for p in module.parameters()]


def padded_lengths(B: int, L: int, g: torch.Generator) -> torch.Tensor:
    lengths = torch.randint(1, L + 1, (B,), generator=g)
    lengths[0] = L
    return torch.arange(L)[None, :] < lengths[:, None]  # (B, L) True = real


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("B, S", [(2, 5), (3, 9)])
def test_encoder_layer_equals_pytorch(norm_first, B, S):
    g = torch.Generator().manual_seed(S + norm_first)
    torch.manual_seed(S)
    ref = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, batch_first=True, norm_first=norm_first)
    randomise_norms(ref, g)
    ours = EncoderLayer(D, H, FF, dropout=0.0, norm_first=norm_first)
    copy_encoder_layer(ours, ref)
    x = torch.randn(B, S, D, generator=g)
    real = padded_lengths(B, S, g)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ref = ref(x1, src_key_padding_mask=~real)
    out = ours(x2, real[:, None, None, :])
    assert torch.allclose(out, out_ref, atol=1e-5)
    w = torch.randn(out.shape, generator=g)
    (out_ref * w).sum().backward()
    (out * w).sum().backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-5)
    ours_g = [ours.self_attn.out_proj.weight.grad, ours.ff.linear1.weight.grad, ours.norm1.weight.grad]
    ref_g = [ref.self_attn.out_proj.weight.grad, ref.linear1.weight.grad, ref.norm1.weight.grad]
    for a, b in zip(ours_g, ref_g, strict=True):
        assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_equals_pytorch(norm_first):
    g = torch.Generator().manual_seed(11 + norm_first)
    torch.manual_seed(1)
    ref = nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, batch_first=True, norm_first=norm_first)
    randomise_norms(ref, g)
    ours = DecoderLayer(D, H, FF, dropout=0.0, norm_first=norm_first)
    copy_decoder_layer(ours, ref)
    B, T, S = 3, 6, 7
    y, mem = torch.randn(B, T, D, generator=g), torch.randn(B, S, D, generator=g)
    tgt_real, src_real = padded_lengths(B, T, g), padded_lengths(B, S, g)
    causal = make_causal_mask(T)
    y1, y2 = y.clone().requires_grad_(), y.clone().requires_grad_()
    m1, m2 = mem.clone().requires_grad_(), mem.clone().requires_grad_()
    out_ref = ref(y1, m1, tgt_mask=~causal, tgt_key_padding_mask=~tgt_real,
                  memory_key_padding_mask=~src_real)
    out = ours(y2, m2, causal & tgt_real[:, None, None, :], src_real[:, None, None, :])
    assert torch.allclose(out, out_ref, atol=1e-5)
    w = torch.randn(out.shape, generator=g)
    (out_ref * w).sum().backward()
    (out * w).sum().backward()
    assert torch.allclose(y1.grad, y2.grad, atol=1e-5)
    assert torch.allclose(m1.grad, m2.grad, atol=1e-5)
    assert torch.allclose(ours.cross_attn.q_proj.weight.grad,
                          ref.multihead_attn.in_proj_weight.grad[:D], atol=1e-4)


def small_config(norm_first: bool) -> TransformerConfig:
    return TransformerConfig(src_vocab_size=13, tgt_vocab_size=11, d_model=D, n_heads=H, d_ff=FF,
                             n_layers=2, max_len=20, dropout=0.0, norm_first=norm_first)


def random_tokens(B: int, L: int, vocab: int, g: torch.Generator) -> torch.Tensor:
    tokens = torch.randint(4, vocab, (B, L), generator=g)
    return tokens.masked_fill(~padded_lengths(B, L, g), PAD)


@pytest.mark.parametrize("norm_first", [False, True])
def test_whole_model_equals_nn_transformer(norm_first):
    g = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    config = small_config(norm_first)
    ours = Transformer(config)
    ref = nn.Transformer(D, H, 2, 2, FF, dropout=0.0, batch_first=True, norm_first=norm_first)
    randomise_norms(ref, g)
    if not norm_first:  # nn.Transformer always ends its stacks with a LayerNorm; the paper does not
        ref.encoder.norm, ref.decoder.norm = nn.Identity(), nn.Identity()
    copy_transformer(ours, ref)  # every layer, and the final norms of the pre-LN stacks
    src, tgt = random_tokens(3, 8, 13, g), random_tokens(3, 6, 11, g)
    logits = ours(src, tgt)
    src_x = ours.positions(ours.src_embed(src) * D**0.5)
    tgt_x = ours.positions(ours.tgt_embed(tgt) * D**0.5)
    out_ref = ref(src_x, tgt_x, tgt_mask=~make_causal_mask(6), src_key_padding_mask=src == PAD,
                  tgt_key_padding_mask=tgt == PAD, memory_key_padding_mask=src == PAD)
    logits_ref = ours.head(out_ref)
    assert logits.shape == (3, 6, 11)
    assert torch.allclose(logits, logits_ref, atol=1e-5)
    logits.square().sum().backward()
    grad_ours = ours.encoder.layers[0].self_attn.v_proj.weight.grad.clone()
    ours.zero_grad()
    logits_ref.square().sum().backward()
    assert torch.allclose(ref.encoder.layers[0].self_attn.in_proj_weight.grad[2 * D:], grad_ours, atol=1e-4)


@pytest.mark.parametrize("norm_first", [False, True])
def test_changing_future_target_tokens_leaves_earlier_logits_unchanged(norm_first):
    g = torch.Generator().manual_seed(2)
    model = Transformer(small_config(norm_first)).eval()
    src, tgt = random_tokens(2, 7, 13, g), torch.randint(4, 11, (2, 6), generator=g)
    changed = tgt.clone()
    changed[:, 4:] = torch.randint(4, 11, (2, 2), generator=g)
    a, b = model(src, tgt), model(src, changed)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-6)
    assert not torch.allclose(a[:, 4:], b[:, 4:], atol=1e-3)


def test_appending_padding_to_the_source_leaves_logits_unchanged():
    g = torch.Generator().manual_seed(3)
    model = Transformer(small_config(False)).eval()
    src, tgt = torch.randint(4, 13, (2, 6), generator=g), torch.randint(4, 11, (2, 5), generator=g)
    padded = torch.cat([src, torch.full((2, 4), PAD)], dim=1)
    assert torch.allclose(model(src, tgt), model(padded, tgt), atol=1e-6)


def test_label_smoothing_loss_equals_pytorch_and_ignores_padding():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 5, 9, generator=g, requires_grad=True)
    targets = torch.randint(1, 9, (3, 5), generator=g)
    targets[0, 3:] = PAD
    ours = label_smoothing_loss(logits, targets, 0.1)
    ref = F.cross_entropy(logits.reshape(-1, 9), targets.reshape(-1), ignore_index=PAD, label_smoothing=0.1)
    assert torch.allclose(ours, ref, atol=1e-6)
    (g_ours,) = torch.autograd.grad(ours, logits)
    (g_ref,) = torch.autograd.grad(ref, logits)
    assert torch.allclose(g_ours, g_ref, atol=1e-6)
    assert (g_ours[0, 3:] == 0).all()


@pytest.mark.parametrize("vocab, eps", [(43, 0.1), (9, 0.2), (200, 0.1)])
def test_the_label_smoothing_floor_is_the_loss_of_the_best_prediction_and_nothing_goes_below(vocab, eps):
    targets = torch.randint(4, vocab, (3, 5), generator=torch.Generator().manual_seed(vocab))
    smoothed = torch.full((3, 5, vocab), eps / vocab).scatter(-1, targets[..., None], 1 - eps + eps / vocab)
    best = label_smoothing_loss(smoothed.log(), targets, eps)
    assert best.item() == pytest.approx(label_smoothing_floor(vocab, eps), rel=1e-5)
    for scale in (1.0, 10.0, 100.0):  # confident or not, a prediction never beats the floor
        logits = torch.randn(3, 5, vocab) + scale * F.one_hot(targets, vocab)
        assert label_smoothing_loss(logits, targets, eps).item() >= label_smoothing_floor(vocab, eps) - 1e-6
    assert label_smoothing_floor(vocab, 0.0) == 0.0


def test_the_label_smoothing_floor_of_notebook_08s_old_vocabulary_is_about_0_69_not_0_4():
    assert label_smoothing_floor(43, 0.1) == pytest.approx(0.685, abs=0.002)


def test_label_smoothing_loss_is_finite_for_extreme_logits():
    logits = torch.tensor([[[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4]]])
    loss = label_smoothing_loss(logits, torch.tensor([[0, 2]]), 0.1)
    assert torch.isfinite(loss)


def test_warmup_schedule_rises_then_decays():
    lr = warmup_schedule(64, 100)
    values = [lr(s) for s in range(400)]
    assert max(values) == pytest.approx(values[99])
    assert values[0] < values[50] < values[99] and values[99] > values[200] > values[399]
    assert values[399] == pytest.approx(64**-0.5 * 400**-0.5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(d_model=30, n_heads=4), "d_model divisible by n_heads .*, got d_model=30 and n_heads=4"),
    (dict(n_layers=0), "n_layers to be a positive int, got 0"),
    (dict(dropout=1.0), r"dropout to be in \[0, 1\), got 1.0"),
    (dict(pad_id=-1), r"pad_id to be an int >= 0, got -1"),
])
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        translate_config(**kwargs)


def test_model_rejects_bad_input():
    model = Transformer(translate_config(max_len=10))
    with pytest.raises(ValueError, match=r"length of src to be an int in \[1, 10\], got 12"):
        model(torch.full((1, 12), 5), torch.full((1, 3), 5))
    with pytest.raises(ValueError, match=r"tgt ids in \[0, \d+\] \(the vocabulary\), got ids from 5 to 9999"):
        model(torch.full((1, 4), 5), torch.tensor([[5, 9999]]))
    with pytest.raises(TypeError, match=r"src to be integer token ids of shape \(B, L\), got torch.float32"):
        model(torch.randn(1, 4), torch.full((1, 3), 5))
    with pytest.raises(TypeError, match="expects a TransformerConfig, got dict"):
        Transformer({"d_model": 8})
    with pytest.raises(ValueError, match=r"warmup_schedule expects warmup_steps to be a positive int, got 0"):
        warmup_schedule(64, 0)
    with pytest.raises(ValueError, match=r"label_smoothing_loss expects logits \(B, T, V\) and targets "
                                         r"\(B, T\) for the same positions, got \(1, 3, 5\) and \(1, 4\)"):
        label_smoothing_loss(torch.randn(1, 3, 5), torch.ones(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"smoothing to be in \[0, 1\), got 1.5"):
        label_smoothing_loss(torch.randn(1, 3, 5), torch.ones(1, 3, dtype=torch.long), 1.5)


def test_padding_mask_helper_used_by_the_model_marks_real_tokens():
    tokens = torch.tensor([[5, 6, PAD]])
    assert make_padding_mask(tokens, PAD).squeeze().tolist() == [True, True, False]


def test_the_encoder_layer_reads_as_the_residual_connection():
    """Notebook 07 prints this forward as *the* residual connection: x + sublayer(x), nothing else."""
    source = inspect.getsource(EncoderLayer.forward)
    assert "x = x + self._self_attention_block(self.norm1(x), mask)" in source
    assert "x = self.norm1(x + self._self_attention_block(x, mask))" in source
    assert "skip" not in source and "residual" not in inspect.signature(EncoderLayer).parameters


def test_the_output_layer_is_called_head():
    model = Transformer(small_config(False))
    assert isinstance(model.head, nn.Linear) and model.head.out_features == 11
    assert not hasattr(model, "generator")  # utils.generator is a random number generator
