"""``cmim interpolate``: decode the path between the latent codes of two molecules.

cmim interpolate 'CCO' 'c1ccccc1O' -o path.csv            decode a path between two codes
"""

from __future__ import annotations

import argparse

from cmim_hf import chem, generation
from cmim_hf.cli import generate, options
from cmim_hf.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``cmim interpolate`` options to ``parser``."""
    options.describe(
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
    generate.add_record_output(parser)
    generate.add_decoding_options(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``cmim interpolate``; returns the exit code."""
    return generate.run_command("interpolate", args, interpolate)


def interpolate(args: argparse.Namespace) -> str:
    """Decode and write the path batch by batch; the summary line."""
    if args.steps < 2:
        raise UsageError("--steps must be at least 2 (the two end points)")
    for option, smiles in (("START", args.start), ("END", args.end)):
        if not chem.is_valid_smiles(smiles):
            raise UsageError(f"{option} is not a valid SMILES: {smiles!r}")
    model, tokenizer = generate.load(args)
    batches = generation.iter_interpolate(
        model,
        tokenizer,
        args.start,
        args.end,
        steps=args.steps,
        method=args.method,
        **generate.decode_options(args),
    )
    steps = valid = 0
    distinct = generation.DistinctCounter()  # distinct valid SMILES as decoded
    head = generate.Head(args.image is not None)
    with generate.record_output(args.output, ["t", "smiles", "valid"]) as out:
        for batch in batches:
            out.write(batch.to_records())
            steps += len(batch)
            valid += sum(batch.valid)
            distinct.add(batch.valid_smiles)
            head.add(batch)
        summary = {"steps": steps, "validity": valid / steps, "distinct": len(distinct)}
        out.summary = summary
    return f"{generate.format_summary(summary)} -> {args.output}{generate.draw(args, head.result())}"
