"""`cmim sample`, `cmim reconstruct`, `cmim optimize` and `cmim interpolate`: thin layers over
`cmim_hf.generation`. Each takes the decoding options of ``_add_model_arguments`` (``--num-beams``,
``--max-length``, ``--constrained`` for grammar-constrained decoding, ...).

    cmim sample -n 1000 -o samples.csv                        decode codes drawn from the prior
    cmim sample --around seeds.csv -n 10 -o near.csv          sample around seed molecules
    cmim reconstruct molecules.csv -o recon.csv               encode (z = mu) and decode back
    cmim optimize seeds.csv --score qed -o better.csv         CMA-ES in latent space
    cmim interpolate 'CCO' 'c1ccccc1O' -o path.csv            decode a path between two codes
    cmim fit-prior train.csv --model runs/cmim/final          store the aggregate posterior

Outputs are CSV (``.csv``) or JSON (``.json``: ``{"summary": ..., "molecules": [...]}``) files; a
one-line summary goes to stderr. `cmim sample`, `cmim interpolate` and `cmim optimize` decode,
write and summarise one batch (one seed molecule for optimize) at a time, so their memory does not
grow with ``-n``, ``--steps`` or ``--iterations`` (benchmarks/peak_rss.py measures it). Input files are CSV (optionally gzipped) or Parquet with a SMILES
column; every input row is kept, invalid ones flagged with RDKit's reason. Exit codes: 0 ok,
2 expected failure (missing file or column, bad or mismatched checkpoint, bad option, an output
that exists or is an input), 1 runtime failure, with one-line messages on stderr.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib
import importlib.util
import json
import math
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmim_hf import chem, generation, resolve_checkpoint
from cmim_hf.checkpoints import CheckpointError
from cmim_hf.drawing import IMAGE_SUFFIXES, draw_result, save_image
from cmim_hf.embedding.embedder import embedding_device
from cmim_hf.errors import InputError, one_line
from cmim_hf.generation.sampling import DEFAULT_RADIUS
from cmim_hf.io import file_smiles_column, iter_file_chunks
from cmim_hf.outputs import OutputError, atomic_output, check_output_path
from cmim_hf.precision import COMPUTE_DTYPES, autocast_to, command_compute_dtype

OUTPUT_SUFFIXES: tuple[str, ...] = (".csv", ".json")
PRIOR_CHOICES: tuple[str, ...] = ("aggregate", "standard")


class UsageError(InputError):
    """A user mistake reported with exit code 2."""


# ---------------------------------------------------------------------------------------------
# Shared options and helpers
# ---------------------------------------------------------------------------------------------


def _describe(parser: argparse.ArgumentParser, epilog: str) -> None:
    """Help shows each option's default in its own words and an example epilog."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        epilog
        + "\n\nexit codes: 0 ok, 2 expected failure (bad file, checkpoint or option), 1 runtime failure"
    )


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="checkpoint folder or Hub id of a cMIM model, or 'shipped' (default: the checkpoint shipped in cmim_hf/pretrained)",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--dtype",
        choices=tuple(COMPUTE_DTYPES),
        default="float32",
        help="compute precision: bfloat16 runs the matmuls in bf16 (autocast) where the CPU/GPU has "
        "fast bf16, float32 with a note elsewhere (default: float32)",
    )
    parser.add_argument(
        "--num-beams", type=int, default=1, help="beam width of the decoder; 1 = greedy decoding (default: 1)"
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="most tokens decoded per molecule (default: 256, or the model's max_position_embeddings - 1 if smaller)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=256, help="molecules encoded / decoded per batch (default: 256)"
    )
    parser.add_argument(
        "--constrained",
        action="store_true",
        help="grammar-constrained decoding: never decode a token that makes the SMILES syntactically "
        "impossible (unbalanced parentheses, unclosed rings, misplaced bonds); valences stay unchecked, and "
        "a decode that cannot end runs on to --max-length, so a smaller --max-length bounds the time",
    )


