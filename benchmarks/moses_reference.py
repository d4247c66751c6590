"""Proof of the MOSES metrics on known inputs: MOSES' training set must reproduce MOSES' published
"Train" row (molecularsets/moses README; Polykovskiy et al. 2020).

    OMP_NUM_THREADS=2 python benchmarks/moses_reference.py --n-jobs 2

1. Every metric of a fixed-seed 30,000-molecule sample of the training set (the first 30,000 of a
   seeded permutation), as a generator's 30,000 samples would be evaluated.
2. The two metrics whose value depends on the number of molecules evaluated, computed as for the
   whole training set, which is what the published row evaluates (1,584,663 molecules):
   Scaf/Test of the whole set, and FCD at 30k, 60k and 120k molecules, extrapolated in 1/n (FCD's
   leading finite-sample bias) to 1,584,663.

Writes ``benchmarks/results/moses_reference.json`` and ``.md``: the measured and published rows,
their differences, the tolerance, the times (building the caches of the MOSES fingerprints and the
canonical training set, once per machine and RDKit version; evaluating the 30k sample; SNN of the
30k sample against the 176k test molecules alone) and the command.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections import Counter
from datetime import date
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import rdkit
import torch
from common import argument_parser, command_line, publish

from cmim_hf.evaluation import moses_metrics as mm
from cmim_hf.evaluation.reports import markdown_table

RESULTS = Path(__file__).resolve().parent / "results"
# MOSES' published metrics of its training set ("Train" row, README); Novelty is 0 by definition
# (the README's 1.0 is not a value of the training set against itself).
PUBLISHED_TRAIN = {
    "Valid": 1.0,
    "Unique@1k": 1.0,
    "Unique@10k": 1.0,
    "FCD/Test": 0.008,
    "FCD/TestSF": 0.4755,
    "SNN/Test": 0.6419,
    "SNN/TestSF": 0.5859,
    "Frag/Test": 1.0,
    "Frag/TestSF": 0.9986,
    "Scaf/Test": 0.9907,
    "Scaf/TestSF": 0.0,
    "IntDiv": 0.8567,
    "IntDiv2": 0.8508,
    "Filters": 1.0,
    "Novelty": 0.0,
}
COMPARISON_COLUMNS = (
    "metric",
    "MOSES Train",
    "30k sample",
    "whole train",
    "compared",
    "difference",
    "within",
)
TOLERANCE = {name: 0.05 if name.startswith("FCD") else 0.01 for name in PUBLISHED_TRAIN}
# Metrics taken from part 2 (the whole training set); all others from the 30k sample.
SIZE_DEPENDENT = ("FCD/Test", "FCD/TestSF", "Scaf/Test")
FCD_SIZES = (30000, 60000, 120000)


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, round(time.perf_counter() - start, 1)


def _scaffold_of(smiles: str) -> str | None:
    return mm.scaffold(mm.get_mol(smiles))


def _fcd_by_size(
    canonical: list[str], references: dict[str, mm.ReferenceStatistics], whole: int
) -> dict[str, dict]:
    """FCD of the first n of ``canonical`` for each n of FCD_SIZES, and its extrapolation in 1/n
    (least squares) to ``whole`` molecules."""
    activations = mm.chemnet_activations(canonical[: FCD_SIZES[-1]])
    result = {}
    for name, reference in references.items():
        values = [
            mm.frechet_chemnet_distance(mm.ChemNetStatistics.of(activations[:n]), reference.chemnet)
            for n in FCD_SIZES
        ]
        slope, intercept = np.polyfit([1 / n for n in FCD_SIZES], values, 1)
        result[f"FCD/{name}"] = {
            "by_size": dict(zip(map(str, FCD_SIZES), values)),
            "extrapolated_to_whole_train": intercept + slope / whole,
        }
    return result


def _comparison_row(report: dict, name: str) -> list[str]:
    whole = report["whole_train"]
    return [
        name,
        str(PUBLISHED_TRAIN[name]),
        f"{report['sample_30k'][name]:.4f}",
        f"{whole[name]:.4f}" if name in whole else "",
        f"{report['compared'][name]:.4f}",
        f"{report['difference'][name]:+.4f}",
        "yes" if report["within_tolerance"][name] else "**no**",
    ]


def _fcd_rows(report: dict) -> list[list[str]]:
    """FCD/Test and FCD/TestSF at each size of FCD_SIZES, then extrapolated to the whole set."""
    by_size = {name: report["fcd_by_size"][name]["by_size"] for name in ("FCD/Test", "FCD/TestSF")}
    rows = [[f"{n:,}", *(f"{values[str(n)]:.4f}" for values in by_size.values())] for n in FCD_SIZES]
    whole = [f"{report['whole_train'][name]:.4f}" for name in by_size]
    return [*rows, [f"{report['train_molecules']:,} (extrapolated)", *whole]]


def _markdown(report: dict) -> str:
    lines = [
        "# MOSES metrics of the MOSES training set vs MOSES' published Train row",
        "",
        f"Training set: `{report['train']}`, {report['train_molecules']:,} molecules. Sample: the first "
        f"30,000 of `numpy.random.default_rng({report['seed']}).permutation`. Tolerance: "
        f"{TOLERANCE['Valid']} absolute, FCD {TOLERANCE['FCD/Test']} absolute. "
        f"All within tolerance: **{report['all_within_tolerance']}**.",
        "",
        "FCD and Scaf/Test depend on how many molecules are evaluated, and MOSES' Train row evaluates the",
        f"whole training set: they are compared as computed for it (Scaf/Test of all {report['train_molecules']:,} "
        f"molecules; FCD at {', '.join(f'{n:,}' for n in FCD_SIZES)} molecules extrapolated in 1/n to "
        f"{report['train_molecules']:,}). All other metrics come from the 30k sample.",
        "",
        markdown_table(COMPARISON_COLUMNS, [_comparison_row(report, name) for name in PUBLISHED_TRAIN]),
        "",
        "FCD by number of training molecules evaluated:",
        "",
        markdown_table(["n", "FCD/Test", "FCD/TestSF"], _fcd_rows(report)),
    ]
    timing = report["timing_seconds"]
    lines += [
        "",
        f"Times, {report['threads']} processes and torch threads on {report['machine']}: building the caches "
        f"(once per machine and RDKit version) {timing['caches']} s; evaluating the 30k sample "
        f"{timing['evaluation_30k']} s, in which SNN of 30,000 x 176,074 test molecules alone takes "
        f"{timing['snn_30k_x_test']} s; part 2 {timing['whole_train']} s.",
        "",
        f"Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}. Date: {report['date']}.",
        "",
        "Command (from the repository root):",
        "",
        f"    {report['command']}",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument("--n-jobs", type=int, default=1, help="processes for RDKit and threads for torch")
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="cache of the MOSES data (default: HF_HOME)"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS / "moses_reference", help="output path, no suffix"
    )
    arguments = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(arguments)
    torch.set_num_threads(args.n_jobs)

    train = mm.read_moses_smiles(mm.MOSES_DATA / mm.MOSES_TRAIN)
    order = np.random.default_rng(args.seed).permutation(len(train))
    shuffled = [train[row] for row in order]

    start = time.perf_counter()
    references = {
        name: mm.moses_reference_statistics(name, args.cache_dir, args.n_jobs) for name in mm.MOSES_REFERENCES
    }
    mm.moses_train_set(args.cache_dir, args.n_jobs)
    caches = round(time.perf_counter() - start, 1)

    # 1. The 30k sample
    sample = shuffled[:30000]
    sample_metrics, evaluation = _timed(
        mm.moses_metrics, sample, n_jobs=args.n_jobs, cache_dir=args.cache_dir
    )
    fingerprints = mm.morgan_fingerprints([mm.get_mol(s) for s in mm.valid_canonical_smiles(sample)])
    _, snn_test = _timed(mm.nearest_neighbour_similarity, fingerprints, references["Test"].fingerprints)

    # 2. The size-dependent metrics of the whole training set
    start = time.perf_counter()
    fcd = _fcd_by_size(
        mm.valid_canonical_smiles(shuffled[: FCD_SIZES[-1]], args.n_jobs), references, len(train)
    )
    with Pool(args.n_jobs) as pool:
        train_scaffolds = Counter(pool.imap(_scaffold_of, shuffled, chunksize=4096))
    del train_scaffolds[None]
    whole = {name: fcd[name]["extrapolated_to_whole_train"] for name in fcd}
    whole["Scaf/Test"] = mm.cosine_similarity(references["Test"].scaffolds, train_scaffolds)
    whole_seconds = round(time.perf_counter() - start, 1)

    compared = {
        name: whole[name] if name in SIZE_DEPENDENT else sample_metrics[name] for name in PUBLISHED_TRAIN
    }
    difference = {name: compared[name] - published for name, published in PUBLISHED_TRAIN.items()}
    within = {name: bool(abs(difference[name]) <= TOLERANCE[name]) for name in PUBLISHED_TRAIN}
    report = {
        "train": f"cmim_hf/package_data/moses/{mm.MOSES_TRAIN}",
        "train_molecules": len(train),
        "seed": args.seed,
        "published": PUBLISHED_TRAIN,
        "sample_30k": sample_metrics,
        "whole_train": whole,
        "fcd_by_size": fcd,
        "compared": compared,
        "difference": difference,
        "tolerance": TOLERANCE,
        "within_tolerance": within,
        "all_within_tolerance": all(within.values()),
        "timing_seconds": {
            "caches": caches,
            "evaluation_30k": evaluation,
            "snn_30k_x_test": snn_test,
            "whole_train": whole_seconds,
        },
        "threads": args.n_jobs,
        "machine": f"a shared {os.cpu_count()}-core {platform.machine()} CPU",
        "versions": {
            "rdkit": rdkit.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "date": date.today().isoformat(),
        "command": f"OMP_NUM_THREADS={args.n_jobs} {command_line(__file__, arguments)}",
    }
    publish(report, args.out.with_suffix(".json"), _markdown(report))
    return 0 if report["all_within_tolerance"] else 1


if __name__ == "__main__":
    sys.exit(main())
