"""Configuration of the cMIM encoder-decoder (model_type ``"cmim"``)."""

from __future__ import annotations

import math

from transformers import PreTrainedConfig

POSTERIOR_KINDS = ("learned", "sampled")
POSITION_EMBEDDING_TYPES = ("learned", "rotary")
CLASSIFIER_FEATURES = ("informative", "latent")
ACTIVATIONS = ("gelu", "relu", "silu")
SMILES_NORMALIZATIONS = ("none", "canonical", "canonical_nostereo")  # see cmim_hf.chem.normalize_smiles
# The default neighbourhood radius and latent-search step, in posterior floor stds: for both
# checkpoints measured, 2 floor stds gave the best constrained-QED success (v2, floor 0.05: 0.125 at
# step 0.1, 0 at 0.3; v3, floor 0.3: 0.25 at 0.6, 0.18 at 0.3, 0.02 at 0.1 and at 1.0;
# model_cards/qed_optimization/step_size/).
EXPLORATION_RADIUS_IN_FLOOR_STDS = 2.0


class CMIMConfig(PreTrainedConfig):
    r"""Configuration of [`CMIMModel`] and [`CMIMForConditionalGeneration`].

    A transformer encoder reads the SMILES tokens; ``num_latents`` learned queries cross-attend to
    the token states (Perceiver bottleneck) and a linear layer maps them to a diagonal Gaussian
    posterior ``q(z|x)`` of shape (num_latents, latent_size); a causal transformer decoder
    cross-attends to ``z`` and predicts the tokens.

    Args:
        vocab_size: number of tokens (the shipped SMILES vocabulary by default).
        hidden_size: width of every transformer layer.
        encoder_layers / decoder_layers: number of layers of each stack.
        num_attention_heads: heads of every attention block (must divide ``hidden_size``).
        ffn_dim: inner width of the feed-forward blocks.
        activation_function: one of ``"gelu"``, ``"relu"``, ``"silu"``.
        dropout / attention_dropout / activation_dropout: dropout on residual branches / attention
            weights / between the two feed-forward linears (BART's three dropouts, BART's defaults).
        max_position_embeddings: longest token sequence (incl. ``<bos>``/``<eos>``).
        position_embedding_type: ``"learned"`` (absolute position embeddings, one per position) or
            ``"rotary"`` (RoPE on the self-attention queries and keys: relative positions, no
            parameters, so positions beyond those seen in training are not untrained vectors).
        rope_theta: base of the rotary frequencies.
        num_latents: K, the number of latent vectors per molecule.
        latent_size: size of each latent vector (defaults to ``hidden_size``).
        posterior: ``"learned"`` (log-variance predicted, clamped below at ``logvar_min``) or
            ``"sampled"`` (MolMIM's dense latent: log-variance drawn from U(logvar_min, 0) per molecule
            in training, ``logvar_min`` at inference).
        logvar_min: floor of the posterior log-variance (NVIDIA's -6).
        layer_norm_eps / init_std: LayerNorm epsilon and std of the normal weight init.
        classifier_features: features of [`CMIMForSequenceClassification`]: ``"informative"``
            (mu and the mean-pooled last decoder layer) or ``"latent"`` (mu).
        classifier_dropout: dropout of the classification head (``dropout`` when None).
        vocab_fingerprint: :func:`cmim_hf.models.cmim.tokenization_cmim.vocabulary_fingerprint` of the tokenizer the
            model was trained with; loading refuses a tokenizer with another vocabulary.
        smiles_normalization: how the training SMILES were written, applied to inputs by the
            embedder, the pipeline and the benchmark featurizer: ``"none"`` (as given),
            ``"canonical"`` (RDKit canonical, stereo kept) or ``"canonical_nostereo"`` (RDKit
            canonical, stereo dropped: MOSES). None: not recorded (treated as ``"none"``).

    Example:

    ```python
    >>> from cmim_hf import CMIMConfig, CMIMForConditionalGeneration
    >>> config = CMIMConfig(hidden_size=64, encoder_layers=2, decoder_layers=2, num_attention_heads=4, ffn_dim=128)
    >>> model = CMIMForConditionalGeneration(config)
    ```
    """

    model_type = "cmim"
    attribute_map = {
        "d_model": "hidden_size",
        "num_hidden_layers": "decoder_layers",
        "encoder_attention_heads": "num_attention_heads",
        "decoder_attention_heads": "num_attention_heads",
    }
    keys_to_ignore_at_inference = ["cache"]

    vocab_size: int = 298
    hidden_size: int = 256
    encoder_layers: int = 4
    decoder_layers: int = 4
    num_attention_heads: int = 4
    ffn_dim: int = 1024
    activation_function: str = "gelu"
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    max_position_embeddings: int = 512
    position_embedding_type: str = "learned"
    rope_theta: float = 10000.0
    num_latents: int = 1
    latent_size: int | None = None
    posterior: str = "learned"
    logvar_min: float = -6.0
    layer_norm_eps: float = 1e-5
    init_std: float = 0.02
    classifier_features: str = "informative"
    classifier_dropout: float | None = None
    smiles_normalization: str | None = None
    vocab_fingerprint: str | None = None
    use_cache: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    unk_token_id: int | None = 3
    mask_token_id: int | None = 4
    decoder_start_token_id: int | None = 1
    is_encoder_decoder: bool = True
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        if self.latent_size is None:
            self.latent_size = self.hidden_size
        self._validate_cmim()
        super().__post_init__(**kwargs)

    @property
    def posterior_floor_std(self) -> float:
        """``exp(logvar_min / 2)``: the narrowest posterior std, so the width of the ball around each
        code that the decoder learned to read."""
        return math.exp(self.logvar_min / 2)

    @property
    def exploration_radius(self) -> float:
        """The default std of the steps taken from a molecule's code (neighbourhood sampling, latent
        optimisation): :data:`EXPLORATION_RADIUS_IN_FLOOR_STDS` posterior floor stds."""
        return EXPLORATION_RADIUS_IN_FLOOR_STDS * self.posterior_floor_std

    def _validate_cmim(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        positive_ints = (
            "vocab_size",
            "hidden_size",
            "encoder_layers",
            "decoder_layers",
            "num_attention_heads",
            "ffn_dim",
            "max_position_embeddings",
            "num_latents",
            "latent_size",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"CMIMConfig.{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"CMIMConfig.hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        for name in ("dropout", "attention_dropout", "activation_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"CMIMConfig.{name} must be in [0, 1), got {value!r}")
        if self.position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise ValueError(
                f"CMIMConfig.position_embedding_type must be one of {POSITION_EMBEDDING_TYPES}, "
                f"got {self.position_embedding_type!r}"
            )
        if self.position_embedding_type == "rotary" and (self.hidden_size // self.num_attention_heads) % 2:
            raise ValueError("rotary positions need an even head size (hidden_size / num_attention_heads)")
        if self.posterior not in POSTERIOR_KINDS:
            raise ValueError(f"CMIMConfig.posterior must be one of {POSTERIOR_KINDS}, got {self.posterior!r}")
        if self.classifier_features not in CLASSIFIER_FEATURES:
            raise ValueError(
                f"CMIMConfig.classifier_features must be one of {CLASSIFIER_FEATURES}, got {self.classifier_features!r}"
            )
        if self.classifier_dropout is not None and not 0.0 <= self.classifier_dropout < 1.0:
            raise ValueError(
                f"CMIMConfig.classifier_dropout must be in [0, 1), got {self.classifier_dropout!r}"
            )
        if self.smiles_normalization not in (None, *SMILES_NORMALIZATIONS):
            raise ValueError(
                f"CMIMConfig.smiles_normalization must be one of {SMILES_NORMALIZATIONS} or None, "
                f"got {self.smiles_normalization!r}"
            )
        if self.activation_function not in ACTIVATIONS:
            raise ValueError(
                f"CMIMConfig.activation_function must be one of {ACTIVATIONS}, got {self.activation_function!r}"
            )
        if not self.logvar_min < 0.0:
            raise ValueError(f"CMIMConfig.logvar_min must be negative, got {self.logvar_min!r}")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
            value = getattr(self, name)
            if value is None or not 0 <= value < self.vocab_size:
                raise ValueError(
                    f"CMIMConfig.{name} must be a token id in [0, {self.vocab_size}), got {value!r}"
                )


__all__ = ["CMIMConfig"]