def _add_output_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help='output file: .csv (one row per molecule) or .json ({"summary": ..., "molecules": [...]})',
    )
    parser.add_argument(
        "--image",
        type=Path,
        default=None,
        help="also draw the molecules as an RDKit grid: .png or .svg (invalid outputs shown as INVALID)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing output files (refused otherwise)"
    )


def _add_input_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("input", type=Path, help=f"CSV (.csv, .csv.gz) or Parquet file of {what}")
    parser.add_argument(
        "--smiles-col",
        default=None,
        help="name of the SMILES column (default: the column named 'smiles', any case)",
    )


def _check_common(args: argparse.Namespace) -> None:
    """Raise UsageError for a bad output suffix or non-positive sizes."""
    if args.output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UsageError(f"the output must be a .csv or .json file, got {args.output}")
    inputs = [getattr(args, name, None) for name in ("input", "around", "reference")]
    if args.image is not None and args.image.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(f"the image must be a .png or .svg file, got {args.image}")
    try:
        check_output_path(args.output, inputs, args.overwrite)
        if args.image is not None:
            check_output_path(args.image, [*inputs, args.output], args.overwrite)
    except OutputError as err:
        raise UsageError(str(err)) from None
    if args.num_beams < 1 or args.batch_size < 1 or (args.max_length is not None and args.max_length < 1):
        raise UsageError("--num-beams, --batch-size and --max-length must be positive")


def _read_smiles(path: Path, smiles_col: str | None) -> list[Any]:
    """The values of the SMILES column (raises FileNotFoundError / KeyError / ValueError)."""
    column = file_smiles_column(path, smiles_col)
    return [value for chunk in iter_file_chunks(path, column, chunk_size=65536) for value in chunk]


def _read_valid_smiles(path: Path, smiles_col: str | None, option: str) -> list[str]:
    """The SMILES column of a file whose every row must be valid (UsageError naming the first bad row)."""
    values = _read_smiles(path, smiles_col)
    report = chem.validate_smiles(values)
    if report.invalid:
        bad = report.invalid[0]
        raise UsageError(f"{option} {path}: invalid SMILES at row {bad.index}: {bad.smiles!r} ({bad.reason})")
    return values


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    """Model and tokenizer from --model (default: the shipped checkpoint)."""
    from transformers.utils import logging

    logging.disable_progress_bar()  # the one-line summary is the only output on stderr
    return generation.load_model_for_generation(resolve_checkpoint(args.model), device=args.device)


def _screen(values: list[Any], tokenizer: Any, model: Any) -> tuple[list[int], dict[int, str]]:
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


def _jsonable(value: Any) -> Any:
    """NaN -> None and numpy scalars -> Python, for strict JSON."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write(path: Path, records: list[dict[str, Any]], summary: dict[str, Any], columns: list[str]) -> None:
    """Write the records as CSV (summary on stderr only) or JSON with the summary, through a
    temporary file moved into place when complete (:func:`_record_output` in one batch)."""
    with _record_output(path, columns) as out:
        out.write(records)
        out.summary = summary


class _Records:
    """Rows written as they come (see :func:`_record_output`): CSV rows at once, JSON records to a
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
                text = json.dumps(_jsonable(record), indent=2, allow_nan=False)
                self.handle.write((",\n" if self.written else "") + _indent(text, "    "))
            self.written += 1


def _csv_cell(value: Any) -> Any:
    """A CSV cell as pandas' ``to_csv`` writes it: empty for None/NaN, ``repr`` for floats."""
    value = _jsonable(value)
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else value


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())


