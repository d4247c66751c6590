"""Pre-training of cMIM on a SMILES corpus (``cmim pretrain`` and ``examples/pretrain.py``).

Loads a CSV / CSV.GZ / SMI corpus with ``datasets``, validates (RDKit) and tokenizes it with a
batched ``map``, skips and reports molecules that cannot be used (invalid SMILES, tokens outside
the vocabulary, too long), trains with :class:`CMIMTrainer`, checkpoints, resumes, and writes the
final model, tokenizer and a ``pretrain_results.json`` (command, config, steps, wall time, losses,
held-out reconstruction).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
import torch
from transformers import TrainerCallback, set_seed

from .chem import SMILES_NORMALIZATIONS, InvalidSmilesError, normalize_smiles
from .configuration_cmim import CMIMConfig
from .errors import InputError, one_line, run_with_error_boundary
from .generation import fit_aggregate_posterior
from .modeling_cmim import CMIMForConditionalGeneration
from .tokenization_cmim import CMIMTokenizer, vocabulary_fingerprint
from .trainer import OBJECTIVES, CMIMDataCollator, CMIMTrainer, CMIMTrainingArguments

SMILES_COLUMNS = ("SMILES", "smiles", "Smiles", "mol")


class CorpusError(InputError):
    """A corpus file that cannot be read as SMILES (missing file, no SMILES column)."""


class RunFolderError(InputError):
    """An output folder that holds a run the command would destroy, or no run to resume."""


def _checkpoints(output_dir: Path) -> list[Path]:
    """``checkpoint-<step>`` folders, oldest first."""
    found = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def prepare_run_folder(output_dir: Path, resume: bool, overwrite: bool, remove: bool = True) -> Path | None:
    """Check ``output_dir`` against the run it may hold; returns the checkpoint to resume from.
    ``remove=False`` (the other processes of a distributed run) checks without deleting anything.

    A folder holding a run (checkpoints, ``final/`` or ``pretrain_results.json``) needs ``resume``
    (continue from its last complete checkpoint: one with ``trainer_state.json``; a checkpoint cut
    short by a kill during saving is skipped, with a note) or ``overwrite`` (its checkpoints,
    ``final/`` and results are removed first).

    Raises:
        RunFolderError: naming the folder and the option to pass.
    """
    checkpoints = _checkpoints(output_dir)
    holds_run = (
        bool(checkpoints)
        or (output_dir / "final").exists()
        or (output_dir / "pretrain_results.json").exists()
    )
    if resume and overwrite:
        raise RunFolderError("pass --resume or --overwrite, not both")
    if resume:
        complete = [p for p in checkpoints if (p / "trainer_state.json").is_file()]
        if not complete:
            raise RunFolderError(f"--resume: {output_dir} has no complete checkpoint-* folder to resume from")
        for skipped in checkpoints[checkpoints.index(complete[-1]) + 1 :]:
            print(f"note: {skipped} is incomplete (no trainer_state.json); resuming from {complete[-1]}")
        return complete[-1]
    if holds_run and not overwrite:
        raise RunFolderError(
            f"{output_dir} holds a pre-training run; pass --resume to continue it or --overwrite to replace it"
        )
    if overwrite and remove:
        for path in [*checkpoints, output_dir / "final"]:
            shutil.rmtree(path, ignore_errors=True)
        (output_dir / "pretrain_results.json").unlink(missing_ok=True)
    return None


ELAPSED_FILE = "pretrain_elapsed.json"  # in every checkpoint: wall time of the run up to it


class ElapsedTimeCallback(TrainerCallback):
    """Writes the run's cumulative wall time (earlier segments included) into every checkpoint, so
    that a resumed run reports the time of the whole run, not of its last segment."""

    def __init__(self, started: float, before_s: float = 0.0):
        self.started, self.before_s = started, before_s

    def elapsed_s(self) -> float:
        return self.before_s + time.time() - self.started

    def on_save(self, args, state, control, **kwargs):
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and checkpoint.is_dir():
            (checkpoint / ELAPSED_FILE).write_text(json.dumps({"wall_time_s": self.elapsed_s()}))


def elapsed_before(checkpoint: Path | None) -> float:
    """Wall time of the run up to ``checkpoint`` (0 for a fresh run or a checkpoint without it)."""
    if checkpoint is None or not (checkpoint / ELAPSED_FILE).is_file():
        return 0.0
    return float(json.loads((checkpoint / ELAPSED_FILE).read_text())["wall_time_s"])


def mean_logged_loss(log_history: list[dict[str, Any]]) -> float | None:
    """Training loss of the whole run (every resumed segment): the mean of the logged ``loss``
    values, each weighted by the steps it averages."""
    logged = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry]
    total, previous = 0.0, 0
    for step, loss in logged:
        total, previous = total + loss * (step - previous), step
    return total / previous if previous else None


def load_smiles_corpus(
    path: str | Path, smiles_column: str | None = None, limit: int | None = None
) -> datasets.Dataset:
    """A ``datasets.Dataset`` with one ``smiles`` column (plus ``row``, the 0-based data row).

    CSV, CSV.GZ and Parquet files need a header; the SMILES column is ``smiles_column`` or the first
    of SMILES/smiles/Smiles/mol. SMI files hold one SMILES per line, optionally followed by a name.

    Raises:
        CorpusError: naming the file: missing, empty, unreadable (not UTF-8, truncated or corrupt
            compression), without a SMILES column or without molecules.
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"corpus file not found: {path}")
    try:
        dataset = _read_corpus(path)
    except Exception as error:  # datasets wraps the reader's error: report its root cause in one line
        cause = error
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__
        message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise CorpusError(f"{path} cannot be read as a SMILES corpus: {message}") from None
    if len(dataset) == 0:
        raise CorpusError(f"{path} holds no molecules")
    if path.suffix != ".smi":
        column = smiles_column or next((c for c in SMILES_COLUMNS if c in dataset.column_names), None)
        if column not in dataset.column_names:
            raise CorpusError(
                f"{path}: no SMILES column (looked for {smiles_column or SMILES_COLUMNS}); "
                f"columns are {dataset.column_names}"
            )
        dataset = (
            dataset.select_columns([column]).rename_column(column, "smiles")
            if column != "smiles"
            else dataset.select_columns(["smiles"])
        )
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return dataset.add_column("row", list(range(len(dataset))))


