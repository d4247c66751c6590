"""Embedding throughput (molecules/s) on the same molecules, and streaming memory.

(a) bare batched model forward (pre-tokenized, pre-padded batches in input order; only
    `model(**batch)` is timed), (b) the bulk API `CMIMEmbedder.embed` (RDKit validation,
    tokenization, length bucketing and pooling included), (c) our pipeline, (d) Transformers'
    stock "feature-extraction" pipeline on the same model (token-level outputs, as far as it
    runs), (e) RDKit ECFP4 for scale. Same batch size everywhere. Targets: (b) >= 0.9x (a),
    (b) >= 2x (d).

With `--rss-rows 10000,100000 --rss-data moses_test.csv.gz`, also streams the first N rows of
a file through `CMIMEmbedder.embed_file` in fresh processes and reports their peak RSS.

    python benchmarks/embed_throughput.py [--model CKPT] [--threads 1] \
        [--rss-rows 10000,100000 --rss-data /path/moses_test.csv.gz]

Without `--model`, a randomly initialised cMIM stands in (default d=128, 3+3 layers).
"""

import argparse
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from common import MOSES_SAMPLE, argument_parser, random_cmim, read_smiles
from transformers import pipeline

from cmim_hf import CMIMTokenizer
from cmim_hf.checkpoints import load_model_and_tokenizer
from cmim_hf.chem import ecfp4
from cmim_hf.embedding import CMIMEmbedder
from cmim_hf.models.cmim.pipelines import InformativeFeatureExtractionPipeline


def build_model(args: argparse.Namespace) -> tuple[torch.nn.Module, object]:
    """The checkpoint `--model`, or a seeded random cMIM of `--hidden-size` and `--num-layers`."""
    if args.model:
        return load_model_and_tokenizer(args.model)
    tokenizer = CMIMTokenizer()
    size = args.hidden_size
    return random_cmim(tokenizer, size, args.num_layers, 4, 4 * size, seed=0, dropout=0.0).eval(), tokenizer


def timed(run: Callable[[], object], n: int) -> float:
    """Molecules per second of one call of `run` over n molecules."""
    start = time.perf_counter()
    run()
    return n / (time.perf_counter() - start)


def bare_forward(model: torch.nn.Module, tokenizer, smiles: list[str], batch_size: int, device: str) -> float:
    """(a): only the forward passes are timed; batches in input order, padded to their longest."""
    batches = [
        tokenizer(smiles[i : i + batch_size], padding=True, return_tensors="pt").to(device)
        for i in range(0, len(smiles), batch_size)
    ]

    @torch.inference_mode()
    def run() -> None:
        for batch in batches:
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    return timed(run, len(smiles))


def throughput(args: argparse.Namespace) -> None:
    model, tokenizer = build_model(args)
    model.to(args.device)
    smiles = read_smiles(args.data, limit=args.n)
    n, bs = len(smiles), args.batch_size
    warm = smiles[:bs]
    embedder = CMIMEmbedder(model, tokenizer, batch_size=bs, device=args.device, progress=False)
    ours = InformativeFeatureExtractionPipeline(model=model, tokenizer=tokenizer, device=args.device)
    stock = pipeline("feature-extraction", model=model, tokenizer=tokenizer, device=args.device)
    embedder.embed(warm), ours(warm, batch_size=bs), stock(warm[:8], batch_size=8)  # warm-up

    rates: dict[str, float] = {}
    rates["a"] = bare_forward(model, tokenizer, smiles, bs, args.device)
    rates["b"] = timed(lambda: embedder.embed(smiles), n)
    rates["c"] = timed(lambda: ours(smiles, batch_size=bs), n)
    stock_n = min(n, args.stock_n)
    try:
        rates["d"] = timed(lambda: stock(smiles[:stock_n], batch_size=bs), stock_n)
        shape = tuple(torch.as_tensor(stock(smiles[0])).shape)
        stock_note = f"{stock_n} molecules; returns token-level outputs, shape {shape} for one molecule"
    except Exception as err:  # report how far the stock pipeline gets
        stock_note = f"failed: {type(err).__name__}: {err}"
    rates["e"] = timed(lambda: ecfp4(smiles), n)

    params = sum(p.numel() for p in model.parameters())
    name = args.model or f"random cMIM d={args.hidden_size} {args.num_layers}+{args.num_layers}"
    print(f"model: {name} ({params / 1e6:.2f}M params), device {args.device}")
    print(f"{n} molecules from {args.data.name}, batch size {bs}, torch threads {torch.get_num_threads()}")
    labels = {
        "a": "(a) bare batched forward",
        "b": "(b) bulk API CMIMEmbedder.embed",
        "c": "(c) our pipeline",
        "d": "(d) stock feature-extraction pipeline",
        "e": "(e) RDKit ECFP4",
    }
    for key, label in labels.items():
        rate = f"{rates[key]:10.0f} mol/s" if key in rates else "       n/a"
        print(f"{label:42s} {rate}" + (f"   [{stock_note}]" if key == "d" else ""))
    print(f"(b)/(a) = {rates['b'] / rates['a']:.2f}  (target >= 0.9)")
    if "d" in rates:
        print(f"(b)/(d) = {rates['b'] / rates['d']:.2f}  (target >= 2)")
    print(f"(c)/(a) = {rates['c'] / rates['a']:.2f}")


