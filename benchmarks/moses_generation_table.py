"""The card's generation table (issue 21, item 2): MOSES metrics of 30,000 molecules drawn by the
default ``cmim sample`` of each checkpoint, next to MOSES' published baselines.

Each model runs exactly what a user runs, in its own process:

    cmim sample -n 30000 --seed 0 --model M -o NAME.csv
    cmim evaluate-samples NAME.csv -o NAME.json          (MOSES' Test, TestSF and train, shipped)

    git archive 907a96c cmim_hf/pretrained | (mkdir -p first && tar -x -C first)
    git archive e2328a0 cmim_hf/pretrained | (mkdir -p v2 && tar -x -C v2)
    python benchmarks/moses_generation_table.py --keep-samples samples --n-jobs 2 \
        --model "first checkpoint=first/cmim_hf/pretrained" --model v2=v2/cmim_hf/pretrained \
        --model v3=model_cards/dense_latent/v3 --json benchmarks/results/moses_generation.json \
        --markdown benchmarks/results/moses_generation.md

``--json`` keeps the rows of earlier runs (a model measured again replaces its row), so models can
be added one at a time; ``--model`` may be left out to re-render the table from the JSON.
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import argument_parser, run_cmim, write_text

from cmim_hf.evaluation.reports import markdown_table, write_json

# MOSES (Polykovskiy et al., Front. Pharmacol. 2020, Table 2): Valid, Unique@10k, FCD/Test, Novelty.
BASELINES: dict[str, dict[str, float]] = {
    "CharRNN": {"Valid": 0.975, "Unique@10k": 0.999, "FCD/Test": 0.073, "Novelty": 0.842},
    "VAE": {"Valid": 0.977, "Unique@10k": 0.998, "FCD/Test": 0.099, "Novelty": 0.695},
    "AAE": {"Valid": 0.937, "Unique@10k": 0.997, "FCD/Test": 0.556, "Novelty": 0.793},
    "JTN-VAE": {"Valid": 1.0, "Unique@10k": 0.999, "FCD/Test": 0.422, "Novelty": 0.915},
    "LatentGAN": {"Valid": 0.897, "Unique@10k": 0.997, "FCD/Test": 0.296, "Novelty": 0.949},
}
COLUMNS = ["Valid", "Unique@10k", "FCD/Test", "FCD/TestSF", "SNN/Test", "Frag/Test", "Scaf/Test", "IntDiv",
           "Filters", "Novelty"]  # fmt: skip


def measure(
    name: str, model: str, n: int, seed: int, n_jobs: int, keep: Path | None, reuse: bool = False
) -> dict[str, Any]:
    """Sample ``n`` molecules from ``model`` with the default settings and score them.

    With ``reuse``, what this command left in ``keep`` earlier is used again instead of being redone:
    the samples (``NAME.csv``; the row then has no sampling time) and, when they are newer than the
    samples, their metrics (``NAME.json``), so an interrupted table goes on where it stopped.
    """
    with tempfile.TemporaryDirectory() as scratch:
        folder = keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        samples, metrics = folder / f"{name}.csv", folder / f"{name}.json"
        sample_argv = ["sample", "-n", str(n), "--seed", str(seed), "--model", model, "-o", str(samples)]
        started = time.time()
        if reuse and samples.is_file():
            sample, sampled_s = "cmim " + shlex.join(sample_argv), None
        else:
            sample = run_cmim(*sample_argv, "--overwrite")
            sampled_s = round(time.time() - started, 1)
        evaluate_argv = ["evaluate-samples", str(samples), "-o", str(metrics), "--n-jobs", str(n_jobs)]
        if reuse and metrics.is_file() and metrics.stat().st_mtime > samples.stat().st_mtime:
            evaluate = "cmim " + shlex.join(evaluate_argv)
        else:
            evaluate = run_cmim(*evaluate_argv, "--overwrite")
        report = json.loads(metrics.read_text())
    return {
        "model": model,
        "samples": n,
        "seed": seed,
        "commands": [sample, evaluate],
        "sampling_s": sampled_s,
        "metrics": report["metrics"],
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def render(rows: dict[str, dict[str, Any]]) -> str:
    """The markdown table: the published baselines, then our checkpoints."""
    header = ["model", *COLUMNS]
    body = [
        [f"{name} (MOSES paper)", *(_cell(values.get(key)) for key in COLUMNS)]
        for name, values in BASELINES.items()
    ]
    body += [[name, *(_cell(row["metrics"].get(key)) for key in COLUMNS)] for name, row in rows.items()]
    commands = "\n".join(f"    {command}" for row in rows.values() for command in row["commands"])
    return (
        "# MOSES metrics of 30,000 default samples\n\n"
        "Published rows: MOSES (Polykovskiy et al., Front. Pharmacol. 2020, Table 2; '-': not quoted\n"
        "here). Our rows: `benchmarks/moses_generation_table.py`, which ran (first/ and v2/: the shipped\n"
        "checkpoint of git 907a96c and e2328a0, `git archive COMMIT cmim_hf/pretrained`)\n\n"
        f"{commands}\n\n{markdown_table(header, body)}\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--model", action="append", default=[], metavar="NAME=CHECKPOINT", help="a row to measure"
    )
    parser.add_argument(
        "-n", "--num-samples", type=int, default=30_000, help="molecules per model (MOSES: 30,000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of cmim sample")
    parser.add_argument("--n-jobs", type=int, default=1, help="processes for the metrics' RDKit work")
    parser.add_argument(
        "--keep-samples", type=Path, help="keep the sampled SMILES and metrics in this folder"
    )
    parser.add_argument(
        "--reuse-samples",
        action="store_true",
        help="use the NAME.csv (and NAME.json) already in --keep-samples instead of redoing them",
    )
    parser.add_argument("--json", type=Path, required=True, help="the rows (earlier rows are kept)")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    if args.reuse_samples and not args.keep_samples:
        parser.error("--reuse-samples needs --keep-samples FOLDER")

    rows: dict[str, dict[str, Any]] = json.loads(args.json.read_text()) if args.json.is_file() else {}
    for spec in args.model:
        name, _, model = spec.partition("=")
        if not model:
            parser.error(f"--model {spec!r}: expected NAME=CHECKPOINT")
        rows[name] = measure(
            name, model, args.num_samples, args.seed, args.n_jobs, args.keep_samples, args.reuse_samples
        )
        write_json(rows, args.json)  # after each model: a long run keeps what it measured
    text = render(rows)
    print(text)
    if args.markdown:
        write_text(text, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
