"""Tests of cmim_hf.evaluation.tasks: shipped files, built-in tasks, user tables and splits."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cmim_hf.chem import canonicalize, is_valid_smiles, validate_smiles
from cmim_hf.evaluation.tasks import (
    BUILTIN_TASKS,
    MOLECULENET_DIR,
    DataError,
    DataFileNotFoundError,
    InvalidLabelError,
    MissingColumnError,
    UnknownTaskError,
    load_table_task,
    load_task,
    make_split,
    random_split,
    scaffold_keys,
    scaffold_split,
    scaffold_split_random,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_SUMS = MOLECULENET_DIR.parent / "SHA256SUMS"
# A folder of the upstream copies the MoleculeNet files were taken from (its SHA256SUMS and
# moleculenet/, the GPL-3.0 BBBP and HIV included), for the provenance checks; they skip without it.
UPSTREAM_DATA = Path(os.environ.get("CMIM_UPSTREAM_DATA", REPO_ROOT / "no-upstream-data"))
UPSTREAM_SUMS = UPSTREAM_DATA / "SHA256SUMS"
NINE_FILES = sorted({spec.filename for spec in BUILTIN_TASKS.values()})

# name -> (rows, label columns, missing labels, RDKit-invalid rows) of the shipped files
EXPECTED = {
    "esol": (1128, 1, 0, 0),
    "freesolv": (642, 1, 0, 0),
    "lipo": (4200, 1, 0, 0),
    "bace": (1513, 1, 0, 0),
    "bace_pic50": (1513, 1, 0, 0),
    "bbbp": (2050, 1, 0, 11),
    "clintox": (1484, 2, 0, 4),
    "tox21": (7831, 12, 16026, 8),
    "hiv": (41127, 1, 0, 7),
    "sider": (1427, 27, 0, 0),
}
POSITIVES = {"bace": [691], "bbbp": [1567], "clintox": [1390, 112], "hiv": [1443]}
TOX21_POSITIVES = [309, 237, 768, 300, 793, 350, 186, 942, 264, 372, 918, 423]
TOX21_MISSING = [566, 1073, 1282, 2010, 1638, 876, 1381, 1999, 759, 1364, 2021, 1057]


def _sums(path: Path) -> dict[str, str]:
    """``relative path -> sha256`` from a ``sha256sum`` file."""
    lines = path.read_text().splitlines()
    return {
        name.strip(): digest for digest, name in (line.split(maxsplit=1) for line in lines if line.strip())
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_shipped_files_match_package_sha256sums() -> None:
    sums = _sums(PACKAGE_SUMS)
    assert len(NINE_FILES) == 9
    for filename in NINE_FILES:
        assert _sha256(MOLECULENET_DIR / filename) == sums[f"moleculenet/{filename}"], filename


# BBBP and HIV ship as the CC0 copies of OpenDrugAI/AttentiveFP (issue 16), not the GPL-3.0 copies
# shipped until 0.1.0: other bytes (renamed BBBP columns, CRLF / blank-line endings), the same rows.
CC0_REPLACED = {"BBBP.csv", "HIV.csv"}
# sha256 of the "<smiles>\t<label!r>\n" rows that load_task read from the previous (GPL-sourced)
# files, raw and RDKit-canonical ("<invalid>" for rows RDKit rejects); RDKit 2026.09.
PREVIOUS_ROW_DIGESTS = {
    "bbbp": (
        "69a283c16dc6e60cb13155af2306c65f8dc1099ea6de395c73253d867d3fe885",
        "fd8aa27d0fa5f1651084f9f9c1ec9a5de82e6f7390b93d9f6d1878f836aeb73d",
    ),
    "hiv": (
        "d7988c9446bd2405dd759593dd8d70b0ae545ecfe279488f065a2723d35afc95",
        "eb8318597c8b3724baf16edf0496e8b7398ce0e25b837106334b2d4cfbebfa0f",
    ),
}


def _row_digest(task, canonical: bool) -> str:
    digest = hashlib.sha256()
    for smiles, label in zip(task.smiles, task.labels[:, 0]):
        if canonical:
            smiles = canonicalize(smiles) if is_valid_smiles(smiles) else "<invalid>"
        digest.update(f"{smiles}\t{label!r}\n".encode())
    return digest.hexdigest()


@pytest.mark.skipif(not UPSTREAM_SUMS.is_file(), reason="no CMIM_UPSTREAM_DATA folder")
def test_shipped_files_match_upstream_sha256sums() -> None:
    sums = _sums(UPSTREAM_SUMS)
    for filename in sorted(set(NINE_FILES) - CC0_REPLACED):
        assert _sha256(MOLECULENET_DIR / filename) == sums[f"moleculenet/{filename}"], filename


@pytest.mark.parametrize("name", sorted(PREVIOUS_ROW_DIGESTS))
def test_cc0_copies_give_the_rows_of_the_previous_files(name: str) -> None:
    """Same SMILES strings and labels, in the same order, as the GPL-sourced files they replace, so
    no benchmark number changes."""
    assert _row_digest(load_task(name), canonical=False) == PREVIOUS_ROW_DIGESTS[name][0]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PREVIOUS_ROW_DIGESTS))
def test_cc0_copies_give_the_canonical_rows_of_the_previous_files(name: str) -> None:
    assert _row_digest(load_task(name), canonical=True) == PREVIOUS_ROW_DIGESTS[name][1]


@pytest.mark.skipif(not (UPSTREAM_DATA / "moleculenet").is_dir(), reason="no CMIM_UPSTREAM_DATA folder")
@pytest.mark.parametrize("name", sorted(PREVIOUS_ROW_DIGESTS))
def test_cc0_copies_equal_the_upstream_gpl_copies_row_by_row(name: str) -> None:
    spec = BUILTIN_TASKS[name]
    previous = pd.read_csv(UPSTREAM_DATA / "moleculenet" / spec.filename)
    task = load_task(name)
    assert task.smiles == previous["smiles"].tolist()
    previous_label = {"bbbp": "p_np", "hiv": "HIV_active"}[name]
    assert np.array_equal(task.labels[:, 0], previous[previous_label].to_numpy(dtype=float))


def test_no_gpl_text_is_shipped() -> None:
    for path in MOLECULENET_DIR.parent.rglob("*"):
        if path.is_file() and path.suffix in {".txt", ""}:
            assert "GNU GENERAL PUBLIC LICENSE" not in path.read_text(errors="replace"), path


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builtin_task_shapes_labels_and_invalid_rows(name: str) -> None:
    rows, n_labels, n_missing, n_invalid = EXPECTED[name]
    task = load_task(name)
    assert task.name == name
    assert len(task) == rows and task.labels.shape == (rows, n_labels)
    assert len(task.label_names) == n_labels
    assert int(np.isnan(task.labels).sum()) == n_missing
    if name != "hiv":  # 41k molecules: checked in the slow test below
        assert validate_smiles(task.smiles).n_invalid == n_invalid
    assert all(s == s.strip() for s in task.smiles)
    if task.task_type == "classification":
        assert set(np.unique(task.labels[~np.isnan(task.labels)])) <= {0.0, 1.0}
    if name in POSITIVES:
        assert np.nansum(task.labels, axis=0).astype(int).tolist() == POSITIVES[name]


@pytest.mark.slow
def test_hiv_invalid_rows() -> None:
    invalid = validate_smiles(load_task("hiv").smiles).invalid
    assert len(invalid) == EXPECTED["hiv"][3]
    assert all(row.reason for row in invalid)


def test_tox21_positives_and_missing_per_task() -> None:
    task = load_task("tox21")
    assert np.nansum(task.labels, axis=0).astype(int).tolist() == TOX21_POSITIVES
    assert np.isnan(task.labels).sum(axis=0).tolist() == TOX21_MISSING


def test_task_aliases_and_data_dir(tmp_path: Path) -> None:
    assert load_task("Lipophilicity").name == "lipo"
    (tmp_path / "SAMPL.csv").write_bytes((MOLECULENET_DIR / "SAMPL.csv").read_bytes())
    assert len(load_task("freesolv", data_dir=tmp_path)) == 642
    with pytest.raises(DataFileNotFoundError, match="esol|delaney"):
        load_task("esol", data_dir=tmp_path)


def test_unknown_task() -> None:
    with pytest.raises(UnknownTaskError, match="unknown task 'nope'"):
        load_task("nope")


@pytest.fixture
def table(tmp_path: Path) -> pd.DataFrame:
    return pd.DataFrame(
        {"SMILES": ["CCO", " c1ccccc1 ", "C1CC"], "y1": [1.0, 0.0, 1.0], "y2": [0.5, None, 2.0]}
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_load_table_task_csv_and_parquet(tmp_path: Path, table: pd.DataFrame, suffix: str) -> None:
    path = tmp_path / f"mine{suffix}"
    if suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path)
    task = load_table_task(path, "SMILES", ["y1", "y2"], "regression")
    assert task.name == "mine" and task.smiles == ["CCO", "c1ccccc1", "C1CC"]
    assert task.labels.shape == (3, 2) and np.isnan(task.labels[1, 1])


def test_load_table_task_errors(tmp_path: Path, table: pd.DataFrame) -> None:
    path = tmp_path / "t.csv"
    table.to_csv(path, index=False)
    with pytest.raises(DataFileNotFoundError, match="not found"):
        load_table_task(tmp_path / "absent.csv", "SMILES", ["y1"], "regression")
    with pytest.raises(MissingColumnError, match="nope"):
        load_table_task(path, "SMILES", ["nope"], "regression")
    with pytest.raises(MissingColumnError, match="smiles"):
        load_table_task(path, "smiles", ["y1"], "regression")
    with pytest.raises(InvalidLabelError, match="0/1"):
        load_table_task(path, "SMILES", ["y2"], "classification")
    with pytest.raises(DataError, match="task type"):
        load_table_task(path, "SMILES", ["y1"], "ordinal")
    assert load_table_task(path, "SMILES", ["y1"], "classification").task_type == "classification"


def test_subsample_is_seeded_and_keeps_file_rows() -> None:
    task = load_task("freesolv")
    a, b = task.subsample(50, seed=3), task.subsample(50, seed=3)
    assert a.smiles == b.smiles and len(a) == 50
    assert np.all(np.diff(a.row_ids) > 0)
    assert a.smiles[0] == task.smiles[a.row_ids[0]]


def _assert_partition(split, n: int) -> None:
    parts = [set(split.train.tolist()), set(split.valid.tolist()), set(split.test.tolist())]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert parts[0] | parts[1] | parts[2] == set(range(n))


def test_random_split_sizes_disjoint_deterministic() -> None:
    split = random_split(1000, seed=0)
    assert split.sizes() == (800, 100, 100)
    _assert_partition(split, 1000)
    np.testing.assert_array_equal(split.test, random_split(1000, seed=0).test)
    assert not np.array_equal(split.test, random_split(1000, seed=1).test)


@pytest.fixture(scope="module")
def esol_scaffolds() -> list[str]:
    return scaffold_keys(load_task("esol").smiles)


def _assert_groups_whole(split, keys: list[str]) -> None:
    part_of = {}
    for part, indices in (("train", split.train), ("valid", split.valid), ("test", split.test)):
        for i in indices:
            assert part_of.setdefault(keys[i], part) == part, f"scaffold {keys[i]!r} straddles parts"


def test_scaffold_split_deterministic_whole_groups_largest_in_train(esol_scaffolds: list[str]) -> None:
    n = len(esol_scaffolds)
    split = scaffold_split(esol_scaffolds)
    _assert_partition(split, n)
    _assert_groups_whole(split, esol_scaffolds)
    n_train, n_valid, n_test = split.sizes()
    assert n_train <= int(0.8 * n) and n_train + n_valid <= int(0.9 * n)
    assert abs(n_train - 0.8 * n) < 0.02 * n and abs(n_test - 0.1 * n) < 0.02 * n
    acyclic = [i for i, key in enumerate(esol_scaffolds) if key == ""]
    assert len(acyclic) == 317 and set(acyclic) <= set(split.train.tolist())
    np.testing.assert_array_equal(split.test, scaffold_split(esol_scaffolds).test)


def test_scaffold_split_ignores_row_order_and_keeps_both_classes() -> None:
    task = load_task("bace")  # the file is sorted by class
    keys = scaffold_keys(task.smiles)
    split = scaffold_split(keys)
    assert set(np.unique(task.labels[split.test, 0])) == {0.0, 1.0}
    order = np.random.default_rng(0).permutation(len(keys))
    shuffled = scaffold_split([keys[i] for i in order])
    assert sorted(order[shuffled.test].tolist()) == split.test.tolist()


def test_scaffold_split_random_seeded_whole_groups(esol_scaffolds: list[str]) -> None:
    a, b, c = (scaffold_split_random(esol_scaffolds, seed) for seed in (0, 0, 1))
    for split in (a, c):
        _assert_partition(split, len(esol_scaffolds))
        _assert_groups_whole(split, esol_scaffolds)
    np.testing.assert_array_equal(a.test, b.test)
    assert not np.array_equal(a.test, c.test)
    assert all(esol_scaffolds[i] != "" for i in np.concatenate([a.valid, a.test]))


def test_freesolv_scaffold_random_sizes() -> None:
    keys = scaffold_keys(load_task("freesolv").smiles)
    for seed in range(3):
        split = scaffold_split_random(keys, seed)
        _assert_groups_whole(split, keys)
        assert split.sizes()[2] >= 40  # a test part of reasonable size despite the 320-row group


def test_make_split_dispatch_and_errors() -> None:
    smiles = ["CCO", "c1ccccc1", "c1ccccc1C", "CCN", "C1CCCCC1"] * 4
    assert make_split("random", smiles, 0).sizes() == (16, 2, 2)
    _assert_groups_whole(make_split("scaffold", smiles, 0), scaffold_keys(smiles))
    _assert_groups_whole(make_split("scaffold_random", smiles, 2), scaffold_keys(smiles))
    with pytest.raises(DataError, match="unknown split"):
        make_split("stratified", smiles, 0)
    with pytest.raises(DataError, match="fractions"):
        make_split("random", smiles, 0, fractions=(0.5, 0.1, 0.1))
