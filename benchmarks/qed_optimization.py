"""Constrained QED optimisation in a cMIM latent space (issue 21, item 6).

The QED task of the literature (Jin et al., "Learning multimodal graph-to-graph translation for
molecular optimization", ICLR 2019): from a seed molecule with QED in [0.7, 0.8), find a molecule
with QED >= 0.9 whose ECFP4 Tanimoto similarity to the seed is >= 0.4.

Seeds: ``benchmarks/data/qed_seeds_200.csv``, 200 MOSES test molecules with QED in [0.7, 0.8)
chosen with a fixed seed by :func:`select_seeds` (``--eval-file`` chooses them again and writes
``--seeds``; see ``benchmarks/data/README.md``).

Search: :func:`cmim_hf.generation.optimize` (CMA-ES around mu(seed), greedy decoding), once per seed
with :func:`constrained_qed` as its score: QED where the decode is similar enough to the seed,
below every such score otherwise. ``--budget`` decodes per seed = rounds x ``--population``.

Per model: the success rate (a decode with QED >= 0.9 and similarity >= 0.4), the mean improvement
(best feasible QED - seed QED, feasible = similarity >= 0.4, 0 where none is feasible), the mean
similarity of the successes (of each seed's best-QED success), the fraction of valid decodes and the
wall time. ``--append`` adds models to an earlier ``--json`` record (same settings) and re-renders
the table, so a later checkpoint is one more run:

    python benchmarks/qed_optimization.py --model v2=shipped \\
        --model first=/tmp/first_ckpt/cmim_hf/pretrained --seeds benchmarks/data/qed_seeds_200.csv \\
        --budget 160 --json model_cards/qed_optimization/results.json \\
        --markdown model_cards/qed_optimization/README.md
    python benchmarks/qed_optimization.py --model v3=DIR --seeds benchmarks/data/qed_seeds_200.csv \\
        --budget 160 --json model_cards/qed_optimization/results.json \\
        --markdown model_cards/qed_optimization/README.md --append
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from common import argument_parser, command_line, write_text
from rdkit import Chem, rdBase
from rdkit.Chem import QED
from transformers import PreTrainedModel

from cmim_hf import resolve_checkpoint
from cmim_hf.checkpoints import load_model_for_generation
from cmim_hf.evaluation.reports import markdown_table, write_json
from cmim_hf.generation import OptimizationResult, optimize, tanimoto_similarity
from cmim_hf.outputs import atomic_output
from cmim_hf.training.corpus import load_smiles_corpus

SEED_QED_RANGE = (0.7, 0.8)
QED_TARGET = 0.9
SIMILARITY_THRESHOLD = 0.4
SEED_COLUMNS = ["smiles", "qed", "source_row"]
TABLE_COLUMNS = ("model", "success rate", "mean improvement", "similarity of successes",
                 "seeds with a feasible decode", "valid decodes", "wall time")  # fmt: skip


class SeedMolecule(NamedTuple):
    """A seed of the task: its SMILES, QED and row in the file it was chosen from (a row of the seeds
    CSV)."""

    smiles: str
    qed: float
    source_row: int


@dataclass(frozen=True)
class SearchSettings:
    """What every run in one record shares (``--append`` refuses a run with other settings)."""

    seeds_file: str
    seeds_sha256: str
    seeds: int
    budget: int
    population: int
    sigma: float
    max_new_tokens: int
    search_seed: int
    qed_target: float = QED_TARGET
    similarity_threshold: float = SIMILARITY_THRESHOLD


def qed(smiles: str) -> float:
    """RDKit's QED of a valid SMILES (the value ``descriptor_score("qed")`` gives, 5x faster)."""
    return QED.qed(Chem.MolFromSmiles(smiles))


def select_seeds(
    smiles: Sequence[str], n: int, seed: int, qed_range: tuple[float, float] = SEED_QED_RANGE
) -> list[SeedMolecule]:
    """The first ``n`` molecules with ``low <= QED < high`` in a random order of ``smiles`` (numpy's
    ``default_rng(seed).permutation``): a uniform sample of the molecules in range, in that order.
    Invalid SMILES are passed over.

    Raises:
        ValueError: fewer than ``n`` molecules are in range.
    """
    low, high = qed_range
    chosen: list[SeedMolecule] = []
    with rdBase.BlockLogs():
        for row in np.random.default_rng(seed).permutation(len(smiles)):
            molecule = Chem.MolFromSmiles(smiles[row])
            value = QED.qed(molecule) if molecule is not None else math.nan
            if low <= value < high:
                chosen.append(SeedMolecule(smiles[row], value, int(row)))
                if len(chosen) == n:
                    return chosen
    raise ValueError(f"only {len(chosen)} of {len(smiles)} molecules have QED in [{low}, {high})")


