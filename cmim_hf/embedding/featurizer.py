"""The scikit-learn face of the embedder: :class:`CMIMFeaturizer`, SMILES -> (N, D) embeddings in a
``Pipeline``."""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from transformers import (
    PreTrainedModel,
)

from cmim_hf.embedding.embedder import CMIMEmbedder
from cmim_hf.models.cmim.pipelines import Source
from cmim_hf.models.cmim.pooling import LayerSpec, PoolingMode


class CMIMFeaturizer(TransformerMixin, BaseEstimator):
    """scikit-learn transformer: SMILES -> (N, D) float32 embeddings, usable in a Pipeline.

    Stateless (`fit` only loads the model). Invalid SMILES become NaN rows by default so that
    rows stay aligned with `y`; follow with an imputer or drop them beforehand.

    Args: as `CMIMEmbedder`; `model` is best a checkpoint path (cheap to clone).
    """

    def __init__(
        self,
        model: str | os.PathLike | PreTrainedModel,
        tokenizer: Any | None = None,
        source: Source = "decoder",
        layers: LayerSpec = "last",
        pooling: PoolingMode = "mean",
        include_latent: bool | None = None,
        batch_size: int = 256,
        device: str | None = None,
        normalize: bool | str = True,
        on_invalid: Literal["raise", "nan"] = "nan",
        smiles_col: str | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.source = source
        self.layers = layers
        self.pooling = pooling
        self.include_latent = include_latent
        self.batch_size = batch_size
        self.device = device
        self.normalize = normalize
        self.on_invalid = on_invalid
        self.smiles_col = smiles_col

    def fit(self, X: Any, y: Any = None) -> CMIMFeaturizer:
        """Load the model; nothing is learned."""
        if self.on_invalid not in ("raise", "nan"):
            raise ValueError("CMIMFeaturizer keeps rows aligned: on_invalid must be 'raise' or 'nan'")
        self.embedder_ = CMIMEmbedder(
            self.model,
            tokenizer=self.tokenizer,
            source=self.source,
            layers=self.layers,
            pooling=self.pooling,
            include_latent=self.include_latent,
            batch_size=self.batch_size,
            device=self.device,
            normalize=self.normalize,
            on_invalid=self.on_invalid,
            progress=False,
        )
        return self

    def transform(self, X: Any) -> np.ndarray:
        """(N,) SMILES (list, array, Series or one-column DataFrame) -> (N, D) float32."""
        if not hasattr(self, "embedder_"):
            self.fit(X)
        if isinstance(X, np.ndarray) and X.ndim == 2:
            X = X[:, 0]
        if isinstance(X, pd.DataFrame) and self.smiles_col is None and X.shape[1] == 1:
            X = X.iloc[:, 0]
        return self.embedder_.embed(X, smiles_col=self.smiles_col)
