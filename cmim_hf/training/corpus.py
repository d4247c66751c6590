"""Reading and validating SMILES corpora for pre-training.

``load_smiles_corpus`` reads a CSV / CSV.GZ / Parquet / SMI file with ``datasets``;
``encode_smiles_batch`` validates (RDKit), normalizes and tokenizes a batch of SMILES and gives the
reason for every molecule it cannot use; ``tokenize_corpus`` applies it to a whole corpus with a
batched ``map`` (the streaming reader, ``cmim_hf.training.streaming``, applies it on the fly).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import datasets
import pandas as pd

from cmim_hf import io
from cmim_hf.chem import InvalidSmilesError, normalize_smiles
from cmim_hf.errors import InputError
from cmim_hf.models.cmim.tokenization_cmim import CMIMTokenizer

SKIP_REPORT_FIELDS = ("row", "smiles", "reason")


class CorpusError(InputError):
    """A corpus file that cannot be read as SMILES (missing file, no SMILES column)."""


def encode_smiles_batch(
    smiles: list[str | None], tokenizer: CMIMTokenizer, normalization: str = "none"
) -> tuple[list[str], list[list[int]], list[str]]:
    """Validate, normalize (:func:`cmim_hf.chem.normalize_smiles`) and tokenize a batch of SMILES.

    Returns three lists as long as ``smiles``: the SMILES (normalized where usable, as given where
    not), the token ids (empty where not usable) and the reason a molecule is not usable ("" where it
    is: invalid SMILES, tokens outside the vocabulary, longer than ``tokenizer.model_max_length``).
    """
    max_length = tokenizer.model_max_length
    given = [(text or "").strip() for text in smiles]
    molecules, reasons = [], []
    for text in given:
        try:
            molecules.append(normalize_smiles(text, normalization))
            reasons.append("")
        except InvalidSmilesError as error:
            molecules.append("")
            reasons.append(str(error))
    # one tokenizer call per batch; one token past the limit reveals over-long molecules
    encoded = tokenizer(molecules, truncation=True, max_length=max_length + 1)["input_ids"]
    input_ids = []
    for index, (molecule, tokens) in enumerate(zip(molecules, encoded)):
        reason = reasons[index]
        if not reason and tokenizer.unk_token_id in tokens:
            unknown = " ".join(sorted(set(tokenizer.unknown_tokens(molecule))))
            reason = f"tokens outside the vocabulary: {unknown}"
        if not reason and len(tokens) > max_length:
            reason = f"longer than model_max_length={max_length} tokens"
        input_ids.append([] if reason else tokens)
        reasons[index] = reason
    kept = [molecule if not reason else text for molecule, reason, text in zip(molecules, reasons, given)]
    return kept, input_ids, reasons


def load_smiles_corpus(
    path: str | Path, smiles_column: str | None = None, limit: int | None = None
) -> datasets.Dataset:
    """A ``datasets.Dataset`` with one ``smiles`` column (plus ``row``, the 0-based data row).

    CSV, CSV.GZ and Parquet files need a header; the SMILES column is ``smiles_column`` or the first
    column :func:`cmim_hf.io.smiles_column` finds (as every command). SMI files hold one SMILES per line, optionally followed by a name.

    Raises:
        CorpusError: naming the file: missing, empty, unreadable (not UTF-8, truncated or corrupt
            compression), without a SMILES column or without molecules.
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"corpus file not found: {path}")
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # a reader's own error log would repeat ours
    try:
        dataset = _read_corpus(path)
    except Exception as error:  # datasets wraps the reader's error: report its root cause in one line
        cause = error
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__
        message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise CorpusError(f"{path} cannot be read as a SMILES corpus: {message}") from None
    finally:
        datasets.logging.set_verbosity(verbosity)
    if len(dataset) == 0:
        raise CorpusError(f"{path} holds no molecules")
    if path.suffix != ".smi":
        try:
            column = io.smiles_column(dataset.column_names, smiles_column, str(path))
        except io.ColumnError as error:
            raise CorpusError(str(error)) from None
        dataset = (
            dataset.select_columns([column]).rename_column(column, "smiles")
            if column != "smiles"
            else dataset.select_columns(["smiles"])
        )
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return dataset.add_column("row", list(range(len(dataset))))


def _read_corpus(path: Path) -> datasets.Dataset:
    """The file as read by ``datasets`` (SMI: a ``smiles`` column; CSV/Parquet: its own columns)."""
    if path.suffix == ".smi":
        dataset = datasets.load_dataset("text", data_files=str(path), split="train")
        return dataset.map(
            lambda batch: {"smiles": [line.split()[0] if line.split() else "" for line in batch["text"]]},
            batched=True,
            remove_columns=["text"],
        )
    if path.suffix in (".parquet", ".pq"):
        return datasets.load_dataset("parquet", data_files=str(path), split="train")
    if pd.read_csv(path, nrows=1).empty:  # a header and no rows: datasets would say "no data"
        raise ValueError("a header and no molecules")
    # a blank line is a row (an empty SMILES, skipped and reported), as in every other command
    return datasets.load_dataset("csv", data_files=str(path), split="train", skip_blank_lines=False)


def tokenize_corpus(
    dataset: datasets.Dataset,
    tokenizer: CMIMTokenizer,
    num_proc: int | None = None,
    normalization: str = "none",
) -> tuple[datasets.Dataset, list[dict[str, Any]]]:
    """Validate, normalize (:func:`cmim_hf.chem.normalize_smiles`) and tokenize; returns the usable
    molecules (``smiles`` as normalized, ``input_ids``) and a report of the skipped ones:
    ``{"row", "smiles", "reason"}`` for each, with the SMILES as given."""

    def encode(batch: dict[str, list]) -> dict[str, list]:
        smiles, input_ids, reasons = encode_smiles_batch(batch["smiles"], tokenizer, normalization)
        return {"smiles": smiles, "input_ids": input_ids, "skip_reason": reasons}

    encoded = dataset.map(
        encode, batched=True, batch_size=2000, num_proc=num_proc, desc="validating and tokenizing"
    )
    skipped_rows = encoded.filter(lambda batch: [bool(r) for r in batch["skip_reason"]], batched=True)
    report = [{"row": r["row"], "smiles": r["smiles"], "reason": r["skip_reason"]} for r in skipped_rows]
    usable = encoded.filter(lambda batch: [not r for r in batch["skip_reason"]], batched=True)
    return usable.remove_columns(["skip_reason"]), report


def write_skip_report(report: list[dict[str, Any]], path: Path) -> None:
    """Write the skipped molecules (``{"row", "smiles", "reason"}`` each) as CSV."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SKIP_REPORT_FIELDS)
        writer.writeheader()
        writer.writerows(report)
