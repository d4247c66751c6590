"""Featurizers: functions ``list[str] -> np.ndarray (N, D)`` over valid SMILES.

Built-ins are ``"ecfp4"`` (2048-bit Morgan radius 2) and ``"descriptors"`` (all RDKit 2D
descriptors, NaN where RDKit cannot compute one; the probes impute NaN with the training
median). Any callable with the same contract works, e.g. a cMIM embedder's ``embed`` method.
A checkpoint folder resolves to a :class:`CheckpointFeaturizer` (``CMIMEmbedder(path, source=...).embed``).
The scikit-learn transformer for pipelines is another class, :class:`cmim_hf.embedding.CMIMFeaturizer`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cmim_hf._compat import renamed_name
from cmim_hf.chem import ecfp4, rdkit_descriptors
from cmim_hf.errors import InputError

__all__ = [
    "Featurizer",
    "FeaturizerError",
    "FeaturizerRuntimeError",
    "BUILTIN_FEATURIZERS",
    "EMBEDDING_SOURCES",
    "ecfp4_features",
    "descriptor_features",
    "CheckpointFeaturizer",
    "resolve_featurizer",
    "featurize",
]

Featurizer = Callable[[list[str]], np.ndarray]

# --embedding choice -> CMIMEmbedder(source=...)
EMBEDDING_SOURCES: dict[str, str] = {"informative": "decoder", "latent": "latent"}


class FeaturizerError(InputError):
    """A featurizer name or checkpoint path that cannot be resolved (a usage error)."""


class FeaturizerRuntimeError(RuntimeError):
    """A featurizer that fails or returns an array of the wrong shape."""


def ecfp4_features(smiles: list[str]) -> np.ndarray:
    """ECFP4 bits as float32 (N, 2048)."""
    return ecfp4(smiles, n_bits=2048).astype(np.float32)


def descriptor_features(smiles: list[str]) -> np.ndarray:
    """RDKit 2D descriptors as float32 (N, n_descriptors), NaN where undefined."""
    return rdkit_descriptors(smiles).astype(np.float32)


BUILTIN_FEATURIZERS: dict[str, Featurizer] = {"ecfp4": ecfp4_features, "descriptors": descriptor_features}


class CheckpointFeaturizer:
    """The benchmark's featurizer of a cMIM checkpoint: a callable ``list[str] -> (N, D)`` over
    :class:`cmim_hf.embedding.CMIMEmbedder`, named in reports as ``cmim:<path>[<embedding>]``
    (called ``CMIMFeaturizer`` before 0.3; that name is the scikit-learn transformer's).

    Molecules the model cannot encode (more tokens than its ``max_position_embeddings``) get NaN
    rows, with a warning naming them: the probes impute them like any missing feature and the
    benchmark counts them per task (``featurizers[name][task]["n_nonfinite"]``).

    Args:
        path: checkpoint folder (or any name the embedder accepts).
        embedding: ``"informative"`` (pooled decoder states) or ``"latent"`` (posterior mean).
        batch_size: molecules per forward pass.
        normalize: rewrite each SMILES as the checkpoint's training SMILES were (True, default),
            embed it as given (False), or a scheme of ``cmim_hf.chem.SMILES_NORMALIZATIONS``.

    Raises:
        FeaturizerError: unknown ``embedding``.
        FeaturizerRuntimeError: the embedding module is unavailable.
    """

    def __init__(
        self,
        path: str | Path,
        embedding: str = "informative",
        batch_size: int = 64,
        normalize: bool | str = True,
    ) -> None:
        if embedding not in EMBEDDING_SOURCES:
            raise FeaturizerError(
                f"unknown embedding {embedding!r}; choose one of {', '.join(EMBEDDING_SOURCES)}"
            )
        try:
            from cmim_hf.embedding.embedder import CMIMEmbedder
        except ImportError as err:
            raise FeaturizerRuntimeError(f"cMIM checkpoints need cmim_hf.embedding: {err}") from err
        self.path = str(path)
        self.embedding = embedding
        self._embedder = CMIMEmbedder(
            self.path,
            source=EMBEDDING_SOURCES[embedding],
            batch_size=batch_size,
            on_invalid="nan",
            normalize=normalize,
        )
        self.normalize = normalize

    def __call__(self, smiles: list[str]) -> np.ndarray:
        return self._embedder.embed(smiles)

    def __repr__(self) -> str:
        normalization = "" if self.normalize is True else f", normalize={self.normalize}"
        return f"cmim:{self.path}[{self.embedding}{normalization}]"


def resolve_featurizer(
    spec: str | Featurizer, embedding: str = "informative", batch_size: int = 64
) -> Featurizer:
    """Turn ``"ecfp4"``, ``"descriptors"``, a checkpoint folder or a callable into a featurizer.

    Raises:
        FeaturizerError: a string that is neither a built-in name nor an existing folder.
    """
    if callable(spec):
        return spec
    key = spec.strip().lower()
    if key in BUILTIN_FEATURIZERS:
        return BUILTIN_FEATURIZERS[key]
    if not Path(spec).is_dir():
        raise FeaturizerError(
            f"unknown featurizer {spec!r}: not one of {', '.join(BUILTIN_FEATURIZERS)} "
            "and not an existing checkpoint folder"
        )
    return CheckpointFeaturizer(spec, embedding=embedding, batch_size=batch_size)


def featurize(featurizer: Featurizer, smiles: Sequence[str], name: str = "featurizer") -> np.ndarray:
    """Run ``featurizer`` on ``smiles`` and check its output.

    Returns:
        float32 array (N, D); non-finite values become NaN (imputed later by the probes).

    Raises:
        FeaturizerRuntimeError: the output is not a 2-D numeric array with one row per SMILES.
    """
    raw = featurizer(list(smiles))
    try:
        out = np.array(raw, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise FeaturizerRuntimeError(f"{name} did not return a numeric array: {err}") from err
    if out.ndim != 2 or out.shape[0] != len(smiles) or out.shape[1] == 0:
        raise FeaturizerRuntimeError(
            f"{name} returned shape {out.shape} for {len(smiles)} SMILES; expected (N, D)"
        )
    out[~np.isfinite(out)] = np.nan
    return out


__getattr__ = renamed_name(__name__, "CMIMFeaturizer", "CheckpointFeaturizer", CheckpointFeaturizer)
