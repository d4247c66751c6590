"""Pre-training of cMIM on a SMILES corpus (``cmim pretrain`` and ``examples/pretrain.py``).

Loads a CSV / CSV.GZ / Parquet / SMI corpus with ``datasets``, validates (RDKit) and tokenizes it
(whole, with a batched ``map``, or on the fly with ``--streaming``), skips and reports molecules that
cannot be used (invalid SMILES, tokens outside the vocabulary, too long), trains with
:class:`CMIMTrainer`, checkpoints, resumes, and writes the final model, tokenizer and a
``pretrain_results.json`` (command, config, steps, wall time, losses, held-out reconstruction).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import TrainerCallback, set_seed

from cmim_hf.checkpoints import CheckpointError
from cmim_hf.chem import SMILES_NORMALIZATIONS
from cmim_hf.distributed import leave_process_group
from cmim_hf.errors import InputError, Interrupted, one_line, run_with_error_boundary
from cmim_hf.generation.sampling import fit_aggregate_posterior
from cmim_hf.models.cmim.configuration_cmim import CMIMConfig
from cmim_hf.models.cmim.modeling_cmim import CMIMForConditionalGeneration
from cmim_hf.models.cmim.tokenization_cmim import CMIMTokenizer, vocabulary_fingerprint
from cmim_hf.outputs import atomic_output
from cmim_hf.precision import command_compute_dtype
from cmim_hf.training.corpus import CorpusError, load_smiles_corpus, tokenize_corpus, write_skip_report
from cmim_hf.training.streaming import (
    StreamingSmilesCorpus,
    StreamPositionCallback,
    corpus_shards,
    corpus_smiles_column,
    load_stream_position,
    reported_rows,
)
from cmim_hf.training.trainer import (
    OBJECTIVES,
    CMIMDataCollator,
    CMIMTrainer,
    CMIMTrainingArguments,
    first_training_smiles,
)


class RunFolderError(InputError):
    """An output folder that holds a run the command would destroy, or no run to resume."""


def _checkpoints(output_dir: Path) -> list[Path]:
    """``checkpoint-<step>`` folders, oldest first."""
    found = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


RUN_FILES = ("final", "pretrain_results.json", "skipped_train_smiles.csv", "skipped_eval_smiles.csv")


def _run_items(output_dir: Path) -> list[Path]:
    """What a pre-training run wrote into ``output_dir`` (its checkpoints, final model, reports)."""
    return [
        *_checkpoints(output_dir),
        *(output_dir / name for name in RUN_FILES if (output_dir / name).exists()),
    ]


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def check_run_inputs(args: argparse.Namespace) -> None:
    """Check every input and option of a run before anything in its output folder is touched.

    Raises:
        InputError: naming the option: an output folder that is a file, ``--max-steps`` below 1, an
            input inside the output folder (a run must not read what it may replace), a missing or
            unreadable corpus, a corpus without a SMILES column, an ``--init-from`` that does not load.
    """
    output_dir = Path(args.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise RunFolderError(
            f"--output-dir {output_dir} is a file, not a folder: choose another --output-dir"
        )
    if args.max_steps < 1:
        raise InputError(f"--max-steps must be at least 1, got {args.max_steps}")
    inputs = {"--train-file": args.train_file, "--eval-file": args.eval_file, "--init-from": args.init_from}
    for option, value in inputs.items():
        if value and not glob.has_magic(value) and _inside(Path(value), output_dir):
            raise RunFolderError(
                f"{option} {value} is inside the run folder {output_dir}, which the run writes and "
                "may replace: move it out or choose another --output-dir"
            )
    for option in ("--train-file", "--eval-file"):
        if value := inputs[option]:
            files = corpus_shards(value)
            if files[0].suffix != ".smi":
                corpus_smiles_column(files, args.smiles_column)
    init_from = Path(args.init_from).expanduser() if args.init_from else None
    looks_local = init_from and (init_from.exists() or args.init_from.startswith((".", "/", "~")))
    if looks_local and not (init_from / "config.json").is_file():
        raise CheckpointError(f"--init-from {init_from} is not a checkpoint folder (no config.json there)")


class PreviousRun:
    """The run an ``--overwrite`` replaces, moved aside into a hidden folder of ``output_dir``: it is
    deleted once the new run has written its first checkpoint (:meth:`discard`), and moved back if
    the new run ends before that (:meth:`restore`), so a failed start loses nothing."""

    def __init__(self, output_dir: Path):
        self.output_dir = output_dir
        self.aside = output_dir / f".replaced-run-{os.getpid()}"
        self.aside.mkdir()
        self.names = [item.name for item in _run_items(output_dir)]
        for name in self.names:
            os.replace(output_dir / name, self.aside / name)
        print(f"note: the previous run is kept in {self.aside} until this run saves its first checkpoint")

    def discard(self) -> None:
        shutil.rmtree(self.aside, ignore_errors=True)

    def restore(self) -> None:
        if not self.aside.exists():
            return
        for item in _run_items(self.output_dir):  # what the new run wrote before it ended
            shutil.rmtree(item) if item.is_dir() else item.unlink()
        for name in self.names:
            os.replace(self.aside / name, self.output_dir / name)
        self.aside.rmdir()


class DiscardPreviousRunCallback(TrainerCallback):
    """Deletes the replaced run once the new one has a checkpoint of its own."""

    def __init__(self, previous: PreviousRun):
        self.previous = previous

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.previous.discard()


def prepare_run_folder(
    output_dir: Path, resume: bool, overwrite: bool, remove: bool = True
) -> tuple[Path | None, PreviousRun | None]:
    """Check ``output_dir`` against the run it may hold; returns the checkpoint to resume from and,
    under ``overwrite``, the previous run moved aside (:class:`PreviousRun`). ``remove=False`` (the
    other processes of a distributed run) checks without moving anything.

    A folder holding a run (checkpoints, ``final/`` or ``pretrain_results.json``) needs ``resume``
    (continue from its last complete checkpoint: one with ``trainer_state.json``; a checkpoint cut
    short by a kill during saving is skipped, with a note) or ``overwrite``.

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
        return complete[-1], None
    if holds_run and not overwrite:
        raise RunFolderError(
            f"{output_dir} holds a pre-training run; pass --resume to continue it or --overwrite to replace it"
        )
    if overwrite and remove and _run_items(output_dir):
        return None, PreviousRun(output_dir)
    return None, None


