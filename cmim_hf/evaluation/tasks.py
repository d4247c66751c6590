"""Labelled molecule datasets and train/valid/test splits.

* :data:`BUILTIN_TASKS`: the nine MoleculeNet files shipped in ``cmim_hf/package_data/moleculenet/``
  (ESOL, FreeSolv, Lipophilicity, BACE classification and pIC50 regression, BBBP, ClinTox,
  Tox21, HIV, SIDER), loaded by :func:`load_task`.
* :func:`load_table_task`: any CSV or Parquet file with a SMILES column and label column(s).
* :func:`make_split`: random, deterministic Bemis-Murcko scaffold, and seeded (balanced)
  scaffold splits, by default 80/10/10.

Labels are always a float array of shape (N, T) with NaN where a label is missing.
SMILES are kept as in the file except for surrounding whitespace, which is stripped
(ESOL has trailing spaces). Validation of SMILES is left to the caller
(:func:`cmim_hf.chem.validate_smiles`), so that every featurizer sees the same rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from cmim_hf.chem import murcko_scaffold
from cmim_hf.errors import InputError
from cmim_hf.io import TableNotFoundError, TableReadError, read_table

__all__ = [
    "DataError",
    "UnknownTaskError",
    "DataFileNotFoundError",
    "MissingColumnError",
    "InvalidLabelError",
    "TaskSpec",
    "MoleculeTask",
    "BUILTIN_TASKS",
    "MOLECULENET_DIR",
    "load_task",
    "load_table_task",
    "Split",
    "SPLIT_KINDS",
    "random_split",
    "scaffold_split",
    "scaffold_split_random",
    "scaffold_keys",
    "make_split",
]

TaskType = Literal["regression", "classification"]
TASK_TYPES: tuple[str, ...] = ("regression", "classification")
MOLECULENET_DIR = Path(__file__).resolve().parents[1] / "package_data" / "moleculenet"


class DataError(InputError):
    """A user-facing problem with a dataset or its description (one-line message)."""


class UnknownTaskError(DataError):
    """The task name is not a built-in task."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """The data file does not exist."""


class MissingColumnError(DataError):
    """A requested column is not in the data file."""


class InvalidLabelError(DataError):
    """Labels are not numeric, or classification labels are not 0/1."""


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's data lives and how to read it.

    Attributes:
        name: short task name (e.g. ``"esol"``).
        filename: file name inside the data directory, or a full path.
        smiles_column: column holding SMILES.
        label_columns: one column per (sub-)task.
        task_type: ``"regression"`` or ``"classification"`` (binary 0/1 labels).
    """

    name: str
    filename: str
    smiles_column: str
    label_columns: tuple[str, ...]
    task_type: TaskType


TOX21_LABELS = (
    "NR-AR", "NR-AR-LBD", "NR-AhR", "NR-Aromatase", "NR-ER", "NR-ER-LBD",
    "NR-PPAR-gamma", "SR-ARE", "SR-ATAD5", "SR-HSE", "SR-MMP", "SR-p53",
)  # fmt: skip
SIDER_LABELS = (
    "Hepatobiliary disorders", "Metabolism and nutrition disorders", "Product issues",
    "Eye disorders", "Investigations", "Musculoskeletal and connective tissue disorders",
    "Gastrointestinal disorders", "Social circumstances", "Immune system disorders",
    "Reproductive system and breast disorders",
    "Neoplasms benign, malignant and unspecified (incl cysts and polyps)",
    "General disorders and administration site conditions", "Endocrine disorders",
    "Surgical and medical procedures", "Vascular disorders",
    "Blood and lymphatic system disorders", "Skin and subcutaneous tissue disorders",
    "Congenital, familial and genetic disorders", "Infections and infestations",
    "Respiratory, thoracic and mediastinal disorders", "Psychiatric disorders",
    "Renal and urinary disorders", "Pregnancy, puerperium and perinatal conditions",
    "Ear and labyrinth disorders", "Cardiac disorders", "Nervous system disorders",
    "Injury, poisoning and procedural complications",
)  # fmt: skip

