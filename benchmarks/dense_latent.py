"""The dense-latent grid (issue 21): how well a checkpoint reconstructs AND generates, one row per
checkpoint, all on the same molecules and seeds.

- exact reconstruction: greedy decoding of z = mu for the first ``--reconstruct`` molecules of
  ``--eval-file`` (canonical SMILES equality);
- the default sampler (``cmim sample``: the checkpoint's aggregate posterior, greedy): MOSES Valid,
  Unique@1k/10k, Novelty, FCD/Test, SNN/Test, IntDiv, Filters on ``--samples`` molecules
  (:func:`cmim_hf.evaluation.moses_metrics.moses_metrics`; FCD is biased upwards at small sizes:
  compare rows of the same size only);
- neighbourhood sampling: ``--neighbours`` samples around each of the first ``--seeds`` molecules
  at each radius of ``--radii``; the row reports validity and uniqueness (distinct valid
  molecules / samples, per seed, averaged) at the radius whose mean Tanimoto to the seed lies in
  [0.4, 0.7] (the one closest to 0.55);
- active directions of the codes of the ``--reconstruct`` molecules (principal directions with
  variance above 0.01, :mod:`cmim_hf.training.latent_stats`).

    python benchmarks/dense_latent.py --model v2=cmim_hf/pretrained \\
        --eval-file ../shared/data/pretrain/moses_test.csv.gz \\
        --json model_cards/dense_latent/frontier.json --markdown model_cards/dense_latent/frontier.md

``--append`` adds rows to an existing JSON (one checkpoint per call keeps runs short).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import argument_parser, command_line, read_smiles, write_text

from cmim_hf.checkpoints import load_model_for_generation
from cmim_hf.chem import normalize_smiles
from cmim_hf.evaluation.moses_metrics import moses_metrics
from cmim_hf.evaluation.reports import markdown_table, write_json
from cmim_hf.generation import (
    AggregatePosterior,
    encode_smiles,
    reconstruct,
    sample_neighbourhood,
    sample_prior,
)
from cmim_hf.training.latent_stats import latent_activity

SIMILARITY_BAND = (0.4, 0.7)
BAND_TARGET = 0.55
REPORTED = ("Valid", "Unique@1k", "Unique@10k", "Novelty", "FCD/Test", "SNN/Test", "IntDiv", "Filters")
TABLE_METRICS = ("Valid", "Unique@10k", "Novelty", "FCD/Test", "SNN/Test", "IntDiv", "Filters")


def neighbourhood_at(result: Any, n_seeds: int) -> dict[str, float]:
    """Validity, per-seed uniqueness and mean Tanimoto to the seed of one neighbourhood sample."""
    seed_index = np.asarray(result.seed_index)
    unique = []
    for seed in range(n_seeds):
        members = [s for s, ok, i in zip(result.smiles, result.valid, seed_index) if ok and i == seed]
        total = int((seed_index == seed).sum())
        unique.append(len(set(members)) / total if total else 0.0)
    similarity = result.similarity[np.isfinite(result.similarity)]
    return {
        "valid": float(np.mean(result.valid)),
        "unique": float(np.mean(unique)),
        "tanimoto_to_seed": float(similarity.mean()) if similarity.size else float("nan"),
    }


def radius_in_band(by_radius: dict[float, dict[str, float]]) -> float | None:
    """The radius whose mean Tanimoto to the seed lies in the band and is closest to its middle."""
    inside = {
        r: row
        for r, row in by_radius.items()
        if SIMILARITY_BAND[0] <= row["tanimoto_to_seed"] <= SIMILARITY_BAND[1]
    }
    if not inside:
        return None
    return min(inside, key=lambda r: abs(inside[r]["tanimoto_to_seed"] - BAND_TARGET))


def evaluate(folder: str, molecules: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """The grid's measurements of one checkpoint."""
    started = time.time()
    model, tokenizer = load_model_for_generation(folder)
    decode = {"max_new_tokens": args.max_length, "batch_size": args.batch_size}
    recon = reconstruct(model, tokenizer, molecules[: args.reconstruct], **decode)
    codes = encode_smiles(model, tokenizer, molecules[: args.reconstruct])
    prior = (
        AggregatePosterior.load(folder)
        if (Path(folder) / "aggregate_posterior.safetensors").is_file()
        else None
    )
    samples = sample_prior(model, tokenizer, args.samples, seed=0, prior=prior, **decode)
    metrics = moses_metrics(samples.smiles, n_jobs=1)
    by_radius = {}
    for radius in args.radii:
        around = sample_neighbourhood(
            model, tokenizer, molecules[: args.seeds], args.neighbours, radius=radius, seed=0, **decode
        )
        by_radius[radius] = neighbourhood_at(around, args.seeds)
    chosen = radius_in_band(by_radius)
    return {
        "checkpoint": folder,
        "posterior_floor_sigma": round(model.config.posterior_floor_std, 4),
        "prior": "aggregate posterior" if prior is not None else "N(0, I)",
        "exact_reconstruction": recon.exact_match,
        "moses": {name: metrics[name] for name in REPORTED if name in metrics},
        "neighbourhood_by_radius": {str(r): row for r, row in by_radius.items()},
        "neighbourhood_radius": chosen,
        "neighbourhood": by_radius[chosen] if chosen is not None else None,
        "active_directions": latent_activity(codes)["active_directions"],
        "wall_time_s": round(time.time() - started, 1),
    }


