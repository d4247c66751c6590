"""Informative-embedding feature extraction for cMIM and any Transformers seq2seq model.

The decoder is run on the input itself (teacher forcing: it reads [start] + x while attending
to the encoder output, or to the latent z = mu for cMIM) and its hidden states are pooled over
the real positions. Pooling happens inside `_forward`, on the padded batch with its masks, so
batching never leaks padding into an embedding and a molecule's vector does not depend on the
batch it was computed in.

Ways in:
- `pipeline("feature-extraction", model=<cMIM checkpoint dir>, trust_remote_code=True)`: a cMIM
  checkpoint names this class in `config.json` (`custom_pipelines`, written by
  `add_pipeline_to_checkpoint`); Transformers 5.x loads it only with `trust_remote_code=True`.
- `pipeline("informative-feature-extraction", model=...)` for any seq2seq model once
  `register_pipelines()` has run (importing `cmim_hf` does it); the stock "feature-extraction"
  task is left untouched.
- `pipeline("feature-extraction", model=..., pipeline_class=InformativeFeatureExtractionPipeline)`.

Generation (`CMIMGenerationPipeline`, cMIM only) replaces the `text2text-generation` task that
Transformers 5.x removed: `pipeline("cmim-generation", model=<cMIM checkpoint dir>,
trust_remote_code=True)` reconstructs molecules, samples new ones from the checkpoint's aggregate
posterior and explores the neighbourhood of given ones. A checkpoint names both pipelines, so
`pipeline(model=...)` without a task cannot pick one: name the task.

This module imports only torch, safetensors, transformers, `.pooling` and `.smiles_normalization`
(RDKit when installed),
because it is copied into saved checkpoints and must load there without `cmim_hf` installed.
Without RDKit, inputs are used as written (see `normalize_for_model`) and `valid` is None.
"""

import functools
import json
import os
import types
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForSeq2SeqLM, Pipeline, PreTrainedModel
from transformers.dynamic_module_utils import custom_object_save
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import pad_collate_fn
from transformers.utils import cached_file, logging

from .pooling import (
    LAYER_MODES,
    POOLING_MODES,
    LayerSpec,
    PoolingMode,
    flatten_latent,
    pool_hidden_states,
    right_align,
)
from .smiles_normalization import is_valid_smiles, normalize_for_model, parse_with_rdkit, rdkit_chem

logger = logging.get_logger(__name__)

Source = Literal["decoder", "latent", "encoder"]
SOURCES: tuple[str, ...] = ("decoder", "latent", "encoder")
InvalidPolicy = Literal["raise", "nan"]
INVALID_POLICIES: tuple[str, ...] = ("raise", "nan")
PLACEHOLDER_TEXT = "C"
"""Tokenized in place of an invalid input under on_invalid="nan", so that its row keeps its place in
the batch; its vector is then replaced by NaN."""

INFORMATIVE_TASK = "informative-feature-extraction"
"""Task name under which `register_pipelines()` makes the pipeline reachable for any model."""

GENERATION_TASK = "cmim-generation"
"""Task name of `CMIMGenerationPipeline`, in a cMIM checkpoint and in `register_pipelines()`."""

CUSTOM_PIPELINES: dict[str, dict[str, Any]] = {
    "feature-extraction": {
        "impl": "pipelines.InformativeFeatureExtractionPipeline",
        "pt": ["AutoModelForSeq2SeqLM", "AutoModel"],
        "type": "text",
    },
    GENERATION_TASK: {
        "impl": "pipelines.CMIMGenerationPipeline",
        "pt": ["AutoModelForSeq2SeqLM"],
        "type": "text",
    },
}
"""The `custom_pipelines` entry of a cMIM checkpoint's config.json (other seq2seq checkpoints
get only "feature-extraction")."""

