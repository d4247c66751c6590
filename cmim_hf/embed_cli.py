"""`cmim embed`: embed the SMILES column of a CSV/Parquet file into a Parquet file.

Every input row is kept, in order; rows whose SMILES RDKit rejects (or that are too long for
the model, or hold tokens outside its vocabulary) get NaN embeddings, `valid=False` and the reason
in `invalid_reason`. Exit codes: 0 ok, 2 expected failure (missing or unreadable input, bad column,
bad or mismatched checkpoint, bad option, an output that exists or is the input), 1 runtime
failure, with one-line messages on stderr.
"""

import argparse
import sys
import warnings
from pathlib import Path

import pyarrow.parquet as pq

from cmim_hf import resolve_checkpoint
from cmim_hf.checkpoints import CheckpointError, check_checkpoint_folder
from cmim_hf.chem import SMILES_NORMALIZATIONS
from cmim_hf.embedding.embedder import CMIMEmbedder, embedding_device
from cmim_hf.errors import InputError, one_line, run_with_error_boundary
from cmim_hf.io import file_smiles_column
from cmim_hf.models.cmim.pipelines import SOURCES, validate_options
from cmim_hf.models.cmim.pooling import LAYER_MODES, POOLING_MODES, LayerSpec
from cmim_hf.outputs import check_output_path
from cmim_hf.precision import COMPUTE_DTYPES, command_compute_dtype


def parse_layers(text: str) -> LayerSpec:
    """ "last" | "mean" | "concat" | comma-separated layer indices such as "0,-1"."""
    if text in LAYER_MODES:
        return text  # type: ignore[return-value]
    try:
        indices = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(LAYER_MODES)} or comma-separated integers, got {text!r}"
        ) from None
    return indices[0] if len(indices) == 1 else indices


def add_embed_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `cmim embed` options to `parser`."""
    parser.add_argument("input", type=Path, help="CSV (.csv, .csv.gz) or Parquet file with a SMILES column")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output Parquet file")
    parser.add_argument(
        "--smiles-col",
        default=None,
        help="name of the SMILES column (default: the column named 'smiles', any case)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="checkpoint folder or Hub id of a cMIM (or any seq2seq) model, or 'shipped' (default: the shipped checkpoint)",
    )
    parser.add_argument(
        "--source",
        choices=SOURCES,
        default="decoder",
        help="decoder: informative embedding (default); latent: mu only; encoder: pooled encoder states",
    )
    parser.add_argument(
        "--layers",
        type=parse_layers,
        default="last",
        help="hidden states to pool: last (default), mean, concat, or layer indices like 0,-1 (0 = embeddings)",
    )
    parser.add_argument(
        "--pooling",
        choices=POOLING_MODES,
        default="mean",
        help="over positions: mean of real tokens (default), first token, or eos (last real token)",
    )
    parser.add_argument(
        "--include-latent",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="prepend mu to the pooled states (default: on for cMIM with --source decoder)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=256, help="molecules per forward pass (default 256)"
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=16384,
        help="rows read, length-sorted and written at a time (default 16384)",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--dtype",
        choices=tuple(COMPUTE_DTYPES),
        default="float32",
        help="compute precision: bfloat16 runs the matmuls in bf16 (autocast; float32 weights and "
        "output) where the CPU/GPU has fast bf16, and falls back to float32 with a note elsewhere",
    )
    parser.add_argument(
        "--smiles-normalization",
        choices=("checkpoint", *SMILES_NORMALIZATIONS),
        default="checkpoint",
        help="rewrite each SMILES before embedding it: as the checkpoint's training SMILES were "
        "(its config's smiles_normalization), none (as given), canonical or canonical_nostereo "
        "(default: checkpoint)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing output file (refused otherwise)"
    )


def _fail(message: str, code: int) -> int:
    print(f"cmim embed: error: {message}", file=sys.stderr)
    return code


def run_embed_command(args: argparse.Namespace) -> int:
    """Run `cmim embed`; returns the exit code."""
    try:
        validate_options(args.source, args.layers, args.pooling)
        if args.batch_size < 1 or args.chunk_size < 1:
            raise ValueError("--batch-size and --chunk-size must be positive")
        if args.output.suffix.lower() not in (".parquet", ".pq"):
            raise ValueError(f"the output must be a .parquet file, got {args.output}")
        check_output_path(args.output, [args.input], args.overwrite)
        column = file_smiles_column(args.input, args.smiles_col)
    except (FileNotFoundError, KeyError, ValueError) as err:
        return _fail(str(err.args[0]) if err.args else str(err), 2)
    except (OSError, EOFError) as err:  # truncated or corrupt file (gzip, parquet)
        return _fail(
            f"cannot read {args.input}: {str(err).splitlines()[0] if str(err) else type(err).__name__}", 2
        )

    if args.no_progress:  # also the weight-loading bar of from_pretrained
        from transformers.utils import logging

        logging.disable_progress_bar()
    model = resolve_checkpoint(args.model)
    local = Path(model).expanduser()
    if local.exists() or model.startswith((".", "/", "~")):
        if not (local / "config.json").is_file():
            return _fail(f"{model} is not a checkpoint folder (no config.json there)", 2)
        try:  # names the missing or corrupt file before anything is loaded
            check_checkpoint_folder(local)
        except CheckpointError as err:
            return _fail(str(err), 2)
    try:
        embedder = CMIMEmbedder(
            str(local) if local.exists() else model,
            source=args.source,
            layers=args.layers,
            pooling=args.pooling,
            include_latent=args.include_latent,
            batch_size=args.batch_size,
            device=args.device,
            normalize=True if args.smiles_normalization == "checkpoint" else args.smiles_normalization,
            on_invalid="nan",
            chunk_size=args.chunk_size,
            progress=False if args.no_progress else None,
            dtype=command_compute_dtype(args.dtype, embedding_device(args.device), "embed"),
        )
    except CheckpointError as err:  # a tokenizer that does not match the model
        return _fail(str(err), 2)
    except (OSError, ValueError) as err:
        return _fail(f"cannot load the model from {model}: {str(err).splitlines()[0]}", 2)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # summarised below instead
            invalid = embedder.embed_file(args.input, column, args.output, overwrite=args.overwrite)
    except InputError as err:  # a damaged input file, found part-way through
        return _fail(one_line(err), 2)
    if args.output.is_file():
        rows = pq.ParquetFile(args.output).metadata.num_rows
        print(
            f"embedded {rows} rows ({len(invalid)} invalid, flagged in columns valid/invalid_reason), "
            f"dimension {embedder.embedding_dim} -> {args.output}",
            file=sys.stderr,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: `python -m cmim_hf.embed_cli in.csv -o out.parquet`."""
    parser = argparse.ArgumentParser(prog="cmim embed", description=__doc__)
    add_embed_arguments(parser)
    return run_with_error_boundary("embed", run_embed_command, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