class GracefulStop(TrainerCallback):
    """SIGINT or SIGTERM while training: finish the step, save a resumable checkpoint and stop
    (a second signal stops at once). Every process of a distributed run stops at the same step."""

    def __init__(self) -> None:
        self.signum = 0

    @contextmanager
    def listening(self) -> Iterator[None]:
        """Route SIGINT/SIGTERM to this callback for the block (in the main thread only)."""

        def request_stop(signum: int, frame: object) -> None:
            if self.signum:
                raise Interrupted(signum)
            self.signum = signum

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def on_step_end(self, args, state, control, **kwargs):
        if args.world_size > 1:  # one process may have seen the signal a step before the others
            requested = torch.tensor([self.signum], device=args.device)
            torch.distributed.all_reduce(requested, op=torch.distributed.ReduceOp.MAX)
            self.signum = int(requested.item())
        if self.signum:
            control.should_save = True
            control.should_training_stop = True


ELAPSED_FILE = "pretrain_elapsed.json"  # in every checkpoint: wall time of the run up to it


class ElapsedTimeCallback(TrainerCallback):
    """Writes the run's cumulative wall time (earlier segments included) into every checkpoint, so
    that a resumed run reports the time of the whole run, not of its last segment; notes when this
    segment's first optimizer step ended (``first_step_s``, seconds from ``started``)."""

    def __init__(self, started: float, before_s: float = 0.0):
        self.started, self.before_s = started, before_s
        self.first_step_s: float | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.first_step_s is None:
            self.first_step_s = round(time.time() - self.started, 2)

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


