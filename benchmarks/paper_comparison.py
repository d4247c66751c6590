"""The paper's comparison, measured with our own models (issue 7), in one resumable script.

1. Pre-trains three models with the same architecture, steps, batch size and seed, one per
   objective (cMIM, MIM, InfoNCE), each a ``cmim pretrain`` process (each run resumes from its last
   checkpoint when re-run, so the script can be interrupted and restarted across sessions).
2. Measures the cMIM model's generative quality on held-out molecules: greedy exact-match
   reconstruction (z = mu), validity/uniqueness of prior samples, validity of neighbourhood samples.
3. Runs the downstream benchmark harness with one protocol for every row: ECFP4 and, for each
   model, the latent mean (mu) and the informative embedding.

Everything lands in ``--out`` (``comparison_results.json``, ``comparison.md``, one benchmark folder
per split and row group). ``--results`` copies the two summary files next to the model card,
``--ship`` saves the cMIM model with its card rendered from them. The shipped checkpoint and
``model_cards/cmim-moses-small-v2/`` were made by (2-core CPU, about 80 min of pre-training, the
three runs side by side; the recipe of issue 12: K=4 latents of 32, z = mu for the first 1,000
steps, 1,024 positions, SMILES as in MOSES), compared with the first checkpoint's records:

    python benchmarks/paper_comparison.py --train-file ../shared/data/pretrain/moses_train.csv.gz \
        --eval-file ../shared/data/pretrain/moses_test.csv.gz --out runs/comparison_v2 --max-steps 4500 \
        --scaffold-seeds 1 --parallel --probes svm --ship cmim_hf/pretrained \
        --results model_cards/cmim-moses-small-v2 \
        --baseline model_cards/cmim-moses-small/comparison_results.json \
        --baseline-generation model_cards/cmim-moses-small/generation_first_checkpoint.json \
        --baseline-label "first checkpoint" --generation-objectives cmim \
        --sampler-sweep model_cards/cmim-moses-small-v2/sampler_sweep.json \
        --card-extra model_cards/cmim-moses-small-v2/batch_size.md \
        -- --hidden-size 128 --encoder-layers 3 --decoder-layers 3 \
        --ffn-dim 512 --num-attention-heads 4 --num-latents 4 --latent-size 32 --deterministic-steps 1000 \
        --smiles-normalization canonical_nostereo --max-length 1024 --learning-rate 2e-3 \
        --lr-scheduler cosine --warmup-steps 300 --max-train-samples 640000 --num-proc 1 \
        --logging-steps 100 --save-total-limit 2

The card's sampling limits come from ``benchmarks/sampler_sweep.py`` (its docstring has the command).
Two things were left out of the v2 run for time (one 180-minute session on 2 cores): MIM's and
InfoNCE's generation figures, and the MLP probe. Re-running the command resumes: finished models,
their generation figures and finished benchmark groups are reused.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import PretrainRun, argument_parser, command_line, pretrain, write_text

from cmim_hf.checkpoints import load_model_for_generation
from cmim_hf.evaluation.benchmark import run_benchmark
from cmim_hf.evaluation.comparison import (
    claims_table,
    headline_table,
    merge_benchmark_results,
    paper_claims,
    select_featurizers,
)
from cmim_hf.evaluation.featurizers import CheckpointFeaturizer
from cmim_hf.evaluation.generative import generative_metrics
from cmim_hf.evaluation.reports import markdown_table, write_json
from cmim_hf.generation import AggregatePosterior
from cmim_hf.model_card import save_for_hub, write_model_card
from cmim_hf.training.corpus import load_smiles_corpus

OBJECTIVES = ("cmim", "mim", "infonce")
CARD_MODEL_NAME = "cmim-moses-small-v2"
TASKS = ("esol", "freesolv", "lipo", "bace", "bbbp")
CURVE_EVERY = 500  # steps between rows of the loss-curve table
LOSS_TERMS = ("loss/reconstruction", "loss/latent", "loss/contrastive")
PRETRAINING_COLUMNS = (
    "objective",
    "parameters",
    "steps",
    "molecules seen",
    "wall time (s)",
    "last reconstruction loss",
    "latent loss",
    "contrastive loss",
    "held-out token accuracy",
)
GENERATION_COLUMNS = (
    "reconstruction_exact_match",
    "reconstruction_validity",
    "reconstruction_mean_tanimoto",
    "prior_validity",
    "prior_uniqueness",
    "standard_prior_validity",
    "neighbourhood_validity",
    "active_units",
    "active_directions",
    "participation_ratio",
)


def _pretrain_argv(objective: str, args: argparse.Namespace) -> list[str]:
    """`cmim pretrain` options of one run (its folder is ``<out>/<objective>``)."""
    return [
        "--train-file", str(args.train_file), "--objective", objective, "--max-steps", str(args.max_steps),
        "--batch-size", str(args.batch_size), "--save-steps", str(args.save_steps), "--seed", str(args.seed),
        "--eval-file", str(args.eval_file), "--max-eval-samples", str(args.n_reconstruct), *args.model_args,
    ]  # fmt: skip


def pretrain_all(args: argparse.Namespace) -> dict[str, Path]:
    """One pre-training run per objective (finished runs are kept, interrupted ones resume from their
    last checkpoint); returns the final model folders.

    With ``--parallel`` the runs go concurrently, one single-threaded process each (on a small CPU
    model, three 1-thread processes beat three runs one after another on all threads), each
    logging to ``<out>/<objective>.log``; without, one after another, printing to this console.
    """
    runs = {
        objective: PretrainRun(args.out / objective, _pretrain_argv(objective, args))
        for objective in OBJECTIVES
    }
    if args.parallel:
        pretrain(runs, logs=args.out, jobs=len(runs), threads=1)
    else:
        pretrain(runs)
    return {objective: run.output_dir / "final" for objective, run in runs.items()}


def pretraining_record(run_dir: Path) -> dict[str, Any]:
    """A run's ``pretrain_results.json`` plus its logged losses by step (from the last checkpoint)."""
    record = json.loads((run_dir / "pretrain_results.json").read_text())
    checkpoints = sorted(run_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    if checkpoints and (checkpoints[-1] / "trainer_state.json").is_file():
        history = json.loads((checkpoints[-1] / "trainer_state.json").read_text())["log_history"]
        record["loss_curve"] = [
            {key: entry[key] for key in ("step", *LOSS_TERMS) if key in entry}
            for entry in history
            if "loss" in entry
        ]
    return record


def checkpoint_generative_metrics(model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Reconstruction and sampling figures of one checkpoint (:func:`generative_metrics`), cached
    next to it (``generation_metrics.json``) and reused when measured with the same settings."""
    settings = {"eval_file": str(args.eval_file), "n_reconstruct": args.n_reconstruct,
                "n_samples": args.n_samples, "radius": args.radius, "seed": args.seed}  # fmt: skip
    cache = model_dir.parent / "generation_metrics.json"
    if cache.is_file():
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached["settings"] == settings:
            return cached["metrics"]
    held_out = list(load_smiles_corpus(args.eval_file, limit=args.n_reconstruct)["smiles"])
    metrics = generative_metrics(model_dir, held_out, args.n_samples, args.radius, args.seed)
    write_json({"settings": settings, "metrics": metrics}, cache)
    return metrics


def downstream(finals: dict[str, Path], split: str, seeds: int, args: argparse.Namespace) -> dict[str, Any]:
    """Benchmark results of every row on one split, merged from one cached harness run per model.

    ECFP4 and each model run separately (``<out>/benchmark_<split>/<group>/results.json``) and a
    finished group is reused, so an interrupted comparison only redoes what is missing.
    """
    groups: dict[str, dict[str, Any]] = {"ecfp4": {"ECFP4": "ecfp4"}}
    for objective, final in finals.items():
        groups[objective] = {
            f"{objective} mu": CheckpointFeaturizer(final, embedding="latent"),
            f"{objective} informative": CheckpointFeaturizer(final, embedding="informative"),
        }
    parts = []
    for group, featurizers in groups.items():
        out_dir = args.out / f"benchmark_{split}" / group
        cached = out_dir / "results.json"
        if not cached.is_file():  # the harness writes results.json into out_dir
            run_benchmark(
                featurizers,
                args.tasks.split(","),
                split=split,
                seeds=seeds,
                probes=tuple(args.probes.split(",")),
                out_dir=out_dir,
                max_molecules=args.max_molecules,
                n_jobs=args.n_jobs,
                progress=False,
            )
        # Read back from JSON either way, so fresh and cached groups look the same (NaN -> null).
        parts.append(json.loads(cached.read_text(encoding="utf-8")))
    return merge_benchmark_results(parts)


def add_baseline(record: dict[str, Any], args: argparse.Namespace) -> None:
    """Put the previous checkpoint's cmim rows (downstream tables, generation table) next to the new
    ones, labelled ``--baseline-label``: the before/after comparison of a retrained checkpoint."""
    baseline = json.loads(args.baseline.read_text(encoding="utf-8"))
    label = args.baseline_label
    names = {f"cmim {kind}": f"{label} cmim {kind}" for kind in ("mu", "informative")}
    for split, results in record["downstream"].items():
        if split in baseline["downstream"]:
            previous = select_featurizers(baseline["downstream"][split], names, results["config"]["probes"])
            record["downstream"][split] = merge_benchmark_results([results, previous])
    if args.baseline_generation:
        record["generation"][f"{label} cmim"] = json.loads(
            args.baseline_generation.read_text(encoding="utf-8")
        )
    record["baseline"] = {"results": str(args.baseline), "label": label}


def _pretraining_row(objective: str, run: dict[str, Any]) -> list[str]:
    losses, held_out = run["last_logged_losses"], run.get("held_out", {})
    terms = ("reconstruction", "latent", "contrastive")
    return [
        objective, f"{run['parameters']:,}", str(run["steps"]), f"{run['molecules_seen']:,}",
        f"{run['wall_time_s']:.0f}", *(f"{losses.get(f'loss/{term}', float('nan')):.4f}" for term in terms),
        f"{held_out.get('eval_token_accuracy', float('nan')):.4f}",
    ]  # fmt: skip


def _loss_curve_table(record: dict[str, Any]) -> str | None:
    """Reconstruction loss by step (every ``CURVE_EVERY`` steps and the last), one column per run."""
    curves = {objective: run.get("loss_curve", []) for objective, run in record["pretraining"].items()}
    steps = sorted({entry["step"] for curve in curves.values() for entry in curve})
    shown = [step for step in steps if step % CURVE_EVERY == 0 or step == steps[-1]]
    if not shown:
        return None

    def loss_at(curve: list[dict[str, Any]], step: int) -> str:
        return next((f"{e['loss/reconstruction']:.4f}" for e in curve if e["step"] == step), "n/a")

    rows = [[str(step), *(loss_at(curve, step) for curve in curves.values())] for step in shown]
    return markdown_table(["step", *curves], rows)


def comparison_markdown(record: dict[str, Any]) -> str:
    """The comparison as Markdown: generative figures, headline tables per probe, checked claims."""
    pretraining = [_pretraining_row(objective, run) for objective, run in record["pretraining"].items()]
    generation = [
        [model, *("—" if metrics.get(c) is None else f"{metrics[c]:.3f}" for c in GENERATION_COLUMNS)]
        for model, metrics in record["generation"].items()
    ]
    sections = [
        "# cMIM vs MIM vs InfoNCE vs ECFP4 (benchmarks/paper_comparison.py)",
        f"`{record['command']}`",
        "## Pre-training",
        markdown_table(PRETRAINING_COLUMNS, pretraining),
    ]
    curve = _loss_curve_table(record)
    if curve is not None:
        sections += ["Reconstruction loss (per token, training batches) by step:", curve]
    sections += ["## Generation (greedy, z = mu)", markdown_table(["model", *GENERATION_COLUMNS], generation)]
    benchmarks = record["downstream"]
    featurizers = list(next(iter(benchmarks.values()))["config"]["featurizers"])
    for probe in record["probes"]:
        sections += [f"## Downstream, {probe.upper()} probe", headline_table(benchmarks, probe, featurizers)]
    sections += ["## The paper's claims", claims_table(record["claims"])]
    return "\n\n".join(sections) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--train-file", type=Path, help="pre-training corpus (required unless --rerender-card)"
    )
    parser.add_argument("--eval-file", type=Path, help="held-out molecules (MOSES test)")
    parser.add_argument("--out", type=Path, default=Path("runs/comparison"))
    parser.add_argument("--max-steps", type=int, default=4500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--save-steps", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel", action="store_true", help="pre-train the three models concurrently")
    parser.add_argument("--n-reconstruct", type=int, default=2000)
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--radius", type=float, default=0.5)
    parser.add_argument(
        "--generation-objectives",
        default=",".join(OBJECTIVES),
        help="models whose generation figures are measured (the card needs cmim's)",
    )
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--splits", default="random,scaffold")
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the random split")
    parser.add_argument(
        "--scaffold-seeds",
        type=int,
        default=1,
        help="seeds of the scaffold split (deterministic: seeds only vary the probes)",
    )
    parser.add_argument("--probes", default="svm,mlp")
    parser.add_argument("--n-jobs", type=int, default=-1, help="parallel jobs of the probes' inner CV")
    parser.add_argument("--max-molecules", type=int, help="subsample each task (quick runs only)")
    parser.add_argument(
        "--ship",
        type=Path,
        help="also save the cMIM model with its model card here (e.g. cmim_hf/pretrained)",
    )
    parser.add_argument("--results", type=Path, help="also copy comparison_results.json/.md into this folder")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="RESULTS_JSON",
        help="a previous comparison_results.json: its cmim rows join every table, labelled --baseline-label",
    )
    parser.add_argument(
        "--baseline-generation",
        type=Path,
        metavar="JSON",
        help="the previous cmim checkpoint's figures from benchmarks/generation_metrics.py (generation table)",
    )
    parser.add_argument("--baseline-label", default="first checkpoint", help="label of the baseline's rows")
    parser.add_argument(
        "--rerender-card",
        type=Path,
        metavar="RESULTS_JSON",
        help="only render the --ship folder's card again from this comparison_results.json",
    )
    parser.add_argument(
        "--sampler-sweep",
        type=Path,
        metavar="JSON",
        help="a benchmarks/sampler_sweep.py record of the cMIM model: the card states its sampling limits",
    )
    parser.add_argument(
        "--card-extra",
        type=Path,
        action="append",
        default=[],
        metavar="MARKDOWN",
        help="a benchmark report (e.g. batch_size.md) to add to the card's Evaluation section; repeatable",
    )
    parser.add_argument(
        "model_args", nargs="*", help="extra `cmim pretrain` options after `--`, e.g. -- --hidden-size 128"
    )
    args = parser.parse_args(argv)
    if args.rerender_card:
        if not args.ship:
            parser.error("--rerender-card needs --ship FOLDER")
        rerender_card(args.rerender_card, args.ship, args)
        return json.loads(args.rerender_card.read_text(encoding="utf-8"))
    if args.train_file is None or args.eval_file is None:
        parser.error("--train-file and --eval-file are required")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    finals = pretrain_all(args)
    record: dict[str, Any] = {"command": command_line(__file__, argv)}
    record["arguments"] = {k: str(v) for k, v in vars(args).items()}
    record["pretraining"] = {objective: pretraining_record(args.out / objective) for objective in OBJECTIVES}
    record["generation"] = {
        objective: checkpoint_generative_metrics(finals[objective], args)
        for objective in args.generation_objectives.split(",")
    }
    split_seeds = {"random": args.seeds, "scaffold": args.scaffold_seeds, "scaffold_random": args.seeds}
    record["downstream"] = {
        split: downstream(finals, split, split_seeds[split], args) for split in args.splits.split(",")
    }
    if args.baseline:
        add_baseline(record, args)
    record["probes"] = args.probes.split(",")
    record["claims"] = [
        claim
        for split, results in record["downstream"].items()
        for probe in record["probes"]
        for claim in paper_claims(results, split, probe)
    ]
    record["wall_time_s"] = round(time.time() - started, 1)
    write_json(record, args.out / "comparison_results.json")
    write_text(comparison_markdown(record), args.out / "comparison.md")
    if args.results:
        args.results.mkdir(parents=True, exist_ok=True)
        for name in ("comparison_results.json", "comparison.md"):
            shutil.copyfile(args.out / name, args.results / name)
    if args.ship:
        ship(finals["cmim"], record, args.ship, args)
    return record


def sweep_limitation(sweep: dict[str, Any]) -> str:
    """One card limitation from a ``benchmarks/sampler_sweep.py`` record: the posterior's width and
    the validity of each sampler at each spread."""
    width = sweep["posterior"]
    floor = (
        f", {width['share_at_floor']:.0%} of log-variances at the floor" if "share_at_floor" in width else ""
    )
    by_sampler: dict[str, list[str]] = {}
    for row in sweep["rows"]:
        by_sampler.setdefault(row["sampler"], []).append(f"{row['validity']:.2f} at {row['spread']:g}")
    validity = "; ".join(f"{sampler}: {', '.join(cells)}" for sampler, cells in by_sampler.items())
    return (
        f"Samples away from a training code are often invalid. q(z|x) is narrow (mean sigma "
        f"{width['mean_sigma']:.3f}{floor}), so the decoder learned to read codes near training codes "
        f"only. Valid fraction of {sweep['rows'][0]['samples']} samples by sampler and scale or radius "
        f"({validity}), from `{sweep['command']}`."
    )


def card_results(
    record: dict[str, Any], sampler_sweep: dict[str, Any] | None = None, extra_sections: Sequence[str] = ()
) -> dict[str, Any]:
    """The results dict of the shipped cMIM model's card (``cmim_hf.model_card``), from ``record``;
    when given, a ``benchmarks/sampler_sweep.py`` record of the same model (a limitation) and reports
    of other benchmark scripts (markdown, each with a ``# `` title) as extra Evaluation sections."""
    training = record["pretraining"]["cmim"]
    generation = record["generation"]["cmim"]
    results = {
        "training": {
            "dataset": "MOSES train (first molecules of moses_train.csv.gz)",
            "molecules": training["training_arguments"].get("max_train_samples"),
            "dataset_license": "MIT (MOSES)",
            "objective": "cmim",
            "steps": training["steps"],
            "molecules_seen": training["molecules_seen"],
            "wall_time_s": training["wall_time_s"],
            "command": training["command"],
            "final_reconstruction_loss": training["last_logged_losses"].get("loss/reconstruction"),
        },
        "reconstruction": {
            "dataset": "MOSES test",
            "molecules": generation["reconstruction_molecules"],
            "decoding": "greedy, z = mu",
            "exact_match": generation["reconstruction_exact_match"],
            "validity": generation["reconstruction_validity"],
            "mean_tanimoto": generation["reconstruction_mean_tanimoto"],
            "token_accuracy": training["held_out"].get("eval_token_accuracy"),
            "active_units": generation.get("active_units"),
            "participation_ratio": generation.get("participation_ratio"),
        },
        "sampling": {
            "molecules": generation["prior_samples"],
            "prior": generation.get("prior", "standard normal"),
            "scale": 1.0,
            "validity": generation["prior_validity"],
            "uniqueness": generation["prior_uniqueness"],
            "standard_prior_validity": generation.get("standard_prior_validity"),
            "neighbourhood_validity": generation["neighbourhood_validity"],
            "notes": f"neighbourhood: {generation['neighbourhood_samples']} samples, 10 around each of "
            f"the first MOSES-test molecules, radius {generation['neighbourhood_radius']}",
        },
        "benchmark": list(record["downstream"].values()),  # random split first, then scaffold
        "benchmark_featurizer": "cmim informative",
        "comparison": {
            "benchmarks": record["downstream"],
            "featurizers": list(next(iter(record["downstream"].values()))["config"]["featurizers"]),
            "probes": record["probes"],
            "claims": record["claims"],
        },
        "reproduce": record["command"],
    }
    if sampler_sweep is not None:
        results["limitations"] = [sweep_limitation(sampler_sweep)]
    if extra_sections:
        results["extra_sections"] = list(extra_sections)
    return results


def _card_inputs(args: argparse.Namespace) -> tuple[dict[str, Any] | None, list[str]]:
    """The ``--sampler-sweep`` record and the ``--card-extra`` reports, read from their files."""
    sweep = json.loads(args.sampler_sweep.read_text(encoding="utf-8")) if args.sampler_sweep else None
    return sweep, [path.read_text(encoding="utf-8") for path in args.card_extra]


def ship(model_dir: Path, record: dict[str, Any], folder: Path, args: argparse.Namespace) -> Path:
    """Save the cMIM model, tokenizer, remote code and a model card rendered from ``record``."""
    model, tokenizer = load_model_for_generation(str(model_dir))
    prior = AggregatePosterior.load(model_dir)
    results = card_results(record, *_card_inputs(args))
    return save_for_hub(
        model, tokenizer, folder, results, aggregate_posterior=prior, model_name=CARD_MODEL_NAME
    )


def rerender_card(record_path: Path, folder: Path, args: argparse.Namespace) -> Path:
    """Render the card of an already shipped ``folder`` again from a saved ``comparison_results.json``
    (after a template change), without training or measuring anything."""
    record = json.loads(record_path.read_text(encoding="utf-8"))
    model, _ = load_model_for_generation(str(folder))
    return write_model_card(
        folder,
        card_results(record, *_card_inputs(args)),
        model_name=CARD_MODEL_NAME,
        config=model.config.to_dict(),
        parameters=model.num_parameters(),
    )


if __name__ == "__main__":
    main()
