"""rnnkit's dropout: torch's semantics (rate, scale, gradient, eval mode) with a mask cheap to draw on CPU,
used between a layer's layers whichever path runs them, and by every task's models."""

import pytest
import torch
from torch import nn

from rnnkit.nn.dropout import Dropout, dropout, dropout_mask
from rnnkit.nn.layers import locked_mask, make_layer
from rnnkit.nn.regularisation import embedding_dropout
from rnnkit.tasks.charlm import CharLM, ModelConfig


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5, 0.9])
def test_each_element_is_dropped_at_the_rate_and_the_rest_scaled_to_keep_the_mean(p):
    x = torch.ones(1 << 20)
    torch.manual_seed(0)
    out = dropout(x, p)
    kept = out != 0
    # 2**20 draws: the kept fraction's standard deviation is at most 5e-4; 6 of them is far past chance
    assert abs(kept.float().mean().item() - (1 - p)) < 3e-3
    # 16 bits of each 64-bit draw per element: every one of the four lanes must drop at the rate
    for lane in range(4):
        assert abs(kept[lane::4].float().mean().item() - (1 - p)) < 6e-3
    scale = out[kept].unique()
    assert scale.numel() == 1 and abs(scale.item() * (1 - p) - 1) < 1e-4  # p within 2**-17
    assert abs(out.mean().item() - 1) < 6e-3 / (1 - p)


def test_the_gradient_is_the_mask_and_a_seed_repeats_it():
    x = torch.randn(5, 7, 9, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(3)
    out = dropout(x, 0.3)
    out.backward(torch.ones_like(out))
    keep = 1 - round(0.3 * 2**16) / 2**16  # the rate honoured, to 16 bits
    mask = torch.where(out != 0, 1 / keep, 0.0)
    torch.testing.assert_close(x.grad, mask.to(x.dtype))
    torch.testing.assert_close(out, x.detach() * mask)
    torch.manual_seed(3)
    torch.testing.assert_close(dropout(x, 0.3), out)
    assert not torch.equal(dropout(x, 0.3), out)  # the next draw is a new mask


def test_eval_mode_and_the_edge_rates_are_torchs():
    x = torch.randn(4, 6)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    assert dropout(x.to(torch.bfloat16), 0.5).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="dropout probability"):
        dropout(x, 1.5)
    module = Dropout(0.5)
    assert isinstance(module, nn.Dropout)
    assert module.eval()(x) is x


def test_every_mask_is_drawn_one_way_per_element_per_sequence_and_per_row():
    """Per-step dropout, the locked (per-sequence) mask and embedding dropout's row mask all come from
    dropout_mask: the same seed gives the same mask, shaped for each."""
    h, weight = torch.randn(7, 3, 10), torch.randn(12, 5)
    for drawn, by_hand in [
        (lambda: dropout(h, 0.3), lambda: h * dropout_mask(h.shape, 0.3, h)),
        (lambda: locked_mask(h, 3, 0.3), lambda: dropout_mask((3, 10), 0.3, h)),
        (lambda: embedding_dropout(weight, 0.3), lambda: weight * dropout_mask((12, 1), 0.3, weight)),
    ]:
        torch.manual_seed(5)
        first = drawn()
        torch.manual_seed(5)
        torch.testing.assert_close(first, by_hand())
    mask = dropout_mask((1 << 16, 4), 0.25, weight)
    assert mask.unique().tolist() == [0.0, torch.tensor(1 / (1 - 0.25)).item()]
    assert abs((mask == 0).float().mean().item() - 0.25) < 0.01


@pytest.mark.parametrize("impl", ["fused", "loop"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_dropout_between_layers_is_rnnkits_on_the_fused_kernel_and_the_step_loop(cell, impl):
    """In training a two-layer layer is layer 1, rnnkit's dropout of its output, then layer 2, on
    either path: the fused one runs a layer a call on CPU to drop between them with this mask."""
    torch.manual_seed(0)
    layer = make_layer(cell, 3, 5, 2, impl=impl, dropout=0.5).double()
    first, second = make_layer(cell, 3, 5, 1).double(), make_layer(cell, 5, 5, 1).double()
    first.load_state_dict({k: v for k, v in layer.state_dict().items() if "_l0" in k})
    second.load_state_dict({k.replace("_l1", "_l0"): v for k, v in layer.state_dict().items() if "_l1" in k})
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    torch.manual_seed(1)
    out, _ = layer(x)
    torch.manual_seed(1)
    expected, _ = second(dropout(first(x)[0], 0.5))
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(layer.eval()(x)[0], out)  # dropout acted in training


def test_the_character_model_drops_its_output_with_rnnkits_dropout():
    model = CharLM(ModelConfig(cell="lstm", hidden=8, layers=2, vocab_size=5, dropout=0.3))
    assert type(model.drop) is Dropout and model.drop.p == 0.3
    h = torch.ones(2, 3, 8)
    torch.manual_seed(4)
    expected = dropout(h, 0.3)
    torch.manual_seed(4)
    torch.testing.assert_close(model.drop(h), expected)
