"""The cMIM encoder-decoder: transformer encoder -> Perceiver bottleneck -> Gaussian posterior ->
causal transformer decoder cross-attending to the latent code.

Read top to bottom: helpers -> attention -> layers -> encoder (incl. bottleneck and posterior) ->
decoder -> PreTrainedModel base -> CMIMModel -> CMIMForConditionalGeneration ->
CMIMForSequenceClassification.

Shapes: B batch, T tokens, H hidden size, K latents, L latent size, V vocabulary.
The model computes only the reconstruction loss; the A-MIM and contrastive terms live in
``cmim_hf.training.losses`` and are added by ``cmim_hf.training.trainer.CMIMTrainer``.
"""

from __future__ import annotations

import inspect
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.dynamic_module_utils import custom_object_save
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import ModelOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_cmim import CMIMConfig
from .pooling import flatten_latent, masked_mean, right_align

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """(B, S) targets -> (B, S) decoder inputs: start token, then the targets shifted by one
    (``-100`` replaced by ``pad_token_id``)."""
    shifted = labels.new_full(labels.shape, pad_token_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


def prepare_decoder_inputs(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, bos_token_id: int, pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher forcing for a right-padded batch of ``[<bos>] + x + [<eos>]`` sequences.

    Args:
        input_ids: (B, T) token ids, right-padded.
        attention_mask: (B, T) 1 for tokens, 0 for padding.
    Returns:
        decoder_input_ids (B, T-1) reading ``[<bos>] + x``; decoder_attention_mask (B, T-1) marking
        exactly those positions; labels (B, T-1) = ``x + [<eos>]`` with -100 at padding.
    """
    if input_ids.shape[1] < 2:
        raise ValueError(f"input_ids must hold at least <bos> and <eos>, got shape {tuple(input_ids.shape)}")
    if (attention_mask[:, 1:] > attention_mask[:, :-1]).any():
        raise ValueError("cMIM expects right-padded inputs (tokenizer padding_side='right')")
    decoder_attention_mask = attention_mask[:, 1:]
    labels = input_ids[:, 1:].masked_fill(decoder_attention_mask == 0, -100)
    decoder_input_ids = shift_tokens_right(labels, pad_token_id, bos_token_id)
    return decoder_input_ids, decoder_attention_mask, labels


def padding_mask_4d(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, T) 0/1 key mask -> (B, 1, 1, T) additive mask (0 keep, dtype-min drop); None if nothing
    is padded, so that SDPA can take its fastest kernel."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    blocked = attention_mask[:, None, None, :] == 0
    return torch.zeros(blocked.shape, dtype=dtype, device=blocked.device).masked_fill(
        blocked, torch.finfo(dtype).min
    )


def causal_mask_4d(length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(1, 1, T, T) additive causal mask, for attention implementations without ``is_causal``."""
    blocked = torch.ones(length, length, dtype=torch.bool, device=device).triu(1)
    return torch.zeros(1, 1, length, length, dtype=dtype, device=device).masked_fill(
        blocked, torch.finfo(dtype).min
    )


def rotary_cos_sin(
    positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE tables for positions (T,) -> cos, sin (T, d): frequencies theta^(-2i/d), each used twice
    (first and second half of the head, as :func:`rotate_half` pairs them)."""
    inverse_frequencies = theta ** (
        -torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim
    )
    angles = positions.float()[:, None] * inverse_frequencies[None, :]  # (T, d/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, d)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(..., d) -> (..., d): (x1, x2) -> (-x2, x1) for the two halves of the last dimension."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys x (B, h, T, d) by their positions' angles (cos, sin: (T, d)), so that
    the dot product of a rotated query at m and a rotated key at n depends only on m - n."""
    return x * cos + rotate_half(x) * sin


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax attention. q (B, h, Tq, d), k/v (B, h, Tk, d) -> ((B, Tq, h, d), (B, h, Tq, Tk))."""
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


# ---------------------------------------------------------------------------------------------
# Output dataclasses
# ---------------------------------------------------------------------------------------------


@dataclass
class CMIMEncoderOutput(ModelOutput):
    """Posterior of a batch. ``last_hidden_state`` is the code ``z`` the decoder reads (it is what
    ``generate`` caches), so decoding from given latents is ``generate(encoder_outputs=CMIMEncoderOutput(
    last_hidden_state=z))``.

    last_hidden_state: (B, K, L) z (a posterior sample in training, ``z_mean`` in eval).
    z_mean, z_logvar: (B, K, L) posterior mean and log-variance.
    token_hidden_states: (B, T, H) encoder token states after the final LayerNorm.
    hidden_states: tuple of ``encoder_layers + 1`` (B, T, H) tensors when requested.
    attentions: tuple of ``encoder_layers`` (B, heads, T, T) self-attention weights when requested.
    """

    last_hidden_state: torch.Tensor | None = None
    z_mean: torch.Tensor | None = None
    z_logvar: torch.Tensor | None = None
    token_hidden_states: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class CMIMDecoderOutput(ModelOutput):
    """last_hidden_state: (B, S, H) after the final LayerNorm; hidden_states: ``decoder_layers + 1``
    tensors (embeddings, each layer; the last one normed) when requested; cache: KV cache;
    attentions / cross_attentions: per layer, (B, heads, S, S_past + S) self-attention and
    (B, heads, S, K) cross-attention weights (to the K latents) when requested."""

    last_hidden_state: torch.Tensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    cross_attentions: tuple[torch.Tensor, ...] | None = None


class CMIMSeq2SeqFields:
    """The fields [`CMIMModelOutput`] and [`CMIMSeq2SeqLMOutput`] share, in this order, after their
    own. Declared once here; :func:`seq2seq_output` appends them to a class's own fields (a
    dataclass base would put them first, and ``to_tuple()`` must start with the class's own,
    ``loss`` first)."""

    cache: Cache | None = None
    z: torch.Tensor | None = None
    z_mean: torch.Tensor | None = None
    z_logvar: torch.Tensor | None = None
    decoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    decoder_attention_mask: torch.Tensor | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    encoder_attentions: tuple[torch.Tensor, ...] | None = None
    decoder_attentions: tuple[torch.Tensor, ...] | None = None
    cross_attentions: tuple[torch.Tensor, ...] | None = None


def seq2seq_output(cls: type) -> type:
    """``dataclass(cls)`` with the fields of [`CMIMSeq2SeqFields`] (default None) after its own."""
    shared = inspect.get_annotations(CMIMSeq2SeqFields)
    cls.__annotations__ = {**inspect.get_annotations(cls), **shared}
    for name in shared:
        setattr(cls, name, None)
    return dataclass(cls)


def shared_fields(output_class: type, source: ModelOutput) -> dict[str, object]:
    """The fields of ``source`` that ``output_class`` declares too, by name (to build one output
    from another)."""
    names = source.__dataclass_fields__
    return {name: getattr(source, name) for name in output_class.__dataclass_fields__ if name in names}


@seq2seq_output
class CMIMModelOutput(ModelOutput, CMIMSeq2SeqFields):
    """Output of [`CMIMModel`]; see ``docs/CONTRACTS.md``.

    last_hidden_state: (B, S, H) decoder states; z, z_mean, z_logvar: (B, K, L);
    encoder_last_hidden_state: (B, T, H); decoder_attention_mask: (B, S) positions read by the decoder;
    encoder_attentions, decoder_attentions, cross_attentions: see [`CMIMEncoderOutput`] and
    [`CMIMDecoderOutput`] (with ``output_attentions``).
    """

    last_hidden_state: torch.Tensor | None = None


@seq2seq_output
class CMIMSeq2SeqLMOutput(ModelOutput, CMIMSeq2SeqFields):
    """Output of [`CMIMForConditionalGeneration`]: [`CMIMModelOutput`] plus ``logits`` (B, S, V) and
    ``loss`` (reconstruction cross-entropy, per-sequence mean over non-pad tokens, batch mean), in
    place of ``last_hidden_state``."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


# ---------------------------------------------------------------------------------------------
# Attention and layers
# ---------------------------------------------------------------------------------------------


class CMIMAttention(nn.Module):
    """Multi-head attention dispatched through Transformers' attention interface (sdpa/eager/...).

    Self-attention when ``key_value_states`` is None, else cross-attention to them. With a cache,
    self-attention appends the new keys/values and cross-attention computes its keys/values once.
    """

    def __init__(self, config: CMIMConfig, is_causal: bool = False, layer_idx: int | None = None):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.dropout = config.attention_dropout
        self.is_causal = is_causal
        self.layer_idx = layer_idx
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def _heads(self, states: torch.Tensor) -> torch.Tensor:
        """(B, T, H) -> (B, h, T, d)."""
        return states.view(*states.shape[:-1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states (B, Tq, H), key_value_states (B, Tk, H) -> (B, Tq, H) and the attention
        weights (B, h, Tq, Tk) (``None`` from kernels that do not form them, e.g. SDPA). ``rotary``:
        the (cos, sin) tables (Tq, d) of the queries' positions, applied to the queries and new keys
        of self-attention (cached keys are stored rotated)."""
        is_cross_attention = key_value_states is not None
        query = self._heads(self.q_proj(hidden_states))
        if rotary is not None:
            query = apply_rotary(query, *rotary)

        layer_cache = None
        if isinstance(cache, EncoderDecoderCache):
            layer_cache = cache.cross_attention_cache if is_cross_attention else cache.self_attention_cache
        elif cache is not None:
            layer_cache = cache
        if is_cross_attention and layer_cache is not None and cache.is_updated.get(self.layer_idx):
            key = layer_cache.layers[self.layer_idx].keys
            value = layer_cache.layers[self.layer_idx].values
        else:
            source = key_value_states if is_cross_attention else hidden_states
            key = self._heads(self.k_proj(source))
            value = self._heads(self.v_proj(source))
            if rotary is not None and not is_cross_attention:
                key = apply_rotary(key, *rotary)
            if layer_cache is not None:
                key, value = layer_cache.update(key, value, self.layer_idx)
                if is_cross_attention:
                    cache.is_updated[self.layer_idx] = True

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        output, weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.dropout if self.training else 0.0,
            scaling=self.scaling,
        )
        return self.out_proj(output.reshape(*hidden_states.shape[:-1], -1)), weights


class CMIMFeedForward(nn.Module):
    """(B, T, H) -> (B, T, H): Linear -> activation -> dropout (``activation_dropout``) -> Linear."""

    def __init__(self, config: CMIMConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.ffn_dim)
        self.activation = ACT2FN[config.activation_function]
        self.dropout = nn.Dropout(config.activation_dropout)
        self.fc2 = nn.Linear(config.ffn_dim, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.activation(self.fc1(hidden_states))))


class CMIMEncoderLayer(GradientCheckpointingLayer):
    """Pre-LayerNorm bidirectional self-attention block."""

    def __init__(self, config: CMIMConfig):
        super().__init__()
        self.self_attn_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = CMIMAttention(config, is_causal=False)
        self.ffn_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = CMIMFeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states (B, T, H), attention_mask (B, 1, 1, T) additive or None, rotary (cos, sin)
        (T, d) or None -> (B, T, H) and the self-attention weights (B, h, T, T) or None."""
        attended, weights = self.self_attn(
            self.self_attn_layer_norm(hidden_states), attention_mask=attention_mask, rotary=rotary
        )
        hidden_states = hidden_states + self.dropout(attended)
        return hidden_states + self.dropout(self.ffn(self.ffn_layer_norm(hidden_states))), weights


class CMIMDecoderLayer(GradientCheckpointingLayer):
    """Pre-LayerNorm causal self-attention, cross-attention to the latent memory, feed-forward."""

    def __init__(self, config: CMIMConfig, layer_idx: int):
        super().__init__()
        self.self_attn_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = CMIMAttention(config, is_causal=True, layer_idx=layer_idx)
        self.cross_attn_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.cross_attn = CMIMAttention(config, is_causal=False, layer_idx=layer_idx)
        self.ffn_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = CMIMFeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        memory: torch.Tensor,
        self_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """hidden_states (B, S, H), memory (B, K, H), rotary (cos, sin) (S, d) or None -> (B, S, H),
        the self-attention weights (B, h, S, S_past + S) and the cross-attention weights (B, h, S, K)
        (None from kernels that do not form them)."""
        attended, self_weights = self.self_attn(
            self.self_attn_layer_norm(hidden_states),
            attention_mask=self_attention_mask,
            cache=cache,
            rotary=rotary,
        )
        hidden_states = hidden_states + self.dropout(attended)
        attended, cross_weights = self.cross_attn(
            self.cross_attn_layer_norm(hidden_states), key_value_states=memory, cache=cache
        )
        hidden_states = hidden_states + self.dropout(attended)
        return (
            hidden_states + self.dropout(self.ffn(self.ffn_layer_norm(hidden_states))),
            self_weights,
            cross_weights,
        )


class CMIMBottleneck(nn.Module):
    """Perceiver bottleneck: K learned queries cross-attend to the token states, then a linear
    layer gives the Gaussian posterior parameters.

    (B, T, H) token states -> mu (B, K, L) and raw log-variance (B, K, L) (None for the
    ``"sampled"`` posterior, whose variance is not predicted).
    """

    def __init__(self, config: CMIMConfig):
        super().__init__()
        self.queries = nn.Parameter(torch.empty(config.num_latents, config.hidden_size))
        self.query_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.cross_attn = CMIMAttention(config, is_causal=False)
        self.ffn_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = CMIMFeedForward(config)
        self.output_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.predicts_logvar = config.posterior == "learned"
        outputs_per_latent = 2 if self.predicts_logvar else 1
        self.posterior_proj = nn.Linear(config.hidden_size, outputs_per_latent * config.latent_size)

    def forward(
        self, token_states: torch.Tensor, key_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        queries = self.queries.unsqueeze(0).expand(token_states.shape[0], -1, -1)  # (B, K, H)
        attended, _ = self.cross_attn(
            self.query_layer_norm(queries), key_value_states=token_states, attention_mask=key_mask
        )
        latents = queries + attended
        latents = latents + self.ffn(self.ffn_layer_norm(latents))
        params = self.posterior_proj(self.output_layer_norm(latents))  # (B, K, 2L) or (B, K, L)
        if self.predicts_logvar:
            z_mean, raw_logvar = params.chunk(2, dim=-1)
            return z_mean, raw_logvar
        return params, None


# ---------------------------------------------------------------------------------------------
# Encoder and decoder stacks
# ---------------------------------------------------------------------------------------------


def add_positions(
    config: CMIMConfig,
    hidden_states: torch.Tensor,
    positions: torch.Tensor,
    embed_positions: nn.Embedding | None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """Token embeddings (B, T, H) at positions (T,) -> (embeddings with learned positions added, None)
    or (embeddings unchanged, rotary (cos, sin) tables (T, d) for the self-attention layers)."""
    if embed_positions is not None:
        return hidden_states + embed_positions(positions), None
    head_dim = config.hidden_size // config.num_attention_heads
    return hidden_states, rotary_cos_sin(positions, head_dim, config.rope_theta, hidden_states.dtype)


class CMIMEncoder(nn.Module):
    """Tokens -> posterior q(z|x) -> z. Its output's ``last_hidden_state`` is z, the decoder memory."""

    def __init__(self, config: CMIMConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.embed_positions = (
            nn.Embedding(config.max_position_embeddings, config.hidden_size)
            if config.position_embedding_type == "learned"
            else None
        )
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList([CMIMEncoderLayer(config) for _ in range(config.encoder_layers)])
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bottleneck = CMIMBottleneck(config)

    def posterior_logvar(self, z_mean: torch.Tensor, raw_logvar: torch.Tensor | None) -> torch.Tensor:
        """Log-variance (B, K, L) of the configured posterior kind."""
        floor = self.config.logvar_min
        if raw_logvar is not None:  # "learned"
            return raw_logvar.clamp(min=floor)
        if not self.training:  # "sampled", inference
            return torch.full_like(z_mean, floor)
        per_molecule = torch.rand(z_mean.shape[0], 1, 1, device=z_mean.device, dtype=z_mean.dtype)
        return (floor * (1.0 - per_molecule)).expand_as(z_mean)  # U(floor, 0), one draw per molecule

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        sample_latent: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> CMIMEncoderOutput:
        """input_ids (B, T) or their embeddings ``inputs_embeds`` (B, T, H), attention_mask (B, T)
        -> CMIMEncoderOutput.

        z is a posterior sample if ``sample_latent`` (default: in training mode), else z = mu.
        ``output_attentions`` returns the self-attention weights of each layer (an attention
        implementation that forms them, e.g. ``"eager"``); ``return_dict`` is accepted for
        GenerationMixin and ignored.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass either input_ids or inputs_embeds to the cMIM encoder")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        length = inputs_embeds.shape[1]
        if length > self.config.max_position_embeddings:
            raise ValueError(
                f"input of {length} tokens exceeds max_position_embeddings={self.config.max_position_embeddings}"
            )
        if attention_mask is None:
            attention_mask = torch.ones(
                inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device
            )
        positions = torch.arange(length, device=inputs_embeds.device)
        hidden_states, rotary = add_positions(self.config, inputs_embeds, positions, self.embed_positions)
        hidden_states = self.dropout(hidden_states)
        key_mask = padding_mask_4d(attention_mask, hidden_states.dtype)

        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            hidden_states, weights = layer(hidden_states, key_mask, rotary)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_attentions += (weights,)
        token_states = self.layer_norm(hidden_states)
        if output_hidden_states:
            all_hidden_states = all_hidden_states[:-1] + (token_states,)

        z_mean, raw_logvar = self.bottleneck(token_states, key_mask)
        z_logvar = self.posterior_logvar(z_mean, raw_logvar)
        sample = self.training if sample_latent is None else sample_latent
        z = z_mean + torch.exp(0.5 * z_logvar) * torch.randn_like(z_mean) if sample else z_mean
        return CMIMEncoderOutput(
            last_hidden_state=z,
            z_mean=z_mean,
            z_logvar=z_logvar,
            token_hidden_states=token_states,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )


class CMIMDecoder(nn.Module):
    """Causal transformer over token embeddings, cross-attending to the projected latent code."""

    def __init__(self, config: CMIMConfig):
        super().__init__()
        self.config = config
        self.embed_positions = (
            nn.Embedding(config.max_position_embeddings, config.hidden_size)
            if config.position_embedding_type == "learned"
            else None
        )
        self.latent_proj = nn.Linear(config.latent_size, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            [CMIMDecoderLayer(config, layer_idx=i) for i in range(config.decoder_layers)]
        )
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        latents: torch.Tensor,
        cache: Cache | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> CMIMDecoderOutput:
        """inputs_embeds (B, S, H) token embeddings of the decoder input, latents (B, K, L)."""
        past_length = cache.get_seq_length() if cache is not None else 0
        length = inputs_embeds.shape[1]
        if past_length + length > self.config.max_position_embeddings:
            raise ValueError(
                f"decoding past max_position_embeddings={self.config.max_position_embeddings} "
                f"({past_length + length} positions)"
            )
        positions = torch.arange(past_length, past_length + length, device=inputs_embeds.device)
        hidden_states, rotary = add_positions(self.config, inputs_embeds, positions, self.embed_positions)
        hidden_states = self.dropout(hidden_states)
        memory = self.latent_proj(latents.to(hidden_states.dtype))  # (B, K, H)

        # Right padding + causality: a real position never sees a padded one, so SDPA can use
        # its causal kernel with no mask. Other implementations get an explicit causal mask.
        self_attention_mask = None
        if self.config._attn_implementation != "sdpa" and length > 1:
            self_attention_mask = causal_mask_4d(length, hidden_states.dtype, hidden_states.device)
            if past_length:
                prefix = self_attention_mask.new_zeros(1, 1, length, past_length)
                self_attention_mask = torch.cat([prefix, self_attention_mask], dim=-1)

        all_hidden_states = (hidden_states,) if output_hidden_states else None
        self_attentions, cross_attentions = ((), ()) if output_attentions else (None, None)
        for layer in self.layers:
            hidden_states, self_weights, cross_weights = layer(
                hidden_states, memory, self_attention_mask=self_attention_mask, cache=cache, rotary=rotary
            )
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                self_attentions += (self_weights,)
                cross_attentions += (cross_weights,)
        hidden_states = self.layer_norm(hidden_states)
        if output_hidden_states:
            all_hidden_states = all_hidden_states[:-1] + (hidden_states,)
        return CMIMDecoderOutput(
            last_hidden_state=hidden_states,
            cache=cache,
            hidden_states=all_hidden_states,
            attentions=self_attentions,
            cross_attentions=cross_attentions,
        )


# ---------------------------------------------------------------------------------------------
# Pretrained models
# ---------------------------------------------------------------------------------------------


REMOTE_CODE_AUTO_MAP = {
    "AutoConfig": "configuration_cmim.CMIMConfig",
    "AutoModel": "modeling_cmim.CMIMModel",
    "AutoModelForSeq2SeqLM": "modeling_cmim.CMIMForConditionalGeneration",
    "AutoModelForSequenceClassification": "modeling_cmim.CMIMForSequenceClassification",
}

CHECKPOINT_COMPANION_FILES = (
    "README.md",
    "aggregate_posterior.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
"""Files of a cMIM checkpoint folder besides what ``save_pretrained`` writes: the measured card, the
sampling prior and the tokenizer. ``push_to_hub`` uploads them with unchanged weights."""


class CMIMPreTrainedModel(PreTrainedModel):
    config: CMIMConfig
    config_class = CMIMConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["CMIMEncoderLayer", "CMIMDecoderLayer"]
    _supports_sdpa = True
    # The loss is a per-batch mean: the Trainer scales it for gradient accumulation itself.
    accepts_loss_kwargs = False

    def save_pretrained(self, save_directory, is_main_process: bool = True, **kwargs):
        """Save as usual. A class registered for an Auto class (``import cmim_hf`` does that) also
        writes a self-contained remote-code checkpoint: every cMIM Auto class maps to its file (so
        ``AutoModel`` and ``AutoModelForSeq2SeqLM`` both load it with ``trust_remote_code=True``),
        the informative-embedding pipeline is attached for ``pipeline("feature-extraction")``, and
        the folder carries the whole remote-code set, the tokenizer's code included, each file
        copied from its module by Transformers' ``custom_object_save``."""
        if self._auto_class is None:
            return super().save_pretrained(save_directory, is_main_process=is_main_process, **kwargs)
        self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **REMOTE_CODE_AUTO_MAP}
        result = super().save_pretrained(save_directory, is_main_process=is_main_process, **kwargs)
        if is_main_process:  # the other processes of a distributed run write nothing
            from .pipelines import add_pipeline_to_checkpoint
            from .tokenization_cmim import CMIMTokenizer

            add_pipeline_to_checkpoint(save_directory)
            custom_object_save(CMIMTokenizer, save_directory)
        return result

    def _upload_modified_files(self, working_dir, repo_id: str, *args, **kwargs):
        """``push_to_hub``'s upload of the folder it saved into ``working_dir``, plus what a cMIM
        checkpoint carries besides its weights: when this model still has the weights of the local
        folder it was loaded from, that folder's measured model card (README.md, in place of the
        template Transformers writes), tokenizer files and aggregate posterior go up with it. A
        model whose weights changed since loading is pushed as Transformers does (the old card
        and prior describe other weights)."""
        source = self._unchanged_source_folder()
        if source is not None:
            for name in CHECKPOINT_COMPANION_FILES:
                if (source / name).is_file():
                    shutil.copyfile(source / name, Path(working_dir) / name)
        return super()._upload_modified_files(working_dir, repo_id, *args, **kwargs)

    def _unchanged_source_folder(self) -> Path | None:
        """The local folder this model was loaded from, if its weights are still exactly those of
        the folder's ``model.safetensors``; else None."""
        source = Path(str(getattr(self, "name_or_path", "") or ""))
        weights = source / "model.safetensors"
        if not weights.is_file():
            return None
        from safetensors.torch import load_file

        current = self.state_dict()
        saved = load_file(str(weights))
        unchanged = all(
            name in current and torch.equal(current[name].cpu(), tensor) for name, tensor in saved.items()
        )
        return source if unchanged else None

    def _return_dict(self, return_dict: bool | None) -> bool:
        """``return_dict`` as given, else the config's; ``False`` returns the output as a tuple."""
        return return_dict if return_dict is not None else self.config.return_dict

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, CMIMBottleneck):
            init.normal_(module.queries, mean=0.0, std=self.config.init_std)
            bias = module.posterior_proj.bias
            if module.predicts_logvar and not getattr(bias, "_is_hf_initialized", False):
                # Start the posterior at its floor (sigma = exp(logvar_min / 2)): with the default
                # zero bias sigma ~ 1 dwarfs the ~0.1 spread of mu, z is pure noise and the decoder
                # learns to ignore it (posterior collapse).
                with torch.no_grad():
                    bias[self.config.latent_size :].fill_(self.config.logvar_min)


class CMIMModel(CMIMPreTrainedModel):
    """Encoder, bottleneck, posterior and decoder, without the LM head.

    Example:

    ```python
    >>> import cmim_hf, torch
    >>> model = cmim_hf.CMIMModel(cmim_hf.CMIMConfig(hidden_size=32, num_attention_heads=2, ffn_dim=64)).eval()
    >>> tokenizer = cmim_hf.CMIMTokenizer()
    >>> batch = tokenizer(["CCO", "c1ccccc1"], padding=True, return_tensors="pt")
    >>> model(**batch).z_mean.shape
    torch.Size([2, 1, 32])
    ```
    """

    def __init__(self, config: CMIMConfig):
        super().__init__(config)
        self.encoder = CMIMEncoder(config)
        self.decoder = CMIMDecoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.encoder.embed_tokens = value

    def get_encoder(self, modality: str | None = None) -> CMIMEncoder:
        return self.encoder

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> CMIMEncoderOutput:
        """Posterior q(z|x) of a batch: z_mean/z_logvar (B, K, L); z sampled in training, mu in eval."""
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask)

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: CMIMEncoderOutput | tuple | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        sample_latent: bool | None = None,
    ) -> CMIMModelOutput | tuple:
        """Encode ``input_ids`` or ``inputs_embeds`` (B, T, H) (or take ``encoder_outputs``), decode
        teacher-forced ``decoder_input_ids`` or ``decoder_inputs_embeds`` (B, S, H).

        Without either, the decoder reads ``[<bos>] + x`` of ``input_ids``, built by
        :func:`prepare_decoder_inputs`. ``sample_latent`` overrides the encoder's default (sample z
        in training, z = mu in eval). ``past_key_values`` is the deprecated name of ``cache``.
        """
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        output_attentions = (
            output_attentions
            if output_attentions is not None
            else getattr(self.config, "output_attentions", False)
        )
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids,
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                output_hidden_states=output_hidden_states,
                output_attentions=output_attentions,
                sample_latent=sample_latent,
            )
        elif not isinstance(encoder_outputs, CMIMEncoderOutput):
            encoder_outputs = CMIMEncoderOutput(last_hidden_state=encoder_outputs[0])

        if decoder_input_ids is None and decoder_inputs_embeds is None:
            if input_ids is None:
                raise ValueError(
                    "pass decoder_input_ids or decoder_inputs_embeds when the encoder reads inputs_embeds "
                    "or encoder_outputs"
                )
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            decoder_input_ids, decoder_attention_mask, _ = prepare_decoder_inputs(
                input_ids, attention_mask, self.config.bos_token_id, self.config.pad_token_id
            )

        use_cache = use_cache if use_cache is not None else (self.config.use_cache and not self.training)
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        if not use_cache:
            cache = None

        if decoder_inputs_embeds is None:
            decoder_inputs_embeds = self.encoder.embed_tokens(decoder_input_ids)
        decoder_outputs = self.decoder(
            inputs_embeds=decoder_inputs_embeds,
            latents=encoder_outputs.last_hidden_state,
            cache=cache,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )
        output = CMIMModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            cache=decoder_outputs.cache,
            z=encoder_outputs.last_hidden_state,
            z_mean=encoder_outputs.z_mean,
            z_logvar=encoder_outputs.z_logvar,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attention_mask=decoder_attention_mask,
            encoder_last_hidden_state=encoder_outputs.token_hidden_states,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
        )
        return output if self._return_dict(return_dict) else output.to_tuple()


class CMIMForConditionalGeneration(CMIMPreTrainedModel, GenerationMixin):
    """cMIM with its LM head: reconstruction, generation (greedy/beam/sampling) and decoding of
    given latents.

    ``loss`` is the reconstruction cross-entropy (per-sequence mean over non-pad tokens, then batch
    mean) when ``labels`` (B, S) are given; with a plain ``Trainer`` this trains a plain
    auto-encoder. Labels default to the teacher-forcing targets of ``input_ids`` when
    ``return_loss=True``.
    """

    _tied_weights_keys = {"lm_head.weight": "model.encoder.embed_tokens.weight"}

    def __init__(self, config: CMIMConfig):
        super().__init__(config)
        self.model = CMIMModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.set_input_embeddings(value)

    def get_encoder(self, modality: str | None = None) -> CMIMEncoder:
        return self.model.encoder

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> CMIMEncoderOutput:
        """Posterior q(z|x) of a batch: z_mean/z_logvar (B, K, L); z sampled in training, mu in eval."""
        return self.model.encode(input_ids, attention_mask)

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    @torch.no_grad()
    def decode_latents(self, z: torch.Tensor, **generate_kwargs) -> torch.Tensor:
        """Generate token ids (B, S) from latent codes z (B, K, L) (e.g. prior samples)."""
        if z.dim() != 3 or z.shape[1:] != (self.config.num_latents, self.config.latent_size):
            raise ValueError(
                f"z must have shape (B, {self.config.num_latents}, {self.config.latent_size}), got {tuple(z.shape)}"
            )
        z = z.to(device=self.device, dtype=self.dtype)
        return self.generate(encoder_outputs=CMIMEncoderOutput(last_hidden_state=z), **generate_kwargs)

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: CMIMEncoderOutput | tuple | None = None,
        labels: torch.Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_loss: bool | None = None,
        return_dict: bool | None = None,
        sample_latent: bool | None = None,
    ) -> CMIMSeq2SeqLMOutput | tuple:
        """input_ids/attention_mask (B, T) -> CMIMSeq2SeqLMOutput, BART's ``labels`` contract.

        - ``labels`` (B, S), -100 at padding: the decoder reads ``shift_tokens_right(labels)`` (any
          S, e.g. a SMILES-to-SMILES task); its attention mask marks the positions whose label is
          not -100 (right padding).
        - no ``labels``: autoencoding teacher forcing, the decoder reads ``[<bos>] + x`` of
          ``input_ids`` (:func:`prepare_decoder_inputs`); ``return_loss=True`` scores it against
          ``x + [<eos>]``. For a pre-training batch the two coincide.

        ``decoder_input_ids``, when given, are used as they are. ``sample_latent``: see
        [`CMIMModel.forward`]."""
        decoder_given = decoder_input_ids is not None or decoder_inputs_embeds is not None
        if not decoder_given and labels is not None:
            decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
            decoder_attention_mask = (labels != -100).long()
        elif not decoder_given and input_ids is not None:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            decoder_input_ids, decoder_attention_mask, teacher_labels = prepare_decoder_inputs(
                input_ids, attention_mask, self.config.bos_token_id, self.config.pad_token_id
            )
            if return_loss:
                labels = teacher_labels

        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=cache,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
            sample_latent=sample_latent,
        )
        logits = self.lm_head(outputs.last_hidden_state)  # (B, S, V)

        loss = None
        if labels is not None:
            loss = reconstruction_cross_entropy(logits, labels).mean()
        output = CMIMSeq2SeqLMOutput(loss=loss, logits=logits, **shared_fields(CMIMSeq2SeqLMOutput, outputs))
        return output if self._return_dict(return_dict) else output.to_tuple()