BUILTIN_TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            "esol",
            "delaney-processed.csv",
            "smiles",
            ("measured log solubility in mols per litre",),
            "regression",
        ),
        TaskSpec("freesolv", "SAMPL.csv", "smiles", ("expt",), "regression"),
        TaskSpec("lipo", "Lipophilicity.csv", "smiles", ("exp",), "regression"),
        TaskSpec("bace", "bace.csv", "mol", ("Class",), "classification"),
        TaskSpec("bace_pic50", "bace.csv", "mol", ("pIC50",), "regression"),
        TaskSpec("bbbp", "BBBP.csv", "smiles", ("BBBP",), "classification"),
        TaskSpec("clintox", "clintox.csv", "smiles", ("FDA_APPROVED", "CT_TOX"), "classification"),
        TaskSpec("tox21", "tox21.csv", "smiles", TOX21_LABELS, "classification"),
        TaskSpec("hiv", "HIV.csv", "smiles", ("HIV_active",), "classification"),
        TaskSpec("sider", "sider.csv", "smiles", SIDER_LABELS, "classification"),
    )  # fmt: skip
}
TASK_ALIASES = {"delaney": "esol", "sampl": "freesolv", "lipophilicity": "lipo"}


@dataclass
class MoleculeTask:
    """A labelled molecule dataset held in memory.

    Attributes:
        name: task name.
        task_type: ``"regression"`` or ``"classification"``.
        smiles: N SMILES strings (not validated).
        labels: float64 array (N, T); NaN marks a missing label.
        label_names: the T label column names.
        source: the file the rows came from.
        row_ids: each row's 0-based data-row number in that file (kept through subsampling).
    """

    name: str
    task_type: TaskType
    smiles: list[str]
    labels: np.ndarray
    label_names: list[str]
    source: str
    row_ids: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.row_ids is None:
            self.row_ids = np.arange(len(self.smiles))
        if self.labels.shape != (len(self.smiles), len(self.label_names)):
            raise ValueError(
                f"labels shape {self.labels.shape} != ({len(self.smiles)}, {len(self.label_names)})"
            )

    def __len__(self) -> int:
        return len(self.smiles)

    def select(self, indices: Sequence[int] | np.ndarray) -> MoleculeTask:
        """The rows at ``indices`` (in that order), as a new task."""
        idx = np.asarray(indices, dtype=np.int64)
        return MoleculeTask(
            name=self.name,
            task_type=self.task_type,
            smiles=[self.smiles[i] for i in idx],
            labels=self.labels[idx],
            label_names=list(self.label_names),
            source=self.source,
            row_ids=self.row_ids[idx],
        )

    def subsample(self, n: int, seed: int = 0) -> MoleculeTask:
        """A seeded random subset of ``n`` rows kept in file order (all rows if ``n >= len``)."""
        if n >= len(self):
            return self
        rng = np.random.default_rng(seed)
        return self.select(np.sort(rng.choice(len(self), size=n, replace=False)))


def _read_table(path: Path) -> pd.DataFrame:
    """:func:`cmim_hf.io.read_table`, its errors raised as this module's (same messages)."""
    try:
        return read_table(path)
    except TableNotFoundError as err:
        raise DataFileNotFoundError(str(err)) from None
    except TableReadError as err:
        raise DataError(str(err)) from None


def _labels_from_frame(frame: pd.DataFrame, columns: Sequence[str], task_type: str, path: Path) -> np.ndarray:
    """Numeric (N, T) label array; checks numeric type and 0/1 values for classification."""
    try:
        labels = frame[list(columns)].apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as err:
        raise InvalidLabelError(f"non-numeric labels in {path} columns {list(columns)}: {err}") from None
    if task_type == "classification":
        present = labels[~np.isnan(labels)]
        bad = np.setdiff1d(np.unique(present), [0.0, 1.0])
        if bad.size:
            raise InvalidLabelError(
                f"classification labels in {path} must be 0/1 (or empty), found {bad[:5].tolist()}"
            )
    return labels


def check_task_name(name: str) -> str:
    """``name`` if it is safe as one file or folder name inside an output folder.

    Raises:
        DataError: for an empty name, ``.``/``..``, or one with a path separator or NUL.
    """
    if not name.strip() or name in (".", "..") or any(c in name for c in ("/", "\\", "\0")):
        raise DataError(
            f"task name {name!r} cannot be used as a file name (no '/', '\\', '..' or empty names)"
        )
    return name


