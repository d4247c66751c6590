"""``cmim embed``: embed the SMILES column of a CSV/Parquet file into a Parquet file.

    cmim embed IN.csv --smiles-col smiles -o OUT.parquet

Every input row is kept, in order; rows whose SMILES RDKit rejects (or that are too long for
the model, or hold tokens outside its vocabulary) get NaN embeddings, ``valid=False`` and the reason
in ``invalid_reason``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pyarrow.parquet as pq

from cmim_hf.checkpoints import CheckpointError, check_checkpoint_folder
from cmim_hf.chem import SMILES_NORMALIZATIONS
from cmim_hf.cli import options
from cmim_hf.embedding.embedder import CMIMEmbedder, embedding_device
from cmim_hf.errors import UsageError
from cmim_hf.io import file_smiles_column
from cmim_hf.models.cmim.pipelines import SOURCES
from cmim_hf.models.cmim.pooling import LAYER_MODES, POOLING_MODES, LayerSpec
from cmim_hf.outputs import check_output_path
from cmim_hf.precision import command_compute_dtype


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``cmim embed`` options to ``parser``."""
    options.describe(parser, "example:\n  cmim embed molecules.csv --smiles-col smiles -o embeddings.parquet")
    parser.add_argument("input", type=Path, help="CSV (.csv, .csv.gz) or Parquet file with a SMILES column")
    options.add_output(parser, "Parquet (.parquet), one row per input row")
    options.add_smiles_col(parser)
    options.add_model(parser, "a cMIM (or any seq2seq) model")
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
    options.add_batch_size(parser, 256, "molecules per forward pass")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=16384,
        help="rows read, length-sorted and written at a time (default 16384)",
    )
    options.add_device(parser)
    options.add_dtype(parser)
    parser.add_argument(
        "--smiles-normalization",
        choices=("checkpoint", *SMILES_NORMALIZATIONS),
        default="checkpoint",
        help="rewrite each SMILES before embedding it: as the checkpoint's training SMILES were "
        "(its config's smiles_normalization), none (as given), canonical or canonical_nostereo "
        "(default: checkpoint)",
    )
    options.add_no_progress(parser)
    options.add_overwrite(parser, "an existing output file")


def _check_model(model: str, source: str, include_latent: bool | None) -> str:
    """The --model to load (a local folder as its full path), checked before anything is loaded:
    a local folder must be a complete checkpoint, and --source latent and --include-latent need a
    cMIM model."""
    local = Path(model).expanduser()
    if local.exists() or model.startswith((".", "/", "~")):
        if not (local / "config.json").is_file():
            raise CheckpointError(f"{model} is not a checkpoint folder (no config.json there)")
        check_checkpoint_folder(local)  # names the missing or corrupt file
        model = str(local)
    if source == "latent" or include_latent:
        from transformers import AutoConfig

        model_type = AutoConfig.from_pretrained(model).model_type
        if model_type != "cmim":
            raise UsageError(
                f"--source latent and --include-latent need a cMIM model; {model} is {model_type!r}"
            )
    return model


def run(args: argparse.Namespace) -> int:
    """Run ``cmim embed``; returns the exit code."""
    if args.batch_size < 1 or args.chunk_size < 1:
        raise UsageError("--batch-size and --chunk-size must be positive")
    if args.output.suffix.lower() not in (".parquet", ".pq"):
        raise UsageError(f"the output must be a .parquet file, got {args.output}")
    check_output_path(args.output, [args.input], args.overwrite)
    column = file_smiles_column(args.input, args.smiles_col)

    if args.no_progress:  # also the weight-loading bar of from_pretrained
        from transformers.utils import logging

        logging.disable_progress_bar()
    embedder = CMIMEmbedder(
        _check_model(args.model, args.source, args.include_latent),
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # summarised below instead
        invalid = embedder.embed_file(args.input, column, args.output, overwrite=args.overwrite)
    if args.output.is_file():
        rows = pq.ParquetFile(args.output).metadata.num_rows
        print(
            f"embedded {rows} rows ({len(invalid)} invalid, flagged in columns valid/invalid_reason), "
            f"dimension {embedder.embedding_dim} -> {args.output}",
            file=sys.stderr,
        )
    return 0