def constrained_qed(seed_smiles: str, threshold: float = SIMILARITY_THRESHOLD) -> Callable[[str], float]:
    """The score :func:`~cmim_hf.generation.optimize` maximises for one seed: QED (in [0, 1]) where
    the ECFP4 Tanimoto similarity to the seed is >= ``threshold``, else similarity - 1 (in [-1, 0),
    below every feasible score and rising towards the seed, so CMA-ES is pulled back into range)."""

    def score(smiles: str) -> float:
        similarity = float(tanimoto_similarity([smiles], [seed_smiles])[0])
        return qed(smiles) if similarity >= threshold else similarity - 1.0

    return score


def is_success(
    qed_value: float, similarity: float, target: float = QED_TARGET, threshold: float = SIMILARITY_THRESHOLD
) -> bool:
    """The task's success rule: QED >= ``target`` and similarity to the seed >= ``threshold``."""
    return qed_value >= target and similarity >= threshold


def seed_outcome(
    result: OptimizationResult, target: float = QED_TARGET, threshold: float = SIMILARITY_THRESHOLD
) -> dict[str, Any]:
    """One seed's record from its search (scored with :func:`constrained_qed`, so a feasible
    molecule's ``score`` is its QED): the best feasible molecule, success, improvement (best
    feasible QED - seed QED; 0 when none is feasible, negative when all feasible ones score lower)
    and the decode counts."""
    feasible = [m for m in result.molecules if m.similarity >= threshold]
    best = max(feasible, key=lambda m: (m.score, m.similarity), default=None)
    return {
        "seed": result.seed,
        "seed_qed": result.seed_score,
        "best_smiles": best.smiles if best else None,
        "best_qed": best.score if best else None,
        "best_similarity": best.similarity if best else None,
        "success": best is not None and is_success(best.score, best.similarity, target, threshold),
        "improvement": best.score - result.seed_score if best else 0.0,
        "distinct_valid": len(result.molecules),
        "decodes": result.n_evaluated,
        "valid_decodes": result.n_evaluated - result.n_penalized,
    }


