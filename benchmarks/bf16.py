"""bf16 against float32 on this machine: speed and quality, in one run.

Speed (``--parts speed``):
- the matmul peak: ``torch.mm`` of two ``--peak-size`` square matrices, float32 and bfloat16;
- training: molecules/s of one cMIM training step (``CMIMTrainer.compute_loss``: reconstruction,
  A-MIM latent and cMIM terms; backward; AdamW) at three sizes, float32 and under bf16 autocast
  (what ``cmim pretrain --bf16`` runs), the two alternating step by step on the same MOSES batches
  of 128; the FLOPs of a step (``torch.utils.flop_counter``, matmuls and attention) give the
  fraction of the bf16 matmul peak reached;
- embedding: molecules/s of ``CMIMEmbedder`` (the shipped checkpoint, ``dtype`` float32 / bf16).

Quality (``--parts quality``), on the shipped checkpoint:
- cosine between the bf16 and float32 informative embeddings of every ``--eval-file`` molecule;
- the ESOL probe (SVM, random split, 5 seeds) on float32 and on bf16 embeddings;
- (``--parts pilot``) a pilot pre-training run in float32 and in bf16 with the same seed: held-out
  token accuracy and exact reconstruction.

    python benchmarks/bf16.py --train-file ../shared/data/pretrain/moses_train.csv.gz \\
        --eval-file ../shared/data/pretrain/moses_test.csv.gz --json benchmarks/results/bf16.json \\
        --markdown benchmarks/results/bf16.md
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import (
    MOSES_SAMPLE,
    REPO,
    PretrainRun,
    argument_parser,
    cmim_training_loss,
    command_line,
    pretrain,
    random_cmim,
    read_smiles,
    write_text,
)
from torch.utils.flop_counter import FlopCounterMode

import cmim_hf
from cmim_hf import CMIMEmbedder, CMIMTokenizer
from cmim_hf.chem import normalize_smiles
from cmim_hf.evaluation.probes import fit_probe
from cmim_hf.evaluation.reports import markdown_table, write_json
from cmim_hf.evaluation.tasks import load_task, random_split
from cmim_hf.precision import autocast_to, cpu_has_native_bf16
from cmim_hf.training.trainer import CMIMDataCollator

SIZES = {  # hidden size, layers (encoder = decoder), heads, FFN width, K latents of L
    "d=128, 3+3": (128, 3, 4, 512, 4, 32),
    "d=256, 4+4": (256, 4, 4, 1024, 4, 64),
    "d=512, 6+6": (512, 6, 8, 2048, 4, 128),
}
DTYPES = {"float32": torch.float32, "bf16": torch.bfloat16}


def matmul_gflops(dtype: torch.dtype, size: int, seconds: float) -> float:
    """Sustained GFLOP/s of ``size`` x ``size`` matmuls in ``dtype``."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


def moses_batches(smiles: list[str], batch_size: int, n: int, tokenizer: CMIMTokenizer) -> list[dict]:
    collator = CMIMDataCollator(tokenizer)
    return [
        collator([{"smiles": s} for s in smiles[i * batch_size : (i + 1) * batch_size]]) for i in range(n)
    ]


