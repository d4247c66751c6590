"""``cmim reconstruct``: encode molecules (z = mu) and decode them back, with exact match, validity
and similarity.

    cmim reconstruct molecules.csv -o recon.csv
"""

from __future__ import annotations

import argparse

import numpy as np

from cmim_hf import generation
from cmim_hf.cli import generate, options

RECONSTRUCT_COLUMNS = ["row", "input", "invalid_reason", "smiles", "valid", "exact", "similarity"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``cmim reconstruct`` options to ``parser``."""
    options.describe(
        parser,
        "Every input row is kept; rows RDKit rejects get invalid_reason and no reconstruction.\n"
        "example:\n  cmim reconstruct molecules.csv --smiles-col smiles -o reconstructions.csv --num-beams 4",
    )
    generate.add_input_molecules(parser, "molecules to reconstruct")
    generate.add_record_output(parser)
    generate.add_decoding_options(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``cmim reconstruct``; returns the exit code."""
    return generate.run_command("reconstruct", args, reconstruct)


def reconstruct(args: argparse.Namespace) -> str:
    """Reconstruct every usable row, write every row; the summary line."""
    values = generate.read_smiles(args.input, args.smiles_col)
    model, tokenizer = generate.load(args)
    usable, reasons = generate.screen(values, tokenizer, model)
    result = generation.reconstruct(
        model, tokenizer, [values[i] for i in usable], **generate.decode_options(args)
    )
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
    generate.write_records(args.output, records, summary, RECONSTRUCT_COLUMNS)
    return f"{generate.format_summary(summary)} -> {args.output}{generate.draw(args, result)}"
