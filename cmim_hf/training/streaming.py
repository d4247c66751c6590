"""Streaming pre-training data (``cmim pretrain --streaming``): corpora of any size.

The corpus is read through ``datasets`` streaming (an ``IterableDataset``, one shard after the
other) and validated and tokenized on the fly, a buffer at a time. Each buffer is shuffled and cut
into batches (a shuffle buffer), or, with ``group_by_length``, sorted by length, cut into batches and
the batches shuffled, so batches group molecules of similar length (less padding; it cost quality in
our pilots, ``model_cards/latent_pilots``). Memory holds one buffer, whatever the corpus size, and
the first step waits for one buffer only.

Invalid molecules are appended to the skip report as they are met. The position in the stream is
saved with every checkpoint (``streaming_state.json``): ``--resume`` reopens the stream where the
buffer of the next unread molecule starts (``datasets`` skips to it without parsing) and rebuilds
that buffer identically, so the data order is the one an uninterrupted run sees.
"""

from __future__ import annotations

import csv
import glob
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from transformers import TrainerCallback

from cmim_hf import io
from cmim_hf.models.cmim.tokenization_cmim import CMIMTokenizer
from cmim_hf.training.corpus import SKIP_REPORT_FIELDS, CorpusError, encode_smiles_batch

STATE_FILE = "streaming_state.json"
_FORMATS = {".csv": "csv", ".gz": "csv", ".parquet": "parquet", ".pq": "parquet", ".smi": "text"}


def corpus_shards(pattern: str) -> list[Path]:
    """The files a ``--train-file`` names: one path, or a glob pattern of shards (sorted by name).

    Raises:
        CorpusError: nothing matches, or the shards mix formats.
    """
    files = (
        [Path(name) for name in sorted(glob.glob(pattern))] if glob.has_magic(pattern) else [Path(pattern)]
    )
    files = [file for file in files if file.is_file()]
    if not files:
        raise CorpusError(f"corpus file not found: {pattern}")
    formats = {_FORMATS.get(file.suffix) for file in files}
    if None in formats or len(formats) > 1:
        raise CorpusError(
            f"{pattern}: shards must all be .csv, .csv.gz, .parquet or .smi, found "
            f"{sorted({file.suffix for file in files})}"
        )
    return files


def corpus_smiles_column(files: list[Path], smiles_column: str | None) -> str:
    """The SMILES column of CSV/Parquet shards (:func:`cmim_hf.io.smiles_column`), the same in
    every shard's header."""
    found: dict[str, Path] = {}
    for file in files:
        try:
            if file.suffix in (".parquet", ".pq"):
                columns = pq.read_schema(file).names
            else:
                columns = list(pd.read_csv(file, nrows=0).columns)
        except Exception as error:  # noqa: BLE001 - any reader error means the shard cannot be read
            raise CorpusError(f"{file} cannot be read as a SMILES corpus: {error}") from None
        try:
            found.setdefault(io.smiles_column(columns, smiles_column, str(file)), file)
        except io.ColumnError as error:
            raise CorpusError(str(error)) from None
    if len(found) > 1:
        shown = "; ".join(f"{name!r} in {file}" for name, file in found.items())
        raise CorpusError(f"the shards name their SMILES column differently ({shown}): give --smiles-col")
    return next(iter(found))


