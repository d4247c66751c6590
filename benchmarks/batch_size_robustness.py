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
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cmim_hf.evaluation.benchmark import run_benchmark
from cmim_hf.evaluation.comparison import (
    batch_size_spread,
    headline_value,
    merge_benchmark_results,
    more_robust,
)
from cmim_hf.evaluation.featurizers import CMIMFeaturizer
from cmim_hf.evaluation.reports import write_json

OBJECTIVES = ("cmim", "infonce")
EMBEDDINGS = {"informative": "informative", "mu": "latent"}  # row label -> CMIMFeaturizer embedding
HELD_OUT = ("eval_token_accuracy", "eval_exact_match", "eval_active_units", "eval_active_directions")
WARMUP_FRACTION = 300 / 4500  # the shipped recipe's warm-up and deterministic phase, as fractions
DETERMINISTIC_FRACTION = 1000 / 4500


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
    run_dir = args.out / run_name(objective, batch_size)
    argv = [
        "--train-file", str(args.train_file), "--eval-file", str(args.eval_file),
        "--max-eval-samples", str(args.n_eval), "--output-dir", str(run_dir), "--objective", objective,
        "--batch-size", str(batch_size), "--max-steps", str(steps), "--seed", str(args.seed),
        "--warmup-steps", str(round(steps * WARMUP_FRACTION)),
        "--deterministic-steps", str(round(steps * DETERMINISTIC_FRACTION)),
        "--save-steps", str(max(1, steps // 10)), "--save-total-limit", "2",
        *args.model_args,
    ]  # fmt: skip
    return argv + (["--resume"] if any(run_dir.glob("checkpoint-*")) else [])


def pretrain_all(args: argparse.Namespace) -> None:
    """Every unfinished run, ``--parallel`` at a time (single-threaded), each logging to <run>.log."""
    todo = [
        (objective, size)
        for size in args.batch_sizes
        for objective in OBJECTIVES
        if not (args.out / run_name(objective, size) / "pretrain_results.json").is_file()
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    running: dict[str, subprocess.Popen] = {}
    failed = []
    while todo or running:
        while todo and len(running) < args.parallel:
            objective, size = todo.pop(0)
            name = run_name(objective, size)
            log = (args.out / f"{name}.log").open("a", encoding="utf-8")
            command = [sys.executable, "-m", "cmim_hf.cli", "pretrain", *pretrain_argv(objective, size, args)]
            running[name] = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        time.sleep(1.0)
        for name, process in list(running.items()):
            if process.poll() is not None:
                if process.returncode != 0:
                    failed.append(name)
                del running[name]
    if failed:
        raise SystemExit(f"pre-training failed for {', '.join(failed)}: see {args.out}/<run>.log")


def downstream(args: argparse.Namespace) -> dict[str, Any]:
    """Merged SVM results of every run's mu and informative embedding (one cached harness run each)."""
    parts = []
    for size in args.batch_sizes:
        for objective in OBJECTIVES:
            name = run_name(objective, size)
            out_dir = args.out / "benchmark" / name
            if not (out_dir / "results.json").is_file():
                final = args.out / name / "final"
                featurizers = {
                    f"{name} {label}": CMIMFeaturizer(final, embedding=embedding)
                    for label, embedding in EMBEDDINGS.items()
                }
                run_benchmark(
                    featurizers, args.tasks.split(","), split="random", seeds=args.seeds, probes=("svm",),
                    out_dir=out_dir, max_molecules=args.max_molecules, n_jobs=args.n_jobs, progress=False,
                )  # fmt: skip
            parts.append(json.loads((out_dir / "results.json").read_text(encoding="utf-8")))
    return merge_benchmark_results(parts)


def report(record: dict[str, Any], args: argparse.Namespace) -> str:
    """Markdown: the runs, the downstream table, the spreads and the verdict."""
    lines = ["# Batch-size robustness: cMIM vs InfoNCE", "", f"Command: `{record['command']}`", ""]
    lines += ["| run | steps | molecules seen | wall time (s) | token accuracy | exact match | active units | "
              "active directions |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, run in record["runs"].items():
        held_out = run["held_out"]
        lines.append(
            f"| {name} | {run['steps']} | {run['molecules_seen']:,} | {run['wall_time_s']:.0f} | "
            f"{held_out['eval_token_accuracy']:.3f} | {held_out['eval_exact_match']:.3f} | "
            f"{held_out['eval_active_units']:.0f} | {held_out['eval_active_directions']:.0f} |"
        )
    downstream_results = record["downstream"]
    tasks = list(downstream_results["tasks"])
    lines += ["", f"SVM probe, random split, {args.seeds} seeds (headline metric: RMSE ↓ or ROC-AUC ↑):", ""]
    lines += ["| run | embedding | " + " | ".join(tasks) + " |", "|---|---|" + "---|" * len(tasks)]
    for name in record["runs"]:
        for label in EMBEDDINGS:
            cells = [headline_value(downstream_results, task, f"{name} {label}", "svm") for task in tasks]
            lines.append(
                f"| {name} | {label} | "
                + " | ".join(f"{c['mean']:.3f} ± {c['std']:.3f}" if c else "n/a" for c in cells)
                + " |"
            )
    lines += ["", "Spread across batch sizes (max - min, and relative to the mean over batch sizes):", ""]
    lines += ["| objective | embedding | " + " | ".join(tasks) + " |", "|---|---|" + "---|" * len(tasks)]
    for key, spread in record["spread"].items():
        objective, label = key.split(" ")
        cells = [
            f"{spread[t]['range']:.3f} ({spread[t]['relative']:.1%})" if t in spread else "n/a" for t in tasks
        ]
        lines.append(f"| {objective} | {label} | " + " | ".join(cells) + " |")
    lines += [""] + [f"- {verdict}" for verdict in record["verdicts"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    pretrain_all(args)
    runs = {}
    for size in args.batch_sizes:
        for objective in OBJECTIVES:
            name = run_name(objective, size)
            run = json.loads((args.out / name / "pretrain_results.json").read_text())
            runs[name] = {key: run[key] for key in ("steps", "molecules_seen", "wall_time_s")}
            runs[name]["held_out"] = {key: run["held_out"][key] for key in HELD_OUT}
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
        "command": " ".join(["python", "benchmarks/batch_size_robustness.py", *(argv or sys.argv[1:])]),
        "batch_sizes": args.batch_sizes,
        "molecules_per_run": args.molecules,
        "runs": runs,
        "downstream": results,
        "spread": spread,
        "verdicts": verdicts,
        "wall_time_s": round(time.time() - started, 1),
    }
    write_json(record, args.out / "batch_size_results.json")
    (args.out / "batch_size.md").write_text(report(record, args), encoding="utf-8")
    if args.results is not None:
        args.results.mkdir(parents=True, exist_ok=True)
        for name in ("batch_size_results.json", "batch_size.md"):
            shutil.copyfile(args.out / name, args.results / name)
    print((args.out / "batch_size.md").read_text(encoding="utf-8"))
    return record


if __name__ == "__main__":
    main()