GenerationMode = Literal["reconstruct", "sample", "neighbours"]
GENERATION_MODES: tuple[str, ...] = ("reconstruct", "sample", "neighbours")
AGGREGATE_POSTERIOR_FILE = "aggregate_posterior.safetensors"
"""A checkpoint's aggregate posterior N(mean, covariance) (float64 tensors "mean" (D,) and
"covariance" (D, D), D = K * L), as `cmim_hf.generation.AggregatePosterior` writes it."""
DEFAULT_GENERATION_BATCH_SIZE = 64
DEFAULT_MAX_NEW_TOKENS = 256  # a code far from the training codes may never emit <eos>
# added to the diagonal of a singular covariance, as cmim_hf.training.latent_stats does
CHOLESKY_JITTER = 1e-6


def is_cmim_model(model: PreTrainedModel) -> bool:
    """True for cMIM models (which build their own decoder inputs and return `z_mean`)."""
    return getattr(model.config, "model_type", None) == "cmim"


def validate_options(source: str, layers: LayerSpec, pooling: str) -> None:
    """Raise ValueError for an unknown source, layer spec or pooling mode."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if pooling not in POOLING_MODES:
        raise ValueError(f"pooling must be one of {POOLING_MODES}, got {pooling!r}")
    if isinstance(layers, str):
        valid = layers in LAYER_MODES
    elif isinstance(layers, int):
        valid = not isinstance(layers, bool)
    else:
        valid = isinstance(layers, (list, tuple)) and len(layers) > 0 and all(type(i) is int for i in layers)
    if not valid:
        raise ValueError(f"layers must be one of {LAYER_MODES}, an int or a list of ints, got {layers!r}")


def decoder_start_token_id(model: PreTrainedModel) -> int:
    """The token a seq2seq decoder starts from: config, then generation config, then pad, then bos."""
    candidates = (
        getattr(model.config, "decoder_start_token_id", None),
        getattr(getattr(model, "generation_config", None), "decoder_start_token_id", None),
        getattr(model.config, "pad_token_id", None),
        getattr(model.config, "bos_token_id", None),
    )
    for token_id in candidates:
        if token_id is not None:
            return int(token_id)
    raise ValueError("cannot find a decoder start token id in the model's config")


def teacher_forcing_inputs(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, start_token_id: int, pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder inputs that read [start] + x for a generic seq2seq model (T5, BART, ...).

    Each real position i reads the token at i-1 (the start token at a row's first real
    position), so the decoder state at i is the one that predicts input token i; padding stays
    padding, on either side.

    Args:
        input_ids: (B, T); attention_mask: (B, T) 1 for real tokens.

    Returns:
        decoder_input_ids (B, T) and decoder_attention_mask (B, T) (= attention_mask).
    """
    real = attention_mask.bool()
    is_first = real & (attention_mask.cumsum(dim=1) == 1)  # (B, T)
    previous = torch.roll(input_ids, shifts=1, dims=1)  # (B, T) token at i-1
    decoder_input_ids = torch.where(is_first, torch.full_like(input_ids, start_token_id), previous)
    decoder_input_ids = decoder_input_ids.masked_fill(~real, pad_token_id)
    return decoder_input_ids, attention_mask


