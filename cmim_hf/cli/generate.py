"""What the generation commands share: ``cmim sample``, ``cmim reconstruct``, ``cmim optimize``,
``cmim interpolate`` and ``cmim fit-prior`` (one module each in this package).

Their decoding options (``--model``, ``--num-beams``, ``--max-length``, ``--constrained`` for
grammar-constrained decoding, ...), the output rule (a ``.csv`` or ``.json`` file, an optional
``--image``), reading and screening the input molecules, loading the checkpoint, and the record
writer: outputs are CSV (one row per molecule) or JSON (``{"summary": ..., "molecules": [...]}``),
written one batch at a time through a temporary file moved into place when complete, so that the
memory of `cmim sample`, `cmim interpolate` and `cmim optimize` does not grow with ``-n``,
``--steps`` or ``--iterations`` (benchmarks/peak_rss.py measures it). A one-line summary goes to
stderr. Input files are CSV (optionally gzipped) or Parquet with a SMILES column; every input row
is kept, invalid ones flagged with RDKit's reason.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmim_hf import chem, generation
from cmim_hf.cli import options
from cmim_hf.drawing import IMAGE_SUFFIXES, draw_result, save_image
from cmim_hf.embedding.embedder import embedding_device
from cmim_hf.errors import UsageError
from cmim_hf.io import file_smiles_column, iter_file_chunks
from cmim_hf.outputs import atomic_output, check_output_path
from cmim_hf.precision import autocast_to, command_compute_dtype

OUTPUT_SUFFIXES: tuple[str, ...] = (".csv", ".json")

# draw_result draws at most this many panels; a command keeps this many rows + 1 of its results for
# --image (the +1: an interpolation labels its last point "(end)", which must stay out of sight)
DRAWN_PANELS = 48


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------


def add_decoding_options(parser: argparse.ArgumentParser) -> None:
    """The checkpoint, device, precision and decoding options of every command that decodes."""
    options.add_model(parser)
    options.add_device(parser)
    options.add_dtype(parser)
    parser.add_argument(
        "--num-beams", type=int, default=1, help="beam width of the decoder; 1 = greedy decoding (default: 1)"
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="most tokens decoded per molecule (default: 256, or the model's max_position_embeddings - 1 if smaller)",
    )
    options.add_batch_size(parser, 256, "molecules encoded / decoded per batch")
    parser.add_argument(
        "--constrained",
        action="store_true",
        help="grammar-constrained decoding: never decode a token that makes the SMILES syntactically "
        "impossible (unbalanced parentheses, unclosed rings, misplaced bonds); valences stay unchecked, and "
        "a decode that cannot end runs on to --max-length, so a smaller --max-length bounds the time",
    )


def add_record_output(parser: argparse.ArgumentParser) -> None:
    """``-o`` (.csv or .json), ``--image`` and ``--overwrite``."""
    options.add_output(parser, '.csv (one row per molecule) or .json ({"summary": ..., "molecules": [...]})')
    parser.add_argument(
        "--image",
        type=Path,
        default=None,
        help="also draw the molecules as an RDKit grid: .png or .svg (invalid outputs shown as INVALID)",
    )
    options.add_overwrite(parser)


def add_input_molecules(parser: argparse.ArgumentParser, what: str) -> None:
    """The input table of molecules and its ``--smiles-col``."""
    options.add_input(parser, what)
    options.add_smiles_col(parser)


def decode_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of the :mod:`cmim_hf.generation` functions from :func:`add_decoding_options`."""
    return {
        "num_beams": args.num_beams,
        "max_new_tokens": args.max_length,
        "batch_size": args.batch_size,
        "grammar_constrained": args.constrained,
    }


