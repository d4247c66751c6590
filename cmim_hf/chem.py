"""Chemistry helpers: the RDKit functions the rest of ``cmim_hf`` shares.

Parsing, validation, canonicalisation, Bemis-Murcko scaffolds, ECFP4 bit vectors and
RDKit 2D descriptors. Three other modules import RDKit for what only they do:
:mod:`cmim_hf.drawing` (grid images), :mod:`cmim_hf.evaluation.moses_metrics` (MOSES' own
definitions: its parsing, fingerprints, fragments and filters) and the remote-code
``cmim_hf/models/cmim/smiles_normalization.py`` (optional RDKit, for checkpoints loaded without
``cmim_hf``). Single-molecule functions raise :class:`InvalidSmilesError` naming
the input; bulk functions either report invalid rows (:func:`validate_smiles`) or raise
on the first invalid row with its index. RDKit's own log output is captured in every
function here (never printed), and its first message becomes the error's reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import Descriptors, rdFingerprintGenerator
from rdkit.Chem.Scaffolds import MurckoScaffold

from cmim_hf.errors import InputError
from cmim_hf.models.cmim.configuration_cmim import SMILES_NORMALIZATIONS

__all__ = [
    "InvalidSmilesError",
    "InvalidRow",
    "ValidationReport",
    "parse_smiles",
    "is_valid_smiles",
    "canonicalize",
    "normalize_smiles",
    "SMILES_NORMALIZATIONS",
    "murcko_scaffold",
    "ecfp4",
    "descriptor_names",
    "rdkit_descriptor",
    "rdkit_descriptors",
    "validate_smiles",
    "RDKIT_VERSION",
]

RDKIT_VERSION: str = rdBase.rdkitVersion
"""The version of the RDKit in use (records name it: canonical SMILES differ between versions)."""

_LOG_TIMESTAMP = re.compile(r"^\[\d{2}:\d{2}:\d{2}\]\s*")


class InvalidSmilesError(InputError):
    """A SMILES string RDKit cannot turn into a molecule.

    Attributes:
        smiles: the offending input.
        reason: RDKit's first error message (or why the input was rejected before RDKit).
        index: row index in the caller's list, when known.
    """

    def __init__(self, smiles: object, reason: str, index: int | None = None) -> None:
        self.smiles = smiles
        self.reason = reason
        self.index = index
        where = f" at row {index}" if index is not None else ""
        super().__init__(f"invalid SMILES{where}: {smiles!r} ({reason})")


@dataclass(frozen=True)
class InvalidRow:
    """One row rejected by :func:`validate_smiles`."""

    index: int
    smiles: str
    reason: str


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of :func:`validate_smiles` over a list of SMILES.

    Attributes:
        n_total: number of inputs.
        valid_indices: indices of the rows RDKit parses, in input order.
        invalid: one :class:`InvalidRow` per rejected row, in input order.
    """

    n_total: int
    valid_indices: list[int] = field(default_factory=list)
    invalid: list[InvalidRow] = field(default_factory=list)

    @property
    def n_invalid(self) -> int:
        """Number of rejected rows."""
        return len(self.invalid)

    def to_records(self) -> list[dict[str, object]]:
        """Invalid rows as JSON-able dicts ``{"index", "smiles", "reason"}``."""
        return [{"index": r.index, "smiles": r.smiles, "reason": r.reason} for r in self.invalid]


def _first_log_message(log_text: str) -> str:
    """The first non-empty line of captured RDKit log text, without its timestamp."""
    for line in log_text.splitlines():
        message = _LOG_TIMESTAMP.sub("", line).strip()
        if message:
            return message
    return "RDKit could not parse it"


def parse_smiles(smiles: str, index: int | None = None) -> Chem.Mol:
    """Parse and sanitise one SMILES string.

    Args:
        smiles: the SMILES string.
        index: optional row index, only used in the error message.

    Returns:
        The sanitised RDKit molecule.

    Raises:
        InvalidSmilesError: if the input is missing or empty, holds whitespace inside (RDKit would
            read what follows as the molecule's name and drop it), is not a string, or RDKit
            rejects it.
    """
    if smiles is None or (isinstance(smiles, float) and math.isnan(smiles)):
        raise InvalidSmilesError(smiles, "empty SMILES (missing value)", index)
    if not isinstance(smiles, str):
        raise InvalidSmilesError(smiles, f"expected a string, got {type(smiles).__name__}", index)
    if not smiles.strip():
        raise InvalidSmilesError(smiles, "empty SMILES", index)
    if any(character.isspace() for character in smiles.strip()):
        raise InvalidSmilesError(
            smiles, "whitespace inside the SMILES (RDKit would read the rest as a name and drop it)", index
        )
    with rdBase.BlockLogs(), rdBase.CaptureErrorLog() as capture:
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise InvalidSmilesError(smiles, _first_log_message(capture.messages), index)
    return mol


def is_valid_smiles(smiles: str) -> bool:
    """Whether RDKit parses and sanitises ``smiles``."""
    try:
        parse_smiles(smiles)
    except InvalidSmilesError:
        return False
    return True