def load_table_task(
    path: str | Path,
    smiles_column: str,
    label_columns: Sequence[str],
    task_type: str,
    name: str | None = None,
) -> MoleculeTask:
    """Load any CSV/Parquet file as a task.

    Args:
        path: ``.csv`` (anything not ``.parquet``/``.pq`` is read as CSV) or Parquet file.
        smiles_column: name of the SMILES column.
        label_columns: one or more label columns (several = multi-task, NaN = missing).
        task_type: ``"regression"`` or ``"classification"`` (binary 0/1).
        name: task name; defaults to the file stem. Reports and saved models use it as a file or
            folder name, so it cannot hold a path (``/``, ``\\``, ``..``).

    Raises:
        DataFileNotFoundError, MissingColumnError, InvalidLabelError, DataError.
    """
    path = Path(path)
    name = check_task_name(name if name is not None else path.stem)
    if task_type not in TASK_TYPES:
        raise DataError(f"task type must be one of {TASK_TYPES}, got {task_type!r}")
    if not label_columns:
        raise DataError("at least one label column is required")
    frame = _read_table(path)
    missing = [c for c in (smiles_column, *label_columns) if c not in frame.columns]
    if missing:
        columns = [str(c) for c in frame.columns]
        shown = ", ".join(columns[:12]) + (f", ... ({len(columns)} columns)" if len(columns) > 12 else "")
        raise MissingColumnError(f"column(s) {missing} not in {path}; available: {shown}")
    smiles = [s.strip() if isinstance(s, str) else s for s in frame[smiles_column].tolist()]
    return MoleculeTask(
        name=name,
        task_type=task_type,  # type: ignore[arg-type]
        smiles=smiles,
        labels=_labels_from_frame(frame, label_columns, task_type, path),
        label_names=list(label_columns),
        source=str(path),
    )


def load_task(name: str, data_dir: str | Path | None = None) -> MoleculeTask:
    """Load a built-in task by name (see :data:`BUILTIN_TASKS`; a few aliases accepted).

    Args:
        name: e.g. ``"esol"``, ``"freesolv"``, ``"lipo"``, ``"bace"``, ``"bace_pic50"``,
            ``"bbbp"``, ``"clintox"``, ``"tox21"``, ``"hiv"``, ``"sider"`` (case-insensitive).
        data_dir: folder holding the MoleculeNet files; defaults to the copy shipped in the package.
            Each file keeps its upstream terms (``cmim_hf/package_data/README.md``); SIDER's own terms are
            often cited as non-commercial.

    Raises:
        UnknownTaskError: for an unknown name; DataFileNotFoundError if the file is absent.
    """
    key = name.strip().lower()
    key = TASK_ALIASES.get(key, key)
    if key not in BUILTIN_TASKS:
        raise UnknownTaskError(f"unknown task {name!r}; built-in tasks: {', '.join(BUILTIN_TASKS)}")
    spec = BUILTIN_TASKS[key]
    directory = Path(data_dir) if data_dir is not None else MOLECULENET_DIR
    return load_table_task(
        directory / spec.filename, spec.smiles_column, spec.label_columns, spec.task_type, name=spec.name
    )


# ----------------------------------------------------------------------------- splits