@torch.no_grad()
def compute_embeddings(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    source: Source = "decoder",
    layers: LayerSpec = "last",
    pooling: PoolingMode = "mean",
    include_latent: bool | None = None,
    pad_token_id: int | None = None,
) -> torch.Tensor:
    """One pooled float32 vector per sequence from an eval-mode seq2seq model.

    Args:
        model: a cMIM model or any encoder-decoder whose forward takes `decoder_input_ids`.
        input_ids: (B, T) token ids, left or right padded.
        attention_mask: (B, T) 1 for real tokens.
        source: "decoder" (informative embedding), "latent" (mu, cMIM only) or "encoder".
        layers: which hidden states to pool, see `cmim_hf.models.cmim.pooling.pool_hidden_states`.
        pooling: "mean" over real positions, "first" or "eos" (last real position).
        include_latent: prepend mu (cMIM only); None means True for cMIM with source "decoder".
        pad_token_id: id written into padding; defaults to the model config's (or 0).

    Returns:
        (B, D) float32 with D = [K*L if mu is included] + [H or n*H if a source is pooled].
    """
    validate_options(source, layers, pooling)
    cmim = is_cmim_model(model)
    if include_latent is None:
        include_latent = cmim and source == "decoder"
    if (include_latent or source == "latent") and not cmim:
        raise ValueError(
            "source='latent' and include_latent=True need a cMIM model (one with a posterior mu)"
        )
    if pad_token_id is None:
        pad_token_id = getattr(model.config, "pad_token_id", None) or 0
    input_ids, attention_mask = right_align(input_ids, attention_mask, pad_token_id)

    if cmim:
        outputs = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=source != "latent",
            return_dict=True,
        )
        decoder_mask = outputs.decoder_attention_mask  # (B, T-1)
    else:
        start = decoder_start_token_id(model)
        decoder_input_ids, decoder_mask = teacher_forcing_inputs(
            input_ids, attention_mask, start, pad_token_id
        )
        outputs = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_mask,
            output_hidden_states=True,
            use_cache=False,
            return_dict=True,
        )

    parts: list[torch.Tensor] = []
    if source == "latent" or include_latent:
        parts.append(flatten_latent(outputs.z_mean))  # (B, K*L)
    if source == "decoder":
        parts.append(pool_hidden_states(outputs.decoder_hidden_states, decoder_mask, layers, pooling))
    elif source == "encoder":
        parts.append(pool_hidden_states(outputs.encoder_hidden_states, attention_mask, layers, pooling))
    return torch.cat(parts, dim=-1)


def given_options(**options: Any) -> dict[str, Any]:
    """The ``options`` a pipeline call gave: those not None (`_sanitize_parameters`' parameters
    default to None, meaning "not given")."""
    return {name: value for name, value in options.items() if value is not None}


@dataclass(frozen=True)
class IndexedInput:
    """One item of a list or generator given to the feature-extraction pipeline, with its
    position, so that an invalid item is reported by its row."""

    index: int
    text: Any


class CheckpointPipeline(Pipeline):
    """A text pipeline (tokenizer only) whose `save_pretrained` writes a checkpoint folder that
    names this module's pipelines in its config.json (`add_pipeline_to_checkpoint`)."""

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Save model and tokenizer; the folder then answers `pipeline("feature-extraction", ...,
        trust_remote_code=True)` (and `pipeline("cmim-generation", ...)` for cMIM) with this
        module's classes, not the task they were registered under."""
        os.makedirs(save_directory, exist_ok=True)
        self.model.save_pretrained(save_directory, **kwargs)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(save_directory, **kwargs)
        add_pipeline_to_checkpoint(save_directory)