def normalize_smiles(smiles: str, scheme: str) -> str:
    """``smiles`` written as a checkpoint's training SMILES were (``CMIMConfig.smiles_normalization``):
    ``"none"`` as given (checked with RDKit), ``"canonical"`` RDKit canonical SMILES with stereo,
    ``"canonical_nostereo"`` RDKit canonical SMILES without stereo (MOSES's form). Isotope labels
    are kept by every scheme: ``[13CH3]O`` is not methanol, and a vocabulary without the label
    flags the molecule instead of reading it as another.

    Raises:
        InvalidSmilesError: if RDKit rejects the input; ValueError for an unknown scheme.
    """
    if scheme not in SMILES_NORMALIZATIONS:
        raise ValueError(f"unknown SMILES normalization {scheme!r}; choose one of {SMILES_NORMALIZATIONS}")
    if scheme == "none":
        parse_smiles(smiles)
        return smiles
    return canonicalize(smiles, isomeric=scheme == "canonical")


def canonicalize(smiles: str, isomeric: bool = True) -> str:
    """RDKit canonical SMILES of ``smiles``, stereo removed unless ``isomeric``; isotope labels are
    always kept (RDKit's ``isomericSmiles=False`` would drop them too).

    Raises:
        InvalidSmilesError: if RDKit rejects the input.
    """
    mol = parse_smiles(smiles)
    if not isomeric:
        Chem.RemoveStereochemistry(mol)
    return Chem.MolToSmiles(mol)


def murcko_scaffold(smiles: str) -> str:
    """Bemis-Murcko scaffold SMILES, without chirality; ``""`` for an acyclic molecule.

    Raises:
        InvalidSmilesError: if RDKit rejects the input.
    """
    mol = parse_smiles(smiles)
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


def _parse_all(smiles_list: Sequence[str]) -> list[Chem.Mol]:
    """Parse every SMILES, raising on the first invalid one with its row index."""
    return [parse_smiles(s, index=i) for i, s in enumerate(smiles_list)]


@cache
def _morgan_generator(radius: int, n_bits: int) -> rdFingerprintGenerator.FingerprintGenerator64:
    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)


def ecfp4(smiles_list: Sequence[str], n_bits: int = 2048, radius: int = 2) -> np.ndarray:
    """ECFP4 (Morgan, radius 2) bit vectors.

    Args:
        smiles_list: N SMILES strings.
        n_bits: fingerprint length.
        radius: Morgan radius (2 gives ECFP4).

    Returns:
        ``uint8`` array of shape (N, n_bits) with 0/1 entries.

    Raises:
        InvalidSmilesError: on the first invalid row (with its index).
    """
    generator = _morgan_generator(radius, n_bits)
    mols = _parse_all(smiles_list)
    out = np.zeros((len(mols), n_bits), dtype=np.uint8)
    for i, mol in enumerate(mols):
        out[i] = generator.GetFingerprintAsNumPy(mol)
    return out


@cache
def descriptor_names() -> tuple[str, ...]:
    """Names of the columns :func:`rdkit_descriptors` returns (RDKit's descriptor list).

    ``Ipc`` is replaced by ``log1p_Ipc``: raw Ipc reaches 1e30 and beyond for large molecules.
    """
    return tuple("log1p_Ipc" if name == "Ipc" else name for name, _ in Descriptors._descList)


def _descriptor_row(mol: Chem.Mol) -> list[float]:
    values = Descriptors.CalcMolDescriptors(mol, missingVal=math.nan)
    values["Ipc"] = math.log1p(values["Ipc"]) if math.isfinite(values["Ipc"]) else math.nan
    return [float(v) for v in values.values()]


def rdkit_descriptor(smiles: str, name: str) -> float:
    """One column of :func:`rdkit_descriptors` (``name`` as :func:`descriptor_names` spells it) for
    one molecule, computing that descriptor only; NaN where RDKit cannot compute it.

    Raises:
        InvalidSmilesError: for an invalid SMILES. KeyError: for an unknown name.
    """
    functions = dict(Descriptors._descList)
    function = functions["Ipc"] if name == "log1p_Ipc" else functions[name]
    mol = parse_smiles(smiles)
    with rdBase.BlockLogs():
        try:
            value = float(function(mol))
        except Exception:  # CalcMolDescriptors' missingVal: RDKit failed on this molecule
            return math.nan
    if name == "log1p_Ipc" and math.isfinite(value):
        value = math.log1p(value)
    return value if math.isfinite(value) else math.nan


def rdkit_descriptors(smiles_list: Sequence[str]) -> np.ndarray:
    """All RDKit 2D descriptors (see :func:`descriptor_names`).

    Returns:
        ``float64`` array of shape (N, len(descriptor_names())); a value RDKit cannot compute,
        or that is not finite, is NaN.

    Raises:
        InvalidSmilesError: on the first invalid row (with its index).
    """
    mols = _parse_all(smiles_list)
    with rdBase.BlockLogs():
        rows = [_descriptor_row(mol) for mol in mols]
    out = np.asarray(rows, dtype=np.float64).reshape(len(mols), len(descriptor_names()))
    out[~np.isfinite(out)] = np.nan
    return out


def validate_smiles(smiles_list: Sequence[str]) -> ValidationReport:
    """Check every SMILES; report each invalid row with its index, text and RDKit's reason.

    Never raises for bad molecules and never prints RDKit messages.
    """
    valid: list[int] = []
    invalid: list[InvalidRow] = []
    for i, smiles in enumerate(smiles_list):
        try:
            parse_smiles(smiles, index=i)
        except InvalidSmilesError as err:
            invalid.append(InvalidRow(index=i, smiles=str(smiles), reason=err.reason))
        else:
            valid.append(i)
    return ValidationReport(n_total=len(smiles_list), valid_indices=valid, invalid=invalid)
