"""Issue 13's test matrix: every ``cmim`` command x every bad-input case, through the one error
boundary of ``cmim_hf.cli.main``. Each case asserts the exit code (2), a single ``cmim <command>:
error:`` line naming the culprit, no traceback, and that a previous output (or the input) is
byte-for-byte intact. A bug (any other exception) keeps its traceback and exits 1."""

from __future__ import annotations

import gzip
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import tiny_config

from cmim_hf import CMIMForConditionalGeneration, CMIMTokenizer
from cmim_hf.cli import SUBCOMMANDS, main

MOSES = Path(__file__).resolve().parents[1] / "cmim_hf" / "data" / "moses" / "moses_test_first5000.csv"

# The commands, with placeholders: IN (input table), OUT (output file or folder), CKPT (checkpoint).
COMMANDS: dict[str, list[str]] = {
    "embed": ["embed", "IN", "-o", "OUT.parquet", "--model", "CKPT", "--no-progress"],
    "sample": ["sample", "-n", "2", "--around", "IN", "-o", "OUT.csv", "--model", "CKPT"],
    "reconstruct": ["reconstruct", "IN", "-o", "OUT.csv", "--model", "CKPT"],
    "optimize": ["optimize", "IN", "-o", "OUT.csv", "--model", "CKPT", "--iterations", "1"],
    "fit-prior": ["fit-prior", "IN", "--model", "CKPT"],
    "benchmark": [
        "benchmark",
        "--csv",
        "IN",
        "--label-col",
        "y",
        "--task",
        "regression",
        "--out",
        "OUT",
        "--model",
        "CKPT",
        "--no-progress",
    ],  # fmt: skip
    "finetune": [
        "finetune",
        "--csv",
        "IN",
        "--label-col",
        "y",
        "--task",
        "regression",
        "--out",
        "OUT",
        "--model",
        "CKPT",
    ],  # fmt: skip
    "pretrain": ["pretrain", "--train-file", "IN", "--output-dir", "OUT", "--max-steps", "1"],
    "interpolate": ["interpolate", "CCO", "CCN", "-o", "OUT.csv", "--model", "CKPT"],
    "evaluate-samples": [
        "evaluate-samples",
        "IN",
        "-o",
        "OUT.json",
        "--test",
        "IN",
        "--test-scaffolds",
        "IN",
        "--train",
        "IN",
    ],  # fmt: skip
}
READS_A_FILE = sorted(set(COMMANDS) - {"interpolate"})  # interpolate reads two SMILES arguments
READS_A_CHECKPOINT = sorted(set(COMMANDS) - {"evaluate-samples"})  # it reads SMILES files only
FILE_OUTPUTS = ("embed", "sample", "reconstruct", "optimize", "interpolate", "evaluate-samples")


def test_every_command_is_in_the_matrix() -> None:
    assert set(COMMANDS) == set(SUBCOMMANDS)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    CMIMForConditionalGeneration(tiny_config()).save_pretrained(folder)
    CMIMTokenizer().save_pretrained(folder)
    return folder


def _table(path: Path) -> Path:
    pd.DataFrame({"smiles": ["CCO", "CCN", "CCC", "CCCl"] * 5, "y": range(20)}).to_csv(path, index=False)
    return path


def _argv(command: str, table: Path, out: Path, checkpoint: Path) -> list[str]:
    replace = {"IN": str(table), "CKPT": str(checkpoint), "OUT": str(out)}
    return [replace.get(a, a.replace("OUT", str(out))) for a in COMMANDS[command]]


def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def _assert_one_line(command: str, err: str, *names: str) -> None:
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert lines and lines[-1].startswith(f"cmim {command}: error: "), err
    for name in names:
        assert name in lines[-1], (name, err)


@pytest.mark.parametrize("command", READS_A_FILE)
def test_missing_input_file(command: str, tmp_path: Path, checkpoint: Path, capsys) -> None:
    code, err = _run(_argv(command, tmp_path / "absent.csv", tmp_path / "out", checkpoint), capsys)
    assert code == 2
    _assert_one_line(command, err, "absent.csv")


