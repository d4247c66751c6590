"""``cmim sample``: molecules decoded from codes drawn from the prior, or around seed molecules.

cmim sample -n 1000 -o samples.csv                        decode codes drawn from the prior
cmim sample --around seeds.csv -n 10 -o near.csv          sample around seed molecules
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cmim_hf import generation
from cmim_hf.cli import generate, options
from cmim_hf.errors import UsageError

PRIOR_CHOICES: tuple[str, ...] = ("aggregate", "standard")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``cmim sample`` options to ``parser``."""
    options.describe(
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
    generate.add_record_output(parser)
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
    options.add_smiles_col(parser, "the --around / --reference files")
    parser.add_argument(
        "--radius",
        type=float,
        default=None,
        help="with --around: std of the Gaussian perturbation added to each seed's code (default: the "
        "checkpoint's config.exploration_radius, 2 posterior floor stds; benchmarks/sampler_sweep.py "
        "measures a checkpoint's trade-off)",
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
    generate.add_decoding_options(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``cmim sample``; returns the exit code."""
    return generate.run_command("sample", args, sample)


def sample(args: argparse.Namespace) -> str:
    """Sample, write the molecules batch by batch; the summary line."""
    if args.num_samples < 1 or args.scale < 0 or (args.radius is not None and args.radius < 0):
        raise UsageError("--num-samples must be positive, --scale and --radius non-negative")
    seeds = reference = None
    if args.around is not None:
        seeds = generate.read_valid_smiles(args.around, args.smiles_col, "--around")
    if args.reference is not None:
        reference = generation.canonical_reference(
            generate.read_valid_smiles(args.reference, args.smiles_col, "--reference")
        )
    model, tokenizer = generate.load(args)
    decoding = generate.decode_options(args)
    summary: dict[str, Any] = {}
    if seeds is not None:
        batches = generation.iter_sample_neighbourhood(
            model, tokenizer, seeds, args.num_samples, args.radius, args.seed, **decoding
        )
        columns = ["seed_index", "seed", "smiles", "valid", "similarity"]
    else:
        prior = _aggregate_posterior(args) if args.prior == "aggregate" else None
        batches = generation.iter_sample_prior(
            model, tokenizer, args.num_samples, args.scale, args.seed, prior=prior, **decoding
        )
        columns = ["smiles", "valid"]
        summary["prior"] = "aggregate" if prior is not None else "standard"
        if args.prior == "aggregate" and prior is None:
            summary["prior"] += " (the checkpoint has no aggregate posterior: cmim fit-prior adds one)"
    metrics = generation.SetMetrics(reference)
    head = generate.Head(args.image is not None)
    with generate.record_output(args.output, columns) as out:
        for batch in batches:  # drawn, decoded, written and counted one batch at a time
            out.write(batch.to_records())
            metrics.update(batch.smiles, batch.valid)
            head.add(batch)
        summary.update(molecules=metrics.molecules, validity=metrics.validity, uniqueness=metrics.uniqueness)
        if reference is not None:
            summary["novelty"] = metrics.novelty
        out.summary = summary
    return f"{generate.format_summary(summary)} -> {args.output}{generate.draw(args, head.result())}"


def _aggregate_posterior(args: argparse.Namespace) -> generation.AggregatePosterior | None:
    """The aggregate posterior stored in the --model folder (None for a Hub id or a folder without one)."""
    folder = Path(args.model)
    return generation.AggregatePosterior.load(folder) if folder.is_dir() else None