def _row(label: str, row: dict[str, Any]) -> list[str]:
    near = row["neighbourhood"]
    near_text = (
        f"{near['valid']:.3f} / {near['unique']:.3f} ({near['tanimoto_to_seed']:.2f})"
        if near
        else "none in band"
    )
    moses = [row["moses"].get(name) for name in TABLE_METRICS]
    return [label, str(row["posterior_floor_sigma"]), f"{row['exact_reconstruction']:.3f}",
            *("n/a" if value is None else f"{value:.3f}" for value in moses),
            str(row["neighbourhood_radius"]), near_text, str(row["active_directions"])]  # fmt: skip


def markdown(record: dict[str, Any]) -> str:
    """The grid as Markdown: what was measured, then one row per checkpoint."""
    header = ["model", "floor sigma", "exact", *TABLE_METRICS, "radius",
              "neighbourhood valid / unique (Tanimoto)", "active directions"]  # fmt: skip
    rows = [_row(label, row) for label, row in record["rows"].items()]
    measured = (
        f"Exact reconstruction of {record['reconstruct']} MOSES-test molecules (greedy, z = mu); MOSES "
        f"metrics of {record['samples']} samples from the default sampler (greedy); neighbourhood: "
        f"{record['neighbours']} samples around each of {record['seeds']} molecules at the radius "
        f"where the mean Tanimoto to the seed is in [0.4, 0.7]."
    )
    sections = ["# Reconstruction against generation", f"`{record['command']}`", measured]
    return "\n\n".join([*sections, markdown_table(header, rows)]) + "\n"


def frontier_plot(record: dict[str, Any], path: Path) -> None:
    """Exact reconstruction against MOSES validity of the default sampler, one point per row."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5, 4.5))
    axes = figure.subplots()
    for label, row in record["rows"].items():
        x, y = row["exact_reconstruction"], row["moses"]["Valid"]
        axes.scatter(x, y, s=40)
        axes.annotate(
            f"{label} (sigma {row['posterior_floor_sigma']})",
            (x, y),
            textcoords="offset points",
            xytext=(5, 5),
            fontsize=8,
        )
    axes.axvline(0.80, color="grey", linestyle=":", linewidth=1)
    axes.axhline(0.90, color="grey", linestyle=":", linewidth=1)
    axes.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="exact reconstruction (greedy, z = mu)",
        ylabel="MOSES Valid (default sampler)",
    )
    axes.set_title("Reconstruction against generation (dotted: v3 targets)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--model", action="append", required=True, metavar="LABEL=DIR")
    parser.add_argument("--eval-file", required=True, help="held-out molecules (MOSES test)")
    parser.add_argument("--reconstruct", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--neighbours", type=int, default=10)
    parser.add_argument("--radii", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5, 0.75, 1.0])
    parser.add_argument("--max-length", type=int, default=128, help="decoded tokens per molecule")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--plot", type=Path, help="PNG of the frontier (exact reconstruction vs Valid)")
    parser.add_argument("--append", action="store_true", help="add rows to an existing --json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    raw = read_smiles(args.eval_file, limit=max(args.reconstruct, args.seeds))
    molecules = [normalize_smiles(s, "canonical_nostereo") for s in raw]
    record: dict[str, Any] = {"rows": {}}
    if args.append and args.json.is_file():
        record = json.loads(args.json.read_text())
    command = command_line(__file__, argv)
    record.update(
        command=command,
        reconstruct=args.reconstruct,
        samples=args.samples,
        seeds=args.seeds,
        neighbours=args.neighbours,
    )
    for spec in args.model:
        label, _, folder = spec.partition("=")
        record["rows"][label] = evaluate(folder, molecules, args)
        record["rows"][label]["command"] = command
        write_json(record, args.json)  # after each checkpoint: a long run keeps what it measured
    if args.markdown:
        write_text(markdown(record), args.markdown)
    if args.plot:
        frontier_plot(record, args.plot)
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
