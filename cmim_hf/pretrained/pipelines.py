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

This module imports only torch, transformers and `.pooling`, because it is copied into saved
checkpoints and must load there without `cmim_hf` installed.
"""

import json
import os
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import AutoModel, AutoModelForSeq2SeqLM, Pipeline, PreTrainedModel
from transformers.dynamic_module_utils import custom_object_save
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.utils import logging

from .pooling import (
    LAYER_MODES,
    POOLING_MODES,
    LayerSpec,
    PoolingMode,
    flatten_latent,
    pool_hidden_states,
    right_align,
)

logger = logging.get_logger(__name__)

Source = Literal["decoder", "latent", "encoder"]
SOURCES: tuple[str, ...] = ("decoder", "latent", "encoder")

INFORMATIVE_TASK = "informative-feature-extraction"
"""Task name under which `register_pipelines()` makes the pipeline reachable for any model."""

CUSTOM_PIPELINES: dict[str, dict[str, Any]] = {
    "feature-extraction": {
        "impl": "pipelines.InformativeFeatureExtractionPipeline",
        "pt": ["AutoModelForSeq2SeqLM", "AutoModel"],
        "type": "text",
    }
}
"""The `custom_pipelines` entry of a cMIM checkpoint's config.json."""


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


def normalize_for_model(smiles: str, scheme: str | None) -> str:
    """``smiles`` written as the checkpoint's training SMILES were (``config.smiles_normalization``:
    None/"none" as given, "canonical" or "canonical_nostereo" RDKit canonical SMILES with/without
    stereo). Self-contained (this file ships as a checkpoint's remote code), so it imports RDKit
    itself; ``cmim_hf.chem.normalize_smiles`` is the package's version of the same rule."""
    if scheme in (None, "none"):
        return smiles
    try:
        from rdkit import Chem, RDLogger
    except ImportError as err:
        raise ImportError(
            f"this checkpoint writes its SMILES {scheme}: install rdkit, or pass normalize=False"
        ) from err
    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles) if isinstance(smiles, str) and smiles.strip() else None
    if mol is None:
        raise ValueError(f"RDKit cannot parse the SMILES {smiles!r}")
    if scheme != "canonical":  # stereo removed; isotope labels kept, as cmim_hf.chem does
        Chem.RemoveStereochemistry(mol)
    return Chem.MolToSmiles(mol)


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
        layers: which hidden states to pool, see `cmim_hf.pooling.pool_hidden_states`.
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


class InformativeFeatureExtractionPipeline(Pipeline):
    """Feature extraction that returns one pooled vector per input.

    Works for cMIM and for any seq2seq model (T5, BART, `AutoModelForSeq2SeqLM`). Options, given
    at construction or per call: `source` ("decoder" | "latent" | "encoder"), `layers`
    ("last" | "mean" | "concat" | int | list of ints), `pooling` ("mean" | "first" | "eos"),
    `include_latent` (bool, default True for cMIM with the decoder source), `normalize` (bool,
    default True: write each SMILES as the checkpoint's training SMILES were, see
    `normalize_for_model`), `return_tensors`
    (False: list of floats; True or "pt": torch tensor (D,); "np": numpy array (D,)),
    `truncation`, `tokenize_kwargs`. The model runs in float32 and eval mode.

    Example:

    ```python
    >>> from transformers import pipeline
    >>> extractor = pipeline("feature-extraction", model="path/to/cmim", trust_remote_code=True)
    >>> vectors = extractor(["CCO", "c1ccccc1"], batch_size=64)  # two lists of D floats
    ```
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.model.dtype != torch.float32:
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
        **unused: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if unused:
            raise TypeError(f"unexpected arguments for {type(self).__name__}: {sorted(unused)}")
        preprocess_params = dict(tokenize_kwargs or {})
        if truncation is not None:
            preprocess_params["truncation"] = truncation
        if normalize is not None:
            preprocess_params["normalize"] = normalize
        forward_params = {
            key: value
            for key, value in (
                ("source", source),
                ("layers", layers),
                ("pooling", pooling),
                ("include_latent", include_latent),
            )
            if value is not None
        }
        if forward_params:
            validate_options(
                forward_params.get("source", "decoder"),
                forward_params.get("layers", "last"),
                forward_params.get("pooling", "mean"),
            )
        postprocess_params = {} if return_tensors is None else {"return_tensors": return_tensors}
        return preprocess_params, forward_params, postprocess_params

    def preprocess(
        self, inputs: str, normalize: bool = True, **tokenize_kwargs: Any
    ) -> dict[str, torch.Tensor]:
        """Normalize (see `normalize_for_model`) and tokenize one text into (1, T) `input_ids` and
        `attention_mask`."""
        if normalize:
            inputs = normalize_for_model(inputs, getattr(self.model.config, "smiles_normalization", None))
        encoded = self.tokenizer(inputs, return_tensors="pt", **tokenize_kwargs)
        input_ids = encoded["input_ids"]
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
        """Embed a padded batch: (B, T) inputs -> {"embedding": (B, D) float32}."""
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

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Save model and tokenizer; the folder then answers `pipeline("feature-extraction", ...,
        trust_remote_code=True)` with this class (not the task it was registered under)."""
        os.makedirs(save_directory, exist_ok=True)
        self.model.save_pretrained(save_directory, **kwargs)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(save_directory, **kwargs)
        add_pipeline_to_checkpoint(save_directory)


def add_pipeline_to_checkpoint(save_directory: str | os.PathLike) -> list[Path]:
    """Make a saved checkpoint folder load this pipeline for "feature-extraction".

    Copies `pipelines.py` and `pooling.py` into the folder and writes `custom_pipelines` into
    its config.json, so that `pipeline("feature-extraction", model=folder,
    trust_remote_code=True)` (or `pipeline(model=folder, trust_remote_code=True)`) returns
    pooled vectors, with or without `cmim_hf` installed. Call it after `save_pretrained`.

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
    config["custom_pipelines"] = CUSTOM_PIPELINES
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return copied


def register_pipelines() -> None:
    """Register the pipeline under `INFORMATIVE_TASK` (idempotent; "feature-extraction" untouched)."""
    registered = PIPELINE_REGISTRY.supported_tasks.get(INFORMATIVE_TASK)
    if registered is not None and registered["impl"] is InformativeFeatureExtractionPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(
        INFORMATIVE_TASK,
        pipeline_class=InformativeFeatureExtractionPipeline,
        pt_model=(AutoModelForSeq2SeqLM, AutoModel),
        type="text",
    )