def _mean_and_error(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and standard error of the mean (None for no values; error 0 for one)."""
    if not values:
        return None, None
    array = np.asarray(values, dtype=float)
    error = float(array.std(ddof=1) / math.sqrt(len(array))) if len(array) > 1 else 0.0
    return float(array.mean()), error


def summarize(outcomes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The table's numbers from the :func:`seed_outcome` records of one model (success rate and mean
    improvement with their standard errors; mean similarity of the successes; valid decodes)."""
    success_rate, success_error = _mean_and_error([float(o["success"]) for o in outcomes])
    improvement, improvement_error = _mean_and_error([o["improvement"] for o in outcomes])
    decodes = sum(o["decodes"] for o in outcomes)
    return {
        "seeds": len(outcomes),
        "successes": sum(o["success"] for o in outcomes),
        "success_rate": success_rate,
        "success_rate_error": success_error,
        "mean_improvement": improvement,
        "mean_improvement_error": improvement_error,
        "success_similarity": _mean_and_error([o["best_similarity"] for o in outcomes if o["success"]])[0],
        "seeds_with_feasible": sum(o["best_smiles"] is not None for o in outcomes),
        "decodes": decodes,
        "valid_decode_fraction": sum(o["valid_decodes"] for o in outcomes) / decodes if decodes else None,
    }


def parse_model(spec: str) -> tuple[str, str]:
    """``LABEL=DIR`` or ``DIR`` (labelled with itself) -> (label, DIR)."""
    label, separator, folder = spec.partition("=")
    return (label, folder) if separator else (spec, spec)


def describe_architecture(model: PreTrainedModel) -> str:
    """The latent shape, width, depth and size of a cMIM model, in a few words."""
    config = model.config
    return (
        f"K={config.num_latents} latents of {config.latent_size}, d={config.hidden_size}, "
        f"{config.encoder_layers}+{config.decoder_layers} layers, {model.num_parameters() / 1e6:.1f} M parameters"
    )


def read_seeds(path: Path) -> list[SeedMolecule]:
    """The seeds CSV written by :func:`write_seeds`."""
    table = pd.read_csv(path)
    return [SeedMolecule(str(s), float(q), int(r)) for s, q, r in table[SEED_COLUMNS].itertuples(index=False)]


def write_seeds(seeds: Sequence[SeedMolecule], path: Path) -> None:
    """Write the seeds as CSV (smiles, qed, source_row), atomically."""
    with atomic_output(path) as partial:
        pd.DataFrame(list(seeds), columns=SEED_COLUMNS).to_csv(partial, index=False)


def run_model(
    label: str, checkpoint: str, seeds: Sequence[SeedMolecule], settings: SearchSettings, command: str
) -> dict[str, Any]:
    """Search around every seed with one checkpoint (``shipped``: the package's); its run record
    (summary, per-seed outcomes)."""
    model, tokenizer = load_model_for_generation(resolve_checkpoint(checkpoint))
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    outcomes = []
    for index, seed in enumerate(seeds):
        (result,) = optimize(
            model,
            tokenizer,
            [seed.smiles],
            constrained_qed(seed.smiles, settings.similarity_threshold),
            iterations=settings.budget // settings.population,
            population_size=settings.population,
            sigma=settings.sigma,
            seed=settings.search_seed + index,  # as optimize seeds its i-th seed
            max_new_tokens=settings.max_new_tokens,
        )
        outcomes.append(seed_outcome(result, settings.qed_target, settings.similarity_threshold))
        done = index + 1
        if done % 10 == 0 or done == len(seeds):
            successes = sum(o["success"] for o in outcomes)
            print(
                f"{label}: {done}/{len(seeds)} seeds, {successes} successes, "
                f"{time.perf_counter() - start:.0f} s",
                file=sys.stderr,
            )
    wall_time = time.perf_counter() - start
    return {
        "label": label,
        "model": checkpoint,
        "architecture": describe_architecture(model),
        "command": command,
        "date": datetime.date.today().isoformat(),
        "device": str(model.device),
        "torch_threads": torch.get_num_threads(),
        "load_average": [load_before, os.getloadavg()[0]],
        "wall_time_s": wall_time,
        "summary": summarize(outcomes),
        "outcomes": outcomes,
    }


def merge_runs(previous: dict[str, Any] | None, settings: SearchSettings, runs: list[dict]) -> dict:
    """The record holding ``previous``'s runs (those of another label) and ``runs``.

    Raises:
        ValueError: ``previous`` was made with other settings.
    """
    if previous is None:
        return {"settings": asdict(settings), "runs": runs}
    changed = [
        key
        for key, value in asdict(settings).items()
        if key != "seeds_file" and previous["settings"][key] != value
    ]
    if changed:
        raise ValueError(f"cannot append: the earlier record used other settings ({', '.join(changed)})")
    labels = {run["label"] for run in runs}
    return {
        "settings": previous["settings"],
        "runs": [r for r in previous["runs"] if r["label"] not in labels] + runs,
    }


def _cell(value: float | None, error: float | None = None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" + (f" ± {error:.{digits}f}" if error else "")


def _table_row(run: dict[str, Any]) -> list[str]:
    s = run["summary"]
    return [
        run["label"],
        f"{_cell(s['success_rate'], s['success_rate_error'])} ({s['successes']}/{s['seeds']})",
        _cell(s["mean_improvement"], s["mean_improvement_error"]),
        _cell(s["success_similarity"]),
        f"{s['seeds_with_feasible']}/{s['seeds']}",
        _cell(s["valid_decode_fraction"]),
        f"{run['wall_time_s'] / 60:.1f} min",
    ]


def markdown(record: dict[str, Any]) -> str:
    """The results page: the task as run, one table row per model, each run's command."""
    settings = record["settings"]
    low, high = SEED_QED_RANGE
    lines = [
        "# Constrained QED optimisation in latent space",
        "",
        f"Task (Jin et al., ICLR 2019): from each of {settings['seeds']} seed molecules with QED in "
        f"[{low}, {high}) (`{settings['seeds_file']}`, sha256 `{settings['seeds_sha256'][:12]}`), find a "
        f"decoded molecule with QED >= {settings['qed_target']} and ECFP4 Tanimoto similarity >= "
        f"{settings['similarity_threshold']} to the seed, within **{settings['budget']} decodes per seed**: "
        "`cmim_hf.generation.optimize`, CMA-ES from mu(seed), "
        f"{settings['budget'] // settings['population']} rounds of "
        f"{settings['population']} codes, step size {settings['sigma']}, greedy decoding of at most "
        f"{settings['max_new_tokens']} tokens, search seed {settings['search_seed']}. Score: QED where the "
        "similarity reaches the threshold, similarity - 1 below it, a penalty for invalid decodes.",
        "",
        markdown_table(TABLE_COLUMNS, [_table_row(run) for run in record["runs"]]),
    ]
    lines += [
        "",
        "± is one standard error over seeds. Mean improvement: best feasible QED - seed QED "
        "(feasible: similarity >= the threshold), 0 for a seed without a feasible decode; similarity "
        "of successes: of each successful seed's best-QED success. Valid decodes: RDKit-valid share "
        "of all decodes, repeats included. Each seed's best feasible molecule is in the JSON record.",
        "",
        "Runs (from the repository root):",
        "",
    ]
    for run in record["runs"]:
        lines.append(
            f"- {run['label']}: `{run['model']}` ({run['architecture']}), {run['date']}, {run['device']}, "
            f"{run['torch_threads']} thread(s), load average {run['load_average'][0]:.1f} -> "
            f"{run['load_average'][1]:.1f}: `{run['command']}`"
        )
    return "\n".join(lines) + "\n"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="[LABEL=]DIR",
        help="checkpoint to benchmark, repeatable (shipped: the package's checkpoint)",
    )
    parser.add_argument(
        "--seeds", type=Path, required=True, help="seed molecules CSV (smiles, qed, source_row)"
    )
    parser.add_argument(
        "--eval-file", type=Path, help="choose the seeds from these molecules and write them to --seeds"
    )
    parser.add_argument("--n-seeds", type=_positive, default=200, help="seeds to choose (with --eval-file)")
    parser.add_argument("--selection-seed", type=int, default=0, help="seed of the choice (with --eval-file)")
    parser.add_argument("--limit", type=_positive, help="use only the first N seeds (a timing estimate)")
    parser.add_argument("--budget", type=_positive, default=160, help="decodes per seed (default: 160)")
    parser.add_argument(
        "--population", type=_positive, default=20, help="codes per CMA-ES round (default: 20)"
    )
    parser.add_argument(
        "--sigma",
        type=float,
        default=0.1,
        help="CMA-ES step size around mu(seed) (default: 0.1, where half of v2's neighbours are valid)",
    )
    parser.add_argument("--max-new-tokens", type=_positive, default=128, help="longest decode (default: 128)")
    parser.add_argument("--search-seed", type=int, default=0, help="CMA-ES seed (seed i uses it + i)")
    parser.add_argument("--threads", type=_positive, default=1, help="torch threads (default: 1)")
    parser.add_argument("--json", type=Path, help="write the record here")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    parser.add_argument(
        "--append", action="store_true", help="add the models to the record already in --json (same settings)"
    )
    args = parser.parse_args(argv)
    if args.budget % args.population:
        parser.error(f"--budget ({args.budget}) must be a multiple of --population ({args.population})")
    if args.sigma <= 0:
        parser.error("--sigma must be > 0")
    if args.append and not (args.json and args.json.is_file()):
        parser.error("--append needs an existing --json record")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Choose the seeds (with ``--eval-file``) and benchmark every ``--model``; the record, or None
    when no model was given."""
    args = parse_arguments(argv)
    torch.set_num_threads(args.threads)
    if args.eval_file is not None:
        molecules = list(load_smiles_corpus(args.eval_file)["smiles"])
        write_seeds(select_seeds(molecules, args.n_seeds, args.selection_seed), args.seeds)
        print(f"{args.n_seeds} seeds -> {args.seeds}", file=sys.stderr)
    if not args.model:
        return None
    seeds = read_seeds(args.seeds)[: args.limit]
    settings = SearchSettings(
        seeds_file=args.seeds.as_posix(),
        seeds_sha256=hashlib.sha256(args.seeds.read_bytes()).hexdigest(),
        seeds=len(seeds),
        budget=args.budget,
        population=args.population,
        sigma=args.sigma,
        max_new_tokens=args.max_new_tokens,
        search_seed=args.search_seed,
    )
    command = command_line(__file__, argv)
    previous = json.loads(args.json.read_text(encoding="utf-8")) if args.append else None
    runs = [run_model(*parse_model(spec), seeds, settings, command) for spec in args.model]
    record = merge_runs(previous, settings, runs)
    table = markdown(record)
    if args.json:
        write_json(record, args.json)
    if args.markdown:
        write_text(table, args.markdown)
    print(table)
    return record


if __name__ == "__main__":
    main()