def check_outputs(args: argparse.Namespace) -> None:
    """Before any work: the output suffixes, outputs that exist or are inputs, non-positive sizes.

    Raises:
        UsageError: a bad output or image suffix, or a non-positive --num-beams/--batch-size/--max-length.
        OutputError: an output that exists (without --overwrite), is an input, or cannot be written.
    """
    if args.output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UsageError(f"the output must be a .csv or .json file, got {args.output}")
    inputs = [getattr(args, name, None) for name in ("input", "around", "reference")]
    if args.image is not None and args.image.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(f"the image must be a .png or .svg file, got {args.image}")
    check_output_path(args.output, inputs, args.overwrite)
    if args.image is not None:
        check_output_path(args.image, [*inputs, args.output], args.overwrite)
    if args.num_beams < 1 or args.batch_size < 1 or (args.max_length is not None and args.max_length < 1):
        raise UsageError("--num-beams, --batch-size and --max-length must be positive")


# ---------------------------------------------------------------------------------------------
# Inputs and the model
# ---------------------------------------------------------------------------------------------


def read_smiles(path: Path, smiles_col: str | None, limit: int | None = None) -> list[Any]:
    """The values of the SMILES column (the first ``limit`` rows when given)."""
    column = file_smiles_column(path, smiles_col)
    values: list[Any] = []
    for chunk in iter_file_chunks(path, column, chunk_size=65536):
        values += chunk if limit is None else chunk[: limit - len(values)]
        if limit is not None and len(values) >= limit:
            break
    return values


def read_valid_smiles(path: Path, smiles_col: str | None, option: str) -> list[str]:
    """The SMILES column of a file whose every row must be valid (UsageError naming the first bad row)."""
    values = read_smiles(path, smiles_col)
    report = chem.validate_smiles(values)
    if report.invalid:
        bad = report.invalid[0]
        raise UsageError(f"{option} {path}: invalid SMILES at row {bad.index}: {bad.smiles!r} ({bad.reason})")
    return values


def load(args: argparse.Namespace) -> tuple[Any, Any]:
    """Model and tokenizer of --model, on --device."""
    from transformers.utils import logging

    logging.disable_progress_bar()  # the one-line summary is the only output on stderr
    return generation.load_model_for_generation(args.model, device=args.device)


def screen(values: list[Any], tokenizer: Any, model: Any) -> tuple[list[int], dict[int, str]]:
    """Indices of the usable input rows, and why each other row is rejected (RDKit's reason, or
    more tokens than the model reads)."""
    report = chem.validate_smiles(values)
    reasons = {row.index: row.reason for row in report.invalid}
    limit = model.config.max_position_embeddings
    usable = []
    if report.valid_indices:
        token_ids = tokenizer([values[i] for i in report.valid_indices])["input_ids"]
        for index, ids in zip(report.valid_indices, token_ids):
            if len(ids) > limit:
                reasons[index] = f"{len(ids)} tokens, the model reads at most {limit}"
            else:
                usable.append(index)
    return usable, reasons


def run_command(name: str, args: argparse.Namespace, body: Callable[[argparse.Namespace], str]) -> int:
    """Run ``body`` under --device/--dtype's precision and print the summary line it returns; the
    outputs of :func:`add_record_output` are checked first (:func:`check_outputs`)."""
    if "output" in vars(args):
        check_outputs(args)
    device = embedding_device(getattr(args, "device", None))
    compute_dtype = command_compute_dtype(getattr(args, "dtype", "float32"), device, name)
    with autocast_to(compute_dtype, device):
        line = body(args)
    print(f"cmim {name}: {line}", file=sys.stderr)
    return 0


def format_summary(summary: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items())


# ---------------------------------------------------------------------------------------------
# The record writer
# ---------------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """NaN -> None and numpy scalars -> Python, for strict JSON."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_records(
    path: Path, records: list[dict[str, Any]], summary: dict[str, Any], columns: list[str]
) -> None:
    """Write the records as CSV (summary on stderr only) or JSON with the summary, through a
    temporary file moved into place when complete (:func:`record_output` in one batch)."""
    with record_output(path, columns) as out:
        out.write(records)
        out.summary = summary


