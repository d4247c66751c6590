"""Loading a checkpoint, and the checks that make a bad one fail with a message naming the folder and
the file: strict weights, a tokenizer that matches the model (:class:`CheckpointError`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING,
    AutoConfig,
    AutoModel,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from cmim_hf.errors import InputError, one_line

TOKENIZER_FILES: tuple[str, ...] = ("tokenizer.json", "tokenizer_config.json")


class CheckpointError(InputError, OSError):
    """A checkpoint that cannot be used: the message names the folder and the missing or bad file."""


def check_checkpoint_folder(folder: str | os.PathLike) -> None:
    """Check that a local folder holds a loadable model + tokenizer checkpoint, without loading it.

    Checks config.json (present, a JSON object with ``model_type``), the safetensors weights
    (``model.safetensors``, or ``model.safetensors.index.json`` and every shard it lists, each
    with a readable header covering the whole file) and the tokenizer files.

    Raises:
        CheckpointError: naming the first missing or unreadable file.
    """
    from safetensors import SafetensorError, safe_open

    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {folder}")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder} is not a checkpoint folder: config.json is missing")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{config_path} is not valid JSON ({err})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise CheckpointError(f"{config_path} has no model_type: not a Transformers model config")

    index_path = folder / "model.safetensors.index.json"
    if index_path.is_file():
        try:
            shards = sorted(set(json.loads(index_path.read_text(encoding="utf-8"))["weight_map"].values()))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, AttributeError) as err:
            raise CheckpointError(f"{index_path} is not a valid safetensors index ({err})") from None
    else:
        shards = ["model.safetensors"]
    for shard in shards:
        path = folder / shard
        if not path.is_file():
            raise CheckpointError(f"{folder} is incomplete: the weights file {shard} is missing")
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except SafetensorError as err:
            raise CheckpointError(f"{path} is corrupt or truncated ({err})") from None

    for name in TOKENIZER_FILES:
        if not (folder / name).is_file():
            raise CheckpointError(
                f"{folder} is incomplete: the tokenizer file {name} is missing (tokenizer.save_pretrained(folder))"
            )


def load_weights_strictly(
    model_class: Any, name_or_path: str | os.PathLike, fresh: Sequence[str] = (), **kwargs: Any
) -> PreTrainedModel:
    """``model_class.from_pretrained`` that refuses weights which do not fit the class.

    Transformers initialises a parameter missing from the checkpoint at random with only a logged
    table as warning: features from such a model would be silently wrong. Here a missing or
    differently shaped parameter is an error naming the checkpoint; parameters the checkpoint has
    and the class does not use are allowed (a language-model head read by a base model).

    Args:
        fresh: name prefixes allowed to start fresh (a new task head, e.g. ``"classifier."``).

    Raises:
        CheckpointError: the checkpoint cannot be read, or its weights do not fit ``model_class``.
    """
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # the load report is replaced by the one-line error below
    try:
        model, info = model_class.from_pretrained(name_or_path, output_loading_info=True, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        mismatch = "ignore_mismatched_sizes" in str(err)
        detail = (
            "parameter shapes differ from the architecture its config names" if mismatch else one_line(err)
        )
        raise CheckpointError(f"cannot load the model from {name_or_path}: {detail}") from None
    finally:
        transformers_logging.set_verbosity(verbosity)
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith(tuple(fresh)))
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys", ()))
    if missing or mismatched:
        kind = f"{type(model).__name__} (model_type {model.config.model_type!r})"
        problems = [f"{len(missing)} parameters missing"] if missing else []
        problems += [f"{len(mismatched)} of another shape"] if mismatched else []
        raise CheckpointError(
            f"the weights in {name_or_path} do not fit {kind}: {', '.join(problems)}, "
            f"e.g. {(missing or mismatched)[0]}"
        )
    return model


def check_tokenizer_matches(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, source: str) -> None:
    """Refuse a tokenizer that does not fit the model: more tokens than its embedding has rows,
    special tokens at other ids, or (when the config records it) another vocabulary than the one it
    was trained with.

    Raises:
        CheckpointError: naming ``source`` and the mismatch.
    """
    from cmim_hf.models.cmim.tokenization_cmim import vocabulary_fingerprint

    config = model.config
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise CheckpointError(
            f"{source}: the tokenizer has {len(tokenizer)} tokens, the model's embedding only {rows} rows"
        )
    for name in ("pad", "bos", "eos", "unk"):
        model_id, tokenizer_id = (
            getattr(config, f"{name}_token_id", None),
            getattr(tokenizer, f"{name}_token_id"),
        )
        if model_id is not None and tokenizer_id is not None and model_id != tokenizer_id:
            raise CheckpointError(
                f"{source}: the tokenizer's {name} token has id {tokenizer_id}, the model's {model_id}"
            )
    expected = getattr(config, "vocab_fingerprint", None)
    found = vocabulary_fingerprint(tokenizer) if expected else None
    if found != expected:
        raise CheckpointError(
            f"{source}: the tokenizer's vocabulary is not the one the model was trained with "
            f"(fingerprint {found}, the config records {expected})"
        )


def load_model_for_generation(
    name_or_path: str | os.PathLike, device: str | torch.device | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a cMIM checkpoint (float32, eval mode) and its tokenizer from a folder or a Hub id.

    A local folder is checked first with :func:`check_checkpoint_folder`.

    Args:
        device: torch device (default: cuda if available, else cpu).

    Raises:
        CheckpointError: missing/corrupt files, a model that is not a cMIM model, or any loading
            failure (first line of the underlying error).
    """
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    local = Path(name_or_path).expanduser()
    if local.exists() or str(name_or_path).startswith((".", "/", "~")):
        check_checkpoint_folder(local)
        name_or_path = str(local)
        model_type = json.loads((local / "config.json").read_text(encoding="utf-8"))["model_type"]
        if model_type != "cmim":  # refused before its weights are read into another architecture
            raise CheckpointError(f"{name_or_path} is not a cMIM model (model_type {model_type!r})")
    model = load_weights_strictly(AutoModelForSeq2SeqLM, name_or_path, dtype=torch.float32)
    if not (hasattr(model, "decode_latents") and hasattr(model, "encode")):
        raise CheckpointError(f"{name_or_path} is not a cMIM model (model_type {model.config.model_type!r})")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"cannot load the tokenizer from {name_or_path}: {one_line(err)}") from None
    check_tokenizer_matches(model, tokenizer, str(name_or_path))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), tokenizer


