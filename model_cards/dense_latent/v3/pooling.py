"""Pure pooling functions for informative embeddings.

Every function takes hidden states and a padding mask and returns float32 tensors; padding
never contributes to a result, whatever side it is on, and all reductions accumulate in
float32 with clamped denominators (an all-padding row pools to zeros, never NaN).

Shapes: B = batch, T = positions, H = hidden size, K = latent vectors, L = latent size,
D = embedding size.

This module only imports torch: it is copied next to `pipelines.py` into saved checkpoints so
that `pipeline(..., trust_remote_code=True)` works without `cmim_hf` installed.
"""

from collections.abc import Sequence
from typing import Literal

import torch

PoolingMode = Literal["mean", "first", "eos"]
LayerSpec = Literal["last", "mean", "concat"] | int | Sequence[int]

POOLING_MODES: tuple[str, ...] = ("mean", "first", "eos")
LAYER_MODES: tuple[str, ...] = ("last", "mean", "concat")


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the non-padding positions.

    Args:
        hidden: (B, T, H) token states, any float dtype.
        mask: (B, T) 1 for real tokens, 0 for padding.

    Returns:
        (B, H) float32; rows whose mask is all zero give zeros.
    """
    weights = mask.to(torch.float32).unsqueeze(-1)  # (B, T, 1)
    summed = (hidden.to(torch.float32) * weights).sum(dim=1)  # (B, H)
    counts = weights.sum(dim=1).clamp(min=1.0)  # (B, 1)
    return summed / counts


def _gather_position(hidden: torch.Tensor, mask: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """Pick one position per row and zero rows without any real token.

    Args:
        hidden: (B, T, H); mask: (B, T); position: (B,) long indices into T.

    Returns:
        (B, H) float32.
    """
    index = position.view(-1, 1, 1).expand(-1, 1, hidden.size(-1))  # (B, 1, H)
    picked = hidden.gather(1, index).squeeze(1).to(torch.float32)  # (B, H)
    has_token = mask.any(dim=1, keepdim=True).to(torch.float32)  # (B, 1)
    return picked * has_token


def first_token(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """State at the first non-padding position (left or right padding).

    Args:
        hidden: (B, T, H); mask: (B, T) 1 for real tokens.

    Returns:
        (B, H) float32; all-padding rows give zeros.
    """
    position = mask.to(torch.long).argmax(dim=1)  # (B,) first index holding the max (1)
    return _gather_position(hidden, mask, position)


def last_token(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """State at the last non-padding position, i.e. the EOS slot (left or right padding).

    Args:
        hidden: (B, T, H); mask: (B, T) 1 for real tokens.

    Returns:
        (B, H) float32; all-padding rows give zeros.
    """
    seq_len = mask.size(1)
    flipped = mask.to(torch.long).flip(dims=[1])  # (B, T)
    position = seq_len - 1 - flipped.argmax(dim=1)  # (B,)
    return _gather_position(hidden, mask, position)


def pool_tokens(hidden: torch.Tensor, mask: torch.Tensor, mode: PoolingMode = "mean") -> torch.Tensor:
    """Pool token states over positions.

    Args:
        hidden: (B, T, H) token states.
        mask: (B, T) 1 for real tokens, 0 for padding.
        mode: "mean" (over real tokens), "first" (first real token) or "eos" (last real token).

    Returns:
        (B, H) float32.
    """
    if hidden.dim() != 3 or mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"expected hidden (B, T, H) and mask (B, T), got {tuple(hidden.shape)} and {tuple(mask.shape)}"
        )
    if mode == "mean":
        return masked_mean(hidden, mask)
    if mode == "first":
        return first_token(hidden, mask)
    if mode == "eos":
        return last_token(hidden, mask)
    raise ValueError(f"pooling must be one of {POOLING_MODES}, got {mode!r}")


def select_layer_indices(
    num_states: int, layers: LayerSpec
) -> tuple[list[int], Literal["single", "mean", "concat"]]:
    """Resolve a layer spec against a hidden-state tuple of `num_states` entries.

    The tuple holds the embedding output at index 0 and one entry per layer after it (the
    Transformers convention). "last" is the final entry; "mean" and "concat" combine the layer
    outputs 1..n (the embedding output is not a layer); integers index the whole tuple and may
    be negative.

    Returns:
        (non-negative indices, how to combine them).
    """
    if isinstance(layers, str):
        if layers == "last":
            return [num_states - 1], "single"
        if layers in ("mean", "concat"):
            first = 1 if num_states > 1 else 0
            return list(range(first, num_states)), layers  # type: ignore[return-value]
        raise ValueError(f"layers must be one of {LAYER_MODES}, an int or a list of ints, got {layers!r}")
    indices = [layers] if isinstance(layers, int) else list(layers)
    if not indices or not all(isinstance(i, int) for i in indices):
        raise ValueError(f"layers must be a non-empty list of ints, got {layers!r}")
    resolved = []
    for index in indices:
        if not -num_states <= index < num_states:
            raise ValueError(f"layer index {index} out of range for {num_states} hidden states")
        resolved.append(index % num_states)
    return resolved, "single" if isinstance(layers, int) else "concat"


def pool_hidden_states(
    hidden_states: Sequence[torch.Tensor],
    mask: torch.Tensor,
    layers: LayerSpec = "last",
    pooling: PoolingMode = "mean",
) -> torch.Tensor:
    """Select layers from a hidden-state tuple and pool them over positions.

    Pooling is linear per channel, so each selected layer is pooled first and the pooled
    vectors are then averaged or concatenated (no (B, T, n*H) tensor is built).

    Args:
        hidden_states: n+1 tensors (B, T, H): embedding output, then each layer's output.
        mask: (B, T) 1 for real tokens, 0 for padding.
        layers: "last", "mean" (of layer outputs), "concat" (of layer outputs), an index, or a
            list of indices (concatenated in the given order).
        pooling: see `pool_tokens`.

    Returns:
        (B, H) float32, or (B, n_selected * H) for "concat" and lists.
    """
    indices, combine = select_layer_indices(len(hidden_states), layers)
    pooled = [pool_tokens(hidden_states[i], mask, pooling) for i in indices]  # each (B, H)
    if combine == "single":
        return pooled[0]
    if combine == "mean":
        return torch.stack(pooled, dim=0).mean(dim=0)  # (B, H)
    return torch.cat(pooled, dim=-1)  # (B, n*H)


def flatten_latent(z_mean: torch.Tensor) -> torch.Tensor:
    """Flatten the posterior mean into one vector per molecule.

    Args:
        z_mean: (B, K, L) or (B, L).

    Returns:
        (B, K * L) float32.
    """
    return z_mean.reshape(z_mean.size(0), -1).to(torch.float32)


def right_align(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move every row's real tokens to the left (right padding), keeping their order.

    Models with absolute positions (BART, cMIM) give batch-dependent results on left-padded
    input, so every embedding path right-aligns first.

    Args:
        input_ids: (B, T); attention_mask: (B, T) 1 for real tokens.

    Returns:
        (input_ids, attention_mask), both (B, T), right-padded with `pad_token_id` / 0.
    """
    order = torch.argsort((attention_mask == 0).to(torch.int8), dim=1, stable=True)  # (B, T) real first
    mask = attention_mask.gather(1, order)
    ids = input_ids.gather(1, order).masked_fill(mask == 0, pad_token_id)
    return ids, mask