class InformativeFeatureExtractionPipeline(CheckpointPipeline):
    """Feature extraction that returns one pooled vector per input.

    Works for cMIM and for any seq2seq model (T5, BART, `AutoModelForSeq2SeqLM`). Options, given
    at construction or per call: `source` ("decoder" | "latent" | "encoder"), `layers`
    ("last" | "mean" | "concat" | int | list of ints), `pooling` ("mean" | "first" | "eos"),
    `include_latent` (bool, default True for cMIM with the decoder source), `normalize` (bool,
    default True: write each SMILES as the checkpoint's training SMILES were, see
    `normalize_for_model`), `return_tensors`
    (False: list of floats; True or "pt": torch tensor (D,); "np": numpy array (D,)),
    `truncation`, `tokenize_kwargs`, `on_invalid` ("raise", the default: an input the model
    cannot read raises a ValueError naming its row and text; "nan": it gets a NaN vector and a
    warning naming its row, and the other rows are still embedded). A cMIM model cannot read a
    non-string, a SMILES RDKit rejects (checked when RDKit is installed) or one with more tokens
    than its position table; other models only fail on non-strings or normalization errors.
    `pipe([])` returns `[]`. The model runs in float32 and eval mode;
    `pipeline(..., dtype=torch.bfloat16)` computes the matmuls in bf16 (autocast; float32 output).

    Example:

    ```python
    >>> from transformers import pipeline
    >>> extractor = pipeline("feature-extraction", model="path/to/cmim", trust_remote_code=True)
    >>> vectors = extractor(["CCO", "c1ccccc1"], batch_size=64)  # two lists of D floats
    ```
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # dtype=torch.bfloat16 asks for bf16 compute: float32 weights with bf16 autocast (matmuls in
        # bf16; LayerNorm, softmax and pooling in float32), float32 embeddings
        self.compute_dtype = torch.bfloat16 if self.model.dtype == torch.bfloat16 else torch.float32
        if self.model.dtype not in (torch.float32, torch.bfloat16):
            logger.warning(f"casting the model from {self.model.dtype} to float32 for embeddings")
        self.model.to(torch.float32)
        self.model.eval()

    def _sanitize_parameters(
        self,
        source: Source | None = None,
        layers: LayerSpec | None = None,
        pooling: PoolingMode | None = None,
        include_latent: bool | None = None,
        truncation: bool | None = None,
        tokenize_kwargs: dict[str, Any] | None = None,
        return_tensors: bool | str | None = None,
        normalize: bool | None = None,
        on_invalid: InvalidPolicy | None = None,
        **unused: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if unused:
            raise TypeError(f"unexpected arguments for {type(self).__name__}: {sorted(unused)}")
        if on_invalid is not None and on_invalid not in INVALID_POLICIES:
            raise ValueError(
                f"on_invalid must be one of {INVALID_POLICIES} (a pipeline gives one output per "
                f"input), got {on_invalid!r}"
            )
        preprocess_params = {
            **(tokenize_kwargs or {}),
            **given_options(truncation=truncation, normalize=normalize, on_invalid=on_invalid),
        }
        forward_params = given_options(
            source=source, layers=layers, pooling=pooling, include_latent=include_latent
        )
        if forward_params:
            validate_options(
                forward_params.get("source", "decoder"),
                forward_params.get("layers", "last"),
                forward_params.get("pooling", "mean"),
            )
        postprocess_params = {} if return_tensors is None else {"return_tensors": return_tensors}
        return preprocess_params, forward_params, postprocess_params

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """Embed one text (one vector) or a list of texts (one vector each, in input order; `[]`
        gives `[]`); options as in the class doc. The items of a list or generator carry their
        position, so that an invalid one is reported by its row."""
        if isinstance(inputs, list):
            if not inputs:
                return []
            inputs = [IndexedInput(index, text) for index, text in enumerate(inputs)]
        elif isinstance(inputs, types.GeneratorType):
            inputs = (IndexedInput(index, text) for index, text in enumerate(inputs))
        return super().__call__(inputs, *args, **kwargs)

    def preprocess(
        self,
        inputs: str | IndexedInput,
        normalize: bool = True,
        on_invalid: InvalidPolicy = "raise",
        **tokenize_kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        """Check, normalize and tokenize one text (see `tokenize_input`) into (1, T) `input_ids`
        and `attention_mask`, and `invalid` (1,) bool.

        Raises:
            ValueError: for an input the model cannot read, naming its row, under on_invalid="raise";
                under "nan" it is reported with a warning and tokenized as `PLACEHOLDER_TEXT`.
        """
        index, text = (inputs.index, inputs.text) if isinstance(inputs, IndexedInput) else (None, inputs)
        invalid = False
        try:
            encoded = self.tokenize_input(text, normalize, **tokenize_kwargs)
        except ValueError as err:
            where = "" if index is None else f"row {index}: "
            if on_invalid == "raise":
                raise ValueError(f"{where}{err}") from err
            warnings.warn(f"{where}{err}; its embedding is NaN (on_invalid='nan')", stacklevel=2)
            encoded = self.tokenize_input(PLACEHOLDER_TEXT, normalize=False, **tokenize_kwargs)
            invalid = True
        return {**encoded, "invalid": torch.tensor([invalid])}

    def tokenize_input(
        self, text: Any, normalize: bool = True, **tokenize_kwargs: Any
    ) -> dict[str, torch.Tensor]:
        """Normalize (see `normalize_for_model`) and tokenize one text into (1, T) `input_ids` and
        `attention_mask`.

        Raises:
            ValueError: for a non-string or a SMILES `normalize_for_model` rejects; for a cMIM model
                also for a SMILES RDKit rejects (when installed) or one with more tokens than its
                position table.
        """
        if not isinstance(text, str):
            raise ValueError(f"expected a SMILES string, got {text!r}")
        cmim = is_cmim_model(self.model)
        scheme = getattr(self.model.config, "smiles_normalization", None) if normalize else None
        if cmim and scheme in (None, "none") and rdkit_chem() is not None:
            parse_with_rdkit(text)  # normalize_for_model parses it otherwise
        encoded = self.tokenizer(normalize_for_model(text, scheme), return_tensors="pt", **tokenize_kwargs)
        input_ids = encoded["input_ids"]
        limit = self.model.config.max_position_embeddings if cmim else None
        if limit is not None and input_ids.shape[1] > limit:
            raise ValueError(
                f"the SMILES {text!r} has {input_ids.shape[1]} tokens; the model reads at most {limit}"
            )
        attention_mask = encoded.get("attention_mask", torch.ones_like(input_ids))
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def _forward(
        self,
        model_inputs: dict[str, torch.Tensor],
        source: Source = "decoder",
        layers: LayerSpec = "last",
        pooling: PoolingMode = "mean",
        include_latent: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """Embed a padded batch: (B, T) inputs -> {"embedding": (B, D) float32}, NaN rows where
        `invalid` (B,) is set."""
        with torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.compute_dtype == torch.bfloat16
        ):
            embedding = compute_embeddings(
                self.model,
                model_inputs["input_ids"],
                model_inputs["attention_mask"],
                source=source,
                layers=layers,
                pooling=pooling,
                include_latent=include_latent,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        embedding = embedding.float()
        invalid = model_inputs.get("invalid")
        if invalid is not None:
            embedding = embedding.masked_fill(invalid.to(embedding.device)[:, None], float("nan"))
        return {"embedding": embedding}

    def postprocess(
        self, model_outputs: dict[str, torch.Tensor], return_tensors: bool | str = False
    ) -> list[float] | torch.Tensor | Any:
        """(1, D) -> a list of D floats, or a (D,) torch tensor / numpy array."""
        vector = model_outputs["embedding"][0]
        if return_tensors == "np":
            return vector.numpy()
        if return_tensors:
            return vector
        return vector.tolist()


def load_aggregate_prior(checkpoint: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A checkpoint's aggregate posterior (`AGGREGATE_POSTERIOR_FILE`, in a local folder or a Hub
    repository) as (mean (D,), lower Cholesky factor (D, D)) float64; None when it has none.
    Reads the file `cmim_hf.generation.AggregatePosterior.save` writes, without `cmim_hf`."""
    if not checkpoint:
        return None
    path = cached_file(str(checkpoint), AGGREGATE_POSTERIOR_FILE, _raise_exceptions_for_missing_entries=False)
    if path is None:
        return None
    tensors = load_file(path)
    mean, covariance = tensors["mean"].double(), tensors["covariance"].double()
    factor, info = torch.linalg.cholesky_ex(covariance)
    if info != 0:  # singular, e.g. dead latent dimensions
        jitter = CHOLESKY_JITTER * torch.eye(len(covariance), dtype=covariance.dtype)
        factor = torch.linalg.cholesky(covariance + jitter)
    return mean, factor


