"""SMILES written as a checkpoint's training SMILES were, and the cheap signs that they are not.

Remote code: this file ships in checkpoint folders next to ``tokenization_cmim.py`` and
``pipelines.py`` and loads where ``cmim_hf`` is not installed, so it imports only the standard
library and transformers, and RDKit lazily. Without RDKit, normalization is skipped with one
warning. ``cmim_hf.chem.normalize_smiles`` is the package's version of the same rule.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

from transformers.utils import logging

logger = logging.get_logger(__name__)

SMILES_NORMALIZATION_SCHEMES: tuple[str, ...] = ("none", "canonical", "canonical_nostereo")
STEREO_MARKS = ("@", "/", "\\")


@functools.cache
def rdkit_chem() -> ModuleType | None:
    """RDKit's `Chem` module with RDKit's logging silenced, or None when RDKit is not installed."""
    try:
        from rdkit import Chem, RDLogger
    except ImportError:
        return None
    RDLogger.DisableLog("rdApp.*")
    return Chem


def parse_with_rdkit(smiles: Any) -> Any:
    """RDKit's molecule for `smiles` (RDKit must be installed, see `rdkit_chem`).

    Raises:
        ValueError: for a non-string, an empty SMILES, one with whitespace inside (RDKit would
            read the rest as a name and drop it) or one RDKit rejects, as
            `cmim_hf.chem.parse_smiles` decides.
    """
    text = smiles.strip() if isinstance(smiles, str) else ""
    mol = None
    if text and not any(character.isspace() for character in text):
        mol = rdkit_chem().MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"RDKit cannot parse the SMILES {smiles!r}")
    return mol


def is_valid_smiles(smiles: str) -> bool | None:
    """Whether RDKit parses `smiles`; None when RDKit is not installed."""
    if rdkit_chem() is None:
        return None
    try:
        parse_with_rdkit(smiles)
    except ValueError:
        return False
    return True


def normalize_for_model(smiles: str, scheme: str | None) -> str:
    """``smiles`` written as the checkpoint's training SMILES were (``config.smiles_normalization``:
    None/"none" as given, "canonical" or "canonical_nostereo" RDKit canonical SMILES with/without
    stereo). Self-contained (this file ships as a checkpoint's remote code), so it imports RDKit
    itself; ``cmim_hf.chem.normalize_smiles`` is the package's version of the same rule.

    Without RDKit the SMILES is returned as written, with one warning per process and scheme.

    Raises:
        ValueError: for a SMILES RDKit cannot parse.
    """
    if scheme in (None, "none"):
        return smiles
    chem = rdkit_chem()
    if chem is None:
        rewrite = "RDKit canonical SMILES" + (" with stereo" if scheme == "canonical" else " without stereo")
        logger.warning_once(
            f"RDKit is not installed, so SMILES normalization is skipped: inputs are used as written, "
            f"not rewritten as this checkpoint's training SMILES were ({scheme!r}: {rewrite}), and "
            f"other spellings of a molecule may give other results. Enable it with `pip install rdkit`."
        )
        return smiles
    mol = parse_with_rdkit(smiles)
    if scheme != "canonical":  # stereo removed; isotope labels kept, as cmim_hf.chem does
        chem.RemoveStereochemistry(mol)
    return chem.MolToSmiles(mol)


def visible_mismatch(smiles: str, scheme: str | None) -> str | None:
    """A cheap sign (no parsing) that ``smiles`` is not written as ``scheme`` writes SMILES: stereo
    marks for "canonical_nostereo", or several fragments (a salt or mixture, which MOSES-like
    training sets do not hold). None when nothing visible differs (it may still not be canonical)."""
    if scheme in (None, "none") or not isinstance(smiles, str):
        return None
    if scheme == "canonical_nostereo" and any(mark in smiles for mark in STEREO_MARKS):
        return "carries stereo marks (@, /, \\)"
    if "." in smiles:
        return "has several fragments ('.')"
    return None