@pytest.mark.parametrize("command", READS_A_FILE)
def test_truncated_gzip_input(command: str, tmp_path: Path, checkpoint: Path, capsys) -> None:
    data = gzip.compress(("smiles,y\n" + "CCO,1\n" * 20000).encode())
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(data[: len(data) // 2])
    code, err = _run(_argv(command, broken, tmp_path / "out", checkpoint), capsys)
    assert code == 2
    _assert_one_line(command, err, "broken.csv.gz")


@pytest.mark.parametrize("command", READS_A_CHECKPOINT)
def test_not_a_checkpoint(command: str, tmp_path: Path, capsys) -> None:
    if command == "pretrain":
        pytest.skip("pretrain trains a new model: it reads no checkpoint")
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    code, err = _run(_argv(command, _table(tmp_path / "in.csv"), tmp_path / "out", empty), capsys)
    assert code == 2
    _assert_one_line(command, err, "empty_folder")


@pytest.mark.parametrize("command", sorted(set(READS_A_CHECKPOINT) - {"pretrain"}))
def test_a_checkpoint_without_its_tokenizer(command: str, tmp_path: Path, capsys) -> None:
    """Case 9: never a silent fallback to the shipped vocabulary."""
    folder = tmp_path / "no_tokenizer"
    CMIMForConditionalGeneration(tiny_config()).save_pretrained(folder)
    code, err = _run(_argv(command, _table(tmp_path / "in.csv"), tmp_path / "out", folder), capsys)
    assert code == 2
    _assert_one_line(command, err, "no_tokenizer", "tokenizer")


@pytest.mark.parametrize("command", sorted(set(READS_A_CHECKPOINT) - {"pretrain"}))
def test_a_checkpoint_whose_config_names_another_architecture(
    command: str, tmp_path: Path, checkpoint: Path, capfd, caplog
) -> None:
    """Case 12: cMIM weights under a config saying ``model_type: bart`` are refused in one line,
    without transformers' load report."""
    folder = tmp_path / "relabelled"
    shutil.copytree(checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "bart"}))
    code = main(_argv(command, _table(tmp_path / "in.csv"), tmp_path / "out", folder))
    err = capfd.readouterr().err
    assert code == 2
    _assert_one_line(command, err, "relabelled")
    assert "LOAD REPORT" not in err + caplog.text