def sample_codes(
    prior: tuple[torch.Tensor, torch.Tensor] | None,
    n: int,
    shape: tuple[int, int],
    generator: torch.Generator,
) -> torch.Tensor:
    """`n` latent codes (n, K, L) float32 from N(mean, L L^T) of a `load_aggregate_prior` result,
    or from N(0, I) when `prior` is None; the same draws as `cmim_hf.generation.sample_prior`."""
    if prior is None:
        return torch.randn((n, *shape), generator=generator)
    mean, factor = prior
    if mean.numel() != shape[0] * shape[1]:
        raise ValueError(f"the aggregate posterior has {mean.numel()} dimensions, the model's codes {shape}")
    noise = torch.randn(n, mean.numel(), generator=generator, dtype=torch.float64)
    return (mean + noise @ factor.T).float().reshape(n, *shape)


class CMIMGenerationPipeline(CheckpointPipeline):
    """Molecules from a cMIM model's latent space: reconstruct, sample or explore neighbourhoods.

    Modes (`mode`, given at construction or per call):
    - "reconstruct" (the default with inputs): encode each SMILES (z = mu) and decode it greedily;
      one `{"input", "smiles", "valid"}` per input.
    - "sample" (the default without inputs): decode `num_samples` codes drawn from the
      checkpoint's aggregate posterior (`AGGREGATE_POSTERIOR_FILE`), or from N(0, I) when it has
      none; a list of `{"smiles", "valid"}`.
    - "neighbours": decode `num_samples` codes mu + `radius` * N(0, I) around each input; one
      `{"input", "smiles": [...], "valid": [...]}` per input. `radius` defaults to the checkpoint's
      `config.exploration_radius` (2 posterior floor stds).

    Inputs are written as the checkpoint's training SMILES were unless `normalize=False` (see
    `normalize_for_model`). An input that cannot be read (RDKit rejects it, or it is longer than
    the model reads) gets `{"input", "error"}` and the others are still generated. `valid` is
    RDKit's verdict on the decoded SMILES (None without RDKit). Random codes come from a private
    generator seeded with `seed` (default 0), so calls repeat; `batch_size` codes are decoded at
    a time and `max_new_tokens` (default 256) caps each decode.

    Example:

    ```python
    >>> from transformers import pipeline
    >>> generator = pipeline("cmim-generation", model="path/to/cmim", trust_remote_code=True)
    >>> generator(["CCO", "c1ccccc1"])  # [{"input": "CCO", "smiles": ..., "valid": ...}, ...]
    >>> generator(num_samples=10, seed=0)  # ten molecules from the aggregate posterior
    >>> generator("CCO", mode="neighbours", num_samples=5, radius=0.1)
    ```
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not is_cmim_model(self.model) or not hasattr(self.model, "decode_latents"):
            raise ValueError(
                f"{GENERATION_TASK} needs a cMIM model with its language-model head "
                f"(AutoModelForSeq2SeqLM), got {type(self.model).__name__}"
            )
        self.model.eval()

    @functools.cached_property
    def aggregate_prior(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The checkpoint's aggregate posterior (see `load_aggregate_prior`), read on first use."""
        return load_aggregate_prior(self.model.name_or_path)

    @property
    def latent_shape(self) -> tuple[int, int]:
        """(K, L): the number of latent vectors and their size."""
        return self.model.config.num_latents, self.model.config.latent_size

    def _sanitize_parameters(
        self,
        mode: GenerationMode | None = None,
        num_samples: int | None = None,
        radius: float | None = None,
        seed: int | None = None,
        normalize: bool | None = None,
        max_new_tokens: int | None = None,
        **unused: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if unused:
            raise TypeError(f"unexpected arguments for {type(self).__name__}: {sorted(unused)}")
        if mode is not None and mode not in GENERATION_MODES:
            raise ValueError(f"mode must be one of {GENERATION_MODES}, got {mode!r}")
        if num_samples is not None and num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if radius is not None and radius < 0:
            raise ValueError(f"radius must be non-negative, got {radius}")
        request_params = given_options(
            mode=mode, num_samples=num_samples, radius=radius, seed=seed, normalize=normalize
        )
        forward_params = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
        return request_params, forward_params, {}

    def __call__(
        self, inputs: str | Sequence[str] | None = None, batch_size: int | None = None, **kwargs: Any
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Generate for one SMILES (one dict), a list of SMILES (one dict each, in order) or, in
        "sample" mode, no input (a list of `num_samples` dicts); options as in the class doc."""
        request_params, forward_params, _ = self._sanitize_parameters(**kwargs)
        request = {**self._preprocess_params, **request_params}
        forward_params = {**self._forward_params, **forward_params}
        batch_size = batch_size or self._batch_size or DEFAULT_GENERATION_BATCH_SIZE
        mode = request.get("mode") or ("sample" if inputs is None else "reconstruct")
        num_samples = request.get("num_samples", 1)
        generator = torch.Generator(device="cpu").manual_seed(request.get("seed", 0))
        if mode == "sample":
            if inputs is not None:
                raise ValueError("mode='sample' decodes random codes and takes no inputs")
            codes = sample_codes(self.aggregate_prior, num_samples, self.latent_shape, generator)
            return self._generate([{"latents": code[None]} for code in codes], batch_size, forward_params)
        if inputs is None:
            raise ValueError(f"mode={mode!r} needs SMILES inputs")

        smiles = [inputs] if isinstance(inputs, str) else list(inputs)
        offsets = None
        if mode == "neighbours":  # drawn for every input, so one input's codes do not depend on the others
            noise = torch.randn((len(smiles), num_samples, *self.latent_shape), generator=generator)
            offsets = request.get("radius", self.model.config.exploration_radius) * noise
        model_inputs: dict[int, dict[str, torch.Tensor]] = {}
        results: list[dict[str, Any]] = []
        for index, text in enumerate(smiles):
            results.append({"input": text})
            try:
                model_inputs[index] = self.preprocess(text, normalize=request.get("normalize", True))
            except ValueError as err:
                results[index]["error"] = str(err)
                continue
            if offsets is not None:
                model_inputs[index]["offsets"] = offsets[index][None]
        generated = self._generate(list(model_inputs.values()), batch_size, forward_params)
        for index, output in zip(model_inputs, generated):
            results[index].update(output)
        return results[0] if isinstance(inputs, str) else results

    def _generate(
        self, model_inputs: list[dict[str, torch.Tensor]], batch_size: int, forward_params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Run `preprocess` outputs through the model `batch_size` at a time; outputs in order."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        collate = pad_collate_fn(self.tokenizer, None)
        outputs: list[dict[str, Any]] = []
        for start in range(0, len(model_inputs), batch_size):
            batch = collate(model_inputs[start : start + batch_size])
            decoded = self.forward(batch, **forward_params)["smiles"]
            outputs += [self.postprocess(smiles) for smiles in decoded]
        return outputs

    def preprocess(self, inputs: str, normalize: bool = True) -> dict[str, torch.Tensor]:
        """Check (with RDKit when installed), normalize (see `normalize_for_model`) and tokenize
        one SMILES into (1, T) `input_ids` and `attention_mask`.

        Raises:
            ValueError: for a non-string, a SMILES RDKit cannot parse, or one with more tokens than
                the model's position table.
        """
        if not isinstance(inputs, str):
            raise ValueError(f"expected a SMILES string, got {type(inputs).__name__}")
        if rdkit_chem() is not None:
            parse_with_rdkit(inputs)
        if normalize:
            inputs = normalize_for_model(inputs, getattr(self.model.config, "smiles_normalization", None))
        encoded = self.tokenizer(inputs, return_tensors="pt")
        limit = self.model.config.max_position_embeddings
        if encoded["input_ids"].shape[1] > limit:
            raise ValueError(
                f"the SMILES {inputs!r} has {encoded['input_ids'].shape[1]} tokens; the model reads at most {limit}"
            )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def _forward(
        self, model_inputs: dict[str, torch.Tensor], max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    ) -> dict[str, list[str] | list[list[str]]]:
        """Decode a batch greedily: codes `latents` (B, K, L), or the posterior means of
        `input_ids`/`attention_mask` (B, T), each moved by `offsets` (B, n, K, L) when given
        -> {"smiles": B strings, or B lists of n strings with offsets}."""
        if "latents" in model_inputs:
            codes = model_inputs["latents"]
        else:
            input_ids, attention_mask = right_align(
                model_inputs["input_ids"], model_inputs["attention_mask"], self.tokenizer.pad_token_id
            )
            codes = self.model.encode(input_ids, attention_mask).z_mean  # (B, K, L)
        offsets = model_inputs.get("offsets")
        if offsets is not None:
            codes = (codes[:, None] + offsets.to(codes.dtype)).flatten(0, 1)  # (B * n, K, L)
        max_new_tokens = min(max_new_tokens, self.model.config.max_position_embeddings - 1)
        token_ids = self.model.decode_latents(
            codes, num_beams=1, do_sample=False, max_new_tokens=max_new_tokens
        )
        smiles = self.tokenizer.batch_decode(token_ids, skip_special_tokens=True)
        if offsets is None:
            return {"smiles": smiles}
        per_input = offsets.shape[1]
        return {"smiles": [smiles[i : i + per_input] for i in range(0, len(smiles), per_input)]}

    def postprocess(self, smiles: str | list[str]) -> dict[str, Any]:
        """{"smiles", "valid"} for one decoded SMILES or a list of them (lists, then)."""
        if isinstance(smiles, str):
            return {"smiles": smiles, "valid": is_valid_smiles(smiles)}
        return {"smiles": smiles, "valid": [is_valid_smiles(s) for s in smiles]}


def add_pipeline_to_checkpoint(save_directory: str | os.PathLike) -> list[Path]:
    """Make a saved checkpoint folder load this module's pipelines.

    Copies `pipelines.py` and the modules it imports (`pooling.py`, `smiles_normalization.py`)
    into the folder with Transformers' `custom_object_save` and writes `custom_pipelines` into its
    config.json, so that `pipeline("feature-extraction", model=folder,
    trust_remote_code=True)` returns pooled vectors and, for a cMIM checkpoint,
    `pipeline("cmim-generation", ...)` generates molecules, with or without `cmim_hf` installed.
    Call it after `save_pretrained`.

    Returns:
        the copied code files.
    """
    config_path = Path(save_directory) / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{config_path} not found: call model.save_pretrained({str(save_directory)!r}) first"
        )
    copied = custom_object_save(InformativeFeatureExtractionPipeline, save_directory)
    config = json.loads(config_path.read_text(encoding="utf-8"))
    cmim = config.get("model_type") == "cmim"
    config["custom_pipelines"] = {
        task: entry for task, entry in CUSTOM_PIPELINES.items() if cmim or task != GENERATION_TASK
    }
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return copied


def register_pipelines() -> None:
    """Register `INFORMATIVE_TASK` (any seq2seq model) and `GENERATION_TASK` (cMIM) for use in this
    process, e.g. `pipeline(GENERATION_TASK, model=model, tokenizer=tokenizer)` (idempotent; the
    stock "feature-extraction" task is left untouched). A checkpoint folder that names a task in
    its config.json still needs `trust_remote_code=True` for it."""
    for task, pipeline_class, model_classes in (
        (INFORMATIVE_TASK, InformativeFeatureExtractionPipeline, (AutoModelForSeq2SeqLM, AutoModel)),
        (GENERATION_TASK, CMIMGenerationPipeline, (AutoModelForSeq2SeqLM,)),
    ):
        registered = PIPELINE_REGISTRY.supported_tasks.get(task)
        if registered is None or registered["impl"] is not pipeline_class:
            PIPELINE_REGISTRY.register_pipeline(
                task, pipeline_class=pipeline_class, pt_model=model_classes, type="text"
            )
