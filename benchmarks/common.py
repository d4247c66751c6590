"""What the benchmark scripts share, so that each script holds only what it measures.

- Data and records: the bundled MOSES sample (:data:`MOSES_SAMPLE`), the SMILES of a CSV file
  (:func:`read_smiles`), a script's parser (:func:`argument_parser`), the command line it records (:func:`command_line`), writing
  text atomically (:func:`write_text`) and a record with its table (:func:`publish`; JSON goes through
  :func:`cmim_hf.evaluation.reports.write_json`, Markdown tables through the package's one table
  writer, :func:`cmim_hf.evaluation.reports.markdown_table`).
- Commands: running a ``cmim`` subcommand as a user does, in a fresh process
  (:func:`run_cmim`), and pre-training runs that resume from their last checkpoint when a script
  is run again (:class:`PretrainRun`, :func:`pretrain`).
- Models: a seeded random cMIM of given sizes (:func:`random_cmim`), the training loss a
  ``cmim pretrain`` step computes (:func:`cmim_training_loss`) and the options of the throughput
  scripts (:func:`add_size_options`, :func:`add_step_options`).

The scripts import it as ``common``: ``python benchmarks/NAME.py`` puts ``benchmarks/`` first on
``sys.path`` (the tests put it there too). Importing it loads neither torch nor ``cmim_hf``: each
function imports what it needs, so that a script that measures a process's memory (``peak_rss.py``)
or another checkout of the package can use it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from cmim_hf import CMIMForConditionalGeneration, CMIMTokenizer
    from cmim_hf.training.trainer import CMIMTrainer

__all__ = [
    "REPO",
    "MOSES_SAMPLE",
    "argument_parser",
    "command_line",
    "read_smiles",
    "write_text",
    "publish",
    "cmim_process",
    "run_cmim",
    "thread_env",
    "PretrainRun",
    "pretrain",
    "random_cmim",
    "cmim_training_loss",
    "add_size_options",
    "add_step_options",
]

REPO = Path(__file__).resolve().parents[1]
MOSES_SAMPLE = REPO / "cmim_hf" / "package_data" / "moses" / "moses_test_first5000.csv"
"""The first 5,000 MOSES test molecules shipped with the package (column ``SMILES``)."""

Batch = dict[str, "torch.Tensor"]


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


def argument_parser(description: str) -> argparse.ArgumentParser:
    """A script's parser: its module docstring as the description, laid out as written."""
    return argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """How to run ``script`` (a benchmark's ``__file__``) with ``argv`` from the repository root:
    ``python benchmarks/NAME.py ARGV`` (shell-quoted; ``argv`` None: this process's arguments)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *arguments])


def read_smiles(path: str | os.PathLike, limit: int | None = None) -> list[str]:
    """The first ``limit`` (None: all) SMILES of a CSV file (optionally gzipped), in file order, from
    the column every ``cmim`` command reads (:func:`cmim_hf.io.smiles_column`)."""
    import pandas as pd

    from cmim_hf.io import smiles_column

    column = smiles_column(pd.read_csv(path, nrows=0).columns, None, str(path))
    return pd.read_csv(path, usecols=[column], nrows=limit)[column].astype(str).tolist()


def write_text(text: str, path: str | os.PathLike) -> Path:
    """:func:`cmim_hf.evaluation.reports.write_text` (atomic, UTF-8), imported only when called."""
    from cmim_hf.evaluation.reports import write_text as write_atomically

    return write_atomically(text, path)


def publish(record: Mapping[str, Any], path: Path | None, markdown: str | None = None) -> None:
    """The end of a script: print ``markdown`` (its table of ``record``; without one, ``record`` as
    JSON) and, with a ``path``, write ``record`` there as JSON and ``markdown`` beside it (the same
    name with ``.md``), each atomically."""
    if path is not None:
        from cmim_hf.evaluation.reports import write_json

        write_json(record, path)
        if markdown is not None:
            write_text(markdown, path.with_suffix(".md"))
    print(json.dumps(record, indent=2) if markdown is None else markdown)


# ---------------------------------------------------------------------------------------------
# Running `cmim` as a user does
# ---------------------------------------------------------------------------------------------


def cmim_process(*argv: str) -> list[str]:
    """The process that runs ``cmim ARGV``: this interpreter's ``python -m cmim_hf.cli ARGV``, the
    console script's own entry point (so it runs this checkout even where ``cmim`` is not on PATH)."""
    return [sys.executable, "-m", "cmim_hf.cli", *argv]