def rss_child(args: argparse.Namespace) -> None:
    """Run in a fresh process: stream one file through embed_file, print peak RSS in MiB."""
    model, tokenizer = build_model(args)
    embedder = CMIMEmbedder(
        model,
        tokenizer,
        batch_size=args.batch_size,
        device=args.device,
        chunk_size=args.chunk_size,
        progress=False,
    )
    embedder.embed(["CCO"])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        embedder.embed_file(args.rss_child, "SMILES", Path(folder) / "out.parquet")
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{before:.0f} {peak:.0f} {seconds:.1f}")


def rss(args: argparse.Namespace) -> None:
    """Peak RSS of embed_file over the first N rows of `--rss-data`, one fresh process per N."""
    frame = pd.read_csv(args.rss_data)
    print(
        f"streaming {args.rss_data.name} through embed_file (chunks of {args.chunk_size} rows, batch {args.batch_size}):"
    )
    with tempfile.TemporaryDirectory() as folder:
        for rows in args.rss_rows:
            path = Path(folder) / f"first{rows}.csv"
            frame.head(rows).to_csv(path, index=False)
            command = [sys.executable, __file__, "--rss-child", str(path), "--device", args.device]
            command += ["--batch-size", str(args.batch_size), "--chunk-size", str(args.chunk_size)] + (
                ["--threads", str(args.threads)] if args.threads else []
            )
            command += ["--model", args.model] if args.model else []
            command += ["--hidden-size", str(args.hidden_size), "--num-layers", str(args.num_layers)]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
            before, peak, seconds = output[-3:]
            print(
                f"  {rows:7d} rows: peak RSS {peak} MiB (after model load {before} MiB), "
                f"{seconds} s, {rows / float(seconds):.0f} mol/s"
            )


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--model", default=None, help="checkpoint folder (default: a random cMIM)")
    parser.add_argument("--hidden-size", type=int, default=128, help="random cMIM width (default 128)")
    parser.add_argument(
        "--num-layers", type=int, default=3, help="random cMIM encoder = decoder layers (default 3)"
    )
    parser.add_argument("--data", type=Path, default=MOSES_SAMPLE, help="CSV with a SMILES column")
    parser.add_argument("--n", type=int, default=5000, help="molecules to embed")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--stock-n", type=int, default=1000, help="molecules for the (slow) stock pipeline")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--chunk-size", type=int, default=16384, help="embed_file chunk size (memory runs)")
    parser.add_argument("--rss-data", type=Path, default=None, help="file for the memory measurement")
    parser.add_argument("--rss-rows", default="10000,100000", help="comma-separated row counts")
    parser.add_argument("--skip-throughput", action="store_true", help="only measure memory")
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.rss_rows = [int(r) for r in args.rss_rows.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_child:
        rss_child(args)
        return
    if not args.skip_throughput:
        throughput(args)
    if args.rss_data:
        rss(args)


if __name__ == "__main__":
    main()