@contextmanager
def _record_output(path: Path, columns: list[str]) -> Iterator[_Records]:
    """Write records batch by batch (``.write(records)``) through a temporary file moved into
    place when the block succeeds: CSV (``columns``, header first; the summary is for stderr only)
    or JSON ``{"summary": ..., "molecules": [...]}`` laid out as ``json.dumps(indent=2)`` lays it
    out, the summary set on the yielded object before the block ends. Memory does not grow with the
    number of records: JSON records wait in a temporary file next to the output."""
    with atomic_output(path) as partial:
        if path.suffix.lower() == ".csv":
            with open(partial, "w", encoding="utf-8", newline="") as handle:
                yield _Records(handle, columns, json_output=False)
            return
        with tempfile.TemporaryFile("w+", encoding="utf-8", dir=partial.parent) as spool:
            records = _Records(spool, columns, json_output=True)
            yield records
            head = json.dumps({"summary": _jsonable(records.summary)}, indent=2, allow_nan=False)
            with open(partial, "w", encoding="utf-8") as handle:
                handle.write(head[: -len("\n}")] + ',\n  "molecules": [')
                if records.written:
                    handle.write("\n")
                    spool.seek(0)
                    shutil.copyfileobj(spool, handle)
                    handle.write("\n  ")
                handle.write("]\n}\n")


# draw_result draws at most this many panels; a command keeps this many rows + 1 of its results for
# --image (the +1: an interpolation labels its last point "(end)", which must stay out of sight)
DRAWN_PANELS = 48


def _draw(args: argparse.Namespace, result: Any, top_k: int | None = None) -> str:
    """Draw ``result`` into ``--image`` (when given); the summary's suffix naming it."""
    if args.image is None:
        return ""
    svg = args.image.suffix.lower() == ".svg"
    save_image(draw_result(result, max_panels=DRAWN_PANELS, top_k=top_k, svg=svg), args.image)
    return f" and {args.image}"


class _Head:
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


def _format_summary(summary: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items())


def _run(name: str, args: argparse.Namespace, body: Callable[[argparse.Namespace], str]) -> int:
    """Run ``body`` (returns the summary line), mapping errors to one-line messages and exit codes."""
    try:
        device = embedding_device(getattr(args, "device", None))
        compute_dtype = command_compute_dtype(getattr(args, "dtype", "float32"), device, name)
        with autocast_to(compute_dtype, device):
            line = body(args)
    except (UsageError, FileNotFoundError, KeyError) as err:
        return _fail(name, str(err.args[0]) if err.args else str(err), 2)
    except CheckpointError as err:  # a bad checkpoint is an expected failure, like a bad file
        return _fail(name, str(err), 2)
    except ValueError as err:  # unreadable input file, invalid SMILES, bad option value
        return _fail(name, one_line(err), 2)
    print(f"cmim {name}: {line}", file=sys.stderr)
    return 0


def _fail(name: str, message: str, code: int) -> int:
    print(f"cmim {name}: error: {message}", file=sys.stderr)
    return code


def _decode_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "num_beams": args.num_beams,
        "max_new_tokens": args.max_length,
        "batch_size": args.batch_size,
        "grammar_constrained": args.constrained,
    }