def add_pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cmim pretrain``."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--train-file",
        required=True,
        help="SMILES corpus: .csv, .csv.gz, .parquet or .smi; with --streaming also a quoted glob of "
        "shards, e.g. 'corpus/part-*.parquet'",
    )
    data.add_argument("--eval-file", help="held-out SMILES for reconstruction accuracy (same formats)")
    data.add_argument(
        "--smiles-column",
        help="SMILES column of CSV/Parquet files (default: the one named smiles, else mol, in any case)",
    )
    data.add_argument("--max-train-samples", type=int, help="use only the first N training molecules")
    data.add_argument(
        "--max-eval-samples", type=int, default=2000, help="use only the first N held-out molecules"
    )
    data.add_argument("--num-proc", type=int, help="processes for tokenization")
    data.add_argument(
        "--streaming",
        action="store_true",
        help="read, validate and tokenize the corpus on the fly (any size; memory and start-up do not "
        "grow with it) instead of all of it before the first step",
    )
    data.add_argument(
        "--bucket-batches",
        type=int,
        default=50,
        help="with --streaming: batches per shuffle buffer (sorted by length with --group-by-length)",
    )

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
    model.add_argument(
        "--logvar-min",
        type=float,
        help="floor of the posterior log-variance (default -6.0; with --init-from it replaces the "
        "checkpoint's floor, which is kept otherwise)",
    )
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
        "--posterior-floor-schedule",
        metavar="STEP:SIGMA,...",
        help="the posterior's floor sigma over the optimizer steps, piecewise linear (e.g. "
        "'0:0.15,1500:0.15,2000:0.3' widens a warm-started latent); overrides --logvar-min",
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
    train.add_argument(
        "--bf16",
        action="store_true",
        help="bf16 autocast (the Trainer's bf16; matmuls in bf16, weights and optimizer in float32) "
        "where the CPU/GPU runs bf16 fast; elsewhere a note and float32",
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
        model = CMIMForConditionalGeneration.from_pretrained(args.init_from, dtype="float32")
        if args.logvar_min is not None:
            model.config.logvar_min = args.logvar_min
        return model
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
        logvar_min=-6.0 if args.logvar_min is None else args.logvar_min,
        dropout=args.dropout,
        max_position_embeddings=args.max_length,
        position_embedding_type=args.position_embedding,
        smiles_normalization=args.smiles_normalization,
    )
    config.vocab_fingerprint = vocabulary_fingerprint(tokenizer)
    return CMIMForConditionalGeneration(config)


