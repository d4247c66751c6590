"""The MOSES metrics of any set of generated SMILES, as MOSES defines them.

MOSES: Polykovskiy et al., Front. Pharmacol. 2020, 11, 565644; the definitions followed are the code of
``moses.metrics`` in the ``molsets`` 0.3.1 wheel (``get_all_metrics``, ``metrics/utils.py``), which does
not import on current RDKit, so it is re-implemented here:

- **Valid**: the fraction of the generated SMILES that RDKit parses and sanitises. Every other metric
  is then computed on the RDKit-canonical SMILES of the valid ones, duplicates kept, in their order.
- **Unique@k**: distinct canonical SMILES among the first ``k`` valid ones / ``k`` (all of them, with a
  warning, when fewer than ``k`` are valid).
- **FCD/Test, FCD/TestSF**: the Frechet distance between Gaussians fitted to the ChemNet activations
  (``fcd`` package) of the generated and the reference molecules. As in MOSES' ``fcd_torch``, SMILES
  are RDKit-canonicalised, one-hot encoded over 350 positions and cut at the first ``.``. FCD is
  biased upwards for small sets: MOSES reports it for 30,000 generated molecules against 176k.
- **SNN/Test, SNN/TestSF**: the mean over generated molecules of the Tanimoto similarity to the
  nearest reference molecule (Morgan fingerprints, radius 2, 1024 bits).
- **Frag, Scaf**: the cosine similarity of the BRICS-fragment / Bemis-Murcko scaffold count vectors
  of the generated and the reference molecules (scaffolds with fewer than 2 rings are not counted).
- **IntDiv, IntDiv2**: ``1 - mean_x (mean_y T(x, y)^p)^(1/p)`` over all pairs of generated molecules,
  self-pairs included (``p = 1, 2``), T the Tanimoto similarity.
- **Filters**: the fraction of molecules with only C, N, S, O, F, Cl, Br, H atoms, no charge, no ring
  of 8 or more atoms, and no match of the MCF or PAINS SMARTS shipped in ``cmim_hf/package_data/moses``.
- **Novelty**: the fraction of the distinct valid generated molecules not in the training set.

Test and TestSF are MOSES' test and scaffold-test sets, shipped in ``cmim_hf/package_data/moses`` with their
precomputed ChemNet, fragment and scaffold statistics (``make_reference_stats.py`` there regenerates
them); their fingerprints and the canonical training set are computed on first use and cached under
:func:`default_cache_dir`. Pairwise Tanimoto similarities are exact torch matrix products of 0/1
fingerprint matrices, block by block (MOSES does the same): SNN of 30k x 176k takes about 150 s on
2 CPU cores, IntDiv of 30k about 25 s.

MOSES compares the canonical SMILES of the generated molecules with the training file's strings,
canonical for the RDKit MOSES used. Current RDKit writes 276 of the 1.58M training molecules
differently, so their current canonical SMILES are added to the training set here: Novelty compares
molecules, not strings written by two RDKit versions.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import signal
import warnings
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from multiprocessing import Pool
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import pandas as pd
import torch
from rdkit import Chem, DataStructs, rdBase
from rdkit.Chem import rdFingerprintGenerator
from rdkit.Chem.Scaffolds import MurckoScaffold

from cmim_hf.errors import InputError
from cmim_hf.outputs import atomic_output

__all__ = [
    "MOSES_DATA",
    "MOSES_REFERENCES",
    "ChemNetStatistics",
    "ReferenceStatistics",
    "get_mol",
    "canonical_smiles",
    "fraction_valid",
    "valid_canonical_smiles",
    "fraction_unique",
    "novelty",
    "morgan_fingerprints",
    "nearest_neighbour_similarity",
    "internal_diversity",
    "fragments",
    "scaffold",
    "cosine_similarity",
    "passes_filters",
    "chemnet_activations",
    "chemnet_statistics",
    "frechet_chemnet_distance",
    "reference_statistics",
    "moses_reference_statistics",
    "moses_train_set",
    "default_cache_dir",
    "read_moses_smiles",
    "save_reference_statistics",
    "moses_metrics",
]

logger = logging.getLogger(__name__)

MOSES_DATA = Path(__file__).resolve().parents[1] / "package_data" / "moses"
# Reference name in the metric keys -> (SMILES file, precomputed statistics) in MOSES_DATA.
MOSES_REFERENCES: dict[str, tuple[str, str]] = {
    "Test": ("moses_test.csv.gz", "moses_test_stats.npz"),
    "TestSF": ("moses_test_scaffolds.csv.gz", "moses_test_scaffolds_stats.npz"),
}
MOSES_TRAIN = "moses_train.csv.gz"
UNIQUE_AT: tuple[int, ...] = (1000, 10000)

FINGERPRINT_RADIUS = 2
FINGERPRINT_BITS = 1024
SCAFFOLD_MIN_RINGS = 2
ALLOWED_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})
LARGEST_ALLOWED_RING = 7

# ChemNet's input as fcd_torch (MOSES) builds it: its vocabulary, 350 one-hot positions, and the
# characters that make a two-letter symbol with the one before them (Cl, Br, Si).
# fmt: off
CHEMNET_VOCABULARY = (
    "C", "N", "O", "H", "F", "Cl", "P", "B", "Br", "S", "I", "Si", "#", "(", ")", "+", "-",
    "1", "2", "3", "4", "5", "6", "7", "8", "=", "[", "]", "@", "c", "n", "o", "s", "X", ".",
)
# fmt: on
CHEMNET_LENGTH = 350
_CHEMNET_INDEX = {symbol: index for index, symbol in enumerate(CHEMNET_VOCABULARY)}
_CHEMNET_SECOND_LETTERS = frozenset("ril")
CHEMNET_BATCH = 512

# Blocks of the pairwise Tanimoto matrix: fingerprints of one side x of the other.
_ROW_BLOCK = 1024
_COLUMN_BLOCK = 1024

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


# ---------------------------------------------------------------------------------------------
# Molecules
# ---------------------------------------------------------------------------------------------


def get_mol(smiles: object) -> Chem.Mol | None:
    """The sanitised RDKit molecule of ``smiles``; None for an empty string, a non-string or a SMILES
    RDKit rejects (MOSES' ``get_mol``)."""
    if not isinstance(smiles, str) or not smiles:
        return None
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            return None
        try:
            Chem.SanitizeMol(mol)
        except ValueError:
            return None
    return mol


def canonical_smiles(smiles: object) -> str | None:
    """RDKit's canonical SMILES of ``smiles`` (stereo kept), None when invalid (MOSES' ``canonic_smiles``)."""
    mol = get_mol(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


def _worker_signals() -> None:
    """A pool worker dies on SIGTERM and ignores SIGINT, leaving both to the parent: a handler
    inherited from a command (which raises) could fire while the worker holds the task queue's
    lock, and the other workers would then wait for that lock forever."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _parallel_map(function: Callable[[_Item], _Result], items: Sequence[_Item], n_jobs: int) -> list[_Result]:
    """``[function(item) for item in items]``, in ``n_jobs`` processes when ``n_jobs > 1``."""
    if n_jobs <= 1 or len(items) < 2 * n_jobs:
        return [function(item) for item in items]
    with Pool(n_jobs, initializer=_worker_signals) as pool:
        results = pool.map(function, items, chunksize=max(1, len(items) // (16 * n_jobs)))
        pool.close()  # the workers finish and exit; leaving the block would SIGTERM them
        pool.join()
    return results


def fraction_valid(generated: Sequence[object]) -> float:
    """Fraction of ``generated`` that RDKit parses and sanitises (MOSES' ``fraction_valid``)."""
    if not generated:
        raise InputError("no SMILES to evaluate")
    return sum(get_mol(smiles) is not None for smiles in generated) / len(generated)


def valid_canonical_smiles(smiles: Sequence[object], n_jobs: int = 1) -> list[str]:
    """The canonical SMILES of the valid ones of ``smiles``, in order, duplicates kept (MOSES'
    ``remove_invalid(canonize=True)``)."""
    return [
        canonical for canonical in _parallel_map(canonical_smiles, smiles, n_jobs) if canonical is not None
    ]


def fraction_unique(canonical: Sequence[str], k: int | None = None) -> float:
    """Distinct SMILES among the first ``k`` of ``canonical`` (all when ``k`` is None) / their number.
    With fewer than ``k`` molecules, MOSES warns and uses them all; so does this."""
    if k is not None:
        if len(canonical) < k:
            warnings.warn(f"unique@{k} computed on the {len(canonical)} valid molecules only", stacklevel=2)
        canonical = canonical[:k]
    if not canonical:
        return math.nan
    return len(set(canonical)) / len(canonical)


def novelty(canonical: Iterable[str], train: Collection[str]) -> float:
    """Fraction of the distinct ``canonical`` SMILES not in ``train`` (canonical SMILES as well:
    :func:`moses_train_set`, or ``valid_canonical_smiles`` of your own)."""
    distinct = set(canonical)
    if not distinct:
        return math.nan
    return len(distinct.difference(train)) / len(distinct)


# ---------------------------------------------------------------------------------------------
# Fingerprints: SNN and IntDiv
# ---------------------------------------------------------------------------------------------


@cache
def _morgan_generator() -> rdFingerprintGenerator.FingerprintGenerator64:
    return rdFingerprintGenerator.GetMorganGenerator(radius=FINGERPRINT_RADIUS, fpSize=FINGERPRINT_BITS)


def morgan_fingerprints(mols: Sequence[Chem.Mol]) -> np.ndarray:
    """Morgan fingerprints (radius 2, 1024 bits), as an ``(n, 1024)`` uint8 matrix of 0/1."""
    generator = _morgan_generator()
    fingerprints = np.zeros((len(mols), FINGERPRINT_BITS), dtype=np.uint8)
    for row, mol in zip(fingerprints, mols):
        row[:] = generator.GetFingerprintAsNumPy(mol)
    return fingerprints


def _tanimoto_blocks(
    rows: np.ndarray, columns: np.ndarray, device: str | torch.device
) -> Iterator[tuple[slice, torch.Tensor]]:
    """The Tanimoto similarities of every row fingerprint to every column fingerprint (0/1 uint8
    matrices), one block at a time: (the block's rows, their float32 similarities to a block of
    columns). Two empty fingerprints count as identical, as in MOSES (0/0 -> 1).

    The intersection counts are exact float products: float32 on CPU (where it is 25-50x faster than
    ``torch._int_mm``), float16 elsewhere (exact up to 2048 bits)."""
    device = torch.device(device)
    dtype = torch.float32 if device.type == "cpu" else torch.float16
    row_bits = torch.from_numpy(rows).to(device=device, dtype=dtype)
    row_counts = row_bits.sum(1, dtype=torch.float32)
    for start in range(0, len(columns), _COLUMN_BLOCK):
        column_bits = torch.from_numpy(columns[start : start + _COLUMN_BLOCK]).to(device=device, dtype=dtype)
        column_counts = column_bits.sum(1, dtype=torch.float32)
        column_bits = column_bits.T.contiguous()
        for row_start in range(0, len(rows), _ROW_BLOCK):
            block = slice(row_start, row_start + _ROW_BLOCK)
            intersections = (row_bits[block] @ column_bits).float()
            unions = row_counts[block, None] + column_counts[None, :] - intersections
            similarities = intersections.div_(unions)
            empty_rows, empty_columns = row_counts[block] == 0, column_counts == 0
            if empty_rows.any() and empty_columns.any():
                similarities[torch.outer(empty_rows, empty_columns)] = 1.0
            yield block, similarities


def nearest_neighbour_similarity(
    generated: np.ndarray, reference: np.ndarray, device: str | torch.device = "cpu"
) -> float:
    """SNN: mean over the generated fingerprints of the Tanimoto similarity to the most similar
    reference fingerprint (0/1 matrices from :func:`morgan_fingerprints`)."""
    if len(generated) == 0 or len(reference) == 0:
        return math.nan
    nearest = torch.zeros(len(generated), device=device)
    for block, similarities in _tanimoto_blocks(generated, reference, device):
        nearest[block] = torch.maximum(nearest[block], similarities.amax(1))
    return float(nearest.double().mean())


def internal_diversity(fingerprints: np.ndarray, p: int = 1, device: str | torch.device = "cpu") -> float:
    """IntDiv_p: ``1 - mean_x (mean_y T(x, y)^p)^(1/p)`` over all pairs (x, y) of the fingerprints,
    self-pairs included (MOSES' ``internal_diversity``; IntDiv is p = 1, IntDiv2 p = 2)."""
    if len(fingerprints) == 0:
        return math.nan
    sums = torch.zeros(len(fingerprints), dtype=torch.float64, device=device)
    for block, similarities in _tanimoto_blocks(fingerprints, fingerprints, device):
        sums[block] += similarities.pow_(p).sum(1, dtype=torch.float64)
    row_means = sums / len(fingerprints)
    return float(1 - row_means.pow(1 / p).mean())


# ---------------------------------------------------------------------------------------------
# Fragments and scaffolds: Frag and Scaf
# ---------------------------------------------------------------------------------------------


def fragments(mol: Chem.Mol) -> list[str]:
    """The SMILES of the BRICS fragments of ``mol`` (MOSES' ``fragmenter``)."""
    return Chem.MolToSmiles(Chem.FragmentOnBRICSBonds(mol)).split(".")


def scaffold(mol: Chem.Mol, min_rings: int = SCAFFOLD_MIN_RINGS) -> str | None:
    """The canonical SMILES of the Bemis-Murcko scaffold of ``mol``; None when it has fewer than
    ``min_rings`` rings or RDKit cannot build it (MOSES' ``compute_scaffold``)."""
    try:
        core = MurckoScaffold.GetScaffoldForMol(mol)
    except (ValueError, RuntimeError):
        return None
    smiles = Chem.MolToSmiles(core)
    if not smiles or core.GetRingInfo().NumRings() < min_rings:
        return None
    return smiles


def cosine_similarity(reference: Counter[str], generated: Counter[str]) -> float:
    """Cosine similarity of two count vectors given as ``{name: count}`` (missing names count 0);
    NaN when either is empty (MOSES' ``cos_similarity``)."""
    if not reference or not generated:
        return math.nan
    names = list(reference.keys() | generated.keys())
    reference_vector = np.array([reference[name] for name in names], dtype=np.float64)
    generated_vector = np.array([generated[name] for name in names], dtype=np.float64)
    norms = np.linalg.norm(reference_vector) * np.linalg.norm(generated_vector)
    return float(reference_vector @ generated_vector / norms)


# ---------------------------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------------------------


class _Filter(NamedTuple):
    pattern: Chem.Mol
    screen: DataStructs.ExplicitBitVect  # RDKit's pattern fingerprint: bits every match must set


@cache
def _filters() -> tuple[_Filter, ...]:
    """MOSES' MCF and PAINS SMARTS (``mcf.csv``: names,smarts; ``wehi_pains.csv``: smarts,names)."""
    with (
        open(MOSES_DATA / "mcf.csv", newline="") as mcf,
        open(MOSES_DATA / "wehi_pains.csv", newline="") as pains,
    ):
        smarts = [row[1] for row in list(csv.reader(mcf))[1:]] + [row[0] for row in csv.reader(pains)]
    patterns = [Chem.MolFromSmarts(text) for text in smarts]
    return tuple(_Filter(pattern, Chem.PatternFingerprint(pattern)) for pattern in patterns)


def passes_filters(mol: Chem.Mol) -> bool:
    """Whether ``mol`` has no ring of 8 or more atoms, no charged atom, only C, N, S, O, F, Cl, Br, H
    atoms, no match of an MCF or PAINS SMARTS (matched with explicit hydrogens) and a SMILES that
    RDKit reads back (MOSES' ``mol_passes_filters``). A pattern is only matched against molecules
    whose pattern fingerprint holds all of its bits, RDKit's substructure screen: it skips patterns
    that cannot match, it never changes the answer."""
    if any(len(ring) > LARGEST_ALLOWED_RING for ring in mol.GetRingInfo().AtomRings()):
        return False
    if any(atom.GetFormalCharge() != 0 for atom in mol.GetAtoms()):
        return False
    if any(atom.GetSymbol() not in ALLOWED_ATOMS for atom in mol.GetAtoms()):
        return False
    with_hydrogens = Chem.AddHs(mol)
    bits = Chem.PatternFingerprint(with_hydrogens)
    if any(
        DataStructs.AllProbeBitsMatch(screen, bits) and with_hydrogens.HasSubstructMatch(pattern)
        for pattern, screen in _filters()
    ):
        return False
    smiles = Chem.MolToSmiles(mol, isomericSmiles=False)
    return bool(smiles) and get_mol(smiles) is not None


# ---------------------------------------------------------------------------------------------
# ChemNet: FCD
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChemNetStatistics:
    """Mean and covariance of ChemNet's 512 penultimate activations over a set of molecules."""

    mean: np.ndarray
    covariance: np.ndarray

    @classmethod
    def of(cls, activations: np.ndarray) -> ChemNetStatistics:
        """The statistics of an ``(n, 512)`` activation matrix (n >= 2), in float64."""
        return cls(mean=activations.mean(0, dtype=np.float64), covariance=np.cov(activations.T))


def _chemnet_one_hot(smiles: str) -> np.ndarray:
    """ChemNet's input for ``smiles``: fcd_torch's ``get_one_hot(smiles, 350) / 35``. Symbols are
    single characters except Cl, Br, Si (a character followed by r, i or l); unknown ones are X; the
    string ends at its first ``.`` or after 349 symbols, then a ``.`` is added."""
    text = smiles + "."
    one_hot = np.zeros((CHEMNET_LENGTH, len(CHEMNET_VOCABULARY)), dtype=np.float32)
    unknown = _CHEMNET_INDEX["X"]
    source = position = 0
    while True:
        width = 2 if text[source + 1] in _CHEMNET_SECOND_LETTERS else 1
        one_hot[position, _CHEMNET_INDEX.get(text[source : source + width], unknown)] = 1
        source += width
        position += 1
        if text[source] == "." or position == CHEMNET_LENGTH - 1:
            one_hot[position, _CHEMNET_INDEX["."]] = 1
            return one_hot / len(CHEMNET_VOCABULARY)


def chemnet_activations(
    canonical: Sequence[str], device: str | torch.device = "cpu", batch_size: int = CHEMNET_BATCH
) -> np.ndarray:
    """ChemNet's 512 penultimate activations (``fcd`` package) of each of ``canonical``
    (RDKit-canonical SMILES, as fcd_torch makes them): an ``(n, 512)`` float32 matrix."""
    from fcd import load_ref_model

    model = load_ref_model()
    activations = [np.zeros((0, 512), dtype=np.float32)]
    try:
        model.to(device)
        with torch.no_grad():
            for start in range(0, len(canonical), batch_size):
                batch = np.stack([_chemnet_one_hot(s) for s in canonical[start : start + batch_size]])
                inputs = torch.from_numpy(batch).transpose(1, 2).to(device)
                # a copy: the output is a view of the whole (batch, 350, 512) LSTM output
                activations.append(model(inputs).cpu().numpy().copy())
    finally:
        model.to("cpu")  # load_ref_model caches one model for every caller
    return np.concatenate(activations)


def chemnet_statistics(
    canonical: Sequence[str], device: str | torch.device = "cpu", batch_size: int = CHEMNET_BATCH
) -> ChemNetStatistics | None:
    """The :class:`ChemNetStatistics` of ``canonical`` (RDKit-canonical SMILES); None for fewer than 2
    molecules, where MOSES gives no FCD."""
    if len(canonical) < 2:
        return None
    return ChemNetStatistics.of(chemnet_activations(canonical, device, batch_size))


def frechet_chemnet_distance(
    generated: ChemNetStatistics | None, reference: ChemNetStatistics | None
) -> float:
    """FCD between two sets' ChemNet statistics; NaN when either has fewer than 2 molecules."""
    from fcd import calculate_frechet_distance

    if generated is None or reference is None:
        return math.nan
    return calculate_frechet_distance(
        reference.mean, reference.covariance, generated.mean, generated.covariance
    )


# ---------------------------------------------------------------------------------------------
# Statistics of molecule sets
# ---------------------------------------------------------------------------------------------


class _MoleculeSummary(NamedTuple):
    canonical: str
    fingerprint: np.ndarray
    fragments: list[str]
    scaffold: str | None
    passes_filters: bool | None


def _parse_reference(smiles: str) -> Chem.Mol:
    mol = get_mol(smiles)
    if mol is None:
        raise InputError(f"invalid reference SMILES {smiles!r}")
    return mol


def _fingerprint(smiles: str) -> np.ndarray:
    return morgan_fingerprints([_parse_reference(smiles)])[0]


def _summarise(mol: Chem.Mol, canonical: str, with_filters: bool) -> _MoleculeSummary:
    """What the set metrics need of one molecule (filters only ``with_filters``: they are slow)."""
    return _MoleculeSummary(
        canonical=canonical,
        fingerprint=morgan_fingerprints([mol])[0],
        fragments=fragments(mol),
        scaffold=scaffold(mol),
        passes_filters=passes_filters(mol) if with_filters else None,
    )


def _summarise_generated(smiles: object) -> _MoleculeSummary | None:
    """None for an invalid SMILES. As in MOSES, the molecule is read back from its canonical SMILES
    (None in the rare case RDKit cannot, where MOSES would fail)."""
    canonical = canonical_smiles(smiles)
    mol = get_mol(canonical)
    return None if mol is None else _summarise(mol, canonical, with_filters=True)


def _summarise_reference(smiles: str) -> _MoleculeSummary:
    mol = _parse_reference(smiles)
    return _summarise(mol, Chem.MolToSmiles(mol), with_filters=False)


def _fingerprint_matrix(summaries: Sequence[_MoleculeSummary]) -> np.ndarray:
    if not summaries:
        return np.zeros((0, FINGERPRINT_BITS), dtype=np.uint8)
    return np.stack([summary.fingerprint for summary in summaries])


def _fragment_counts(summaries: Iterable[_MoleculeSummary]) -> Counter[str]:
    return Counter(fragment for summary in summaries for fragment in summary.fragments)


def _scaffold_counts(summaries: Iterable[_MoleculeSummary]) -> Counter[str]:
    return Counter(summary.scaffold for summary in summaries if summary.scaffold is not None)


@dataclass(frozen=True)
class ReferenceStatistics:
    """What the metrics need of a reference set (MOSES' ``compute_intermediate_statistics``):
    fingerprints (0/1 uint8, one row per molecule), BRICS-fragment and scaffold counts, ChemNet
    statistics (None for fewer than 2 molecules) and the RDKit version that computed them."""

    fingerprints: np.ndarray
    fragments: Counter[str]
    scaffolds: Counter[str]
    chemnet: ChemNetStatistics | None
    rdkit_version: str = rdBase.rdkitVersion


def reference_statistics(
    smiles: Sequence[str], n_jobs: int = 1, device: str | torch.device = "cpu"
) -> ReferenceStatistics:
    """The statistics of a reference set of SMILES; compute them once to evaluate several samples.

    Raises:
        InputError: for an invalid reference SMILES.
    """
    summaries = _parallel_map(_summarise_reference, smiles, n_jobs)
    return ReferenceStatistics(
        fingerprints=_fingerprint_matrix(summaries),
        fragments=_fragment_counts(summaries),
        scaffolds=_scaffold_counts(summaries),
        chemnet=chemnet_statistics([summary.canonical for summary in summaries], device),
    )


def save_reference_statistics(statistics: ReferenceStatistics, path: str | os.PathLike, source: Path) -> None:
    """Write all but the fingerprints (large, and quick to recompute) to a compressed ``.npz``, with the
    sha256 of the ``source`` file they describe."""
    if statistics.chemnet is None:
        raise ValueError("a shipped reference set needs at least 2 molecules")
    metadata = {
        "source": source.name,
        "source_sha256": _sha256(source),
        "molecules": len(statistics.fingerprints),
        "rdkit_version": statistics.rdkit_version,
    }
    with atomic_output(path) as partial_path, open(partial_path, "wb") as file:
        np.savez_compressed(
            file,
            chemnet_mean=statistics.chemnet.mean,
            chemnet_covariance=statistics.chemnet.covariance,
            fragment_smiles=np.array(list(statistics.fragments)),
            fragment_counts=np.array(list(statistics.fragments.values()), dtype=np.int64),
            scaffold_smiles=np.array(list(statistics.scaffolds)),
            scaffold_counts=np.array(list(statistics.scaffolds.values()), dtype=np.int64),
            metadata=np.array(json.dumps(metadata)),
        )


def read_moses_smiles(path: Path) -> list[str]:
    """The ``SMILES`` column of a MOSES data file."""
    return pd.read_csv(path, usecols=["SMILES"], dtype=str)["SMILES"].tolist()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def default_cache_dir() -> Path:
    """``$HF_HOME/cmim_hf/moses`` (``HF_HOME`` defaults to ``~/.cache/huggingface``): where the
    fingerprints of the MOSES test sets and the canonical training set are kept after first use."""
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "cmim_hf" / "moses"


def _cache_path(cache_dir: str | os.PathLike | None, source: Path, kind: str) -> Path:
    """The cache file of ``kind`` derived from ``source``, per RDKit version and source content."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / f"rdkit-{rdBase.rdkitVersion}" / f"{source.name}.{_sha256(source)[:16]}.{kind}"


def _counter(names: np.ndarray, counts: np.ndarray) -> Counter[str]:
    return Counter(dict(zip(names.tolist(), counts.tolist())))


def moses_reference_statistics(
    name: str, cache_dir: str | os.PathLike | None = None, n_jobs: int = 1
) -> ReferenceStatistics:
    """The statistics of MOSES' ``"Test"`` or ``"TestSF"`` set: the shipped ones, with fingerprints
    computed on first use (about a CPU-minute) and cached in ``cache_dir``."""
    smiles_file, statistics_file = MOSES_REFERENCES[name]
    source = MOSES_DATA / smiles_file
    with np.load(MOSES_DATA / statistics_file) as shipped:
        fragment_counts = _counter(shipped["fragment_smiles"], shipped["fragment_counts"])
        scaffolds = _counter(shipped["scaffold_smiles"], shipped["scaffold_counts"])
        chemnet = ChemNetStatistics(shipped["chemnet_mean"], shipped["chemnet_covariance"])
        rdkit_version = json.loads(shipped["metadata"].item())["rdkit_version"]
    cached = _cache_path(cache_dir, source, f"morgan{FINGERPRINT_RADIUS}-{FINGERPRINT_BITS}.npy")
    if cached.is_file():
        fingerprints = np.unpackbits(np.load(cached), axis=1, count=FINGERPRINT_BITS)
    else:
        logger.info("computing the fingerprints of MOSES %s once, cached in %s", name, cached)
        fingerprints = np.stack(_parallel_map(_fingerprint, read_moses_smiles(source), n_jobs))
        with atomic_output(cached, wait=True) as partial_path, open(partial_path, "wb") as file:
            np.save(file, np.packbits(fingerprints, axis=1))
    return ReferenceStatistics(fingerprints, fragment_counts, scaffolds, chemnet, rdkit_version)


def moses_train_set(cache_dir: str | os.PathLike | None = None, n_jobs: int = 1) -> frozenset[str]:
    """The canonical SMILES of MOSES' 1.58M training molecules: the file's strings plus, where current
    RDKit writes a molecule differently, its canonical SMILES. Those are found on first use (a few
    CPU-minutes) and cached in ``cache_dir``."""
    source = MOSES_DATA / MOSES_TRAIN
    train = read_moses_smiles(source)
    cached = _cache_path(cache_dir, source, "canonical-differences.txt")
    if cached.is_file():
        rewritten = cached.read_text().split()
    else:
        logger.info("canonicalising the MOSES training set once, cached in %s", cached)
        canonical = _parallel_map(canonical_smiles, train, n_jobs)
        rewritten = sorted({new for old, new in zip(train, canonical) if new is not None and new != old})
        with atomic_output(cached, wait=True) as partial_path:  # another process may write it too
            partial_path.write_text("".join(f"{smiles}\n" for smiles in rewritten))
    return frozenset(train).union(rewritten)


# ---------------------------------------------------------------------------------------------
# All metrics
# ---------------------------------------------------------------------------------------------


def _unique_name(k: int) -> str:
    return f"Unique@{k // 1000}k" if k % 1000 == 0 else f"Unique@{k}"


def _resolve_reference(
    name: str,
    reference: Sequence[str] | ReferenceStatistics | None,
    n_jobs: int,
    device: str | torch.device,
    cache_dir: str | os.PathLike | None,
) -> ReferenceStatistics:
    if reference is None:
        return moses_reference_statistics(name, cache_dir, n_jobs)
    if isinstance(reference, ReferenceStatistics):
        return reference
    return reference_statistics(reference, n_jobs, device)


def moses_metrics(
    generated: Sequence[str],
    test: Sequence[str] | ReferenceStatistics | None = None,
    test_scaffolds: Sequence[str] | ReferenceStatistics | None = None,
    train: Collection[str] | None = None,
    unique_at: Sequence[int] = UNIQUE_AT,
    n_jobs: int = 1,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, float]:
    """The MOSES metrics of ``generated`` SMILES, in the order of MOSES' tables: Valid, Unique@k,
    FCD, SNN, Frag and Scaf against Test and TestSF, IntDiv, IntDiv2, Filters, Novelty. NaN where a
    metric is undefined (no valid molecule; FCD with fewer than 2).

    Args:
        generated: the SMILES of any generator, invalid ones included (they count against Valid).
        test, test_scaffolds: reference SMILES or their :func:`reference_statistics`; default MOSES'
            test and scaffold-test sets (shipped).
        train: training SMILES for Novelty (a ``frozenset`` is taken as canonical SMILES as it is);
            default MOSES' training set (shipped).
        unique_at: the k of Unique@k.
        n_jobs: processes for the per-molecule RDKit work.
        device: torch device of the fingerprint products and ChemNet.
        cache_dir: where derived MOSES data is cached (default :func:`default_cache_dir`).

    Raises:
        InputError: for an empty ``generated`` or an invalid reference SMILES.
    """
    if not generated:
        raise InputError("no SMILES to evaluate")
    summaries = [s for s in _parallel_map(_summarise_generated, generated, n_jobs) if s is not None]
    canonical = [summary.canonical for summary in summaries]
    metrics = {"Valid": len(summaries) / len(generated)}
    for k in unique_at:
        metrics[_unique_name(k)] = fraction_unique(canonical, k)
    fingerprints = _fingerprint_matrix(summaries)
    fragment_counts, scaffold_counts = _fragment_counts(summaries), _scaffold_counts(summaries)
    chemnet = chemnet_statistics(canonical, device)
    by_reference: dict[str, dict[str, float]] = {}
    for name, reference in (("Test", test), ("TestSF", test_scaffolds)):
        statistics = _resolve_reference(name, reference, n_jobs, device, cache_dir)
        by_reference[name] = {
            "FCD": frechet_chemnet_distance(chemnet, statistics.chemnet),
            "SNN": nearest_neighbour_similarity(fingerprints, statistics.fingerprints, device),
            "Frag": cosine_similarity(statistics.fragments, fragment_counts),
            "Scaf": cosine_similarity(statistics.scaffolds, scaffold_counts),
        }
    for metric in ("FCD", "SNN", "Frag", "Scaf"):
        for name, values in by_reference.items():
            metrics[f"{metric}/{name}"] = values[metric]
    metrics["IntDiv"] = internal_diversity(fingerprints, 1, device)
    metrics["IntDiv2"] = internal_diversity(fingerprints, 2, device)
    passes = [summary.passes_filters for summary in summaries]
    metrics["Filters"] = float(np.mean(passes)) if passes else math.nan
    if train is None:
        train = moses_train_set(cache_dir, n_jobs)
    elif not isinstance(train, frozenset):
        train = frozenset(valid_canonical_smiles(list(train), n_jobs))
    metrics["Novelty"] = novelty(canonical, train)
    return metrics
