"""Pooling functions against hand computations: padding never counts, fp32 out, no NaN."""

import pytest
import torch

from cmim_hf.models.cmim.pooling import (
    first_token,
    flatten_latent,
    last_token,
    masked_mean,
    pool_hidden_states,
    pool_tokens,
    right_align,
    select_layer_indices,
)

# Two rows, T=4, H=2. Row 0: 3 real tokens then padding; row 1: left-padded, 2 real tokens.
HIDDEN = torch.tensor(
    [
        [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [100.0, 100.0]],
        [[-50.0, 50.0], [-50.0, 50.0], [2.0, 0.0], [4.0, 8.0]],
    ]
)
MASK = torch.tensor([[1, 1, 1, 0], [0, 0, 1, 1]])


def test_masked_mean_by_hand() -> None:
    expected = torch.tensor([[3.0, 4.0], [3.0, 4.0]])
    torch.testing.assert_close(masked_mean(HIDDEN, MASK), expected)


def test_first_and_last_token_by_hand() -> None:
    torch.testing.assert_close(first_token(HIDDEN, MASK), torch.tensor([[1.0, 2.0], [2.0, 0.0]]))
    torch.testing.assert_close(last_token(HIDDEN, MASK), torch.tensor([[5.0, 6.0], [4.0, 8.0]]))


@pytest.mark.parametrize("mode", ["mean", "first", "eos"])
def test_padding_content_never_matters(mode: str) -> None:
    noisy = HIDDEN.clone()
    noisy[MASK == 0] = torch.randn(int((MASK == 0).sum()), 2) * 1e6
    torch.testing.assert_close(pool_tokens(noisy, MASK, mode), pool_tokens(HIDDEN, MASK, mode))


@pytest.mark.parametrize("mode", ["mean", "first", "eos"])
def test_all_padding_row_gives_zeros_not_nan(mode: str) -> None:
    mask = torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1]])
    pooled = pool_tokens(HIDDEN, mask, mode)
    assert torch.isfinite(pooled).all()
    torch.testing.assert_close(pooled[0], torch.zeros(2))


@pytest.mark.parametrize("mode", ["mean", "first", "eos"])
def test_half_precision_input_accumulates_in_float32(mode: str) -> None:
    pooled = pool_tokens(HIDDEN.to(torch.bfloat16), MASK, mode)
    assert pooled.dtype == torch.float32
    torch.testing.assert_close(pooled, pool_tokens(HIDDEN, MASK, mode))


def test_mean_of_many_large_half_values_does_not_overflow() -> None:
    hidden = torch.full((1, 4096, 1), 60000.0, dtype=torch.float16)  # the fp16 sum would be inf
    pooled = masked_mean(hidden, torch.ones(1, 4096))
    torch.testing.assert_close(pooled, torch.tensor([[60000.0]]))


def test_unknown_pooling_and_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="pooling"):
        pool_tokens(HIDDEN, MASK, "max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected hidden"):
        pool_tokens(HIDDEN, MASK[:, :3], "mean")


def test_layer_selection() -> None:
    assert select_layer_indices(4, "last") == ([3], "single")
    assert select_layer_indices(4, "mean") == ([1, 2, 3], "mean")
    assert select_layer_indices(4, "concat") == ([1, 2, 3], "concat")
    assert select_layer_indices(4, [0, -1]) == ([0, 3], "concat")
    assert select_layer_indices(4, -2) == ([2], "single")
    with pytest.raises(ValueError, match="out of range"):
        select_layer_indices(4, [4])
    with pytest.raises(ValueError, match="layers"):
        select_layer_indices(4, "all")  # type: ignore[arg-type]


def test_pool_hidden_states_combines_layers_by_hand() -> None:
    states = (HIDDEN * 0, HIDDEN, HIDDEN * 3)  # embedding output + 2 layers
    base = masked_mean(HIDDEN, MASK)  # (B, H)
    torch.testing.assert_close(pool_hidden_states(states, MASK, "last"), 3 * base)
    torch.testing.assert_close(pool_hidden_states(states, MASK, "mean"), 2 * base)
    torch.testing.assert_close(pool_hidden_states(states, MASK, "concat"), torch.cat([base, 3 * base], -1))
    torch.testing.assert_close(pool_hidden_states(states, MASK, [2, 0]), torch.cat([3 * base, 0 * base], -1))


def test_flatten_latent() -> None:
    z = torch.arange(12, dtype=torch.float64).view(2, 3, 2)
    flat = flatten_latent(z)
    assert flat.shape == (2, 6) and flat.dtype == torch.float32
    torch.testing.assert_close(flat[1], torch.arange(6, 12, dtype=torch.float32))


def test_right_align_moves_left_padding() -> None:
    ids = torch.tensor([[7, 8, 9, 0], [0, 0, 5, 6]])
    ids_out, mask_out = right_align(ids, MASK, pad_token_id=0)
    torch.testing.assert_close(ids_out, torch.tensor([[7, 8, 9, 0], [5, 6, 0, 0]]))
    torch.testing.assert_close(mask_out, torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]))