# ---------------------------------------------------------------------------------------------
# Sequence classification and regression
# ---------------------------------------------------------------------------------------------


PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


@dataclass
class CMIMSequenceClassifierOutput(ModelOutput):
    """Output of [`CMIMForSequenceClassification`].

    loss: scalar, mean over the present labels (NaN / -100 entries left out), when labels are given.
    logits: (B, num_labels) regression values, class logits or per-label logits.
    features: (B, D) what the head reads: mu flattened (D = K*L) for ``"latent"``, mu then the pooled
        decoder states (D = K*L + H) for ``"informative"``.
    z_mean: (B, K, L) posterior mean.
    encoder_hidden_states / decoder_hidden_states: with ``output_hidden_states``, the embeddings and
        every layer's output of the encoder (B, T, H) and of the decoder (B, S, H).
    encoder_attentions, decoder_attentions, cross_attentions: with ``output_attentions``, as in
        [`CMIMModelOutput`] (the decoder's only for ``"informative"`` features).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    features: torch.Tensor | None = None
    z_mean: torch.Tensor | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    decoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    encoder_attentions: tuple[torch.Tensor, ...] | None = None
    decoder_attentions: tuple[torch.Tensor, ...] | None = None
    cross_attentions: tuple[torch.Tensor, ...] | None = None


def sequence_classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, problem_type: str
) -> torch.Tensor:
    """Loss of a classification / regression head, averaged over the present labels only.

    Args:
        logits: (B, C) head outputs.
        labels: regression and multi-label: (B, C) or (B,) when C == 1, float, NaN = missing;
            single-label: (B,) class ids (-100 = missing) or floats (NaN = missing).
        problem_type: one of :data:`PROBLEM_TYPES`.
    Returns:
        scalar float32: MSE, cross-entropy or binary cross-entropy summed over the present labels
        and divided by their number (0 when none is present, still attached to the graph).
    """
    logits = logits.float()
    if problem_type == "single_label_classification":
        targets = labels.reshape(-1)  # (B,)
        if targets.is_floating_point():
            targets = targets.nan_to_num(nan=-100.0).long()
        losses = nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets, ignore_index=-100, reduction="none"
        )  # (B,)
        present = targets != -100
    elif problem_type in ("regression", "multi_label_classification"):
        targets = labels.reshape(logits.shape).float()  # (B, C)
        present = ~torch.isnan(targets)
        targets = targets.nan_to_num(nan=0.0)
        if problem_type == "regression":
            losses = (logits - targets) ** 2
        else:
            losses = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    else:
        raise ValueError(f"problem_type must be one of {PROBLEM_TYPES}, got {problem_type!r}")
    return (losses * present).sum() / present.sum().clamp(min=1)


class CMIMClassificationHead(nn.Module):
    """(B, D) molecule features -> (B, num_labels): LayerNorm -> dropout -> Linear(D, H) ->
    activation -> dropout -> Linear(H, num_labels). The LayerNorm puts mu and the pooled decoder
    states on one scale, as the frozen-embedding probes standardise their features."""

    def __init__(self, config: CMIMConfig, in_features: int):
        super().__init__()
        dropout = config.classifier_dropout
        self.norm = nn.LayerNorm(in_features, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout if dropout is None else dropout)
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.activation = ACT2FN[config.activation_function]
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = self.activation(self.dense(self.dropout(self.norm(features))))  # (B, H)
        return self.out_proj(self.dropout(hidden))  # (B, num_labels)


class CMIMForSequenceClassification(CMIMPreTrainedModel):
    """cMIM with a classification / regression head on a molecule-level feature vector.

    Follows the Transformers convention: ``config.num_labels`` outputs and ``config.problem_type``
    ``"regression"`` (MSE), ``"single_label_classification"`` (cross-entropy over
    ``num_labels`` classes) or ``"multi_label_classification"`` (one binary cross-entropy per label);
    when unset it is inferred from the first labels seen (1 label: regression; integer labels:
    single-label; else multi-label). Missing labels (NaN, or -100 for class ids) are left out of the
    loss, not imputed, so multi-task data such as Tox21 trains as is.

    The head reads ``config.classifier_features``:
    - ``"informative"`` (default): mu flattened, then the decoder states pooled (mean over the real
      positions of the last layer) while the decoder reads ``[<bos>] + x`` from z = mu: the
      informative embedding of :func:`cmim_hf.models.cmim.pipelines.compute_embeddings`. The decoder reads mu in
      training too, so the features are deterministic up to dropout.
    - ``"latent"``: mu flattened (the encoder only; the decoder's weights stay unused).
    ``config.classifier_dropout`` is the head's dropout (``config.dropout`` when unset). Both are
    read with defaults, so any cMIM checkpoint loads with a freshly initialised head:

    ```python
    >>> from cmim_hf import CMIMForSequenceClassification
    >>> model = CMIMForSequenceClassification.from_pretrained(
    ...     "path/to/cmim", num_labels=12, problem_type="multi_label_classification"
    ... )
    ```
    """

    _keys_to_ignore_on_load_unexpected = [r"^lm_head\."]

    def __init__(self, config: CMIMConfig):
        super().__init__(config)
        self.classifier_features = config.classifier_features  # validated by CMIMConfig
        if config.problem_type is not None and config.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {PROBLEM_TYPES}, got {config.problem_type!r}")
        self.num_labels = config.num_labels
        self.model = CMIMModel(config)
        latent_features = config.num_latents * config.latent_size
        informative = self.classifier_features == "informative"
        self.classifier = CMIMClassificationHead(
            config, latent_features + (config.hidden_size if informative else 0)
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.set_input_embeddings(value)

    def molecule_features(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, CMIMModelOutput]:
        """(B, T) token ids (left or right padded) or right-padded embeddings (B, T, H) -> features
        (B, D) and the base model's output (``z_mean`` (B, K, L); the decoder's fields stay empty for
        ``"latent"`` features).

        The informative features pool the decoder's last layer over ``decoder_attention_mask`` while
        it reads ``decoder_input_ids`` (or ``decoder_inputs_embeds``) from z = mu; by default
        ``[<bos>] + x``, as the embedder."""
        if input_ids is not None:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            input_ids, attention_mask = right_align(input_ids, attention_mask, self.config.pad_token_id)
        encoded = self.model.encoder(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )
        latent = flatten_latent(encoded.z_mean).to(encoded.z_mean.dtype)  # (B, K*L)
        base = CMIMModelOutput(
            z_mean=encoded.z_mean,
            encoder_hidden_states=encoded.hidden_states,
            encoder_attentions=encoded.attentions,
        )
        if self.classifier_features == "latent":
            return latent, base
        decoded = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            decoder_inputs_embeds=decoder_inputs_embeds,
            encoder_outputs=CMIMEncoderOutput(last_hidden_state=encoded.z_mean),
            use_cache=False,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )
        decoder_mask = decoded.decoder_attention_mask
        if decoder_mask is None:
            decoder_mask = torch.ones(decoded.last_hidden_state.shape[:2], device=latent.device)
        pooled = masked_mean(decoded.last_hidden_state, decoder_mask)  # (B, H)
        base.decoder_hidden_states = decoded.decoder_hidden_states
        base.decoder_attentions, base.cross_attentions = decoded.decoder_attentions, decoded.cross_attentions
        return torch.cat([latent, pooled.to(latent.dtype)], dim=-1), base  # (B, K*L + H)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> CMIMSequenceClassifierOutput | tuple:
        """input_ids/attention_mask (B, T); labels (B, num_labels) or (B,) -> CMIMSequenceClassifierOutput.

        ``decoder_input_ids``/``decoder_attention_mask`` (B, S): what the decoder reads for the
        informative features (default ``[<bos>] + x``). ``inputs_embeds`` (B, T, H), right padded,
        replace ``input_ids``; the informative features then need ``decoder_input_ids`` or
        ``decoder_inputs_embeds``.
        """
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if output_attentions is None:
            output_attentions = getattr(self.config, "output_attentions", False)
        features, base = self.molecule_features(
            input_ids,
            attention_mask,
            decoder_input_ids,
            decoder_attention_mask,
            output_hidden_states,
            output_attentions,
            inputs_embeds,
            decoder_inputs_embeds,
        )
        logits = self.classifier(features)  # (B, num_labels)

        loss = None
        if labels is not None:
            if self.config.problem_type is None:
                if self.num_labels == 1:
                    self.config.problem_type = "regression"
                elif not labels.is_floating_point():
                    self.config.problem_type = "single_label_classification"
                else:
                    self.config.problem_type = "multi_label_classification"
            loss = sequence_classification_loss(logits, labels.to(logits.device), self.config.problem_type)
        output = CMIMSequenceClassifierOutput(
            loss=loss,
            logits=logits,
            features=features,
            **shared_fields(CMIMSequenceClassifierOutput, base),
        )
        return output if self._return_dict(return_dict) else output.to_tuple()


def reconstruction_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean token cross-entropy: logits (B, S, V), labels (B, S) with -100 ignored -> (B,).

    Kept here (not imported from ``cmim_hf.training.losses``) so that the model file stays self-contained
    for ``trust_remote_code``; ``cmim_hf.training.losses.sequence_cross_entropy`` is tested to agree.
    """
    token_losses = nn.functional.cross_entropy(
        logits.transpose(1, 2).float(), labels, ignore_index=-100, reduction="none"
    )  # (B, S)
    counts = (labels != -100).sum(dim=1)
    return token_losses.sum(dim=1) / counts.clamp(min=1)


__all__ = [
    "CMIMEncoderOutput",
    "CMIMForConditionalGeneration",
    "CMIMModel",
    "CMIMModelOutput",
    "CMIMPreTrainedModel",
    "CMIMForSequenceClassification",
    "CMIMSeq2SeqLMOutput",
    "CMIMSequenceClassifierOutput",
    "prepare_decoder_inputs",
    "sequence_classification_loss",
]
