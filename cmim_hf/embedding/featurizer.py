"""The scikit-learn face of the embedder: :class:`CMIMFeaturizer`, SMILES -> (N, D) embeddings in a
``Pipeline``."""

from __future__ import annotations

import inspect
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from cmim_hf.embedding.embedder import CMIMEmbedder

EMBEDDER_PARAMETERS: tuple[str, ...] = (
    "model",
    "tokenizer",
    "source",
    "layers",
    "pooling",
    "include_latent",
    "batch_size",
    "device",
    "normalize",
    "on_invalid",
)
"""The parameters of :class:`CMIMEmbedder` that a :class:`CMIMFeaturizer` takes and passes on."""


def _featurizer_signature() -> inspect.Signature:
    """``CMIMFeaturizer.__init__``'s parameters: :data:`EMBEDDER_PARAMETERS` as ``CMIMEmbedder``
    declares them (but ``on_invalid``, "nan" by default: rows stay aligned), then ``smiles_col``."""
    embedder = inspect.signature(CMIMEmbedder.__init__).parameters
    parameters = [embedder["self"], *(embedder[name] for name in EMBEDDER_PARAMETERS)]
    parameters[-1] = parameters[-1].replace(default="nan", annotation=Literal["raise", "nan"])
    smiles_col = inspect.Parameter(
        "smiles_col", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=str | None
    )
    return inspect.Signature([*parameters, smiles_col])


_SIGNATURE = _featurizer_signature()


class CMIMFeaturizer(TransformerMixin, BaseEstimator):
    """scikit-learn transformer: SMILES -> (N, D) float32 embeddings, usable in a Pipeline.

    Stateless (`fit` only loads the model). Invalid SMILES become NaN rows by default so that
    rows stay aligned with `y`; follow with an imputer or drop them beforehand.

    Args: those of `CMIMEmbedder` named in `EMBEDDER_PARAMETERS` (same defaults, but `on_invalid`:
    "nan", or "raise"); `model` is best a checkpoint path (cheap to clone). `smiles_col`: the column
    of a DataFrame input (default: its only column, else the SMILES column found by
    `cmim_hf.io.smiles_column`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        arguments = _SIGNATURE.bind(self, *args, **kwargs)
        arguments.apply_defaults()
        for name, value in arguments.arguments.items():
            if name != "self":
                setattr(self, name, value)

    # scikit-learn reads an estimator's parameters from this signature (get_params, clone, repr)
    __init__.__signature__ = _SIGNATURE

    def fit(self, X: Any, y: Any = None) -> CMIMFeaturizer:
        """Load the model; nothing is learned."""
        if self.on_invalid not in ("raise", "nan"):
            raise ValueError("CMIMFeaturizer keeps rows aligned: on_invalid must be 'raise' or 'nan'")
        options = {name: getattr(self, name) for name in EMBEDDER_PARAMETERS}
        self.embedder_ = CMIMEmbedder(**options, progress=False)
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
