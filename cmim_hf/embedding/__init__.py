"""Embedding molecules: :class:`CMIMEmbedder` (bulk, streaming, sharded across processes) in
:mod:`~cmim_hf.embedding.embedder`, and :class:`CMIMFeaturizer` (scikit-learn) in
:mod:`~cmim_hf.embedding.featurizer`.
"""

from cmim_hf.checkpoints import load_model_and_tokenizer  # its old home, kept for 0.2 (see CHANGELOG)
from cmim_hf.embedding.embedder import (
    INVALID_POLICIES,
    CMIMEmbedder,
    EmbeddingResult,
    embedding_device,
    read_embeddings,
    smiles_normalization_of,
)
from cmim_hf.embedding.featurizer import CMIMFeaturizer
from cmim_hf.io import (  # their old home, kept for 0.2 (see CHANGELOG)
    FILE_SUFFIXES,
    file_smiles_column,
    is_file_input,
    iter_file_chunks,
    iter_file_tables,
    iter_input_chunks,
)

__all__ = [
    "FILE_SUFFIXES",
    "INVALID_POLICIES",
    "CMIMEmbedder",
    "CMIMFeaturizer",
    "EmbeddingResult",
    "embedding_device",
    "file_smiles_column",
    "is_file_input",
    "iter_file_chunks",
    "iter_file_tables",
    "iter_input_chunks",
    "load_model_and_tokenizer",
    "read_embeddings",
    "smiles_normalization_of",
]