class StreamingSmilesCorpus(torch.utils.data.IterableDataset):
    """Usable molecules of a SMILES corpus, as ``{"input_ids": [...]}``, streamed in length-grouped
    batches; an endless stream that starts a new pass over the shards when one ends.

    Args:
        files: the shards, read in this order (see :func:`corpus_shards`).
        tokenizer: validates and tokenizes (its ``model_max_length`` is the length limit).
        batch_size: molecules per batch; the buffer is cut into batches of this size.
        min_molecules: a pass with fewer usable molecules than this raises ``CorpusError``.
        bucket_batches: batches per buffer (more: a wider shuffle or less padding, more memory).
        group_by_length: sort each buffer by length before cutting it into batches.
        normalization: SMILES normalization (:func:`cmim_hf.chem.normalize_smiles`).
        max_rows: read only the first N rows of each pass.
        seed: seed of the batch order within each buffer.
        skip_report: CSV the skipped rows (``row, smiles, reason``; ``row`` counts across shards)
            are appended to; ``None`` writes none (processes other than the main one).
    """

    def __init__(
        self,
        files: list[Path],
        tokenizer: CMIMTokenizer,
        batch_size: int,
        *,
        min_molecules: int = 1,
        bucket_batches: int = 50,
        group_by_length: bool = False,
        normalization: str = "none",
        smiles_column: str | None = None,
        max_rows: int | None = None,
        seed: int = 0,
        skip_report: Path | None = None,
    ) -> None:
        self.files = files
        self.text_format = _FORMATS[files[0].suffix]
        self.column = "text" if self.text_format == "text" else corpus_smiles_column(files, smiles_column)
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.min_molecules = min_molecules
        self.buffer_size = batch_size * bucket_batches
        self.group_by_length = group_by_length
        self.normalization = normalization
        self.max_rows = max_rows
        self.seed = seed
        self.skip_report = skip_report
        self._last_reported_row = max(reported_rows(skip_report), default=-1)
        self._buffer_starts: list[dict[str, Any]] = []
        self._resume_at: dict[str, Any] | None = None

    # --- reading --------------------------------------------------------------------------------

    def _open(self) -> datasets.IterableDataset:
        # a blank CSV line is a row (an empty SMILES, skipped and reported), as in every other command
        options = {"skip_blank_lines": False} if self.text_format == "csv" else {}
        stream = datasets.load_dataset(
            self.text_format,
            data_files=[str(f) for f in self.files],
            split="train",
            streaming=True,
            **options,
        )
        return stream.select_columns([self.column])

    def _smiles(self, value: Any) -> str | None:
        if self.text_format == "text":  # a .smi line: SMILES, optionally followed by a name
            fields = (value or "").split()
            return fields[0] if fields else ""
        return value

    def _next_rows(self, rows: Iterator[dict[str, Any]], row: int, n: int) -> list[str | None]:
        """Up to ``n`` SMILES from row ``row`` on; empty at the end of the pass."""
        limit = n if self.max_rows is None else min(n, self.max_rows - row)
        return [self._smiles(record[self.column]) for _, record in zip(range(max(limit, 0)), rows)]

    def _read_buffer(
        self, rows: Iterator[dict[str, Any]], first_row: int
    ) -> tuple[list[list[int]], int, bool]:
        """Reads rows until the buffer holds exactly ``buffer_size`` usable molecules (whole batches)
        or the pass ends; returns their token ids, the next row number and whether the pass ended."""
        buffer: list[list[int]] = []
        row = first_row
        while len(buffer) < self.buffer_size:
            chunk = self._next_rows(rows, row, self.buffer_size - len(buffer))
            if not chunk:
                return buffer, row, True
            smiles, input_ids, reasons = encode_smiles_batch(chunk, self.tokenizer, self.normalization)
            self._report_skipped(row, smiles, reasons)
            buffer.extend(ids for ids, reason in zip(input_ids, reasons) if not reason)
            row += len(chunk)
        return buffer, row, False

    def _report_skipped(self, first_row: int, smiles: list[str], reasons: list[str]) -> None:
        skipped = [
            {"row": first_row + offset, "smiles": text, "reason": reason}
            for offset, (text, reason) in enumerate(zip(smiles, reasons))
            if reason and first_row + offset > self._last_reported_row
        ]
        if not skipped or self.skip_report is None:
            return
        new_file = not self.skip_report.exists()
        with open(self.skip_report, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=SKIP_REPORT_FIELDS)
            if new_file:
                writer.writeheader()
            writer.writerows(skipped)
        self._last_reported_row = skipped[-1]["row"]

    def _batched_order(self, buffer: list[list[int]], pass_index: int, buffer_index: int) -> list[list[int]]:
        """The buffer in training order, the same for the same (seed, pass, buffer): shuffled, or
        with ``group_by_length`` sorted by length, cut into batches and the batches shuffled (a
        partial batch, only at the end of a pass, stays last)."""
        rng = np.random.default_rng([self.seed, pass_index, buffer_index])
        if not self.group_by_length:
            return [buffer[index] for index in rng.permutation(len(buffer))]
        by_length = sorted(buffer, key=len)
        full = len(by_length) // self.batch_size * self.batch_size
        batches = [by_length[start : start + self.batch_size] for start in range(0, full, self.batch_size)]
        order = rng.permutation(len(batches))
        return [ids for index in order for ids in batches[index]] + by_length[full:]  # partial: end of a pass

    def __iter__(self) -> Iterator[dict[str, list[int]]]:
        resume, self._resume_at = self._resume_at, None
        start = resume["buffer"] if resume else {"pass": 0, "buffer": 0, "first_row": 0, "emitted_before": 0}
        skip = resume["skip"] if resume else 0
        pass_index, emitted = start["pass"], start["emitted_before"]
        while True:
            stream = self._open()
            if start.get("source_state") is not None:
                stream.load_state_dict(start["source_state"])
            rows, row, buffer_index = iter(stream), start["first_row"], start["buffer"]
            source_state = start.get("source_state")
            usable_in_pass, ended = 0, False
            while not ended:
                buffer_start = {
                    "pass": pass_index,
                    "buffer": buffer_index,
                    "first_row": row,
                    "emitted_before": emitted,
                    "source_state": source_state,
                }
                buffer, row, ended = self._read_buffer(rows, row)
                self._buffer_starts.append(buffer_start)
                usable_in_pass += len(buffer)
                for input_ids in self._batched_order(buffer, pass_index, buffer_index)[skip:]:
                    emitted += 1
                    yield {"input_ids": input_ids}
                skip, buffer_index, source_state = 0, buffer_index + 1, stream.state_dict()
            if start["first_row"] == 0 and usable_in_pass < self.min_molecules:
                raise CorpusError(
                    f"{self.files[0]}: {usable_in_pass} usable molecules in the corpus "
                    f"({len(reported_rows(self.skip_report))} skipped"
                    f"{', see ' + str(self.skip_report) if self.skip_report else ''}), fewer than one "
                    f"batch of {self.min_molecules}"
                )
            pass_index += 1
            start = {"pass": pass_index, "buffer": 0, "first_row": 0, "emitted_before": emitted}

    # --- position --------------------------------------------------------------------------------

    def state_after(self, consumed: int) -> dict[str, Any]:
        """The stream position after ``consumed`` molecules have been trained on: where their buffer
        starts, and how many of its molecules were used. JSON-serialisable."""
        index = next(
            (
                i
                for i in range(len(self._buffer_starts) - 1, -1, -1)
                if self._buffer_starts[i]["emitted_before"] <= consumed
            ),
            None,
        )
        if index is None:
            raise ValueError(f"no buffer read yet holds molecule {consumed}")
        buffer = self._buffer_starts[index]
        del self._buffer_starts[:index]  # positions are only asked for in increasing order: keep memory flat
        return {"consumed": consumed, "buffer": buffer, "skip": consumed - buffer["emitted_before"]}

    def resume_from(self, state: dict[str, Any]) -> None:
        """Start the next iteration at a position from :meth:`state_after`."""
        self._resume_at = state

    def first_usable_smiles(self, n: int) -> list[str]:
        """The first ``n`` usable molecules of the corpus (normalized SMILES), read afresh."""
        found: list[str] = []
        rows, row = iter(self._open()), 0
        while len(found) < n:
            chunk = self._next_rows(rows, row, min(n - len(found), 1000))
            if not chunk:
                break
            smiles, _, reasons = encode_smiles_batch(chunk, self.tokenizer, self.normalization)
            found.extend(text for text, reason in zip(smiles, reasons) if not reason)
            row += len(chunk)
        return found[:n]


class StreamPositionCallback(TrainerCallback):
    """Saves the stream position with every checkpoint (``streaming_state.json``), on the main process."""

    def __init__(self, corpus: StreamingSmilesCorpus, molecules_per_step: int) -> None:
        self.corpus = corpus
        self.molecules_per_step = molecules_per_step

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            position = self.corpus.state_after(state.global_step * self.molecules_per_step)
            (checkpoint / STATE_FILE).write_text(json.dumps(position, indent=1))


def reported_rows(skip_report: Path | None) -> list[int]:
    """The row numbers in a skip report (none if there is no report yet)."""
    if skip_report is None or not skip_report.exists():
        return []
    return pd.read_csv(skip_report, usecols=["row"])["row"].astype(int).tolist()


def load_stream_position(checkpoint: Path) -> dict[str, Any]:
    """The position saved with a checkpoint of a streaming run."""
    path = checkpoint / STATE_FILE
    if not path.is_file():
        raise CorpusError(f"{checkpoint} has no {STATE_FILE}: it was not written by a --streaming run")
    return json.loads(path.read_text())