def training_speed(name: str, batches: list[dict], tokenizer: CMIMTokenizer, warmup: int) -> dict[str, Any]:
    """Molecules/s of float32 and bf16 training steps of one size, alternating on the same batches."""
    hidden, layers, heads, ffn, latents, latent_size = SIZES[name]
    config = {"num_latents": latents, "latent_size": latent_size, "max_position_embeddings": 1024}
    model = random_cmim(tokenizer, hidden, layers, heads, ffn, **config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with tempfile.TemporaryDirectory() as folder:
        loss_fn, _ = cmim_training_loss(model, folder)

        def step(batch: dict, dtype: torch.dtype) -> float:
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with autocast_to(dtype, "cpu"):
                loss = loss_fn(model, batch)
            loss.backward()
            optimizer.step()
            return time.perf_counter() - start

        with FlopCounterMode(display=False) as counter, autocast_to(torch.float32, "cpu"):
            loss_fn(model, batches[0]).backward()
        flops_per_molecule = counter.get_total_flops() / len(batches[0]["input_ids"])
        times: dict[str, list[float]] = {label: [] for label in DTYPES}
        for index, batch in enumerate(batches):
            order = list(DTYPES.items()) if index % 2 == 0 else list(reversed(DTYPES.items()))
            for label, dtype in order:
                elapsed = step(batch, dtype)
                if index >= warmup:
                    times[label].append(elapsed)
    molecules = sum(len(b["input_ids"]) for b in batches[warmup:])
    result: dict[str, Any] = {"parameters": sum(p.numel() for p in model.parameters())}
    for label in DTYPES:
        rate = molecules / sum(times[label])
        result[f"{label}_molecules_per_s"] = round(rate, 1)
        result[f"{label}_gflops"] = round(rate * flops_per_molecule / 1e9, 1)
    result["speedup"] = round(result["bf16_molecules_per_s"] / result["float32_molecules_per_s"], 2)
    return result


def embedding_speed(smiles: list[str], batch_size: int) -> dict[str, float]:
    """Molecules/s of the shipped checkpoint's informative embedding, float32 and bf16."""
    rates = {}
    for label, dtype in DTYPES.items():
        embedder = CMIMEmbedder(
            cmim_hf.DEFAULT_CHECKPOINT, normalize=False, progress=False, dtype=dtype, batch_size=batch_size
        )
        embedder.embed(smiles[:batch_size])  # warm-up
        start = time.perf_counter()
        embedder.embed(smiles)
        rates[f"{label}_molecules_per_s"] = round(len(smiles) / (time.perf_counter() - start), 1)
    rates["speedup"] = round(rates["bf16_molecules_per_s"] / rates["float32_molecules_per_s"], 2)
    return rates


def embeddings(smiles: list[str], dtype: torch.dtype) -> np.ndarray:
    return CMIMEmbedder(cmim_hf.DEFAULT_CHECKPOINT, progress=False, dtype=dtype, on_invalid="nan").embed(
        smiles
    )


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def esol_probe(seeds: int) -> dict[str, Any]:
    """Test RMSE of the SVM probe on ESOL (random split) with float32 and bf16 embeddings."""
    task = load_task("esol")
    features = {label: embeddings(task.smiles, dtype) for label, dtype in DTYPES.items()}
    rmse: dict[str, list[float]] = {label: [] for label in DTYPES}
    for seed in range(seeds):
        split = random_split(len(task), seed)
        pool = np.concatenate([split.train, split.valid])
        y = task.labels[:, 0]
        for label, X in features.items():
            fit = fit_probe("svm", "regression", X[pool], y[pool], seed=seed)
            error = fit.estimator.predict(X[split.test]) - y[split.test]
            rmse[label].append(float(np.sqrt(np.mean(error**2))))
    summary = {f"{label}_rmse": [round(v, 4) for v in values] for label, values in rmse.items()}
    for label, values in rmse.items():
        summary[f"{label}_mean_std"] = (round(float(np.mean(values)), 3), round(float(np.std(values)), 3))
    summary["largest_seed_difference"] = round(max(abs(a - b) for a, b in zip(*rmse.values())), 4)
    return summary


def pilot(
    train_file: str, eval_file: str, steps: int, out: Path, threads: int | None = None
) -> dict[str, Any]:
    """The same pilot pre-training in float32 and in bf16 (same seed), and in float32 with another
    seed, each a ``cmim pretrain`` process with ``threads`` torch threads: held-out reconstruction."""
    recipe = [
        "--train-file", train_file, "--eval-file", eval_file, "--max-eval-samples", "1000",
        "--max-train-samples", str(steps * 64), "--hidden-size", "128", "--encoder-layers", "2",
        "--decoder-layers", "2", "--ffn-dim", "512", "--num-attention-heads", "4", "--num-latents", "4",
        "--latent-size", "32", "--max-length", "1024", "--smiles-normalization", "canonical_nostereo",
        "--deterministic-steps", str(steps // 3), "--batch-size", "64", "--learning-rate", "2e-3",
        "--lr-scheduler", "cosine", "--warmup-steps", "100", "--max-steps", str(steps),
        "--save-steps", str(steps), "--prior-molecules", "0", "--num-proc", "1",
    ]  # fmt: skip
    labels = {
        "float32": ["--seed", "0"],
        "bf16": ["--seed", "0", "--bf16"],
        "float32, seed 1": ["--seed", "1"],
    }
    runs = {
        label: PretrainRun(out / label.replace(", ", "_").replace(" ", ""), [*recipe, *extra])
        for label, extra in labels.items()
    }
    # A finished run of this --out is reused; each run logs to <out>/<its folder>.log.
    pretrain({run.output_dir.name: run for run in runs.values()}, logs=out, threads=threads)
    results = {}
    for label, run in runs.items():
        record = run.results()
        held_out = record["held_out"]
        results[label] = {
            "token_accuracy": round(held_out["eval_token_accuracy"], 4),
            "exact_match": round(held_out["eval_exact_match"], 4),
            "wall_time_s": record["wall_time_s"],
        }
    accuracy = {label: row["token_accuracy"] for label, row in results.items()}
    results["token_accuracy_difference"] = round(accuracy["bf16"] - accuracy["float32"], 4)
    results["seed_difference"] = round(accuracy["float32, seed 1"] - accuracy["float32"], 4)
    results["command"] = "cmim pretrain " + shlex.join(recipe) + " --seed 0 [--bf16] / --seed 1"
    results["threads"] = threads
    return results


def save(record: dict[str, Any], path: Path) -> None:
    """Write the record so far (each part is saved as soon as it is measured)."""
    write_json(record, path)


def markdown(record: dict[str, Any]) -> str:
    lines = ["# bf16 against float32", "", f"{record['machine']}.", ""]
    if "matmul_gflops" in record:
        lines += [
            f"`{record['commands']['speed']}` ({record['speed_threads']} threads, nothing else running)",
            "",
        ]
        peak = record["matmul_gflops"]
        lines += [
            f"Matmul {record['peak_size']}^2: float32 {peak['float32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s.",
            "",
        ]
        header = ["model", "parameters", "float32 mol/s", "bf16 mol/s", "speedup",
                  "bf16 GFLOP/s (fraction of the bf16 matmul peak)"]  # fmt: skip
        rows = [
            [name, f"{row['parameters'] / 1e6:.1f} M", row["float32_molecules_per_s"],
             row["bf16_molecules_per_s"], f"{row['speedup']}x",
             f"{row['bf16_gflops']} ({row['bf16_gflops'] / peak['bf16']:.0%})"]
            for name, row in record["training"].items()
        ]  # fmt: skip
        lines.append(markdown_table(header, rows))
        emb = record["embedding"]
        lines += ["", f"Embedding (shipped checkpoint, batch {record['embedding_batch_size']}): float32 "
                  f"{emb['float32_molecules_per_s']} mol/s, bf16 {emb['bf16_molecules_per_s']} mol/s ({emb['speedup']}x).", ""]  # fmt: skip
    if "cosine" in record:
        cos = record["cosine"]
        lines += [f"`{record['commands']['quality']}` ({record['quality_threads']} thread(s))", ""]
        lines += [
            f"Cosine of bf16 to float32 embeddings, {cos['molecules']} molecules: min {cos['min']:.5f}, "
            f"0.1% quantile {cos['q001']:.5f}, mean {cos['mean']:.6f}.",
            "",
        ]
        esol = record["esol"]
        lines += [
            f"ESOL SVM probe, random split, 5 seeds: float32 RMSE {esol['float32_mean_std'][0]} ± "
            f"{esol['float32_mean_std'][1]}, bf16 {esol['bf16_mean_std'][0]} ± {esol['bf16_mean_std'][1]} "
            f"(largest per-seed difference {esol['largest_seed_difference']}).",
            "",
        ]
    if "pilot" in record:
        pilot_record = record["pilot"]
        header = ["pilot", "held-out token accuracy", "exact",
                  f"wall time (s, {pilot_record.get('threads', 1)} thread(s), shared machine)"]  # fmt: skip
        rows = [
            [label, *(pilot_record[label][key] for key in ("token_accuracy", "exact_match", "wall_time_s"))]
            for label in ("float32", "bf16", "float32, seed 1")
        ]
        lines.append(markdown_table(header, rows))
        lines += ["", f"Difference (bf16 - float32, seed 0): {pilot_record['token_accuracy_difference']}; "
                  f"seed to seed in float32 (seed 1 - seed 0): {pilot_record['seed_difference']}.",
                  f"Pilot command: `{pilot_record['command']}`", ""]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--parts", default="speed,quality,pilot", help="comma-separated: speed, quality, pilot"
    )
    parser.add_argument("--train-file", help="pilot corpus (MOSES train)")
    parser.add_argument(
        "--eval-file", default=str(MOSES_SAMPLE), help="molecules for the cosine and the pilot"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per dtype and size")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per dtype and size")
    parser.add_argument("--peak-size", type=int, default=2048)
    parser.add_argument("--embed-molecules", type=int, default=2000)
    parser.add_argument("--embedding-batch-size", type=int, default=256)
    parser.add_argument("--pilot-steps", type=int, default=800)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bf16")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    parts = set(filter(None, args.parts.split(",")))  # none: only render --markdown from --json
    if not cpu_has_native_bf16():
        print("this CPU has no AVX512-BF16/AMX: bf16 would be emulated, nothing to compare", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    record: dict[str, Any] = json.loads(args.json.read_text()) if args.json.is_file() else {}
    command = command_line(__file__, argv)
    record.setdefault("commands", {}).update({part: command for part in parts})
    record["machine"] = f"torch {torch.__version__}, CPU with AVX512-BF16"
    smiles = read_smiles(args.eval_file)
    normalized = [normalize_smiles(s, "canonical_nostereo") for s in smiles]
    tokenizer = CMIMTokenizer(model_max_length=1024)
    if "speed" in parts:
        record["speed_threads"] = args.threads
        record["peak_size"] = args.peak_size
        record["matmul_gflops"] = {
            label: round(matmul_gflops(dtype, args.peak_size, 3.0), 1) for label, dtype in DTYPES.items()
        }
        batches = moses_batches(normalized, 128, args.warmup + args.steps, tokenizer)
        record["training"] = {name: training_speed(name, batches, tokenizer, args.warmup) for name in SIZES}
        record["embedding_batch_size"] = args.embedding_batch_size
        record["embedding"] = embedding_speed(normalized[: args.embed_molecules], args.embedding_batch_size)
        save(record, args.json)
    if "quality" in parts:
        record["quality_threads"] = args.threads
        cosine = cosine_rows(embeddings(smiles, torch.float32), embeddings(smiles, torch.bfloat16))
        record["cosine"] = {
            "molecules": int(np.isfinite(cosine).sum()),
            "min": float(np.nanmin(cosine)),
            "q001": float(np.nanquantile(cosine, 0.001)),
            "mean": float(np.nanmean(cosine)),
        }
        record["esol"] = esol_probe(5)
        save(record, args.json)
    if "pilot" in parts:
        if not args.train_file:
            parser.error("--parts pilot needs --train-file")
        record["pilot"] = pilot(args.train_file, args.eval_file, args.pilot_steps, args.out, args.threads)
        save(record, args.json)
    if args.markdown:
        write_text(markdown(record), args.markdown)
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
