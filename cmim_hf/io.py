"""Reading the user's tables: CSV (optionally gzipped) and Parquet files, whole (:func:`read_table`)
or streamed in chunks (:func:`iter_file_tables`), and the one rule every command uses to find the
SMILES column (:func:`smiles_column`).
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cmim_hf.errors import InputError, one_line

FILE_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".parquet", ".pq")
CSV_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz")
TEXT_SUFFIXES: tuple[str, ...] = (".smi", ".txt", ".smi.gz", ".txt.gz")
"""One SMILES per line (its first field; a first line ``smiles`` in any case is a header)."""
SMILES_COLUMN_NAMES: tuple[str, ...] = ("smiles", "mol")
"""Column names taken as the SMILES column when none is given, in this order, in any case."""


class ColumnError(InputError, KeyError):
    """The column asked for, or a SMILES column, is not in a table (the message names the table)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class TableReadError(InputError):
    """A table file that cannot be read: missing, empty, damaged or not in its format (the message
    names the file)."""


class TableNotFoundError(TableReadError, FileNotFoundError):
    """The table file does not exist."""


def smiles_column(columns: Sequence[str], smiles_col: str | None, source: str) -> str:
    """The SMILES column of a table with ``columns``: ``smiles_col`` when given, else the one column
    named ``smiles`` in any case (SMILES, Smiles ...), else the one named ``mol`` in any case.

    Raises:
        ColumnError: ``smiles_col`` is not a column, or no single column has one of those names.
    """
    columns = [str(c) for c in columns]
    if smiles_col is not None:
        if smiles_col not in columns:
            raise ColumnError(f"column {smiles_col!r} not found in {source}; columns: {columns}")
        return smiles_col
    for name in SMILES_COLUMN_NAMES:
        matches = [c for c in columns if c.lower() == name]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise ColumnError(
                f"cannot tell which column of {source} holds SMILES ({matches}): name it with smiles_col (--smiles-col)"
            )
    raise ColumnError(
        f"{source}: no SMILES column (looked for a column named {' or '.join(SMILES_COLUMN_NAMES)} in any "
        f"case); columns are {columns}: name it with smiles_col (--smiles-col)"
    )


def is_file_input(inputs: Any) -> bool:
    """Whether `inputs` names a CSV/Parquet file (a Path, or a str ending in a known suffix)."""
    if isinstance(inputs, os.PathLike):
        return True
    return isinstance(inputs, str) and inputs.lower().endswith(FILE_SUFFIXES)


def is_parquet(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith((".parquet", ".pq"))


CSV_CELLS_AS_WRITTEN: dict[str, Any] = {"dtype": object, "keep_default_na": False, "skip_blank_lines": False}
"""``pandas.read_csv`` options for reading CSV cells as written: strings, "" for an empty cell (not
NaN), and a blank line a row of its own (an empty SMILES, flagged), so every data line keeps its index."""

# What a damaged or mis-encoded input file raises part-way through (gzip, zlib, CSV, Parquet).
READ_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    EOFError,
    zlib.error,
    UnicodeDecodeError,
    pd.errors.ParserError,
    pa.ArrowException,
)


def file_smiles_column(path: str | os.PathLike, smiles_col: str | None) -> str:
    """Check that `path` is a readable CSV/Parquet file and return its SMILES column's name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    if not is_parquet(path) and not path.name.lower().endswith((".csv", ".csv.gz")):
        raise InputError(f"unsupported input file {path}: expected one of {FILE_SUFFIXES}")
    return smiles_column(list(file_schema(path).names), smiles_col, str(path))


def file_schema(path: str | os.PathLike) -> pa.Schema:
    """Column names and types of a Parquet file; of a CSV file, its header's names as strings.

    Raises:
        InputError: the file is damaged or not in its format, naming it.
    """
    try:
        if is_parquet(path):
            return pq.ParquetFile(path).schema_arrow
        return pa.schema([(str(name), pa.string()) for name in pd.read_csv(path, nrows=0).columns])
    except READ_ERRORS as err:
        raise InputError(f"cannot read {path}: {one_line(err)}") from err


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A whole CSV (optionally gzipped; anything not ``.parquet`` / ``.pq`` is read as CSV) or
    Parquet file, with pandas' type inference.

    Raises:
        TableNotFoundError: ``path`` is not a file.
        TableReadError: the file is empty, not UTF-8, truncated or otherwise not a table.
    """
    path = Path(path)
    if not path.is_file():
        raise TableNotFoundError(f"data file not found: {path}")
    try:
        if is_parquet(path):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (ValueError, OSError, EOFError) as err:  # empty, not UTF-8, truncated or corrupt compression
        raise TableReadError(f"{path} cannot be read as a table: {one_line(err)}") from None