@pytest.mark.parametrize("command", ["embed", "benchmark", "finetune", "sample"])
def test_a_checkpoint_missing_a_parameter(command: str, tmp_path: Path, checkpoint: Path, capfd) -> None:
    """Weights missing from a checkpoint are refused, never initialised at random in silence."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "pruned"
    shutil.copytree(checkpoint, folder)
    weights = load_file(folder / "model.safetensors")
    dropped = next(name for name in sorted(weights) if "encoder.layers.0" in name)
    del weights[dropped]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    code = main(_argv(command, _table(tmp_path / "in.csv"), tmp_path / "out", folder))
    err = capfd.readouterr().err
    assert code == 2
    _assert_one_line(command, err, "pruned", "1 parameters missing")


@pytest.mark.parametrize("command", ["embed", "sample", "reconstruct", "optimize", "fit-prior", "pretrain"])
def test_missing_smiles_column(command: str, tmp_path: Path, checkpoint: Path, capsys) -> None:
    table = tmp_path / "in.csv"
    pd.DataFrame({"molecule": ["CCO"] * 20}).to_csv(table, index=False)
    code, err = _run(_argv(command, table, tmp_path / "out", checkpoint), capsys)
    assert code == 2
    _assert_one_line(command, err)


@pytest.mark.parametrize("command", FILE_OUTPUTS)
def test_an_existing_output_survives(command: str, tmp_path: Path, checkpoint: Path, capsys) -> None:
    argv = _argv(command, _table(tmp_path / "in.csv"), tmp_path / "out", checkpoint)
    output = Path(argv[argv.index("-o") + 1])
    output.write_bytes(b"a previous result\n")
    code, err = _run(argv, capsys)
    assert code == 2
    _assert_one_line(command, err, output.name, "--overwrite")
    assert output.read_bytes() == b"a previous result\n"


@pytest.mark.parametrize("command", [c for c in FILE_OUTPUTS if c in READS_A_FILE])
def test_an_output_that_is_the_input(command: str, tmp_path: Path, checkpoint: Path, capsys) -> None:
    table = _table(tmp_path / "in.csv")
    if command == "embed":  # embed writes Parquet: its input must be one to be its output
        pd.read_csv(table).to_parquet(table := tmp_path / "in.parquet")
    before = table.read_bytes()
    argv = _argv(command, table, tmp_path / "out", checkpoint)
    argv[argv.index("-o") + 1] = str(table)
    code, err = _run([*argv, "--overwrite"], capsys)
    assert code == 2
    _assert_one_line(command, err, "is the input")
    assert table.read_bytes() == before


@pytest.mark.parametrize("command", ["benchmark", "finetune", "pretrain"])
def test_a_previous_run_folder_survives(command: str, tmp_path: Path, checkpoint: Path, capsys) -> None:
    """Folder outputs (case 5): a folder holding an earlier run is refused without --overwrite
    (or --resume, for pretrain), before any work."""
    out = tmp_path / "out"
    out.mkdir()
    marker = out / ("pretrain_results.json" if command == "pretrain" else "results.json")
    marker.write_text('{"previous": true}')
    code, err = _run(_argv(command, _table(tmp_path / "in.csv"), out, checkpoint), capsys)
    assert code == 2
    _assert_one_line(command, err, str(out), "--overwrite")
    assert json.loads(marker.read_text()) == {"previous": True}


@pytest.mark.parametrize("command", ["benchmark", "finetune"])
def test_overwrite_replaces_an_earlier_run(command: str, tmp_path: Path, checkpoint: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"previous": true}')
    argv = [*_argv(command, _table(tmp_path / "in.csv"), out, checkpoint), "--overwrite", "--seeds", "1"]
    code, err = _run(argv, capsys)
    assert code == 0, err
    assert "previous" not in json.loads((out / "results.json").read_text())
    assert not list(out.glob(".*partial*")), "temporary files left behind"


def test_a_bug_keeps_its_traceback_and_exits_1(monkeypatch, capsys) -> None:
    from cmim_hf import generation_cli

    def broken(args) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(generation_cli, "run_sample_command", broken)
    code, err = _run(["sample", "-n", "1", "-o", "x.csv"], capsys)
    assert code == 1
    assert "Traceback" in err and "ZeroDivisionError: a bug" in err and "cmim sample: unexpected error" in err


def _pretrain_argv(corpus: Path, out: Path) -> list[str]:
    tiny = ["--hidden-size", "32", "--encoder-layers", "1", "--decoder-layers", "1", "--ffn-dim", "64",
            "--num-attention-heads", "2", "--batch-size", "8", "--max-length", "64", "--logging-steps", "1",
            "--prior-molecules", "0", "--num-proc", "1"]  # fmt: skip
    return ["pretrain", "--train-file", str(corpus), "--output-dir", str(out), *tiny,
            "--max-steps", "40", "--save-steps", "5", "--save-total-limit", "2"]  # fmt: skip


def _losses(out: Path) -> dict[int, float]:
    state = json.loads((out / "checkpoint-40" / "trainer_state.json").read_text())
    return {entry["step"]: entry["loss/total"] for entry in state["log_history"] if "loss/total" in entry}


def test_kill_9_during_pretrain_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    """Killed (SIGKILL) mid-run, ``--resume`` continues from the last complete checkpoint and logs
    the same losses as a run that was never interrupted."""
    corpus = tmp_path / "corpus.csv"
    pd.read_csv(MOSES, nrows=400).to_csv(corpus, index=False)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main(_pretrain_argv(corpus, straight)) == 0

    command = [sys.executable, "-m", "cmim_hf.cli", *_pretrain_argv(corpus, killed)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoint-15" / "trainer_state.json").is_file():
        assert process.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "final").exists()

    assert main([*_pretrain_argv(corpus, killed), "--resume"]) == 0
    reference, resumed = _losses(straight), _losses(killed)
    assert sorted(resumed) == sorted(reference) == list(range(1, 41))
    for step in range(16, 41):
        assert resumed[step] == pytest.approx(reference[step], rel=1e-5, abs=1e-6), step
