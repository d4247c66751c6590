"""Padding and training speed of random vs length-grouped batches (issue 12, item 5).

Both strategies take their batches from ``CMIMTrainer.get_train_dataloader`` exactly as
``cmim pretrain`` does (``--group-by-length`` sets ``train_sampling_strategy="group_by_length"``:
Transformers' ``LengthGroupedSampler`` sorts mega-batches of 50 batches by length). Reported:

- padding: the fraction of token slots that are padding, over ``--padding-batches`` batches;
- molecules/s: ``--steps`` training steps (forward, cMIM loss, backward, AdamW) of a model of the
  shipped checkpoint's sizes (d=128, 3+3 layers, FFN 512; one latent) on those batches, the two
  strategies alternating step by step so that drifts of the machine hit both alike; the first
  ``--warmup`` steps of each are discarded.

    python benchmarks/length_grouping.py --corpus ../shared/data/pretrain/moses_train.csv.gz \
        --molecules 200000 --batch-size 128 --steps 60 --json runs/length_grouping.json
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import MOSES_SAMPLE, argument_parser, command_line, publish, random_cmim
from datasets import Dataset

from cmim_hf import CMIMTokenizer
from cmim_hf.training.corpus import load_smiles_corpus
from cmim_hf.training.trainer import CMIMDataCollator, CMIMTrainer, CMIMTrainingArguments

STRATEGIES = ("random", "group_by_length")


def padding_fraction(attention_masks: list[torch.Tensor]) -> float:
    """Padding slots / all token slots over (B, T) 0/1 attention masks."""
    slots = sum(mask.numel() for mask in attention_masks)
    return 1.0 - sum(int(mask.sum()) for mask in attention_masks) / slots if slots else 0.0


def make_trainer(
    strategy: str, dataset: Dataset, tokenizer: CMIMTokenizer, args: argparse.Namespace, out: str
) -> CMIMTrainer:
    """A trainer of a fresh seeded model whose data loader draws batches with ``strategy``."""
    # d=128, 3+3 layers, 4 heads, FFN 512: the shipped checkpoint's sizes (one latent, 128 positions)
    model = random_cmim(tokenizer, 128, 3, 4, 512, seed=args.seed, dropout=0.0, max_position_embeddings=128)
    training_args = CMIMTrainingArguments(
        output_dir=out, per_device_train_batch_size=args.batch_size, train_sampling_strategy=strategy,
        dataloader_drop_last=True, report_to="none", use_cpu=True, seed=args.seed, latent_warmup_steps=0,
        dataloader_pin_memory=False,
    )  # fmt: skip
    return CMIMTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        data_collator=CMIMDataCollator(tokenizer),
        processing_class=tokenizer,
    )


def measure(args: argparse.Namespace) -> dict[str, Any]:
    tokenizer = CMIMTokenizer(model_max_length=128)
    smiles = list(load_smiles_corpus(args.corpus, limit=args.molecules)["smiles"])
    encoded = tokenizer(smiles, truncation=True)["input_ids"]
    dataset = Dataset.from_dict({"input_ids": encoded})
    results: dict[str, Any] = {
        "corpus": str(args.corpus),
        "molecules": len(dataset),
        "batch_size": args.batch_size,
    }
    with tempfile.TemporaryDirectory() as out:
        trainers = {s: make_trainer(s, dataset, tokenizer, args, out) for s in STRATEGIES}
        batches = {
            s: list(itertools.islice(t.get_train_dataloader(), args.padding_batches))
            for s, t in trainers.items()
        }
        optimizers = {s: torch.optim.AdamW(t.model.parameters(), lr=1e-3) for s, t in trainers.items()}
        times: dict[str, list[float]] = {s: [] for s in STRATEGIES}
        for step in range(args.warmup + args.steps):
            order = STRATEGIES if step % 2 == 0 else STRATEGIES[::-1]
            for strategy in order:
                trainer, batch = trainers[strategy], batches[strategy][step % len(batches[strategy])]
                model = trainer.model.train()
                started = time.perf_counter()
                optimizers[strategy].zero_grad()
                trainer.compute_loss(model, batch).backward()
                optimizers[strategy].step()
                if step >= args.warmup:
                    times[strategy].append(time.perf_counter() - started)
    for strategy in STRATEGIES:
        masks = [batch["attention_mask"] for batch in batches[strategy]]
        results[strategy] = {
            "padding_fraction": padding_fraction(masks),
            "mean_padded_length": sum(m.shape[1] for m in masks) / len(masks),
            "molecules_per_s": args.batch_size * args.steps / sum(times[strategy]),
        }
    results["speedup"] = results["group_by_length"]["molecules_per_s"] / results["random"]["molecules_per_s"]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--corpus", type=Path, default=MOSES_SAMPLE, help="SMILES corpus (.csv/.csv.gz/.smi)")
    parser.add_argument("--molecules", type=int, default=5000, help="first N molecules of the corpus")
    parser.add_argument("--batch-size", type=int, default=128, help="molecules per batch")
    parser.add_argument(
        "--padding-batches", type=int, default=200, help="batches the padding is counted over"
    )
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per strategy")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps per strategy")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samplers and models")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = measure(args)
    results["command"] = command_line(__file__, argv)
    results["threads"] = torch.get_num_threads()
    publish(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
