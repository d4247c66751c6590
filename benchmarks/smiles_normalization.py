"""Downstream effect of writing SMILES as the checkpoint was trained (issue 12, item 3).

Benchmarks one checkpoint's informative and mu features on the 5 paper tasks twice: with the
SMILES normalization its config records (``smiles_normalization``, the default of every embedding
path) and with the SMILES as the MoleculeNet files write them. Same harness, split, seeds and probe
for all four rows; the table goes to ``<out>/normalization.md`` with the harness reports beside it.

    python benchmarks/smiles_normalization.py --model cmim_hf/pretrained --out runs/normalization
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from common import argument_parser, command_line, write_text

from cmim_hf import DEFAULT_CHECKPOINT
from cmim_hf.evaluation.benchmark import run_benchmark
from cmim_hf.evaluation.comparison import headline_table
from cmim_hf.evaluation.featurizers import CheckpointFeaturizer

TASKS = ("esol", "freesolv", "lipo", "bace", "bbbp")


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--model", default=DEFAULT_CHECKPOINT, help="cMIM checkpoint folder")
    parser.add_argument("--out", type=Path, required=True, help="folder of the reports")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated built-in tasks")
    parser.add_argument("--split", default="random", help="random, scaffold or scaffold_random")
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the split")
    parser.add_argument("--probe", default="svm", help="probe of every row")
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel jobs of the probes' inner CV")
    parser.add_argument("--max-molecules", type=int, help="subsample each task (quick runs only)")
    args = parser.parse_args(argv)
    featurizers = {
        f"{label} {mode}": CheckpointFeaturizer(args.model, embedding=embedding, normalize=normalize)
        for label, embedding in (("informative", "informative"), ("mu", "latent"))
        for mode, normalize in (("normalized", True), ("as written", False))
    }
    run_benchmark(
        featurizers,
        args.tasks.split(","),
        split=args.split,
        seeds=args.seeds,
        probes=(args.probe,),
        out_dir=args.out,
        max_molecules=args.max_molecules,
        n_jobs=args.n_jobs,
        progress=False,
    )
    merged = json.loads((args.out / "results.json").read_text(encoding="utf-8"))  # as the harness wrote it
    command = command_line(__file__, argv)
    table = headline_table({args.split: merged}, args.probe, list(featurizers))
    write_text(f"`{command}`\n\n{table}", args.out / "normalization.md")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
