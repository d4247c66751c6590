"""The paper's comparison, measured with our own models (issue 7), in one resumable script.

1. Pre-trains three models with the same architecture, steps, batch size and seed, one per
   objective (cMIM, MIM, InfoNCE), with ``cmim_hf.pretrain`` (each run resumes from its last
   checkpoint when re-run, so the script can be interrupted and restarted across sessions).
2. Measures the cMIM model's generative quality on held-out molecules: greedy exact-match
   reconstruction (z = mu), validity/uniqueness of prior samples, validity of neighbourhood samples.
3. Runs the downstream benchmark harness with one protocol for every row: ECFP4 and, for each
   model, the latent mean (mu) and the informative embedding.

Everything lands in ``--out`` (``comparison_results.json`` and ``comparison.md``), which the model
card is rendered from. Example (CPU, small model; see the README for the numbers it produced):

    python benchmarks/paper_comparison.py --train-file ../shared/data/pretrain/moses_train.csv.gz \
        --eval-file ../shared/data/pretrain/moses_test.csv.gz --out runs/comparison --max-steps 20000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from cmim_hf.evaluation.benchmark import run_benchmark
from cmim_hf.evaluation.featurizers import CMIMFeaturizer
from cmim_hf.generation import (
    fraction_unique,
    load_model_for_generation,
    reconstruct,
    sample_neighbourhood,
    sample_prior,
)
from cmim_hf.pretrain import load_smiles_corpus
from cmim_hf.pretrain import main as pretrain_main

OBJECTIVES = ("cmim", "mim", "infonce")
TASKS = ("esol", "freesolv", "lipo", "bace", "bbbp")


def pretrain_all(args: argparse.Namespace) -> dict[str, Path]:
    """One pre-training run per objective (resumed when a checkpoint exists); returns final dirs."""
    finals = {}
    for objective in OBJECTIVES:
        run_dir = args.out / objective
        final = run_dir / "final"
        if not (final / "config.json").is_file():
            resume = ["--resume"] if any(run_dir.glob("checkpoint-*")) else []
            argv = [
                "--train-file", str(args.train_file),
                "--output-dir", str(run_dir),
                "--objective", objective,
                "--max-steps", str(args.max_steps),
                "--batch-size", str(args.batch_size),
                "--save-steps", str(args.save_steps),
                "--seed", str(args.seed),
                *args.model_args,
                *resume,
            ]  # fmt: skip
            if args.eval_file:
                argv += ["--eval-file", str(args.eval_file), "--max-eval-samples", str(args.n_reconstruct)]
            pretrain_main(argv)
        finals[objective] = final
    return finals


def generative_metrics(model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Reconstruction and sampling figures of one checkpoint (issue 7's targets)."""
    model, tokenizer = load_model_for_generation(str(model_dir))
    held_out = list(load_smiles_corpus(args.eval_file, limit=args.n_reconstruct)["smiles"])
    rec = reconstruct(model, tokenizer, held_out)
    prior = sample_prior(model, tokenizer, args.n_samples, seed=args.seed)
    seeds = held_out[: max(1, args.n_samples // 10)]
    neighbours = sample_neighbourhood(
        model, tokenizer, seeds, n_per_seed=10, radius=args.radius, seed=args.seed
    )
    return {
        "reconstruction_molecules": len(held_out),
        "reconstruction_exact_match": sum(rec.exact) / len(rec.exact),
        "prior_samples": len(prior.smiles),
        "prior_validity": prior.validity,
        "prior_uniqueness": fraction_unique(prior.smiles),
        "neighbourhood_samples": len(neighbours.smiles),
        "neighbourhood_radius": args.radius,
        "neighbourhood_validity": neighbours.validity,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train-file", type=Path, required=True)
    parser.add_argument("--eval-file", type=Path, required=True, help="held-out molecules (MOSES test)")
    parser.add_argument("--out", type=Path, default=Path("runs/comparison"))
    parser.add_argument("--max-steps", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--save-steps", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-reconstruct", type=int, default=2000)
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--radius", type=float, default=0.5)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--splits", default="random,scaffold")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--probes", default="svm,mlp")
    parser.add_argument("--max-molecules", type=int, help="subsample each task (quick runs only)")
    parser.add_argument(
        "model_args", nargs="*", help="extra `cmim pretrain` options after `--`, e.g. -- --hidden-size 128"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    finals = pretrain_all(args)
    record: dict[str, Any] = {"arguments": {k: str(v) for k, v in vars(args).items()}}
    record["pretraining"] = {
        objective: json.loads((args.out / objective / "pretrain_results.json").read_text())
        for objective in OBJECTIVES
    }
    record["generation"] = {objective: generative_metrics(final, args) for objective, final in finals.items()}

    featurizers: dict[str, Any] = {"ECFP4": "ecfp4"}
    for objective, final in finals.items():
        featurizers[f"{objective} mu"] = CMIMFeaturizer(final, embedding="latent")
        featurizers[f"{objective} informative"] = CMIMFeaturizer(final, embedding="informative")
    record["downstream"] = {}
    for split in args.splits.split(","):
        results = run_benchmark(
            featurizers,
            args.tasks.split(","),
            split=split,
            seeds=args.seeds,
            probes=tuple(args.probes.split(",")),
            out_dir=args.out / f"benchmark_{split}",
            max_molecules=args.max_molecules,
        )
        record["downstream"][split] = results.to_dict()
    record["wall_time_s"] = round(time.time() - started, 1)
    (args.out / "comparison_results.json").write_text(json.dumps(record, indent=2, default=str))
    return record


if __name__ == "__main__":
    main()
