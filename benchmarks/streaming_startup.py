"""Time to the first optimizer step and peak memory of ``cmim pretrain``, streamed or not, as the
corpus grows (issue 15).

For each corpus size (the first N rows of ``--corpus``; 0 means the whole file) and each mode, runs
``cmim pretrain --max-steps 1`` in a fresh process (with its own ``HF_HOME``, so no ``datasets``
cache is reused) and reads ``time_to_first_step_s`` and ``peak_rss_mib`` from its
``pretrain_results.json``. The model is the shipped checkpoint's architecture (d=128, 3+3 layers),
batch 128.

    python benchmarks/streaming_startup.py --corpus ../shared/data/pretrain/moses_train.csv.gz \\
        --rows 100000 0 --out runs/streaming_startup --json benchmarks/results/streaming_startup.json

Writes one JSON record per run and a Markdown table (``--out``/``streaming_startup.md``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
from common import argument_parser, command_line, run_cmim, thread_env, write_text

from cmim_hf.evaluation import reports

MODEL = ["--hidden-size", "128", "--encoder-layers", "3", "--decoder-layers", "3", "--ffn-dim", "512",
         "--num-attention-heads", "4", "--num-latents", "4", "--latent-size", "32",
         "--smiles-normalization", "canonical_nostereo", "--max-length", "1024"]  # fmt: skip
MODES = {"streaming": ["--streaming"], "in-memory": ["--num-proc", "1"]}


def corpus_of(source: Path, rows: int, folder: Path) -> tuple[Path, int]:
    """The corpus file for a size: the source itself (rows=0) or a CSV of its first ``rows`` rows;
    returns it with its number of rows."""
    if rows == 0:
        return source, sum(len(chunk) for chunk in pd.read_csv(source, usecols=[0], chunksize=200_000))
    path = folder / f"corpus_first{rows}.csv"
    if not path.is_file():
        pd.read_csv(source, nrows=rows).to_csv(path, index=False)
    return path, rows


def run_once(corpus: Path, mode: str, run_folder: Path, threads: int, batch_size: int) -> dict[str, Any]:
    """One ``cmim pretrain --max-steps 1`` in a fresh process; its start-up measurements."""
    argv = ["pretrain", "--train-file", str(corpus), "--output-dir", str(run_folder / "run"), "--overwrite",
            "--max-steps", "1", "--save-steps", "1000", "--warmup-steps", "0", "--prior-molecules", "0",
            "--batch-size", str(batch_size), *MODEL, *MODES[mode]]  # fmt: skip
    env = thread_env(threads, HF_HOME=str(run_folder / "hf_home"), HF_HUB_OFFLINE="1")
    started = time.time()
    command = run_cmim(*argv, env=env, capture=True, timeout=3600)
    results = json.loads((run_folder / "run" / "pretrain_results.json").read_text())
    return {
        "time_to_first_step_s": results["time_to_first_step_s"],
        "peak_rss_mib": results["peak_rss_mib"],
        "process_wall_s": round(time.time() - started, 1),
        "command": command,
    }


def markdown_table(records: list[dict[str, Any]]) -> str:
    """One row per run: corpus rows, mode, time to the first step and peak RSS."""
    header = ["corpus rows", "mode", "time to first step (s)", "peak RSS (MiB)"]
    rows = [
        [f"{r['corpus_rows']:,}", r["mode"], f"{r['time_to_first_step_s']:.1f}", f"{r['peak_rss_mib']:.0f}"]
        for r in records
    ]
    return reports.markdown_table(header, rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--corpus", required=True, help="CSV/CSV.GZ SMILES corpus (MOSES train)")
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 0], help="corpus sizes; 0: whole")
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=sorted(MODES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", required=True, help="folder for the corpora, runs and the table")
    parser.add_argument("--json", help="also write the records here")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    records = []
    for rows in args.rows:
        corpus, corpus_rows = corpus_of(Path(args.corpus), rows, out)
        for mode in args.modes:
            record = {"corpus_rows": corpus_rows, "mode": mode}
            record.update(
                run_once(corpus, mode, out / f"{mode}_{corpus_rows}", args.threads, args.batch_size)
            )
            print(json.dumps(record), flush=True)
            records.append(record)
    summary = {"command": command_line(__file__, argv), "threads": args.threads, "runs": records}
    reports.write_json(summary, out / "streaming_startup.json")
    if args.json:
        reports.write_json(summary, args.json)
    write_text(markdown_table(records), out / "streaming_startup.md")
    print(markdown_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
