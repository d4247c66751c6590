"""How far from a real code can a checkpoint's decoder go? Validity, uniqueness and novelty of its
samplers as their spread grows, and the posterior's own width, in one table.

Rows (``--n`` codes each, greedy decoding, one seed):
- ``aggregate``: N(mean, scale^2 covariance), the Gaussian fitted to training codes (the default
  sampler of ``cmim sample``), at each ``--scales``;
- ``standard normal``: N(0, scale^2 I), at each ``--scales``;
- ``neighbourhood``: mu(x) + radius * N(0, I) around held-out molecules, at each ``--radii``,
  with the mean Tanimoto similarity of the valid samples to their seed.

Decodes stop at ``--max-new-tokens`` (128): a code far from the training codes can decode without
``<eos>`` up to the whole position table (1,023 tokens for the v2 model), which costs minutes per
batch and is invalid either way.

The header reports the posterior's width on the held-out molecules (mean sigma, and the share of
log-variances at the floor ``config.logvar_min``): a decoder only ever trained on codes within
sigma of mu has no reason to decode codes further away.

    python benchmarks/sampler_sweep.py --model model_cards/cmim-moses-small-v2/runs/cmim/final \\
        --eval-file ../shared/data/pretrain/moses_test.csv.gz \\
        --novelty-reference ../shared/data/pretrain/moses_train.csv.gz --novelty-rows 640000 \\
        --json model_cards/cmim-moses-small-v2/sampler_sweep.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import argument_parser, command_line, publish

from cmim_hf import DEFAULT_CHECKPOINT
from cmim_hf.checkpoints import load_model_for_generation
from cmim_hf.evaluation.reports import markdown_table
from cmim_hf.generation import (
    AggregatePosterior,
    GenerationResult,
    canonical_reference,
    encode_posterior,
    fraction_novel,
    fraction_unique,
    sample_neighbourhood,
    sample_prior,
)
from cmim_hf.training.corpus import load_smiles_corpus


def sampler_row(sampler: str, spread: float, result: GenerationResult, known: frozenset[str] | None) -> dict:
    """One table row: validity, uniqueness, novelty (when ``known`` is given), seed similarity."""
    row: dict[str, Any] = {
        "sampler": sampler,
        "spread": spread,
        "samples": len(result.smiles),
        "validity": result.validity,
        "uniqueness": fraction_unique(result.smiles),
        "novelty": fraction_novel(result.smiles, known) if known is not None else None,
    }
    similarity = getattr(result, "similarity", None)  # NaN for invalid samples
    if similarity is not None:
        row["seed_similarity"] = float(np.nanmean(similarity)) if np.isfinite(similarity).any() else None
    return row


def posterior_width(logvar: torch.Tensor, floor: float | None) -> dict[str, float]:
    """Mean sigma of q(z|x) over molecules and dimensions, and the share of log-variances within
    0.01 of ``floor`` (None when the model has no floor)."""
    width = {"mean_sigma": float(torch.exp(0.5 * logvar).mean())}
    if floor is not None:
        width["share_at_floor"] = float((logvar <= floor + 0.01).float().mean())
    return width


def _cells(row: dict[str, Any]) -> list[str]:
    values = (row["validity"], row["uniqueness"], row["novelty"], row.get("seed_similarity"))
    return [row["sampler"], f"{row['spread']:g}", *("" if v is None else f"{v:.3f}" for v in values)]


def markdown(record: dict[str, Any]) -> str:
    """The command, the posterior's width and one table row per sampler setting."""
    width = record["posterior"]
    floor = (
        f", {width['share_at_floor']:.1%} of log-variances at the floor" if "share_at_floor" in width else ""
    )
    header = ["sampler", "scale / radius", "valid", "unique", "novel", "similarity to seed"]
    sections = [
        f"Command: `{record['command']}`",
        f"Posterior width on {record['held_out']} held-out molecules: mean sigma {width['mean_sigma']:.3f}{floor}",
        markdown_table(header, [_cells(row) for row in record["rows"]]),
    ]
    return "\n\n".join(sections) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argument_parser(__doc__)
    parser.add_argument("--model", default=DEFAULT_CHECKPOINT, help="cMIM checkpoint folder")
    parser.add_argument("--eval-file", type=Path, required=True, help="held-out molecules (first rows)")
    parser.add_argument("--n", type=int, default=300, help="codes per row (and neighbourhood seeds / 10)")
    parser.add_argument(
        "--scales", default="1,0.7,0.5,0.3", help="comma-separated spreads of the prior samplers"
    )
    parser.add_argument("--radii", default="0.5,0.2,0.1,0.05", help="comma-separated neighbourhood radii")
    parser.add_argument("--seed", type=int, default=0, help="seed of the codes drawn")
    parser.add_argument(
        "--max-new-tokens", type=int, default=128, help="longest decode (capped at the position table)"
    )
    parser.add_argument("--novelty-reference", type=Path, help="training molecules, for novelty")
    parser.add_argument("--novelty-rows", type=int, help="use the first N rows of the reference")
    parser.add_argument("--json", type=Path, help="write the record here (and the table next to it, .md)")
    args = parser.parse_args(argv)

    model, tokenizer = load_model_for_generation(args.model)
    held_out = list(load_smiles_corpus(args.eval_file, limit=args.n)["smiles"])
    known = None
    if args.novelty_reference is not None:
        known = canonical_reference(
            list(load_smiles_corpus(args.novelty_reference, limit=args.novelty_rows)["smiles"])
        )
    aggregate = AggregatePosterior.load(args.model)
    priors = (
        {"aggregate": aggregate, "standard normal": None}
        if aggregate is not None
        else {"standard normal": None}
    )
    _, logvar = encode_posterior(model, tokenizer, held_out)
    rows = []
    for scale in (float(s) for s in args.scales.split(",")):
        for name, prior in priors.items():
            result = sample_prior(
                model, tokenizer, args.n, scale, args.seed, max_new_tokens=args.max_new_tokens, prior=prior
            )
            rows.append(sampler_row(name, scale, result, known))
    seeds = held_out[: max(1, args.n // 10)]
    for radius in (float(r) for r in args.radii.split(",")):
        result = sample_neighbourhood(
            model, tokenizer, seeds, 10, radius, args.seed, max_new_tokens=args.max_new_tokens
        )
        rows.append(sampler_row("neighbourhood", radius, result, known))
    record = {
        "command": command_line(__file__, argv),
        "model": str(args.model),
        "held_out": len(held_out),
        "posterior": posterior_width(logvar, getattr(model.config, "logvar_min", None)),
        "rows": rows,
    }
    publish(record, args.json, markdown(record))
    return record


if __name__ == "__main__":
    main()
