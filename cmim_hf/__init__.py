"""cmim_hf: contrastive Mutual Information Machine (cMIM) for molecules on HuggingFace Transformers.

Importing the package is cheap: the names below load their module on first use, and cMIM is
registered with transformers' Auto classes and pipeline registry as soon as the program uses
them (see ``cmim_hf.registration``), so ``import cmim_hf; AutoModel.from_pretrained(folder)``
works without ``trust_remote_code``.
"""

from __future__ import annotations

import importlib
import os

from cmim_hf._compat import install_moved_module_finder
from cmim_hf.registration import register_auto_classes, register_when_transformers_is_used
from cmim_hf.version import __version__

DEFAULT_CHECKPOINT: str = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")
"""Folder of the pretrained cMIM checkpoint shipped in the package (``from_pretrained`` it, offline)."""
SHIPPED_MODEL: str = "shipped"
"""The name every ``cmim`` command's ``--model`` accepts for :data:`DEFAULT_CHECKPOINT`."""


def resolve_checkpoint(name: str | None) -> str:
    """A ``--model`` value as a checkpoint: :data:`DEFAULT_CHECKPOINT` for None or ``"shipped"``
    (a folder of that name is ``./shipped``), else ``name`` itself."""
    return DEFAULT_CHECKPOINT if name in (None, SHIPPED_MODEL) else name


_LAZY_NAMES: dict[str, str] = {
    "CMIMConfig": "models.cmim.configuration_cmim",
    "CMIMTokenizer": "models.cmim.tokenization_cmim",
    **dict.fromkeys(
        (
            "CMIMEncoderOutput",
            "CMIMForConditionalGeneration",
            "CMIMForSequenceClassification",
            "CMIMModel",
            "CMIMModelOutput",
            "CMIMPreTrainedModel",
            "CMIMSeq2SeqLMOutput",
            "CMIMSequenceClassifierOutput",
            "prepare_decoder_inputs",
        ),
        "models.cmim.modeling_cmim",
    ),
    **dict.fromkeys(
        (
            "INFORMATIVE_TASK",
            "InformativeFeatureExtractionPipeline",
            "add_pipeline_to_checkpoint",
            "compute_embeddings",
            "register_pipelines",
        ),
        "models.cmim.pipelines",
    ),
    **dict.fromkeys(("CMIMEmbedder", "CMIMFeaturizer", "EmbeddingResult", "read_embeddings"), "embedding"),
}
"""Public name -> the submodule that defines it (imported on first access)."""


def __getattr__(name: str):
    module_name = _LAZY_NAMES.get(name)
    if module_name is None:
        raise AttributeError(f"module 'cmim_hf' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES))


__all__ = ["__version__", "DEFAULT_CHECKPOINT", "register_auto_classes", *_LAZY_NAMES]

register_when_transformers_is_used()
install_moved_module_finder()  # the 0.1 module paths (cmim_hf.trainer, ...), for 0.2 only
