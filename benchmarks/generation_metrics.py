"""Generative figures of one cMIM checkpoint (``cmim_hf.evaluation.generative``): greedy
reconstruction, prior samples from the aggregate posterior and from N(0, I) (validity, uniqueness,
novelty), neighbourhood samples, active units and participation ratio of the codes.

    python benchmarks/generation_metrics.py --model cmim_hf/pretrained \
        --eval-file ../shared/data/pretrain/moses_test.csv.gz \
        --novelty-reference ../shared/data/pretrain/moses_train.csv.gz --novelty-rows 640000 \
        --json model_cards/cmim-moses-small/generation_first_checkpoint.json
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import argument_parser, command_line, publish

from cmim_hf import DEFAULT_CHECKPOINT
from cmim_hf.evaluation.generative import generative_metrics
from cmim_hf.training.corpus import load_smiles_corpus


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--model", default=DEFAULT_CHECKPOINT, help="cMIM checkpoint folder")
    parser.add_argument(
        "--eval-file", type=Path, required=True, help="held-out molecules (first rows are used)"
    )
    parser.add_argument("--n-reconstruct", type=int, default=2000, help="held-out molecules reconstructed")
    parser.add_argument("--n-samples", type=int, default=1000, help="prior samples of each prior")
    parser.add_argument("--radius", type=float, default=0.5, help="std of the neighbourhood perturbation")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samplers")
    parser.add_argument("--novelty-reference", type=Path, help="training molecules, for novelty")
    parser.add_argument("--novelty-rows", type=int, help="use the first N rows of the reference")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    held_out = list(load_smiles_corpus(args.eval_file, limit=args.n_reconstruct)["smiles"])
    reference = None
    if args.novelty_reference is not None:
        reference = list(load_smiles_corpus(args.novelty_reference, limit=args.novelty_rows)["smiles"])
    metrics = generative_metrics(args.model, held_out, args.n_samples, args.radius, args.seed, reference)
    metrics["command"] = command_line(__file__, argv)
    publish(metrics, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