def load_model_and_tokenizer(name_or_path: str | os.PathLike) -> tuple[PreTrainedModel, Any]:
    """Load a seq2seq model (float32) and its tokenizer from a local folder or Hub id.

    Raises:
        CheckpointError: a config or weights that cannot be read, weights that do not fit the
            config's architecture (:func:`load_weights_strictly`), no tokenizer
            with the model, or one that does not match it
            (:func:`check_tokenizer_matches`).
    """
    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"cannot read the model config of {name_or_path}: {one_line(err)}") from None
    # a seq2seq LM when the architecture has one, else its base encoder-decoder
    model_class = (
        AutoModelForSeq2SeqLM if type(config) in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING else AutoModel
    )
    model = load_weights_strictly(model_class, name_or_path, config=config, dtype=torch.float32)
    folder = Path(name_or_path)
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        # AutoTokenizer would build a tokenizer with the shipped vocabulary: maybe not the model's
        raise CheckpointError(
            f"{folder} has no tokenizer files ({', '.join(TOKENIZER_FILES)}): save the tokenizer with the model "
            "(tokenizer.save_pretrained(folder))"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"{name_or_path} has no usable tokenizer ({str(err).strip().splitlines()[0] if str(err).strip() else err!r}): "
            "save it with the model (tokenizer.save_pretrained(folder))"
        ) from None
    check_tokenizer_matches(model, tokenizer, str(name_or_path))
    return model, tokenizer