# ---------------------------------------------------------------------------------------------
# cmim sample
# ---------------------------------------------------------------------------------------------


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `cmim sample` options to `parser`."""
    _describe(
        parser,
        "examples:\n  cmim sample -n 1000 -o samples.csv --reference train.csv\n"
        "  cmim sample --around seeds.csv -n 10 --radius 0.1 -o near.json",
    )
    parser.add_argument(
        "-n",
        "--num-samples",
        type=int,
        default=100,
        help="molecules to generate (with --around: per seed molecule) (default: 100)",
    )
    _add_output_argument(parser)
    parser.add_argument(
        "--prior",
        choices=PRIOR_CHOICES,
        default="aggregate",
        help="aggregate: codes from the Gaussian fitted to the training codes, stored in the checkpoint "
        "(cmim fit-prior); standard: N(0, I) (default: aggregate, standard if the checkpoint has none)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="prior sampling: multiplies the prior's standard deviation; below 1 trades diversity for "
        "validity (default: 1.0)",
    )
    parser.add_argument(
        "--around",
        type=Path,
        default=None,
        help="CSV/Parquet file of seed molecules: sample around each seed's code instead of from the prior",
    )
    parser.add_argument(
        "--smiles-col",
        default=None,
        help="SMILES column of the --around / --reference files (default: the column named 'smiles', any case)",
    )
    parser.add_argument(
        "--radius",
        type=float,
        default=DEFAULT_RADIUS,
        help="with --around: std of the Gaussian perturbation added to each seed's code "
        f"(default: {DEFAULT_RADIUS}; see benchmarks/sampler_sweep.py for a checkpoint's trade-off)",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="CSV/Parquet file of reference molecules (e.g. the training set): adds novelty to the summary",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed: same seed, same molecules (default: 0)"
    )
    _add_model_arguments(parser)


def _sample(args: argparse.Namespace) -> str:
    _check_common(args)
    if args.num_samples < 1 or args.scale < 0 or args.radius < 0:
        raise UsageError("--num-samples must be positive, --scale and --radius non-negative")
    seeds = reference = None
    if args.around is not None:
        seeds = _read_valid_smiles(args.around, args.smiles_col, "--around")
    if args.reference is not None:
        reference = generation.canonical_reference(
            _read_valid_smiles(args.reference, args.smiles_col, "--reference")
        )
    model, tokenizer = _load(args)
    summary: dict[str, Any] = {}
    if seeds is not None:
        batches = generation.iter_sample_neighbourhood(
            model, tokenizer, seeds, args.num_samples, args.radius, args.seed, **_decode_options(args)
        )
        columns = ["seed_index", "seed", "smiles", "valid", "similarity"]
    else:
        prior = _aggregate_posterior(args) if args.prior == "aggregate" else None
        batches = generation.iter_sample_prior(
            model, tokenizer, args.num_samples, args.scale, args.seed, prior=prior, **_decode_options(args)
        )
        columns = ["smiles", "valid"]
        summary["prior"] = "aggregate" if prior is not None else "standard"
        if args.prior == "aggregate" and prior is None:
            summary["prior"] += " (the checkpoint has no aggregate posterior: cmim fit-prior adds one)"
    metrics = generation.SetMetrics(reference)
    head = _Head(args.image is not None)
    with _record_output(args.output, columns) as out:
        for batch in batches:  # drawn, decoded, written and counted one batch at a time
            out.write(batch.to_records())
            metrics.update(batch.smiles, batch.valid)
            head.add(batch)
        summary.update(molecules=metrics.molecules, validity=metrics.validity, uniqueness=metrics.uniqueness)
        if reference is not None:
            summary["novelty"] = metrics.novelty
        out.summary = summary
    return f"{_format_summary(summary)} -> {args.output}{_draw(args, head.result())}"


def _aggregate_posterior(args: argparse.Namespace) -> generation.AggregatePosterior | None:
    """The aggregate posterior stored in the --model folder (None for a Hub id or a folder without one)."""
    folder = Path(resolve_checkpoint(args.model))
    return generation.AggregatePosterior.load(folder) if folder.is_dir() else None


def run_sample_command(args: argparse.Namespace) -> int:
    """Run `cmim sample`; returns the exit code."""
    return _run("sample", args, _sample)


# ---------------------------------------------------------------------------------------------
# cmim fit-prior
# ---------------------------------------------------------------------------------------------


def add_fit_prior_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `cmim fit-prior` options to `parser`."""
    _describe(
        parser,
        "Fits a Gaussian to the posterior means of training molecules and stores it in the checkpoint\n"
        f"folder as {generation.AGGREGATE_POSTERIOR_FILE}; `cmim sample` then draws from it by default.\n"
        "example:\n  cmim fit-prior moses_train.csv.gz --model runs/cmim/final --max-molecules 20000",
    )
    _add_input_arguments(
        parser, "training molecules (rows RDKit rejects or the model cannot read are skipped)"
    )
    parser.add_argument(
        "--model", required=True, help="local checkpoint folder of a cMIM model; the prior is written into it"
    )
    parser.add_argument(
        "--max-molecules",
        type=int,
        default=20000,
        help="use the first N molecules of the file (default: 20000)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an aggregate posterior the checkpoint already has"
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--batch-size", type=int, default=256, help="molecules encoded per batch (default: 256)"
    )


