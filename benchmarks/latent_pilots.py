"""Short pre-training pilots that compare recipes for an informative latent (issue 12).

Every pilot trains the same small cMIM model (d=128, 2+2 layers, batch 64, lr 2e-3 constant,
3,000 steps = 192k MOSES molecules, one thread) with one change from the baseline, then measures on
1,000 held-out molecules with z = mu: reconstruction loss, token accuracy, greedy exact match,
active units (dimensions with Var[mu] > 0.01) and the participation ratio of the codes.

    python benchmarks/latent_pilots.py --train-file ../shared/data/pretrain/moses_train.csv.gz \
        --eval-file ../shared/data/pretrain/moses_test.csv.gz --out runs/latent_pilots --jobs 2

``--only a,b`` runs some pilots; finished pilots are reused, interrupted ones resume from their last
checkpoint. The table goes to ``<out>/pilots.md`` and ``<out>/pilots.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from common import PretrainRun, argument_parser, command_line, pretrain, write_text

from cmim_hf.checkpoints import load_model_for_generation
from cmim_hf.evaluation import reports
from cmim_hf.generation import encode_smiles
from cmim_hf.training.corpus import load_smiles_corpus
from cmim_hf.training.latent_stats import latent_activity

BASE_ARGS = [
    "--hidden-size", "128", "--encoder-layers", "2", "--decoder-layers", "2", "--ffn-dim", "512",
    "--num-attention-heads", "4", "--batch-size", "64", "--learning-rate", "2e-3",
    "--lr-scheduler", "constant", "--warmup-steps", "0", "--logging-steps", "100",
    "--save-total-limit", "1", "--num-proc", "1",
]  # fmt: skip

K4_DETERMINISTIC = ["--num-latents", "4", "--latent-size", "32", "--deterministic-steps", "1000"]
RECIPE = [*K4_DETERMINISTIC, "--max-length", "1024"]  # the recipe without length-grouped batches
# name -> (what changes, extra `cmim pretrain` options). The baseline starts the posterior at its
# floor, which is the model's initialisation since issue 12.
PILOTS: dict[str, tuple[str, list[str]]] = {
    "floor": ("log-variance bias at the floor (baseline)", []),
    "deterministic-1000": ("z = mu for the first 1,000 steps", ["--deterministic-steps", "1000"]),
    "latent-sum": ("latent term summed over dimensions", ["--latent-reduction", "sum"]),
    "k4": ("K = 4 latents of size 32 (same 128 dims)", ["--num-latents", "4", "--latent-size", "32"]),
    "contrastive-w10": ("contrastive weight 10", ["--contrastive-weight", "10"]),
    "tau-0.02": ("contrastive temperature 0.02", ["--temperature", "0.02"]),
    "posterior-lr-10x": ("posterior head at 10x the learning rate", ["--posterior-lr-multiplier", "10"]),
    "free-nats-0.25": (
        "no prior pull while z_d^2 / 4 < 0.25 (free nats 0.25)",
        ["--latent-free-nats", "0.25"],
    ),
    "logvar-min-12": ("log-variance floor -12 (sigma 0.0025)", ["--logvar-min", "-12"]),
    "token-dropout-0.25": ("decoder word dropout 0.25", ["--decoder-token-dropout", "0.25"]),
    "grouped": ("length-grouped batches", ["--group-by-length"]),
    "k4-deterministic-1000": ("K = 4 latents of size 32, z = mu for the first 1,000 steps", K4_DETERMINISTIC),
    "recipe": (
        "K = 4 x 32, z = mu first 1,000 steps, 1,024 positions, length-grouped batches",
        [*RECIPE, "--group-by-length"],
    ),
    "recipe-ungrouped": ("K = 4 x 32, z = mu first 1,000 steps, 1,024 positions (random batches)", RECIPE),
    **{
        f"recipe-floor-{sigma}": (
            f"recipe-ungrouped with the log-variance floor at {logvar_min} (sigma {sigma})",
            [*RECIPE, "--logvar-min", logvar_min],
        )
        for sigma, logvar_min in (("0.1", "-4.6"), ("0.14", "-3.9"), ("0.17", "-3.5"), ("0.2", "-3.2"))
    },
    "recipe-sampled": (
        "recipe-ungrouped with MolMIM's sampled posterior (log-variance ~ U(-6, 0) in training)",
        [*RECIPE, "--posterior", "sampled"],
    ),
    "learned-1024": ("learned positions, 1,024 of them", ["--max-length", "1024"]),
    "rotary-1024": (
        "rotary positions, up to 1,024",
        ["--position-embedding", "rotary", "--max-length", "1024"],
    ),
}
COLUMNS = ("pilot", "change", "recon loss", "token accuracy", "exact", "active units", "active directions",
           "participation ratio")  # fmt: skip


def pilot_argv(name: str, args: argparse.Namespace) -> list[str]:
    """The ``cmim pretrain`` options of a pilot (its folder is ``<out>/<name>``)."""
    return [
        "--train-file", str(args.train_file), "--eval-file", str(args.eval_file),
        "--max-eval-samples", str(args.eval_molecules), "--max-steps", str(args.max_steps),
        "--save-steps", str(args.save_steps), "--max-train-samples", str(args.max_steps * 64),
        "--seed", str(args.seed), *BASE_ARGS, *PILOTS[name][1], *args.extra,
    ]  # fmt: skip


def run_pilots(names: list[str], args: argparse.Namespace) -> None:
    """Run the unfinished pilots, ``--jobs`` at a time, one thread each, logging to <out>/<name>.log."""
    runs = {name: PretrainRun(args.out / name, pilot_argv(name, args)) for name in names}
    pretrain(runs, logs=args.out, jobs=args.jobs, threads=1)


def pilot_row(name: str, run_dir: Path, held_out_smiles: list[str]) -> dict[str, Any]:
    """A pilot's measured row: reconstruction from its run record, code activity measured here on
    the held-out molecules (z = mu) with ``cmim_hf.training.latent_stats``."""
    record = json.loads((run_dir / "pretrain_results.json").read_text())
    held_out = record.get("held_out", {})
    model, tokenizer = load_model_for_generation(run_dir / "final", device="cpu")
    activity = latent_activity(encode_smiles(model, tokenizer, held_out_smiles))
    return {
        "pilot": name,
        "change": PILOTS[name][0],
        "recon loss": record["last_logged_losses"].get("loss/reconstruction"),
        "token accuracy": held_out.get("eval_token_accuracy"),
        "exact": held_out.get("eval_exact_match"),
        "active units": activity["active_units"],
        "active directions": activity["active_directions"],
        "participation ratio": activity["participation_ratio"],
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The pilots' table (:data:`COLUMNS`), one row per pilot."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"
        return "" if value is None else str(value)

    return reports.markdown_table(COLUMNS, [[cell(row[c]) for c in COLUMNS] for row in rows]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--train-file", type=Path, required=True, help="pre-training corpus (.csv.gz)")
    parser.add_argument("--eval-file", type=Path, required=True, help="held-out molecules")
    parser.add_argument("--out", type=Path, required=True, help="one folder per pilot, and the tables")
    parser.add_argument("--only", help=f"comma-separated pilots (default: all of {', '.join(PILOTS)})")
    parser.add_argument("--jobs", type=int, default=1, help="pilots at once, one thread each")
    parser.add_argument("--max-steps", type=int, default=3000, help="optimizer steps of batch 64")
    parser.add_argument("--save-steps", type=int, default=500, help="checkpoint interval")
    parser.add_argument("--eval-molecules", type=int, default=1000, help="held-out molecules measured")
    parser.add_argument("--seed", type=int, default=0, help="seed of every pilot")
    parser.add_argument("extra", nargs="*", help="after --: more `cmim pretrain` options for every pilot")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(PILOTS)
    unknown = sorted(set(names) - set(PILOTS))
    if unknown:
        parser.error(f"unknown pilots: {', '.join(unknown)}")
    args.out.mkdir(parents=True, exist_ok=True)
    run_pilots(names, args)
    finished = [n for n in PILOTS if (args.out / n / "pretrain_results.json").is_file()]
    held_out = list(load_smiles_corpus(args.eval_file, limit=args.eval_molecules)["smiles"])
    rows = [pilot_row(n, args.out / n, held_out) for n in finished]
    command = command_line(__file__, argv)
    reports.write_json({"command": command, "pilots": rows}, args.out / "pilots.json")
    write_text(f"`{command}`\n\n" + markdown_table(rows), args.out / "pilots.md")
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
