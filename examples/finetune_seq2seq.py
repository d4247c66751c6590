"""Fine-tune a cMIM checkpoint on a SMILES-to-SMILES task with the stock seq2seq tools.

``Seq2SeqTrainer`` + ``DataCollatorForSeq2Seq`` + ``predict_with_generate``, exactly as for BART or
T5: cMIM follows their ``labels`` contract (the decoder reads ``shift_tokens_right(labels)``), and
``tokenizer(text_target=...)`` writes labels as ``x + [<eos>]``.

The task is built from data the repository ships (the first 5,000 MOSES test molecules): the input
is a randomized SMILES of a molecule (RDKit ``doRandom``, a fixed seed), the target its canonical
SMILES. Held-out molecules measure greedy exact match of the generated canonical SMILES.

    python examples/finetune_seq2seq.py --out runs/seq2seq            # shipped checkpoint
    python examples/finetune_seq2seq.py --model path/to/cmim --max-steps 2000 --out runs/seq2seq

Writes ``OUT/seq2seq_results.json`` (exact match before and after fine-tuning, with the command) and
the fine-tuned model in ``OUT/final``. An existing ``OUT`` is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from rdkit import Chem, RDLogger
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
)

import cmim_hf
from cmim_hf.outputs import atomic_output

DEFAULT_MODEL = Path(cmim_hf.__file__).parent / "pretrained"
DEFAULT_DATA = Path(cmim_hf.__file__).parent / "package_data" / "moses" / "moses_test_first5000.csv"


def randomized_pairs(smiles: list[str], seed: int) -> list[dict[str, str]]:
    """One (randomized SMILES, canonical SMILES) pair per molecule, in input order.

    Raises:
        ValueError: naming the row of a SMILES RDKit cannot parse.
    """
    pairs = []
    for index, text in enumerate(smiles):
        mol = Chem.MolFromSmiles(text)
        if mol is None:
            raise ValueError(f"row {index}: RDKit cannot parse SMILES {text!r}")
        (source,) = Chem.MolToRandomSmilesVect(mol, 1, randomSeed=seed + index)
        pairs.append({"source": source, "target": Chem.MolToSmiles(mol)})
    return pairs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="cMIM checkpoint folder or Hub id")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CSV with a SMILES column")
    parser.add_argument("--smiles-col", default="SMILES")
    parser.add_argument("--train-molecules", type=int, default=4000)
    parser.add_argument("--eval-molecules", type=int, default=500)
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return parser.parse_args(argv)


def exact_match(trainer: Seq2SeqTrainer, dataset, tokenizer, targets: list[str]) -> float:
    """Fraction of ``dataset`` whose greedy generation decodes to its target SMILES."""
    generated = trainer.predict(dataset).predictions
    generated[generated < 0] = tokenizer.pad_token_id
    decoded = tokenizer.batch_decode(generated, skip_special_tokens=True)
    return sum(d == t for d, t in zip(decoded, targets)) / len(targets)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()) and not args.overwrite:
        print(f"error: {args.out} exists and is not empty; pass --overwrite to replace it", file=sys.stderr)
        return 2
    shutil.rmtree(args.out, ignore_errors=True)
    RDLogger.DisableLog("rdApp.*")
    smiles = pd.read_csv(args.data)[args.smiles_col].astype(str).tolist()
    needed = args.train_molecules + args.eval_molecules
    if len(smiles) < needed:
        print(
            f"error: {args.data} has {len(smiles)} molecules, fewer than the {needed} asked for",
            file=sys.stderr,
        )
        return 2
    pairs = randomized_pairs(smiles[:needed], args.seed)

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSeq2SeqLM.from_pretrained(args.model)

    def tokenize(batch: dict[str, list[str]]) -> dict[str, list[list[int]]]:
        return tokenizer(batch["source"], text_target=batch["target"], truncation=True)

    from datasets import Dataset

    train = Dataset.from_list(pairs[: args.train_molecules]).map(tokenize, batched=True)
    held_out = Dataset.from_list(pairs[args.train_molecules :]).map(tokenize, batched=True)
    targets = held_out["target"]
    columns = ["source", "target"]
    train, held_out = train.remove_columns(columns), held_out.remove_columns(columns)

    training_args = Seq2SeqTrainingArguments(
        output_dir=str(args.out),
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=min(100, args.max_steps // 10),
        predict_with_generate=True,
        generation_max_length=tokenizer.model_max_length,
        generation_num_beams=1,
        save_strategy="no",
        logging_steps=max(1, args.max_steps // 10),
        report_to="none",
        seed=args.seed,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning only helps host-to-GPU copies
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
        processing_class=tokenizer,
    )
    before = exact_match(trainer, held_out, tokenizer, targets)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    after = exact_match(trainer, held_out, tokenizer, targets)
    trainer.save_model(str(args.out / "final"))

    results = {
        "command": "python examples/finetune_seq2seq.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": str(args.model),
        "task": "randomized SMILES -> canonical SMILES",
        "train_molecules": args.train_molecules,
        "eval_molecules": args.eval_molecules,
        "steps": args.max_steps,
        "train_seconds": round(seconds, 1),
        "exact_match_before": before,
        "exact_match_after": after,
    }
    with atomic_output(args.out / "seq2seq_results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