def bf16_is_fast_here() -> bool:
    """Whether this process's training device runs bf16 fast; says so in one line when not."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    return command_compute_dtype("bfloat16", device, "pretrain") == torch.bfloat16


def tokenized_training_set(
    args: argparse.Namespace, tokenizer: CMIMTokenizer, one_batch: int, skip_report: Path, main_process: bool
) -> datasets.Dataset:
    """The whole training corpus, validated and tokenized before the first step (without --streaming)."""
    train_raw = load_smiles_corpus(args.train_file, args.smiles_column, args.max_train_samples)
    train_set, train_skipped = tokenize_corpus(train_raw, tokenizer, args.num_proc, args.smiles_normalization)
    if main_process:
        write_skip_report(train_skipped, skip_report)
    if len(train_set) < one_batch:  # batches drop the incomplete last one: no step would be taken
        raise CorpusError(
            f"{args.train_file}: {len(train_set)} usable molecules ({len(train_skipped)} skipped, see "
            f"{skip_report}), fewer than one batch of {one_batch}"
        )
    print(
        f"training molecules: {len(train_set)} used, {len(train_skipped)} skipped (see {skip_report})",
        flush=True,
    )
    return train_set


def run_pretrain(args: argparse.Namespace) -> dict[str, Any]:
    """Pre-train as configured by :func:`add_pretrain_arguments`; returns the results record."""
    started = time.time()
    output_dir = Path(args.output_dir)
    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun / accelerate launch
    check_run_inputs(args)
    resume_from, previous_run = prepare_run_folder(
        output_dir, args.resume, args.overwrite, remove=main_process
    )
    try:
        record = _train(args, started, output_dir, main_process, resume_from, previous_run)
    except BaseException:
        if previous_run is not None:
            previous_run.restore()  # no-op once the new run has saved a checkpoint
        raise
    if previous_run is not None:
        previous_run.discard()
    return record


def _train(
    args: argparse.Namespace,
    started: float,
    output_dir: Path,
    main_process: bool,
    resume_from: Path | None,
    previous_run: PreviousRun | None,
) -> dict[str, Any]:
    """:func:`run_pretrain` once its inputs are checked and its run folder prepared."""
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = CMIMTokenizer(
        model_max_length=args.max_length, smiles_normalization=args.smiles_normalization
    )

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    one_batch = args.batch_size * world_size
    # A stream is read by the main process alone, one global batch at a time (length-grouped, so one
    # padded width), then split between the processes: accelerate's split_batches.
    split_stream_batches = args.streaming and world_size > 1
    skip_report = output_dir / "skipped_train_smiles.csv"
    if args.streaming:
        if resume_from is None and main_process:
            skip_report.unlink(missing_ok=True)  # appended to while streaming: start it afresh
        train_data = StreamingSmilesCorpus(
            corpus_shards(args.train_file),
            tokenizer,
            one_batch,
            min_molecules=one_batch,
            bucket_batches=args.bucket_batches,
            group_by_length=args.group_by_length,
            normalization=args.smiles_normalization,
            smiles_column=args.smiles_column,
            max_rows=args.max_train_samples,
            seed=args.seed,
            skip_report=skip_report if main_process else None,
        )
        if resume_from is not None:
            train_data.resume_from(load_stream_position(resume_from))
        print(f"streaming {len(train_data.files)} shard(s); skipped rows go to {skip_report}", flush=True)
    else:
        train_data = tokenized_training_set(args, tokenizer, one_batch, skip_report, main_process)
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
        posterior_floor_schedule=args.posterior_floor_schedule,
        train_sampling_strategy="group_by_length"
        if args.group_by_length and not args.streaming
        else "random",
        per_device_train_batch_size=one_batch if split_stream_batches else args.batch_size,
        accelerator_config={"split_batches": split_stream_batches},
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
        bf16=args.bf16 and bf16_is_fast_here(),
        use_cpu=not torch.cuda.is_available(),  # the Trainer's CPU bf16 needs it said
        dataloader_drop_last=True,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning only helps host-to-GPU copies
    )
    clock = ElapsedTimeCallback(started, elapsed_before(resume_from))
    molecules_per_step = args.batch_size * args.gradient_accumulation_steps * training_args.world_size
    stop = GracefulStop()
    callbacks: list[TrainerCallback] = [clock, stop]
    if previous_run is not None:
        callbacks.append(DiscardPreviousRunCallback(previous_run))
    if args.streaming:
        callbacks.append(StreamPositionCallback(train_data, molecules_per_step))
    trainer = CMIMTrainer(
        model=model,
        args=training_args,
        train_dataset=train_data,
        eval_dataset=eval_set,
        data_collator=CMIMDataCollator(tokenizer),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    with stop.listening():
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    if stop.signum:
        checkpoint = output_dir / f"checkpoint-{trainer.state.global_step}"
        raise Interrupted(stop.signum, f"a resumable checkpoint is in {checkpoint}: continue with --resume")
    trainer.save_model(str(output_dir / "final"))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(output_dir / "final"))
    prior_smiles = (
        first_training_smiles(train_data, args.prior_molecules) if trainer.is_world_process_zero() else []
    )
    prior_molecules = len(prior_smiles)
    if prior_molecules >= 2:
        fit_aggregate_posterior(
            trainer.model,
            tokenizer,
            prior_smiles,
            source=f"{args.train_file}: first {prior_molecules} usable training molecules",
        ).save(output_dir / "final")

    record: dict[str, Any] = {
        "command": "cmim pretrain " + " ".join(shlex.quote(a) for a in getattr(args, "argv", sys.argv[1:])),
        "config": model.config.to_dict(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "training_arguments": {k: v for k, v in vars(args).items() if k != "argv"},
        "steps": trainer.state.global_step,
        "molecules_seen": trainer.state.global_step * molecules_per_step,
        "wall_time_s": round(clock.elapsed_s(), 1),  # every segment of a resumed run
        "segment_wall_time_s": round(time.time() - started, 1),
        "time_to_first_step_s": clock.first_step_s,  # of this segment, from the start of the command
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "streaming": args.streaming,
        "resumed_from": str(resume_from) if resume_from else None,
        "train_loss": mean_logged_loss(trainer.state.log_history),
        "last_logged_losses": next((e for e in reversed(trainer.state.log_history) if "loss/total" in e), {}),
        "skipped_train_molecules": len(reported_rows(skip_report)),
        "aggregate_posterior_molecules": prior_molecules if prior_molecules >= 2 else 0,
    }
    if eval_set is not None:
        record["held_out"] = trainer.evaluate()
    if trainer.is_world_process_zero():
        with atomic_output(output_dir / "pretrain_results.json") as partial:
            partial.write_text(json.dumps(record, indent=2, default=str))
    leave_process_group()
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