SPLIT_KINDS: tuple[str, ...] = ("random", "scaffold", "scaffold_random")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class Split:
    """Disjoint index arrays (positions in the list that was split)."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def sizes(self) -> tuple[int, int, int]:
        """(n_train, n_valid, n_test)."""
        return len(self.train), len(self.valid), len(self.test)


def _cutoffs(n: int, fractions: Sequence[float]) -> tuple[int, int]:
    """Train size and train+valid size for ``n`` items (DeepChem's ``int()`` rounding)."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise DataError(f"split fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    return int(fractions[0] * n), int((fractions[0] + fractions[1]) * n)


def _as_split(train: list[int], valid: list[int], test: list[int]) -> Split:
    return Split(*(np.asarray(sorted(part), dtype=np.int64) for part in (train, valid, test)))


def random_split(n: int, seed: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> Split:
    """Seeded random split of ``range(n)``."""
    train_end, valid_end = _cutoffs(n, fractions)
    order = np.random.default_rng(seed).permutation(n).tolist()
    return _as_split(order[:train_end], order[train_end:valid_end], order[valid_end:])


def scaffold_keys(smiles: Sequence[str]) -> list[str]:
    """Bemis-Murcko scaffold of each SMILES (``""`` for acyclic); SMILES must be valid."""
    return [murcko_scaffold(s) for s in smiles]


def _scaffold_groups(scaffolds: Sequence[str]) -> list[list[int]]:
    """Row indices grouped by scaffold key, groups ordered by key (not by file order).

    Ordering by key keeps the splits independent of row order: MoleculeNet files are often
    sorted by label (BACE, BBBP), and a file-order tie-break between equal-sized groups then
    fills the test part with a single class.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(scaffolds):
        groups[key].append(i)
    return [groups[key] for key in sorted(groups)]


def _fill_greedily(groups: Sequence[list[int]], n: int, fractions: Sequence[float]) -> Split:
    """Put whole groups, in the given order, into train until full, then valid, then test."""
    train_end, valid_end = _cutoffs(n, fractions)
    train: list[int] = []
    valid: list[int] = []
    test: list[int] = []
    for group in groups:
        if len(train) + len(group) <= train_end:
            train.extend(group)
        elif len(train) + len(valid) + len(group) <= valid_end:
            valid.extend(group)
        else:
            test.extend(group)
    return _as_split(train, valid, test)


def scaffold_split(scaffolds: Sequence[str], fractions: Sequence[float] = DEFAULT_FRACTIONS) -> Split:
    """Deterministic Bemis-Murcko scaffold split (DeepChem's rule).

    Args:
        scaffolds: one scaffold key per molecule, from :func:`scaffold_keys` (not SMILES).
        fractions: train/valid/test fractions.

    Scaffold groups are sorted largest first (ties: by scaffold SMILES, so the split does not
    depend on row order) and assigned whole to train while it fits, then to valid, then to
    test. (DeepChem breaks ties by row index, which on label-sorted files such as BACE and
    BBBP leaves a single class in the test part.)
    """
    groups = sorted(_scaffold_groups(scaffolds), key=len, reverse=True)
    return _fill_greedily(groups, len(scaffolds), fractions)


def scaffold_split_random(
    scaffolds: Sequence[str], seed: int, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> Split:
    """Seeded balanced scaffold split (chemprop's ``scaffold_balanced``).

    Args:
        scaffolds: one scaffold key per molecule, from :func:`scaffold_keys` (not SMILES).
        seed: seed of the group order.
        fractions: train/valid/test fractions.

    Groups larger than half the valid or test size are placed first, in random order, and
    the other groups follow in random order; whole groups then fill train, valid and test
    greedily. Big groups (e.g. FreeSolv's 320 acyclic molecules) thus land in train, while
    the seed varies which scaffolds are held out.
    """
    n = len(scaffolds)
    half_limit = min(fractions[1], fractions[2]) * n / 2
    groups = _scaffold_groups(scaffolds)
    rng = np.random.default_rng(seed)
    big = [g for g in groups if len(g) > half_limit]
    small = [g for g in groups if len(g) <= half_limit]
    ordered = [big[i] for i in rng.permutation(len(big))] + [small[i] for i in rng.permutation(len(small))]
    return _fill_greedily(ordered, n, fractions)


def make_split(
    kind: str,
    smiles: Sequence[str],
    seed: int,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    scaffolds: Sequence[str] | None = None,
) -> Split:
    """Split valid ``smiles`` by ``kind`` in :data:`SPLIT_KINDS` (``"scaffold"`` ignores ``seed``).

    Args:
        kind: ``"random"``, ``"scaffold"`` or ``"scaffold_random"``.
        smiles: valid SMILES (positions in this list are what the split returns).
        seed: split seed.
        fractions: train/valid/test fractions.
        scaffolds: precomputed :func:`scaffold_keys` of ``smiles`` (computed when omitted).
    """
    if kind not in SPLIT_KINDS:
        raise DataError(f"unknown split {kind!r}; choose one of {', '.join(SPLIT_KINDS)}")
    if kind == "random":
        return random_split(len(smiles), seed, fractions)
    keys = scaffold_keys(smiles) if scaffolds is None else scaffolds
    if len(keys) != len(smiles):
        raise ValueError(f"{len(keys)} scaffolds for {len(smiles)} SMILES")
    if kind == "scaffold":
        return scaffold_split(keys, fractions)
    return scaffold_split_random(keys, seed, fractions)