def _read_corpus(path: Path) -> datasets.Dataset:
    """The file as read by ``datasets`` (SMI: a ``smiles`` column; CSV/Parquet: its own columns)."""
    if path.suffix == ".smi":
        dataset = datasets.load_dataset("text", data_files=str(path), split="train")
        return dataset.map(
            lambda batch: {"smiles": [line.split()[0] if line.split() else "" for line in batch["text"]]},
            batched=True,
            remove_columns=["text"],
        )
    if path.suffix in (".parquet", ".pq"):
        return datasets.load_dataset("parquet", data_files=str(path), split="train")
    if pd.read_csv(path, nrows=1).empty:  # a header and no rows: datasets would say "no data"
        raise ValueError("a header and no molecules")
    return datasets.load_dataset("csv", data_files=str(path), split="train")


def tokenize_corpus(
    dataset: datasets.Dataset,
    tokenizer: CMIMTokenizer,
    num_proc: int | None = None,
    normalization: str = "none",
) -> tuple[datasets.Dataset, list[dict[str, Any]]]:
    """Validate, normalize (:func:`cmim_hf.chem.normalize_smiles`) and tokenize; returns the usable
    molecules (``smiles`` as normalized, ``input_ids``) and a report of the skipped ones:
    ``{"row", "smiles", "reason"}`` for each, with the SMILES as given."""
    max_length = tokenizer.model_max_length

    def encode(batch: dict[str, list]) -> dict[str, list]:
        given = [(smiles or "").strip() for smiles in batch["smiles"]]
        molecules, reasons = [], []
        for smiles in given:
            try:
                molecules.append(normalize_smiles(smiles, normalization))
                reasons.append("")
            except InvalidSmilesError as error:
                molecules.append("")
                reasons.append(str(error))
        # one tokenizer call per batch; one token past the limit reveals over-long molecules
        encoded = tokenizer(molecules, truncation=True, max_length=max_length + 1)["input_ids"]
        ids = []
        for index, (smiles, tokens) in enumerate(zip(molecules, encoded)):
            reason = reasons[index]
            if not reason and tokenizer.unk_token_id in tokens:
                reason = f"tokens outside the vocabulary: {' '.join(sorted(set(tokenizer.unknown_tokens(smiles))))}"
            if not reason and len(tokens) > max_length:
                reason = f"longer than model_max_length={max_length} tokens"
            ids.append([] if reason else tokens)
            reasons[index] = reason
        return {"smiles": [m if not r else g for m, r, g in zip(molecules, reasons, given)], "input_ids": ids,
                "skip_reason": reasons}  # fmt: skip

    encoded = dataset.map(
        encode, batched=True, batch_size=2000, num_proc=num_proc, desc="validating and tokenizing"
    )
    skipped_rows = encoded.filter(lambda batch: [bool(r) for r in batch["skip_reason"]], batched=True)
    report = [{"row": r["row"], "smiles": r["smiles"], "reason": r["skip_reason"]} for r in skipped_rows]
    usable = encoded.filter(lambda batch: [not r for r in batch["skip_reason"]], batched=True)
    return usable.remove_columns(["skip_reason"]), report