class Records:
    """Rows written as they come (see :func:`record_output`): CSV rows at once, JSON records to a
    spool file, joined behind the summary at the end."""

    def __init__(self, handle: Any, columns: list[str], json_output: bool) -> None:
        self.handle = handle
        self.columns = columns
        self.json_output = json_output
        self.summary: dict[str, Any] = {}
        self.written = 0
        self.csv = None if json_output else csv.writer(handle, lineterminator="\n")
        if self.csv is not None:
            self.csv.writerow(columns)

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            if self.csv is not None:
                self.csv.writerow([_csv_cell(record.get(column)) for column in self.columns])
            else:
                text = json.dumps(jsonable(record), indent=2, allow_nan=False)
                self.handle.write((",\n" if self.written else "") + _indent(text, "    "))
            self.written += 1


def _csv_cell(value: Any) -> Any:
    """A CSV cell as pandas' ``to_csv`` writes it: empty for None/NaN, ``repr`` for floats."""
    value = jsonable(value)
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else value


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())


@contextmanager
def record_output(path: Path, columns: list[str]) -> Iterator[Records]:
    """Write records batch by batch (``.write(records)``) through a temporary file moved into
    place when the block succeeds: CSV (``columns``, header first; the summary is for stderr only)
    or JSON ``{"summary": ..., "molecules": [...]}`` laid out as ``json.dumps(indent=2)`` lays it
    out, the summary set on the yielded object before the block ends. Memory does not grow with the
    number of records: JSON records wait in a temporary file next to the output."""
    with atomic_output(path) as partial:
        if path.suffix.lower() == ".csv":
            with open(partial, "w", encoding="utf-8", newline="") as handle:
                yield Records(handle, columns, json_output=False)
            return
        with tempfile.TemporaryFile("w+", encoding="utf-8", dir=partial.parent) as spool:
            records = Records(spool, columns, json_output=True)
            yield records
            head = json.dumps({"summary": jsonable(records.summary)}, indent=2, allow_nan=False)
            with open(partial, "w", encoding="utf-8") as handle:
                handle.write(head[: -len("\n}")] + ',\n  "molecules": [')
                if records.written:
                    handle.write("\n")
                    spool.seek(0)
                    shutil.copyfileobj(spool, handle)
                    handle.write("\n  ")
                handle.write("]\n}\n")


# ---------------------------------------------------------------------------------------------
# --image
# ---------------------------------------------------------------------------------------------


def draw(args: argparse.Namespace, result: Any, top_k: int | None = None) -> str:
    """Draw ``result`` into ``--image`` (when given); the summary's suffix naming it."""
    if args.image is None:
        return ""
    svg = args.image.suffix.lower() == ".svg"
    save_image(draw_result(result, max_panels=DRAWN_PANELS, top_k=top_k, svg=svg), args.image)
    return f" and {args.image}"


class Head:
    """The first ``DRAWN_PANELS + 1`` rows of a stream of per-batch results (for --image), joined
    into one result of their type."""

    def __init__(self, wanted: bool) -> None:
        self.left = DRAWN_PANELS + 1 if wanted else 0
        self.pieces: list[Any] = []

    def add(self, batch: Any) -> None:
        if self.left > 0:
            piece = _head_of(batch, self.left)
            self.pieces.append(piece)
            self.left -= len(piece)

    def result(self) -> Any:
        return generation.sampling.concat_results(self.pieces, None)


def _head_of(result: Any, count: int) -> Any:
    """The first ``count`` rows of a per-molecule result (lists, tensors and arrays sliced, copied)."""
    rows = len(result)
    fields = {}
    for item in dataclasses.fields(result):
        value = getattr(result, item.name)
        if item.name != "seeds" and isinstance(value, (list, np.ndarray)) and len(value) == rows:
            value = value[:count].copy()
        elif isinstance(value, torch.Tensor) and len(value) == rows:
            value = value[:count].clone()
        fields[item.name] = value
    return type(result)(**fields)