def thread_env(threads: int | None = None, **variables: str) -> dict[str, str]:
    """This process's environment with ``variables`` set and, when ``threads`` is given, the
    OpenMP and MKL thread counts (torch's CPU threads) of a child process set to it."""
    env = {**os.environ, **variables}
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def run_cmim(
    *argv: str,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    capture: bool = False,
    timeout: float | None = None,
) -> str:
    """Run ``cmim ARGV`` in a fresh process, as a user does, and wait for it.

    Args:
        env: the process's environment (default: this one's).
        log: append its output to this file (default: this console).
        capture: keep its output out of the console; it is quoted when the command fails.
        timeout: seconds before it is killed (``subprocess.TimeoutExpired``).

    Returns:
        The command as a user types it: ``cmim ARGV``.

    Raises:
        RuntimeError: the command failed (its exit status, and with ``capture`` its last output).
    """
    typed = "cmim " + shlex.join(argv)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as output:
            finished = subprocess.run(
                cmim_process(*argv), env=env, stdout=output, stderr=subprocess.STDOUT, timeout=timeout
            )
    else:
        finished = subprocess.run(
            cmim_process(*argv), env=env, capture_output=capture, text=True, timeout=timeout
        )
    if finished.returncode != 0:
        where = f":\n{finished.stderr[-3000:]}" if capture else f" (see {log})" if log else ""
        raise RuntimeError(f"{typed} exited with status {finished.returncode}{where}")
    return typed


# ---------------------------------------------------------------------------------------------
# Resumable pre-training runs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PretrainRun:
    """One ``cmim pretrain`` run: its folder and its options, all but ``--output-dir`` and
    ``--resume``, which :meth:`argv` adds."""

    output_dir: Path
    options: Sequence[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(self.options))

    @property
    def finished(self) -> bool:
        """Whether the run is complete: ``cmim pretrain`` writes ``pretrain_results.json`` last."""
        return (self.output_dir / "pretrain_results.json").is_file()

    def results(self) -> dict[str, Any]:
        """The finished run's ``pretrain_results.json``."""
        return json.loads((self.output_dir / "pretrain_results.json").read_text(encoding="utf-8"))

    def argv(self) -> list[str]:
        """``cmim`` arguments of the run; ``--resume`` when its folder holds a checkpoint."""
        resume = ["--resume"] if any(self.output_dir.glob("checkpoint-*")) else []
        return ["pretrain", "--output-dir", str(self.output_dir), *self.options, *resume]


def pretrain(
    runs: Mapping[str, PretrainRun],
    logs: Path | None = None,
    jobs: int = 1,
    threads: int | None = None,
    poll_seconds: float = 1.0,
) -> None:
    """Complete every unfinished run of ``runs`` (name -> run), ``jobs`` at a time, in the order
    given; finished runs are left as they are, interrupted ones resume from their last checkpoint.

    Each run is a fresh ``cmim pretrain`` process (:func:`cmim_process`) with ``threads`` torch
    threads (None: torch's choice) whose output is appended to ``logs/<name>.log`` (``logs`` None:
    this console).

    Raises:
        SystemExit: naming the runs that failed (the others ran to their end).
    """
    todo = [(name, run) for name, run in runs.items() if not run.finished]
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
    env = thread_env(threads)
    running: dict[str, tuple[subprocess.Popen, Any]] = {}
    failed: list[str] = []
    while todo or running:
        while todo and len(running) < jobs:
            name, run = todo.pop(0)
            log = (logs / f"{name}.log").open("a", encoding="utf-8") if logs is not None else None
            stderr = subprocess.STDOUT if log is not None else None
            process = subprocess.Popen(cmim_process(*run.argv()), env=env, stdout=log, stderr=stderr)
            running[name] = (process, log)
        time.sleep(poll_seconds)
        for name, (process, log) in list(running.items()):
            if process.poll() is None:
                continue
            del running[name]
            if log is not None:
                log.close()
            if process.returncode != 0:
                failed.append(name)
    if failed:
        where = f": see {', '.join(str(logs / f'{name}.log') for name in failed)}" if logs else ""
        raise SystemExit(f"pre-training failed for {', '.join(failed)}{where}")