def iter_file_tables(
    path: str | os.PathLike, smiles_col: str | None, chunk_size: int, columns: Sequence[str] | None = None
) -> Iterator[pa.Table]:
    """Stream ``columns`` (default: all) of a CSV (optionally gzipped) or Parquet file in chunks of
    ``chunk_size`` rows. CSV cells come back as strings exactly as written (the types of a stream
    cannot be inferred once for all chunks); Parquet keeps its types.

    Raises:
        InputError: the file is damaged or not in its format, naming it and the first unread row.
    """
    column = file_smiles_column(path, smiles_col)
    rows = 0
    try:
        if is_parquet(path):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_size, columns=columns):
                rows += batch.num_rows
                yield pa.Table.from_batches([batch])
            return
        frames = pd.read_csv(path, usecols=columns, chunksize=chunk_size, **CSV_CELLS_AS_WRITTEN)
        for frame in frames:
            frame[column] = frame[column].replace("", None)
            rows += len(frame)
            yield pa.Table.from_pandas(frame, preserve_index=False).cast(
                pa.schema([(name, pa.string()) for name in frame.columns])
            )
    except READ_ERRORS as err:
        raise InputError(f"cannot read {path} after row {rows}: {one_line(err)}") from err


def iter_file_chunks(path: str | os.PathLike, smiles_col: str | None, chunk_size: int) -> Iterator[list[Any]]:
    """Stream the SMILES column of a CSV (optionally gzipped) or Parquet file in chunks."""
    column = file_smiles_column(path, smiles_col)
    for table in iter_file_tables(path, column, chunk_size, columns=[column]):
        yield table.column(column).to_pylist()


def iter_input_chunks(inputs: Any, smiles_col: str | None, chunk_size: int) -> Iterator[list[Any]]:
    """Chunks of raw SMILES values from a file path, a DataFrame/Dataset, a column or any iterable."""
    if is_file_input(inputs):
        yield from iter_file_chunks(inputs, smiles_col, chunk_size)
        return
    if isinstance(inputs, str):
        inputs = [inputs]
    elif isinstance(inputs, pd.DataFrame):
        inputs = inputs[smiles_column(list(inputs.columns), smiles_col, "the DataFrame")]
    elif hasattr(inputs, "column_names") and hasattr(inputs, "map"):  # datasets.Dataset
        inputs = inputs[smiles_column(inputs.column_names, smiles_col, "the Dataset")]
    iterator = iter(inputs.tolist() if isinstance(inputs, (pd.Series, np.ndarray)) else inputs)
    while chunk := list(islice(iterator, chunk_size)):
        yield chunk


def count_rows(inputs: Any) -> int | None:
    """Number of rows if cheaply known (sized inputs, Parquet metadata), else None."""
    if is_file_input(inputs):
        return pq.ParquetFile(inputs).metadata.num_rows if is_parquet(inputs) else None
    if isinstance(inputs, str):
        return 1
    return len(inputs) if hasattr(inputs, "__len__") else None


def read_smiles_file(path: str | os.PathLike, smiles_col: str | None = None) -> list[str]:
    """All the SMILES of a CSV column (found by :func:`smiles_column`) or of a one-per-line file
    (:data:`TEXT_SUFFIXES`), empty cells and lines kept as "".

    Raises:
        FileNotFoundError: no such file.
        InputError: an unsupported suffix, an unreadable file, a missing column, a column given for
            a text file, no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    name = path.name.lower()
    if not name.endswith(CSV_SUFFIXES + TEXT_SUFFIXES):
        raise InputError(f"unsupported file {path}: expected {', '.join(CSV_SUFFIXES + TEXT_SUFFIXES)}")
    if smiles_col is not None and not name.endswith(CSV_SUFFIXES):
        raise InputError(f"--smiles-col names a CSV column, and {path} is a one-SMILES-per-line file")
    try:
        smiles = _read_csv_column(path, smiles_col) if name.endswith(CSV_SUFFIXES) else _read_text_lines(path)
    except (*READ_ERRORS, pd.errors.EmptyDataError) as error:
        raise InputError(f"cannot read {path}: {one_line(error)}") from error
    if not smiles:
        raise InputError(f"no SMILES in {path}")
    return smiles


def _read_csv_column(path: Path, smiles_col: str | None) -> list[str]:
    column = smiles_column(list(pd.read_csv(path, nrows=0).columns), smiles_col, str(path))
    return pd.read_csv(path, usecols=[column], dtype=str, keep_default_na=False)[column].tolist()


def _read_text_lines(path: Path) -> list[str]:
    """The first field of every line; a first line ``smiles`` (any case) is a header."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as file:
        smiles = [(line.split() or [""])[0] for line in file.read().splitlines()]
    return smiles[1:] if smiles and smiles[0].lower() == "smiles" else smiles
