"""``cmim fit-prior``: fit the aggregate posterior of a checkpoint (the default prior of
``cmim sample``) to training molecules and store it in the checkpoint folder.

    cmim fit-prior train.csv --model runs/cmim/final
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cmim_hf import generation
from cmim_hf.cli import generate, options
from cmim_hf.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``cmim fit-prior`` options to ``parser``."""
    options.describe(
        parser,
        "Fits a Gaussian to the posterior means of training molecules and stores it in the checkpoint\n"
        f"folder as {generation.AGGREGATE_POSTERIOR_FILE}; `cmim sample` then draws from it by default.\n"
        "example:\n  cmim fit-prior moses_train.csv.gz --model runs/cmim/final --max-molecules 20000",
    )
    generate.add_input_molecules(
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
    options.add_overwrite(parser, "an aggregate posterior the checkpoint already has")
    options.add_device(parser)
    options.add_batch_size(parser, 256, "molecules encoded per batch")


def run(args: argparse.Namespace) -> int:
    """Run ``cmim fit-prior``; returns the exit code."""
    return generate.run_command("fit-prior", args, fit_prior)


def fit_prior(args: argparse.Namespace) -> str:
    """Fit and save the prior; the summary line."""
    folder = Path(args.model)
    if not folder.is_dir():
        raise UsageError(f"--model must be a local checkpoint folder, got {folder}")
    target = folder / generation.AGGREGATE_POSTERIOR_FILE
    if target.exists() and not args.overwrite:
        raise UsageError(f"{target} exists; pass --overwrite to replace it")
    if args.max_molecules < 2 or args.batch_size < 1:
        raise UsageError("--max-molecules must be at least 2 and --batch-size positive")
    values = generate.read_smiles(args.input, args.smiles_col, limit=args.max_molecules)
    model, tokenizer = generate.load(args)
    usable, _ = generate.screen(values, tokenizer, model)
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