def _fit_prior(args: argparse.Namespace) -> str:
    folder = Path(args.model)
    if not folder.is_dir():
        raise UsageError(f"--model must be a local checkpoint folder, got {folder}")
    target = folder / generation.AGGREGATE_POSTERIOR_FILE
    if target.exists() and not args.overwrite:
        raise UsageError(f"{target} exists; pass --overwrite to replace it")
    if args.max_molecules < 2 or args.batch_size < 1:
        raise UsageError("--max-molecules must be at least 2 and --batch-size positive")
    column = file_smiles_column(args.input, args.smiles_col)
    values: list[Any] = []
    for chunk in iter_file_chunks(args.input, column, chunk_size=65536):
        values += chunk[: args.max_molecules - len(values)]
        if len(values) >= args.max_molecules:
            break
    model, tokenizer = _load(args)
    usable, reasons = _screen(values, tokenizer, model)
    token_ids = tokenizer([values[i] for i in usable])["input_ids"] if usable else []  # one batched call
    known = [i for i, ids in zip(usable, token_ids) if tokenizer.unk_token_id not in ids]
    if len(known) < 2:
        raise UsageError(f"{args.input}: fewer than 2 usable molecules among the first {len(values)} rows")
    prior = generation.fit_aggregate_posterior(
        model, tokenizer, [values[i] for i in known], source=str(args.input), batch_size=args.batch_size
    )
    prior.save(folder)
    skipped = len(values) - len(known)
    return f"fitted to {len(known)} molecules ({skipped} skipped) -> {target}"


def run_fit_prior_command(args: argparse.Namespace) -> int:
    """Run `cmim fit-prior`; returns the exit code."""
    return _run("fit-prior", args, _fit_prior)


# ---------------------------------------------------------------------------------------------
# cmim reconstruct
# ---------------------------------------------------------------------------------------------


