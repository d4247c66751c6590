"""Multi-process pre-training on CPU, through each launcher, with no flags beyond the launcher's own:
real checkpoints (``--save-steps`` below ``--max-steps``), ``--resume``, only the main process
writing, and ``molecules_seen`` counting every rank. (Exact cross-process negatives:
``test_trainer.py::test_two_process_cmim_step_equals_single_process``.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import tiny_config

from cmim_hf import CMIMForConditionalGeneration

REPO = Path(__file__).resolve().parents[1]
MOSES = REPO / "cmim_hf" / "package_data" / "moses" / "moses_test_first5000.csv"
TINY = ["--hidden-size", "32", "--encoder-layers", "1", "--decoder-layers", "1", "--ffn-dim", "64",
        "--num-attention-heads", "2", "--batch-size", "8", "--max-length", "64", "--logging-steps", "1",
        "--prior-molecules", "50", "--num-proc", "1", "--save-steps", "2"]  # fmt: skip


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


LAUNCHERS = {
    "torchrun": [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port"],
    # On a machine without GPUs accelerate's --cpu flag runs one process; --multi_gpu starts the two.
    "accelerate": [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
    ],  # fmt: skip
}


def _pretrain(launcher: list[str], corpus: Path, out: Path, *extra: str) -> dict:
    command = [*launcher, _free_port(), str(REPO / "examples" / "pretrain.py"), "--train-file", str(corpus),
               "--output-dir", str(out), *TINY, *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return json.loads((out / "pretrain_results.json").read_text())


@pytest.mark.parametrize(
    ("launcher", "data"), [("accelerate", "in memory"), ("torchrun", "in memory"), ("torchrun", "streaming")]
)
def test_two_cpu_processes_checkpoint_and_resume(launcher: str, data: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.csv"
    pd.read_csv(MOSES, nrows=200).to_csv(corpus, index=False)
    out = tmp_path / "run"
    streaming = ["--streaming", "--bucket-batches", "2"] if data == "streaming" else []
    first = _pretrain(LAUNCHERS[launcher], corpus, out, "--max-steps", "4", *streaming)
    assert first["steps"] == 4 and first["molecules_seen"] == 4 * 8 * 2  # both ranks' batches
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    for checkpoint in ("checkpoint-2", "checkpoint-4", "final"):
        assert (out / checkpoint / "model.safetensors").is_file()
    assert (out / "final" / "pipelines.py").is_file() and (out / "final" / "tokenizer.json").is_file()

    if streaming:  # the main process reads for both ranks: 2 batches per step
        assert (
            json.loads((out / "checkpoint-2" / "streaming_state.json").read_text())["consumed"] == 2 * 8 * 2
        )
    resumed = _pretrain(LAUNCHERS[launcher], corpus, out, "--max-steps", "6", "--resume", *streaming)
    assert resumed["steps"] == 6 and resumed["molecules_seen"] == 6 * 8 * 2
    assert resumed["resumed_from"].endswith("checkpoint-4")
    assert CMIMForConditionalGeneration.from_pretrained(out / "final").config.hidden_size == 32


def test_save_pretrained_on_a_non_main_process_writes_nothing(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(tiny_config())
    model.save_pretrained(tmp_path / "other_rank", is_main_process=False)
    assert not (tmp_path / "other_rank").exists() or not any((tmp_path / "other_rank").iterdir())
    model.save_pretrained(tmp_path / "main")
    assert (tmp_path / "main" / "pipelines.py").is_file() and (
        tmp_path / "main" / "model.safetensors"
    ).is_file()
