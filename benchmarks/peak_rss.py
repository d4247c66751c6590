"""Peak memory (RSS) of `cmim sample -n N` and `cmim interpolate --steps N` as N grows (issue 23).

Each (command, N) runs in a fresh process on the shipped checkpoint and reports its peak resident
set size (``ru_maxrss``). Decoding a million codes takes hours on a CPU, so by default the decoder
is replaced by a lookup that hands out MOSES test molecules in turn (``--decoder lookup``): the
decoder's own memory is one batch whatever N, and everything that can grow with N (drawing the
codes, RDKit validity, the set metrics, writing the rows) runs for real. ``--decoder model``
decodes for real (use it for small N).

``--checkout DIR`` measures another copy of the package, e.g. a worktree of the commit before the
fix, so that one table holds the before and after rows:

    git worktree add /tmp/before 469921e
    python benchmarks/peak_rss.py --checkout /tmp/before --label "before (469921e)" \
        --json benchmarks/results/peak_rss.json
    python benchmarks/peak_rss.py --label "after" --json benchmarks/results/peak_rss.json \
        --markdown benchmarks/results/peak_rss.md

Rows already in ``--json`` under another label are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import MOSES_SAMPLE, REPO, argument_parser, write_text

COMMANDS = {
    "sample": ["sample", "-n", "{n}", "--seed", "0"],
    "interpolate": ["interpolate", "CCO", "c1ccccc1", "--steps", "{n}"],
}


def child(command: str, n: int, decoder: str, model: str) -> dict:
    """Run one command in this process; its peak RSS in MiB and wall time."""
    import pandas as pd

    from cmim_hf.cli import main
    from cmim_hf.generation import sampling

    if decoder == "lookup":
        pool = pd.read_csv(MOSES_SAMPLE)["SMILES"].tolist()
        handed_out = [0]

        def lookup_decode(model, tokenizer, z, *options, **keywords) -> list[str]:
            start = handed_out[0]
            handed_out[0] += len(z)
            return [pool[i % len(pool)] for i in range(start, start + len(z))]

        sampling.decode_latents = lookup_decode
    with tempfile.TemporaryDirectory() as folder:
        argv = [part.format(n=n) for part in COMMANDS[command]]
        argv += ["-o", str(Path(folder) / "out.csv"), "--model", model]
        started = time.perf_counter()
        code = main(argv)
        seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"cmim {' '.join(argv)} exited {code}")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {"peak_rss_mib": round(peak_mib, 1), "seconds": round(seconds, 1)}


def measure(command: str, n: int, decoder: str, model: str, checkout: Path | None) -> dict:
    """:func:`child` in a fresh interpreter (importing ``cmim_hf`` from ``checkout`` when given)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    if checkout is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(checkout), env.get("PYTHONPATH", "")])
    script = [sys.executable, __file__, "--child", command, str(n), "--decoder", decoder, "--model", model]
    finished = subprocess.run(script, env=env, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise SystemExit(f"{command} n={n} failed:\n{finished.stderr[-3000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict]) -> str:
    from cmim_hf.evaluation.reports import markdown_table

    header = ["version", "command", "decoder", "N", "peak RSS (MiB)", "seconds"]
    table = [
        [
            r["label"],
            r["command"],
            r["decoder"],
            f"{r['n']:,}",
            f"{r['peak_rss_mib']:.0f}",
            f"{r['seconds']:.0f}",
        ]
        for r in rows
    ]
    return markdown_table(header, table)


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    parser.add_argument("--commands", nargs="+", choices=sorted(COMMANDS), default=sorted(COMMANDS))
    parser.add_argument("--decoder", choices=["lookup", "model"], default="lookup")
    parser.add_argument("--model", default=str(REPO / "cmim_hf" / "pretrained"))
    parser.add_argument("--checkout", type=Path, help="measure the cmim_hf package of this folder")
    parser.add_argument("--label", default="this checkout", help="the rows' version label")
    parser.add_argument("--json", type=Path, help="results file (rows of other labels are kept)")
    parser.add_argument("--markdown", type=Path, help="write the table of every row in --json here")
    parser.add_argument("--child", nargs=2, metavar=("COMMAND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.decoder, args.model)))
        return
    rows = []
    for command in args.commands:
        for n in args.n:
            row = {"label": args.label, "command": command, "decoder": args.decoder, "n": n}
            row.update(measure(command, n, args.decoder, args.model, args.checkout))
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.json is not None:
        from cmim_hf.evaluation.reports import write_json

        kept = json.loads(args.json.read_text())["rows"] if args.json.exists() else []
        rows = [r for r in kept if r["label"] != args.label] + rows
        write_json({"rows": rows}, args.json)
    if args.markdown is not None:
        write_text(markdown(rows), args.markdown)
    print(markdown(rows))


if __name__ == "__main__":
    main()
