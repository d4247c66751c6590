"""Set metrics of generated molecules (pure functions; the local ``evaluate`` metrics wrap them):
validity, uniqueness, novelty, Tanimoto similarity, and :class:`SetMetrics` for a stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

from cmim_hf import chem


def tanimoto_similarity(smiles: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Row-wise ECFP4 (2048 bits) Tanimoto similarity of ``smiles[i]`` to ``references[i]``.

    Returns:
        (N,) float64; NaN where either molecule is invalid; 0.0 when both fingerprints are empty
        (RDKit's convention).
    """
    if len(smiles) != len(references):
        raise ValueError(f"{len(smiles)} molecules for {len(references)} references")
    similarity = np.full(len(smiles), np.nan)
    rows = [
        i
        for i, (a, b) in enumerate(zip(smiles, references))
        if chem.is_valid_smiles(a) and chem.is_valid_smiles(b)
    ]
    if rows:
        fa = chem.ecfp4([smiles[i] for i in rows]).astype(bool)
        fb = chem.ecfp4([references[i] for i in rows]).astype(bool)
        intersection = (fa & fb).sum(axis=1)
        union = (fa | fb).sum(axis=1)
        similarity[rows] = np.divide(intersection, union, out=np.zeros(len(rows)), where=union > 0)
    return similarity


def rdkit_validity(smiles: Sequence[str]) -> list[bool]:
    """One RDKit validity flag per SMILES."""
    return [chem.is_valid_smiles(s) for s in smiles]


def _canonical_valid(smiles: Sequence[str]) -> list[str]:
    """Canonical SMILES of the valid entries, in order (invalid ones dropped)."""
    return [chem.canonicalize(s) for s in smiles if chem.is_valid_smiles(s)]


def fraction_valid(smiles: Sequence[str]) -> float:
    """Fraction of SMILES that RDKit parses and sanitises (0.0 for an empty list)."""
    return sum(chem.is_valid_smiles(s) for s in smiles) / len(smiles) if smiles else 0.0


def fraction_unique(smiles: Sequence[str]) -> float:
    """Distinct canonical SMILES among the valid ones / number of valid ones (0.0 if none is valid)."""
    canonical = _canonical_valid(smiles)
    return len(set(canonical)) / len(canonical) if canonical else 0.0


def canonical_reference(reference: Sequence[str]) -> frozenset[str]:
    """The canonical SMILES of ``reference`` (e.g. the training set), computed once for several
    :func:`fraction_novel` calls.

    Raises:
        InvalidSmilesError: for an invalid reference SMILES (with its row).
    """
    for index, s in enumerate(reference):
        chem.parse_smiles(s, index=index)
    return frozenset(chem.canonicalize(s) for s in reference)


def fraction_novel(smiles: Sequence[str], reference: Sequence[str] | frozenset[str]) -> float:
    """Fraction of the distinct valid molecules whose canonical SMILES is not in ``reference``
    (e.g. the training set; a frozenset from :func:`canonical_reference` is used as it is);
    0.0 if none is valid (MOSES's definition).

    Raises:
        InvalidSmilesError: for an invalid reference SMILES (with its row).
    """
    known = reference if isinstance(reference, frozenset) else canonical_reference(reference)
    distinct = set(_canonical_valid(smiles))
    return len(distinct - known) / len(distinct) if distinct else 0.0


class DistinctCounter:
    """Counts the distinct strings among those added, keeping 8 bytes per distinct string (a 64-bit
    BLAKE2b hash) instead of the strings: about 8 MB for a million distinct molecules. Two strings
    with the same hash count once; among a million distinct strings that happens with probability
    about 3e-8."""

    _MERGE_AT = 65536  # hashes waiting before they are merged into the sorted distinct ones

    def __init__(self) -> None:
        self._distinct = np.zeros(0, dtype=np.uint64)
        self._pending: list[np.ndarray] = []
        self._waiting = 0

    def add(self, strings: Iterable[str]) -> None:
        """Count ``strings`` (any iterable of str)."""
        digests = b"".join(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest() for s in strings)
        if digests:
            self._pending.append(np.frombuffer(digests, dtype=np.uint64))
            self._waiting += len(self._pending[-1])
            if self._waiting >= max(self._MERGE_AT, len(self._distinct)):
                self._merge()

    def _merge(self) -> None:
        if self._pending:
            self._distinct = np.unique(np.concatenate([self._distinct, *self._pending]))
            self._pending, self._waiting = [], 0

    def __len__(self) -> int:
        self._merge()
        return len(self._distinct)


class SetMetrics:
    """Validity, uniqueness and novelty (as :func:`fraction_valid`, :func:`fraction_unique` and
    :func:`fraction_novel`) of molecules seen batch by batch, in memory that grows only with the
    distinct valid molecules (8 bytes each, see :class:`DistinctCounter`).

    Args:
        reference: canonical SMILES of the reference molecules (:func:`canonical_reference`), for
            :attr:`novelty`; None for no novelty.
    """

    def __init__(self, reference: frozenset[str] | None = None) -> None:
        self.reference = reference
        self.molecules = 0
        self.valid = 0
        self._distinct = DistinctCounter()
        self._novel = DistinctCounter()

    def update(self, smiles: Sequence[str], valid: Sequence[bool] | None = None) -> None:
        """Count a batch of decoded SMILES (``valid``: their RDKit flags, computed when None)."""
        valid = rdkit_validity(smiles) if valid is None else valid
        canonical = [chem.canonicalize(s) for s, ok in zip(smiles, valid) if ok]
        self.molecules += len(smiles)
        self.valid += len(canonical)
        self._distinct.add(canonical)
        if self.reference is not None:
            self._novel.add(c for c in canonical if c not in self.reference)

    @property
    def validity(self) -> float:
        """Fraction of the molecules that are valid (0.0 for none)."""
        return self.valid / self.molecules if self.molecules else 0.0

    @property
    def uniqueness(self) -> float:
        """Distinct canonical SMILES among the valid molecules / valid molecules (0.0 if none)."""
        return len(self._distinct) / self.valid if self.valid else 0.0

    @property
    def novelty(self) -> float:
        """Fraction of the distinct valid molecules not in the reference (0.0 if none is valid).

        Raises:
            ValueError: without a reference.
        """
        if self.reference is None:
            raise ValueError("novelty needs reference molecules: SetMetrics(reference=...)")
        distinct = len(self._distinct)
        return len(self._novel) / distinct if distinct else 0.0
