"""The one SMILES-column rule (cmim_hf.io.smiles_column) and every reader that uses it: `cmim embed`
(file_smiles_column), `cmim pretrain` (load_smiles_corpus, and corpus_smiles_column when streaming)
and `cmim evaluate-samples` (read_smiles_file) accept the same column names."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cmim_hf.errors import InputError
from cmim_hf.io import ColumnError, file_smiles_column, read_smiles_file, smiles_column
from cmim_hf.training.corpus import CorpusError, load_smiles_corpus
from cmim_hf.training.streaming import corpus_smiles_column

MOLECULES = ["CCO", "c1ccccc1", "CC(=O)O"]


def test_the_rule() -> None:
    assert smiles_column(["id", "SMILES"], None, "t") == "SMILES"
    assert smiles_column(["id", "Smiles", "mol"], None, "t") == "Smiles"  # smiles before mol
    assert smiles_column(["id", "Mol"], None, "t") == "Mol"
    assert smiles_column(["id", "smi"], "smi", "t") == "smi"
    with pytest.raises(ColumnError, match="'x' not found in t"):
        smiles_column(["id", "smi"], "x", "t")
    with pytest.raises(
        ColumnError, match=r"cannot tell which column of t holds SMILES \(\['SMILES', 'smiles'\]\)"
    ):
        smiles_column(["SMILES", "smiles"], None, "t")
    with pytest.raises(ColumnError, match="t: no SMILES column") as caught:
        smiles_column(["id", "smi"], None, "t")
    assert isinstance(caught.value, InputError) and isinstance(caught.value, KeyError)
    assert str(caught.value).startswith("t: no SMILES column")  # not quoted like a KeyError


def _table(tmp_path: Path, column: str) -> Path:
    path = tmp_path / f"{column}.csv"
    pd.DataFrame({"id": range(len(MOLECULES)), column: MOLECULES}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("column", ["SMILES", "smiles", "Smiles", "mol", "MOL"])
def test_embed_pretrain_and_evaluate_samples_accept_the_same_columns(tmp_path: Path, column: str) -> None:
    path = _table(tmp_path, column)
    assert file_smiles_column(path, None) == column  # cmim embed
    assert corpus_smiles_column([path], None) == column  # cmim pretrain, streamed
    assert list(load_smiles_corpus(path)["smiles"]) == MOLECULES  # cmim pretrain
    assert read_smiles_file(path) == MOLECULES  # cmim evaluate-samples


def test_embed_pretrain_and_evaluate_samples_refuse_the_same_columns(tmp_path: Path) -> None:
    path = _table(tmp_path, "smi")
    with pytest.raises(ColumnError, match="no SMILES column"):
        file_smiles_column(path, None)
    with pytest.raises(CorpusError, match="no SMILES column"):
        corpus_smiles_column([path], None)
    with pytest.raises(CorpusError, match="no SMILES column"):
        load_smiles_corpus(path)
    with pytest.raises(ColumnError, match="no SMILES column"):
        read_smiles_file(path)


def test_streamed_shards_must_name_their_column_alike(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="name their SMILES column differently"):
        corpus_smiles_column([_table(tmp_path, "SMILES"), _table(tmp_path, "mol")], None)