def write_skip_report(report: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["row", "smiles", "reason"])
        writer.writeheader()
        writer.writerows(report)


def add_pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cmim pretrain``."""
    data = parser.add_argument_group("data")
    data.add_argument("--train-file", required=True, help="SMILES corpus: .csv, .csv.gz or .smi")
    data.add_argument("--eval-file", help="held-out SMILES for reconstruction accuracy (same formats)")
    data.add_argument("--smiles-column", help="SMILES column of CSV files (default: SMILES/smiles/mol)")
    data.add_argument("--max-train-samples", type=int, help="use only the first N training molecules")
    data.add_argument(
        "--max-eval-samples", type=int, default=2000, help="use only the first N held-out molecules"
    )
    data.add_argument("--num-proc", type=int, help="processes for tokenization")

    model = parser.add_argument_group("model (ignored with --init-from)")
    model.add_argument("--init-from", help="start from this checkpoint instead of a fresh model")
    model.add_argument("--hidden-size", type=int, default=128, help="width of every transformer layer")
    model.add_argument("--encoder-layers", type=int, default=3, help="transformer layers of the encoder")
    model.add_argument("--decoder-layers", type=int, default=3, help="transformer layers of the decoder")
    model.add_argument(
        "--num-attention-heads", type=int, default=4, help="attention heads (must divide --hidden-size)"
    )
    model.add_argument("--ffn-dim", type=int, default=512, help="inner width of the feed-forward blocks")
    model.add_argument("--num-latents", type=int, default=1, help="K latent vectors per molecule")
    model.add_argument("--latent-size", type=int, help="size of each latent vector (default: hidden size)")
    model.add_argument(
        "--posterior",
        choices=("learned", "sampled"),
        default="learned",
        help="learned: predicted log-variance; sampled: MolMIM's dense latent (log-variance drawn per molecule)",
    )
    model.add_argument("--logvar-min", type=float, default=-6.0, help="floor of the posterior log-variance")
    model.add_argument("--dropout", type=float, default=0.0, help="dropout on residual branches")
    model.add_argument(
        "--max-length", type=int, default=128, help="max tokens per molecule incl. <bos>/<eos>"
    )
    model.add_argument(
        "--position-embedding",
        choices=("learned", "rotary"),
        default="learned",
        help="learned absolute positions, or rotary (relative, no parameters; better past trained lengths)",
    )
    model.add_argument(
        "--smiles-normalization",
        choices=SMILES_NORMALIZATIONS,
        default="canonical",
        help="rewrite every corpus SMILES this way before training; recorded in the checkpoint's config "
        "so that embedding applies the same (canonical_nostereo for MOSES-like corpora)",
    )

    train = parser.add_argument_group("training")
    train.add_argument("--output-dir", required=True, help="checkpoints, logs and the final model go here")
    train.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="cmim",
        help="cmim (A-MIM + cMIM term), mim (A-MIM), infonce (A-MIM + InfoNCE), ae (reconstruction only)",
    )
    train.add_argument("--temperature", type=float, default=0.1, help="tau of the contrastive term")
    train.add_argument(
        "--latent-weight", type=float, default=1.0, help="weight of the A-MIM latent term after its warm-up"
    )
    train.add_argument("--contrastive-weight", type=float, default=1.0, help="weight of the contrastive term")
    train.add_argument(
        "--latent-warmup-steps",
        type=int,
        default=1000,
        help="steps over which the latent weight rises linearly from 0",
    )
    train.add_argument(
        "--latent-reduction", choices=("mean", "sum"), default="mean", help="latent term over dimensions"
    )
    train.add_argument(
        "--latent-free-nats", type=float, default=0.0, help="per-dimension floor under the prior pull"
    )
    train.add_argument(
        "--deterministic-steps", type=int, default=0, help="first N steps decode z = mu (no noise)"
    )
    train.add_argument(
        "--posterior-lr-multiplier", type=float, default=1.0, help="posterior head lr / base lr"
    )
    train.add_argument(
        "--decoder-token-dropout", type=float, default=0.0, help="word dropout on decoder inputs"
    )
    train.add_argument(
        "--group-by-length",
        action="store_true",
        help="batch molecules of similar length together (less padding)",
    )
    train.add_argument("--batch-size", type=int, default=128, help="molecules per process per step")
    train.add_argument(
        "--gradient-accumulation-steps", type=int, default=1, help="micro-batches per optimizer step"
    )
    train.add_argument("--learning-rate", type=float, default=1e-3, help="peak AdamW learning rate")
    train.add_argument(
        "--lr-scheduler",
        default="constant_with_warmup",
        help="Transformers scheduler name: constant_with_warmup, cosine, linear, ...",
    )
    train.add_argument("--warmup-steps", type=int, default=200, help="learning-rate warm-up steps")
    train.add_argument("--max-steps", type=int, default=1000, help="optimizer steps to train for")
    train.add_argument("--save-steps", type=int, default=250, help="checkpoint every N steps")
    train.add_argument(
        "--save-total-limit", type=int, default=2, help="checkpoints kept (older ones are deleted)"
    )
    train.add_argument("--logging-steps", type=int, default=25, help="log the loss components every N steps")
    train.add_argument("--eval-steps", type=int, help="evaluate every N steps (default: only at the end)")
    train.add_argument(
        "--seed", type=int, default=0, help="seed of the weights, the data order and the posterior noise"
    )
    train.add_argument(
        "--resume", action="store_true", help="resume from the last complete checkpoint in --output-dir"
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run --output-dir holds (its checkpoints, final/ and results); refused otherwise",
    )
    train.add_argument("--report-to", default="none", help="Trainer loggers, e.g. tensorboard")
    train.add_argument(
        "--prior-molecules",
        type=int,
        default=20000,
        help="fit the aggregate posterior (cmim sample's default prior) to the first N training "
        "molecules and store it with the final model; 0 skips it",
    )


def build_model(args: argparse.Namespace, tokenizer: CMIMTokenizer) -> CMIMForConditionalGeneration:
    if args.init_from:
        return CMIMForConditionalGeneration.from_pretrained(args.init_from, dtype="float32")
    config = CMIMConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        encoder_layers=args.encoder_layers,
        decoder_layers=args.decoder_layers,
        num_attention_heads=args.num_attention_heads,
        ffn_dim=args.ffn_dim,
        num_latents=args.num_latents,
        latent_size=args.latent_size,
        posterior=args.posterior,
        logvar_min=args.logvar_min,
        dropout=args.dropout,
        max_position_embeddings=args.max_length,
        position_embedding_type=args.position_embedding,
        smiles_normalization=args.smiles_normalization,
    )
    config.vocab_fingerprint = vocabulary_fingerprint(tokenizer)
    return CMIMForConditionalGeneration(config)


def run_pretrain(args: argparse.Namespace) -> dict[str, Any]:
    """Pre-train as configured by :func:`add_pretrain_arguments`; returns the results record."""
    started = time.time()
    output_dir = Path(args.output_dir)
    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun / accelerate launch
    resume_from = prepare_run_folder(output_dir, args.resume, args.overwrite, remove=main_process)
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = CMIMTokenizer(model_max_length=args.max_length)

    train_raw = load_smiles_corpus(args.train_file, args.smiles_column, args.max_train_samples)
    train_set, train_skipped = tokenize_corpus(train_raw, tokenizer, args.num_proc, args.smiles_normalization)
    if main_process:
        write_skip_report(train_skipped, output_dir / "skipped_train_smiles.csv")
    one_batch = args.batch_size * int(os.environ.get("WORLD_SIZE", "1"))
    if len(train_set) < one_batch:  # batches drop the incomplete last one: no step would be taken
        raise CorpusError(
            f"{args.train_file}: {len(train_set)} usable molecules ({len(train_skipped)} skipped, see "
            f"{output_dir / 'skipped_train_smiles.csv'}), fewer than one batch of {one_batch}"
        )
    print(
        f"training molecules: {len(train_set)} used, {len(train_skipped)} skipped "
        f"(see {output_dir / 'skipped_train_smiles.csv'})",
        flush=True,
    )
    eval_set = None
    if args.eval_file:
        eval_raw = load_smiles_corpus(args.eval_file, args.smiles_column, args.max_eval_samples)
        eval_set, eval_skipped = tokenize_corpus(
            eval_raw, tokenizer, args.num_proc, args.smiles_normalization
        )
        if main_process:
            write_skip_report(eval_skipped, output_dir / "skipped_eval_smiles.csv")
        print(f"held-out molecules: {len(eval_set)} used, {len(eval_skipped)} skipped", flush=True)

    set_seed(args.seed)  # the model's initial weights
    model = build_model(args, tokenizer)
    training_args = CMIMTrainingArguments(
        output_dir=str(output_dir),
        objective=args.objective,
        temperature=args.temperature,
        latent_weight=args.latent_weight,
        contrastive_weight=args.contrastive_weight,
        latent_warmup_steps=args.latent_warmup_steps,
        latent_reduction=args.latent_reduction,
        latent_free_nats=args.latent_free_nats,
        deterministic_steps=args.deterministic_steps,
        posterior_lr_multiplier=args.posterior_lr_multiplier,
        decoder_token_dropout=args.decoder_token_dropout,
        train_sampling_strategy="group_by_length" if args.group_by_length else "random",
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.learning_rate,
        lr_scheduler_type=args.lr_scheduler,
        warmup_steps=args.warmup_steps,
        max_grad_norm=1.0,
        max_steps=args.max_steps,
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=args.save_total_limit,
        logging_steps=args.logging_steps,
        eval_strategy="steps" if (args.eval_steps and eval_set is not None) else "no",
        eval_steps=args.eval_steps,
        seed=args.seed,
        data_seed=args.seed,
        report_to=args.report_to,
        dataloader_drop_last=True,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning only helps host-to-GPU copies
    )
    clock = ElapsedTimeCallback(started, elapsed_before(resume_from))
    trainer = CMIMTrainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=CMIMDataCollator(tokenizer),
        processing_class=tokenizer,
        callbacks=[clock],
    )
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    trainer.save_model(str(output_dir / "final"))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(output_dir / "final"))
    prior_molecules = min(args.prior_molecules, len(train_set))
    if prior_molecules >= 2 and trainer.is_world_process_zero():
        fit_aggregate_posterior(
            trainer.model,
            tokenizer,
            train_set.select(range(prior_molecules))["smiles"],
            source=f"{args.train_file}: first {prior_molecules} usable training molecules",
        ).save(output_dir / "final")

    record: dict[str, Any] = {
        "command": "cmim pretrain " + " ".join(shlex.quote(a) for a in getattr(args, "argv", sys.argv[1:])),
        "config": model.config.to_dict(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "training_arguments": {k: v for k, v in vars(args).items() if k != "argv"},
        "steps": trainer.state.global_step,
        "molecules_seen": trainer.state.global_step
        * args.batch_size
        * args.gradient_accumulation_steps
        * training_args.world_size,
        "wall_time_s": round(clock.elapsed_s(), 1),  # every segment of a resumed run
        "segment_wall_time_s": round(time.time() - started, 1),
        "resumed_from": str(resume_from) if resume_from else None,
        "train_loss": mean_logged_loss(trainer.state.log_history),
        "last_logged_losses": next((e for e in reversed(trainer.state.log_history) if "loss/total" in e), {}),
        "skipped_train_molecules": len(train_skipped),
        "aggregate_posterior_molecules": prior_molecules if prior_molecules >= 2 else 0,
    }
    if eval_set is not None:
        record["held_out"] = trainer.evaluate()
    if trainer.is_world_process_zero():
        (output_dir / "pretrain_results.json").write_text(json.dumps(record, indent=2, default=str))
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_pretrain_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = argv if argv is not None else sys.argv[1:]
    return run_with_error_boundary("pretrain", run_pretrain_command, args)


def run_pretrain_command(args: argparse.Namespace) -> int:
    """:func:`run_pretrain` with a bad corpus or run folder reported in one line (exit code 2)."""
    try:
        run_pretrain(args)
    except InputError as error:  # corpus, run folder, tokenizer or checkpoint
        print(f"cmim pretrain: error: {one_line(error)}", file=sys.stderr)
        return 2
    return 0