def add_reconstruct_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `cmim reconstruct` options to `parser`."""
    _describe(
        parser,
        "Every input row is kept; rows RDKit rejects get invalid_reason and no reconstruction.\n"
        "example:\n  cmim reconstruct molecules.csv --smiles-col smiles -o reconstructions.csv --num-beams 4",
    )
    _add_input_arguments(parser, "molecules to reconstruct")
    _add_output_argument(parser)
    _add_model_arguments(parser)


RECONSTRUCT_COLUMNS = ["row", "input", "invalid_reason", "smiles", "valid", "exact", "similarity"]


def _reconstruct(args: argparse.Namespace) -> str:
    _check_common(args)
    values = _read_smiles(args.input, args.smiles_col)
    model, tokenizer = _load(args)
    usable, reasons = _screen(values, tokenizer, model)
    result = generation.reconstruct(model, tokenizer, [values[i] for i in usable], **_decode_options(args))
    done = dict(zip(usable, result.to_records()))
    records = []
    for row, value in enumerate(values):
        record = {"row": row, "input": value, "invalid_reason": reasons.get(row)}
        record.update(done.get(row, {"smiles": None, "valid": None, "exact": None, "similarity": None}))
        records.append(record)
    similarity = result.similarity[~np.isnan(result.similarity)] if len(result) else np.zeros(0)
    summary = {
        "rows": len(values),
        "invalid_inputs": len(reasons),
        "exact_match": result.exact_match,
        "validity": result.validity,
        "mean_similarity": float(similarity.mean()) if similarity.size else float("nan"),
    }
    _write(args.output, records, summary, RECONSTRUCT_COLUMNS)
    return f"{_format_summary(summary)} -> {args.output}{_draw(args, result)}"


def run_reconstruct_command(args: argparse.Namespace) -> int:
    """Run `cmim reconstruct`; returns the exit code."""
    return _run("reconstruct", args, _reconstruct)


# ---------------------------------------------------------------------------------------------
# cmim optimize
# ---------------------------------------------------------------------------------------------


def resolve_score(spec: str) -> Callable[[str], float]:
    """A scoring function from ``spec``: an RDKit descriptor name (``qed``, ``MolLogP``, ``TPSA``, ...)
    or ``module:function`` / ``path/to/file.py:function`` naming a Python callable SMILES -> float."""
    if ":" not in spec:
        return generation.descriptor_score(spec)
    target, _, attribute = spec.rpartition(":")
    try:
        if target.endswith(".py"):
            if not Path(target).is_file():
                raise UsageError(f"score file not found: {target}")
            module_spec = importlib.util.spec_from_file_location(Path(target).stem, target)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ImportError as err:
        raise UsageError(f"cannot import the scoring module {target!r}: {err}") from None
    except SyntaxError as err:  # the user's file: one line naming it and the line, no traceback
        where = target if target.endswith(".py") else err.filename or target
        raise UsageError(f"--score {where}: syntax error at line {err.lineno}: {err.msg}") from None
    except UsageError:
        raise
    except Exception as err:  # the user's module fails while it is imported
        raise UsageError(
            f"--score {target}: importing it failed{_user_line(err, target)}: {one_line(err)}"
        ) from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise UsageError(f"{target!r} has no function {attribute!r}")
    return function


def _user_line(error: BaseException, target: str) -> str:
    """`` at line N`` of the innermost traceback frame in the file ``target`` ('' if none)."""
    if not target.endswith(".py"):
        return ""
    path = Path(target).resolve()
    lines = [
        frame.lineno
        for frame in traceback.extract_tb(error.__traceback__)
        if frame.filename and Path(frame.filename).resolve() == path
    ]
    return f" at line {lines[-1]}" if lines else ""


def add_optimize_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `cmim optimize` options to `parser`."""
    _describe(
        parser,
        "Each valid seed molecule gets up to --top-k rows (best objective first); invalid seeds one row\n"
        "with invalid_reason.\nexample:\n  cmim optimize seeds.csv --score qed --similarity-weight 0.5 -o better.csv",
    )
    _add_input_arguments(parser, "seed molecules")
    _add_output_argument(parser)
    parser.add_argument(
        "--score",
        default="qed",
        help="property to maximise: an RDKit descriptor name (qed, MolLogP, TPSA, ...) or "
        "module:function / file.py:function returning a float for a SMILES (default: qed)",
    )
    parser.add_argument(
        "--iterations", type=int, default=10, help="CMA-ES rounds per seed molecule (default: 10)"
    )
    parser.add_argument(
        "--population-size",
        type=int,
        default=None,
        help="latent codes decoded per round (default: CMA-ES's 4 + 3 ln(latent dimension))",
    )
    parser.add_argument(
        "--sigma",
        type=float,
        default=0.5,
        help="initial CMA-ES step size around the seed's code, in prior units (default: 0.5)",
    )
    parser.add_argument(
        "--similarity-weight",
        type=float,
        default=0.0,
        help="maximise score + weight * ECFP4 Tanimoto similarity to the seed; > 0 keeps molecules close "
        "to their seed (default: 0.0)",
    )
    parser.add_argument(
        "--top-k", type=int, default=10, help="best molecules written per seed molecule (default: 10)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed: same seed, same search (default: 0)"
    )
    _add_model_arguments(parser)


OPTIMIZE_COLUMNS = [
    "row",
    "seed",
    "invalid_reason",
    "seed_score",
    "rank",
    "smiles",
    "score",
    "improvement",
    "similarity",
    "objective",
]