# ---------------------------------------------------------------------------------------------
# Models and their training step
# ---------------------------------------------------------------------------------------------


def random_cmim(
    tokenizer: CMIMTokenizer, hidden_size: int, layers: int, heads: int, ffn_dim: int, seed: int = 0, **config
) -> CMIMForConditionalGeneration:
    """A cMIM initialised after ``torch.manual_seed(seed)``: the tokenizer's vocabulary, ``layers``
    encoder and as many decoder layers, ``config`` for every other :class:`CMIMConfig` field."""
    import torch

    from cmim_hf import CMIMConfig, CMIMForConditionalGeneration

    torch.manual_seed(seed)
    sizes = dict(hidden_size=hidden_size, encoder_layers=layers, decoder_layers=layers)
    sizes.update(num_attention_heads=heads, ffn_dim=ffn_dim)
    return CMIMForConditionalGeneration(CMIMConfig(vocab_size=len(tokenizer), **sizes, **config))


def cmim_training_loss(
    model: CMIMForConditionalGeneration, workdir: str, device: torch.device | str = "cpu"
) -> tuple[Callable[[torch.nn.Module, Batch], torch.Tensor], CMIMTrainer]:
    """cMIM's training loss exactly as ``CMIMTrainer`` computes it in a ``cmim pretrain`` step
    (objective "cmim", weights 1, latent warm-up done), normalised by the batch's molecules; the
    trainer (which places ``model`` on its device) comes with it."""
    import torch

    from cmim_hf.training.trainer import CMIMTrainer, CMIMTrainingArguments

    device = torch.device(device)
    on_cpu = device.type == "cpu"
    training_args = CMIMTrainingArguments(output_dir=workdir, objective="cmim", latent_warmup_steps=0,
                                          use_cpu=on_cpu, report_to="none", disable_tqdm=True)  # fmt: skip
    trainer = CMIMTrainer(model=model, args=training_args)

    def loss_fn(m: torch.nn.Module, batch: Batch) -> torch.Tensor:
        molecules = torch.tensor(batch["input_ids"].shape[0], device=device)
        return trainer.compute_loss(m, batch, num_items_in_batch=molecules)

    return loss_fn, trainer


def add_size_options(
    parser: argparse.ArgumentParser, hidden_size: int, layers: int, heads: int, ffn_dim: int
) -> None:
    """``--hidden-size``, ``--layers`` (encoder = decoder), ``--heads`` and ``--ffn-dim``, with these defaults."""
    parser.add_argument("--hidden-size", type=int, default=hidden_size)
    parser.add_argument("--layers", type=int, default=layers, help="encoder layers = decoder layers")
    parser.add_argument("--heads", type=int, default=heads)
    parser.add_argument("--ffn-dim", type=int, default=ffn_dim)


def add_step_options(
    parser: argparse.ArgumentParser, batch_size: int, steps: int, warmup: int, per: str = ""
) -> None:
    """``--batch-size``, ``--steps`` (timed) and ``--warmup`` (discarded steps), ``--seed`` and
    ``--data`` (a CSV of molecules, default :data:`MOSES_SAMPLE`); ``per`` ends the step options' help."""
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--steps", type=int, default=steps, help=f"timed steps{per}")
    parser.add_argument("--warmup", type=int, default=warmup, help=f"discarded steps{per}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=MOSES_SAMPLE, help="CSV with a SMILES column")
