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
from cmim_hf.cli._legacy import command_main
from cmim_hf.distributed import leave_process_group
from cmim_hf.errors import InputError, Interrupted
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
                corpus_smiles_column(files, args.smiles_col)
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


def build_model(
    init_from: str | None, tokenizer: CMIMTokenizer, config_fields: dict[str, Any]
) -> CMIMForConditionalGeneration:
    """The checkpoint ``init_from`` (its ``logvar_min`` replaced when ``config_fields`` gives one),
    or a fresh model of ``CMIMConfig(**config_fields)`` (fields given as None keep the config's
    defaults) for ``tokenizer``'s vocabulary."""
    if init_from:
        model = CMIMForConditionalGeneration.from_pretrained(init_from, dtype="float32")
        if config_fields.get("logvar_min") is not None:
            model.config.logvar_min = config_fields["logvar_min"]
        return model
    given = {name: value for name, value in config_fields.items() if value is not None}
    config = CMIMConfig(vocab_size=len(tokenizer), **given)
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
    train_raw = load_smiles_corpus(args.train_file, args.smiles_col, args.max_train_samples)
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


def run_pretrain(
    args: argparse.Namespace, config_fields: dict[str, Any], training_fields: dict[str, Any]
) -> dict[str, Any]:
    """Pre-train; returns the results record.

    Args:
        args: the options of ``cmim pretrain`` (:mod:`cmim_hf.cli.pretrain`): the corpus, the run
            folder, the batch size, streaming, ``--init-from``, ``--resume`` / ``--overwrite``, ...
        config_fields: :class:`CMIMConfig` fields of a fresh model (ignored with ``--init-from``,
            but for ``logvar_min``).
        training_fields: :class:`CMIMTrainingArguments` fields (the objective, the optimizer and
            its schedule, checkpoints, logging, the seed); the batch size, precision, sampling and
            evaluation strategy follow from ``args``.

    Raises:
        InputError: a bad corpus, option, run folder or ``--init-from`` checkpoint (see
            :func:`check_run_inputs` and :func:`prepare_run_folder`).
        Interrupted: SIGINT or SIGTERM, once a resumable checkpoint is saved.
    """
    started = time.time()
    output_dir = Path(args.output_dir)
    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun / accelerate launch
    check_run_inputs(args)
    resume_from, previous_run = prepare_run_folder(
        output_dir, args.resume, args.overwrite, remove=main_process
    )
    try:
        record = _train(
            args, config_fields, training_fields, started, output_dir, main_process, resume_from, previous_run
        )
    except BaseException:
        if previous_run is not None:
            previous_run.restore()  # no-op once the new run has saved a checkpoint
        raise
    if previous_run is not None:
        previous_run.discard()
    return record


def _train(
    args: argparse.Namespace,
    config_fields: dict[str, Any],
    training_fields: dict[str, Any],
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
            smiles_column=args.smiles_col,
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
        eval_raw = load_smiles_corpus(args.eval_file, args.smiles_col, args.max_eval_samples)
        eval_set, eval_skipped = tokenize_corpus(
            eval_raw, tokenizer, args.num_proc, args.smiles_normalization
        )
        if main_process:
            write_skip_report(eval_skipped, output_dir / "skipped_eval_smiles.csv")
        print(f"held-out molecules: {len(eval_set)} used, {len(eval_skipped)} skipped", flush=True)

    set_seed(args.seed)  # the model's initial weights
    model = build_model(args.init_from, tokenizer, config_fields)
    training_args = CMIMTrainingArguments(
        output_dir=str(output_dir),
        **training_fields,
        train_sampling_strategy="group_by_length"
        if args.group_by_length and not args.streaming
        else "random",
        per_device_train_batch_size=one_batch if split_stream_batches else args.batch_size,
        accelerator_config={"split_batches": split_stream_batches},
        per_device_eval_batch_size=args.batch_size,
        max_grad_norm=1.0,
        save_strategy="steps",
        eval_strategy="steps" if (args.eval_steps and eval_set is not None) else "no",
        data_seed=args.seed,
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


main = command_main("pretrain", old=f"{__name__}.main")
"""``cmim pretrain`` with ``argv`` (default: ``sys.argv[1:]``); kept for 0.2 only (see CHANGELOG)."""