def _optimize(args: argparse.Namespace) -> str:
    _check_common(args)
    if args.iterations < 1 or args.sigma <= 0 or args.top_k < 1:
        raise UsageError("--iterations and --top-k must be positive, --sigma > 0")
    if args.population_size is not None and args.population_size < 2:
        raise UsageError("--population-size must be at least 2")
    if args.seed < 0:
        raise UsageError("--seed must be non-negative")
    score_fn = resolve_score(args.score)
    values = _read_smiles(args.input, args.smiles_col)
    model, tokenizer = _load(args)
    usable, reasons = _screen(values, tokenizer, model)
    searches = generation.iter_optimize(
        model,
        tokenizer,
        [values[i] for i in usable],
        score_fn,
        iterations=args.iterations,
        population_size=args.population_size,
        sigma=args.sigma,
        similarity_weight=args.similarity_weight,
        seed=args.seed,
        top_k=args.top_k,  # only the molecules written are kept
        **_decode_options(args),
    )
    summary = {
        "seeds": len(values),
        "invalid_seeds": len(reasons),
        "improved_seeds": 0,
        "decoded": 0,
        "penalized": 0,
    }
    drawn: list[generation.OptimizationResult] = []  # each seed draws one panel or more
    with _record_output(args.output, OPTIMIZE_COLUMNS) as out:
        for row, value in enumerate(values):  # each seed's rows written when its search ends
            if row in reasons:
                out.write([{"row": row, "seed": value, "invalid_reason": reasons[row]}])
                continue
            result = next(searches)
            found = result.to_records(args.top_k)
            out.write([{"row": row, "invalid_reason": None, **record} for record in found])
            if not found:
                out.write([{"row": row, "seed": value, "seed_score": result.seed_score}])
            summary["improved_seeds"] += bool(result.any_improved)
            summary["decoded"] += result.n_evaluated
            summary["penalized"] += result.n_penalized
            if args.image is not None and len(drawn) < DRAWN_PANELS:
                drawn.append(result)
        out.summary = summary
    return f"{_format_summary(summary)} -> {args.output}{_draw(args, drawn, top_k=args.top_k)}"


def run_optimize_command(args: argparse.Namespace) -> int:
    """Run `cmim optimize`; returns the exit code."""
    return _run("optimize", args, _optimize)


# ---------------------------------------------------------------------------------------------
# cmim interpolate
# ---------------------------------------------------------------------------------------------


def add_interpolate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `cmim interpolate` options to `parser`."""
    _describe(
        parser,
        "Decodes evenly spaced codes between mu(START) and mu(END), end points included.\n"
        "example:\n  cmim interpolate 'CCO' 'c1ccccc1O' --steps 8 -o path.csv --image path.png",
    )
    parser.add_argument("start", help="SMILES of the first molecule")
    parser.add_argument("end", help="SMILES of the last molecule")
    parser.add_argument("--steps", type=int, default=10, help="points on the path, end points included")
    parser.add_argument(
        "--method",
        choices=generation.INTERPOLATION_METHODS,
        default="linear",
        help="straight line, or great circle (slerp) between the two codes",
    )
    _add_output_argument(parser)
    _add_model_arguments(parser)


def _interpolate(args: argparse.Namespace) -> str:
    _check_common(args)
    if args.steps < 2:
        raise UsageError("--steps must be at least 2 (the two end points)")
    for option, smiles in (("START", args.start), ("END", args.end)):
        if not chem.is_valid_smiles(smiles):
            raise UsageError(f"{option} is not a valid SMILES: {smiles!r}")
    model, tokenizer = _load(args)
    batches = generation.iter_interpolate(
        model, tokenizer, args.start, args.end, steps=args.steps, method=args.method, **_decode_options(args)
    )
    steps = valid = 0
    distinct = generation.DistinctCounter()  # distinct valid SMILES as decoded
    head = _Head(args.image is not None)
    with _record_output(args.output, ["t", "smiles", "valid"]) as out:
        for batch in batches:
            out.write(batch.to_records())
            steps += len(batch)
            valid += sum(batch.valid)
            distinct.add(batch.valid_smiles)
            head.add(batch)
        summary = {"steps": steps, "validity": valid / steps, "distinct": len(distinct)}
        out.summary = summary
    return f"{_format_summary(summary)} -> {args.output}{_draw(args, head.result())}"


def run_interpolate_command(args: argparse.Namespace) -> int:
    """Run `cmim interpolate`; returns the exit code."""
    return _run("interpolate", args, _interpolate)
