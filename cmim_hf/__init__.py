"""cmim_hf: contrastive Mutual Information Machine (cMIM) for molecules on HuggingFace Transformers."""

import os

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from .configuration_cmim import CMIMConfig
from .modeling_cmim import (
    CMIMEncoderOutput,
    CMIMForConditionalGeneration,
    CMIMForSequenceClassification,
    CMIMModel,
    CMIMModelOutput,
    CMIMPreTrainedModel,
    CMIMSeq2SeqLMOutput,
    CMIMSequenceClassifierOutput,
    prepare_decoder_inputs,
)
from .pipelines import (
    INFORMATIVE_TASK,
    InformativeFeatureExtractionPipeline,
    add_pipeline_to_checkpoint,
    compute_embeddings,
    register_pipelines,
)
from .tokenization_cmim import CMIMTokenizer
from .version import __version__

DEFAULT_CHECKPOINT: str = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")
"""Folder of the pretrained cMIM checkpoint shipped in the package (``from_pretrained`` it, offline)."""

AutoConfig.register(CMIMConfig.model_type, CMIMConfig, exist_ok=True)
AutoModel.register(CMIMConfig, CMIMModel, exist_ok=True)
AutoModelForSeq2SeqLM.register(CMIMConfig, CMIMForConditionalGeneration, exist_ok=True)
AutoModelForSequenceClassification.register(CMIMConfig, CMIMForSequenceClassification, exist_ok=True)
AutoTokenizer.register(CMIMConfig, tokenizer_class=CMIMTokenizer, exist_ok=True)
CMIMConfig.register_for_auto_class()
CMIMModel.register_for_auto_class("AutoModel")
CMIMForConditionalGeneration.register_for_auto_class("AutoModelForSeq2SeqLM")
CMIMForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
CMIMTokenizer.register_for_auto_class("AutoTokenizer")
register_pipelines()


def __getattr__(name: str):
    """Lazy access to the bulk embedding API (it imports scikit-learn, pyarrow and tqdm)."""
    if name in _LAZY_EMBEDDING_NAMES:
        from . import embedding

        return getattr(embedding, name)
    raise AttributeError(f"module 'cmim_hf' has no attribute {name!r}")


_LAZY_EMBEDDING_NAMES = ("CMIMEmbedder", "CMIMFeaturizer", "EmbeddingResult", "read_embeddings")

__all__ = [
    "__version__",
    "DEFAULT_CHECKPOINT",
    "INFORMATIVE_TASK",
    "InformativeFeatureExtractionPipeline",
    "add_pipeline_to_checkpoint",
    "compute_embeddings",
    "register_pipelines",
    *_LAZY_EMBEDDING_NAMES,
    "CMIMConfig",
    "CMIMEncoderOutput",
    "CMIMForConditionalGeneration",
    "CMIMForSequenceClassification",
    "CMIMModel",
    "CMIMModelOutput",
    "CMIMPreTrainedModel",
    "CMIMSeq2SeqLMOutput",
    "CMIMSequenceClassifierOutput",
    "CMIMTokenizer",
    "prepare_decoder_inputs",
]
