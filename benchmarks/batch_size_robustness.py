"""The paper's second claim, measured: is cMIM's contrastive term robust to the batch size (the
number of negatives) where InfoNCE is not? One resumable command.

1. Pre-trains cMIM and InfoNCE at each ``--batch-sizes`` (default 32, 128, 512) with the shipped
   checkpoint's recipe and architecture (the options after ``--``) and the same number of molecules
   seen (``--molecules``): steps = molecules / batch size; the warm-up, the deterministic phase and
   the checkpoint interval are the same fractions of every run.
2. Reads each run's held-out reconstruction and code activity (``pretrain_results.json``: token
   accuracy, exact match, active units and directions on ``--eval-file``).
3. Benchmarks mu and the informative embedding of every run: ``--tasks``, SVM probe, random split,
   ``--seeds`` seeds (one cached harness run per model).
4. Reports, per objective and embedding, the spread of each task's headline metric across batch
   sizes (max - min, and relative to the mean), and says on how many tasks cMIM's spread is smaller.

Writes ``--out``/``batch_size_results.json`` and ``batch_size.md``; ``--results`` copies both
next to a model card. Re-running resumes: finished runs and benchmark groups are reused.

    python benchmarks/batch_size_robustness.py --train-file ../shared/data/pretrain/moses_train.csv.gz \\
        --eval-file ../shared/data/pretrain/moses_test.csv.gz --out runs/batch_size \\
        --results model_cards/cmim-moses-small-v2 -- --hidden-size 128 --encoder-layers 3 \\
        --decoder-layers 3 --ffn-dim 512 --num-attention-heads 4 --num-latents 4 --latent-size 32 \\
        --smiles-normalization canonical_nostereo --max-length 1024 --learning-rate 2e-3 \\
        --lr-scheduler cosine --max-train-samples 640000 --num-proc 1 --logging-steps 100
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from common import PretrainRun, argument_parser, command_line, pretrain, write_text

from cmim_hf.evaluation.benchmark import run_benchmark
from cmim_hf.evaluation.comparison import (
    batch_size_spread,
    headline_value,
    merge_benchmark_results,
    more_robust,
)
from cmim_hf.evaluation.featurizers import CheckpointFeaturizer
from cmim_hf.evaluation.reports import markdown_table, write_json

OBJECTIVES = ("cmim", "infonce")
EMBEDDINGS = {"informative": "informative", "mu": "latent"}  # row label -> the featurizer's embedding
HELD_OUT = ("eval_token_accuracy", "eval_exact_match", "eval_active_units", "eval_active_directions")
WARMUP_FRACTION = 300 / 4500  # the shipped recipe's warm-up and deterministic phase, as fractions
DETERMINISTIC_FRACTION = 1000 / 4500
RUN_COLUMNS = ("run", "steps", "molecules seen", "wall time (s)", "token accuracy", "exact match", "active units",
               "active directions")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--train-file", type=Path, required=True)
    parser.add_argument("--eval-file", type=Path, required=True, help="held-out molecules (reconstruction)")
    parser.add_argument("--out", type=Path, default=Path("runs/batch_size"))
    parser.add_argument("--batch-sizes", default="32,128,512")
    parser.add_argument("--molecules", type=int, default=256_000, help="molecules seen by every run")
    parser.add_argument("--n-eval", type=int, default=2000, help="held-out molecules per run")
    parser.add_argument("--parallel", type=int, default=3, help="pre-training runs at a time, 1 thread each")
    parser.add_argument("--tasks", default="esol,freesolv,lipo,bace,bbbp")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the random split")
    parser.add_argument("--max-molecules", type=int, help="subsample each task (quick runs only)")
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, help="also copy the two result files into this folder")
    parser.add_argument("model_args", nargs=argparse.REMAINDER, help="-- then `cmim pretrain` options")
    args = parser.parse_args(argv)
    args.model_args = [a for a in args.model_args if a != "--"]
    args.batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    if any(args.molecules < size for size in args.batch_sizes):
        parser.error("--molecules must be at least the largest batch size")
    return args


def run_name(objective: str, batch_size: int) -> str:
    return f"{objective}_b{batch_size}"


def pretrain_argv(objective: str, batch_size: int, args: argparse.Namespace) -> list[str]:
    """`cmim pretrain` options of one run: the same molecules seen, the recipe's phases as fractions."""
    steps = args.molecules // batch_size
    return [
        "--train-file", str(args.train_file), "--eval-file", str(args.eval_file),
        "--max-eval-samples", str(args.n_eval), "--objective", objective,
        "--batch-size", str(batch_size), "--max-steps", str(steps), "--seed", str(args.seed),
        "--warmup-steps", str(round(steps * WARMUP_FRACTION)),
        "--deterministic-steps", str(round(steps * DETERMINISTIC_FRACTION)),
        "--save-steps", str(max(1, steps // 10)), "--save-total-limit", "2",
        *args.model_args,
    ]  # fmt: skip


def pretrain_runs(args: argparse.Namespace) -> dict[str, PretrainRun]:
    """Every run of the study by name (:func:`run_name`), batch size by batch size."""
    return {
        run_name(objective, size): PretrainRun(
            args.out / run_name(objective, size), pretrain_argv(objective, size, args)
        )
        for size in args.batch_sizes
        for objective in OBJECTIVES
    }


def pretrain_all(args: argparse.Namespace) -> None:
    """Every unfinished run, ``--parallel`` at a time (single-threaded), each logging to <run>.log."""
    pretrain(pretrain_runs(args), logs=args.out, jobs=args.parallel, threads=1)


def downstream(args: argparse.Namespace) -> dict[str, Any]:
    """Merged SVM results of every run's mu and informative embedding (one cached harness run each)."""
    parts = []
    for name, run in pretrain_runs(args).items():
        out_dir = args.out / "benchmark" / name
        if not (out_dir / "results.json").is_file():
            featurizers = {
                f"{name} {label}": CheckpointFeaturizer(run.output_dir / "final", embedding=embedding)
                for label, embedding in EMBEDDINGS.items()
            }
            run_benchmark(
                featurizers, args.tasks.split(","), split="random", seeds=args.seeds, probes=("svm",),
                out_dir=out_dir, max_molecules=args.max_molecules, n_jobs=args.n_jobs, progress=False,
            )  # fmt: skip
        parts.append(json.loads((out_dir / "results.json").read_text(encoding="utf-8")))
    return merge_benchmark_results(parts)


def _run_row(name: str, run: dict[str, Any]) -> list[str]:
    held_out = [
        f"{run['held_out'][key]:{digits}}" for key, digits in zip(HELD_OUT, (".3f", ".3f", ".0f", ".0f"))
    ]
    return [name, str(run["steps"]), f"{run['molecules_seen']:,}", f"{run['wall_time_s']:.0f}", *held_out]


def _headline_cell(results: dict[str, Any], task: str, featurizer: str) -> str:
    cell = headline_value(results, task, featurizer, "svm")
    return f"{cell['mean']:.3f} ± {cell['std']:.3f}" if cell else "n/a"


def _spread_cell(spread: dict[str, Any], task: str) -> str:
    return f"{spread[task]['range']:.3f} ({spread[task]['relative']:.1%})" if task in spread else "n/a"


def report(record: dict[str, Any], args: argparse.Namespace) -> str:
    """Markdown: the runs, the downstream table, the spreads and the verdict."""
    results = record["downstream"]
    tasks = list(results["tasks"])
    runs = [_run_row(name, run) for name, run in record["runs"].items()]
    probes = [
        [name, label, *(_headline_cell(results, task, f"{name} {label}") for task in tasks)]
        for name in record["runs"]
        for label in EMBEDDINGS
    ]
    spreads = [
        [*key.split(" "), *(_spread_cell(spread, task) for task in tasks)]
        for key, spread in record["spread"].items()
    ]
    sections = [
        "# Batch-size robustness: cMIM vs InfoNCE",
        f"Command: `{record['command']}`",
        markdown_table(RUN_COLUMNS, runs),
        f"SVM probe, random split, {args.seeds} seeds (headline metric: RMSE ↓ or ROC-AUC ↑):",
        markdown_table(["run", "embedding", *tasks], probes),
        "Spread across batch sizes (max - min, and relative to the mean over batch sizes):",
        markdown_table(["objective", "embedding", *tasks], spreads),
        "\n".join(f"- {verdict}" for verdict in record["verdicts"]),
    ]
    return "\n\n".join(sections) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    pretrain_all(args)
    runs = {}
    for name, run in pretrain_runs(args).items():
        results = run.results()
        runs[name] = {key: results[key] for key in ("steps", "molecules_seen", "wall_time_s")}
        runs[name]["held_out"] = {key: results["held_out"][key] for key in HELD_OUT}
    results = downstream(args)
    spread = {
        f"{objective} {label}": batch_size_spread(
            results, {size: f"{run_name(objective, size)} {label}" for size in args.batch_sizes}
        )
        for objective in OBJECTIVES
        for label in EMBEDDINGS
    }
    verdicts = []
    for label in EMBEDDINGS:
        cmim, infonce = spread[f"cmim {label}"], spread[f"infonce {label}"]
        wins = more_robust(cmim, infonce)
        holds = wins > len(cmim) / 2
        verdicts.append(
            f"{label}: cMIM's spread across batch sizes is smaller than InfoNCE's on {wins} of {len(cmim)} "
            f"tasks: the robustness claim {'holds' if holds else 'does not hold'} on our data for this embedding."
        )
    record = {
        "command": command_line(__file__, argv),
        "batch_sizes": args.batch_sizes,
        "molecules_per_run": args.molecules,
        "runs": runs,
        "downstream": results,
        "spread": spread,
        "verdicts": verdicts,
        "wall_time_s": round(time.time() - started, 1),
    }
    write_json(record, args.out / "batch_size_results.json")
    write_text(report(record, args), args.out / "batch_size.md")
    if args.results is not None:
        args.results.mkdir(parents=True, exist_ok=True)
        for name in ("batch_size_results.json", "batch_size.md"):
            shutil.copyfile(args.out / name, args.results / name)
    print((args.out / "batch_size.md").read_text(encoding="utf-8"))
    return record


if __name__ == "__main__":
    main()
