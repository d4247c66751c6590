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
from helpers import tiny_config

from cmim_hf import CMIMForConditionalGeneration, CMIMTokenizer
from cmim_hf.cli import SUBCOMMANDS, main

MOSES = (
    Path(__file__).resolve().parents[1] / "cmim_hf" / "package_data" / "moses" / "moses_test_first5000.csv"
)

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
    from cmim_hf.cli import sample

    def broken(args) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(sample, "run", broken)
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


# Issue 23: concurrency, signals. Commands run as a user runs them: separate processes.
ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


class Command:
    """``cmim ARGV`` in its own process, its stdout and stderr going to files in ``logs``."""

    def __init__(self, logs: Path, *argv: str):
        import os

        logs.mkdir(exist_ok=True)
        self.stdout, self.stderr = logs / f"{id(self)}.out", logs / f"{id(self)}.err"
        with open(self.stdout, "w") as out, open(self.stderr, "w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cmim_hf.cli", *argv],
                env={**os.environ, **ENV},
                stdout=out,
                stderr=err,
            )

    def wait_for(self, condition, what: str, timeout: float = 240) -> None:
        deadline = time.time() + timeout
        while not condition():
            assert self.process.poll() is None, f"the command ended before {what}: {self.err()}"
            assert time.time() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    def finish(self, timeout: float = 300) -> tuple[int, str]:
        return self.process.wait(timeout=timeout), self.err()

    def err(self) -> str:
        return self.stderr.read_text()


def _write_concurrently(path: str, text: str, hold_s: float) -> str:
    """A writer of ``path`` through the one atomic-output path; returns "ok" or its one-line refusal."""
    from cmim_hf.outputs import OutputError, atomic_output

    try:
        with atomic_output(path) as partial, open(partial, "w") as file:
            for line in text.splitlines(keepends=True):
                file.write(line)
                file.flush()
                time.sleep(hold_s / 100)
        return "ok"
    except OutputError as error:
        return str(error)


def test_two_concurrent_writers_leave_one_complete_file_and_never_lose_the_old_one(tmp_path: Path) -> None:
    """N trials of two processes writing one output at the same time (the embedder's partial file
    used to be shared): the file is always one writer's complete result; the loser is refused in
    one line naming the output; no temporary or lock file stays."""
    from concurrent.futures import ProcessPoolExecutor

    out = tmp_path / "out.csv"
    out.write_text("previous\n")
    contents = {name: "".join(f"{name},{i}\n" for i in range(100)) for name in ("a", "b")}
    with ProcessPoolExecutor(2) as pool:
        for _trial in range(10):
            futures = [pool.submit(_write_concurrently, str(out), text, 0.2) for text in contents.values()]
            while not all(future.done() for future in futures):  # a reader only ever sees whole files
                assert out.read_text() in (*contents.values(), "previous\n")
            outcomes = [future.result() for future in futures]
            assert "ok" in outcomes, outcomes
            for outcome in outcomes:
                assert outcome == "ok" or outcome.startswith(f"another process is writing {out}")
            assert out.read_text() in contents.values()
            assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_two_concurrent_embeds_of_one_output(tmp_path: Path, checkpoint: Path) -> None:
    """Issue 23, defect 2: two ``cmim embed --overwrite`` runs into one file used to leave a corrupt
    Parquet and lose the good one. Now one succeeds, the other exits 2 in one line (or both
    succeed one after the other), and the file is always complete."""
    import pyarrow.parquet as pq

    table = tmp_path / "in.csv"
    pd.read_csv(MOSES, nrows=1500).to_csv(table, index=False)
    out = tmp_path / "out.parquet"
    argv = ["embed", str(table), "-o", str(out), "--overwrite", "--model", str(checkpoint), "--no-progress"]
    for _trial in range(2):
        commands = [
            Command(tmp_path.parent / f"{tmp_path.name}-logs", *argv, "--chunk-size", "64") for _ in range(2)
        ]
        results = [command.finish() for command in commands]
        assert 0 in [code for code, _ in results], results
        for code, err in results:
            assert code == 0 or (
                code == 2
                and err.strip().endswith(
                    f"another process is writing {out}; wait for it to finish or choose another output"
                )
            ), err
        assert pq.read_table(out).num_rows == 1500
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.parquet"]


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_embed_is_one_line_and_keeps_the_previous_output(
    tmp_path: Path, checkpoint: Path, signum: int, code: int
) -> None:
    """Issue 23, defect 4: SIGINT used to leave an empty partial and a 97-line traceback, SIGTERM a
    13.6 MB corrupt partial and nothing on stderr."""
    table = _table(tmp_path / "in.csv")
    out = tmp_path / "out.parquet"
    assert main(["embed", str(table), "-o", str(out), "--model", str(checkpoint), "--no-progress"]) == 0
    previous = out.read_bytes()
    big = tmp_path / "big.csv"
    pd.read_csv(MOSES).to_csv(big, index=False)
    command = Command(tmp_path.parent / f"{tmp_path.name}-logs", "embed", str(big), "-o", str(out), "--overwrite",
                      "--model", str(checkpoint), "--no-progress", "--chunk-size", "16")  # fmt: skip
    command.wait_for(lambda: list(tmp_path.glob(".out.parquet.partial-*")), "it started writing")
    command.process.send_signal(signum)
    exit_code, err = command.finish(timeout=60)
    assert exit_code == code
    assert err.strip().splitlines() == ["cmim embed: interrupted"], err
    assert out.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv", "in.csv", "out.parquet"]


def test_sigterm_during_pretrain_saves_a_resumable_checkpoint(tmp_path: Path) -> None:
    """Issue 23, defect 4: pre-training stops at the end of the step, saves a checkpoint that
    ``--resume`` continues, says so in one line and exits 143."""
    corpus = tmp_path / "corpus.csv"
    pd.read_csv(MOSES, nrows=400).to_csv(corpus, index=False)
    run = tmp_path / "run"
    argv = _pretrain_argv(corpus, run)
    argv[argv.index("--max-steps") + 1] = "100000"
    argv[argv.index("--save-steps") + 1] = "100000"
    argv += ["--logging-steps", "1"]
    command = Command(tmp_path / "logs", *argv)
    command.wait_for(lambda: command.stdout.read_text().count("'loss/total'") >= 3, "three logged steps")
    command.process.send_signal(signal.SIGTERM)
    exit_code, err = command.finish(timeout=120)
    assert exit_code == 143, err
    err = err.strip().splitlines()
    checkpoints = list(run.glob("checkpoint-*"))
    assert len(checkpoints) == 1 and (checkpoints[0] / "trainer_state.json").is_file()
    assert (
        err[-1]
        == f"cmim pretrain: interrupted; a resumable checkpoint is in {checkpoints[0]}: continue with --resume"
    )
    assert not (run / "final").exists()
    stopped_at = int(checkpoints[0].name.split("-")[1])
    argv[argv.index("--max-steps") + 1] = str(stopped_at + 2)
    assert main([*argv, "--resume"]) == 0
    assert json.loads((run / "pretrain_results.json").read_text())["steps"] == stopped_at + 2


@pytest.mark.parametrize("command", ["benchmark", "finetune"])
def test_a_user_task_never_merges_with_a_built_in_one(
    command: str, tmp_path: Path, checkpoint: Path, capsys
) -> None:
    argv = [*_argv(command, _table(tmp_path / "in.csv"), tmp_path / "out", checkpoint), "--tasks", "esol"]
    code, err = _run([*argv, "--task-name", "esol"], capsys)
    assert code == 2
    _assert_one_line(command, err, "two tasks are named 'esol'", "in.csv")
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.parametrize("command", FILE_OUTPUTS)
def test_a_folder_in_place_of_the_output_is_refused_before_the_work(
    command: str, tmp_path: Path, checkpoint: Path, capsys
) -> None:
    """Issue 23, defect 6: ``--overwrite`` onto a folder used to embed every row, then fail."""
    argv = _argv(command, _table(tmp_path / "in.csv"), tmp_path / "out", checkpoint)
    output = Path(argv[argv.index("-o") + 1])
    (output / "a user's file").mkdir(parents=True)
    code, err = _run([*argv, "--overwrite"], capsys)
    assert code == 2
    _assert_one_line(command, err, str(output), "is a folder")
    assert (output / "a user's file").is_dir()


@pytest.mark.parametrize("command", FILE_OUTPUTS)
def test_a_read_only_output_folder_is_refused_before_the_work(
    command: str, tmp_path: Path, checkpoint: Path, capsys, monkeypatch
) -> None:
    import os

    argv = _argv(command, _table(tmp_path / "in.csv"), tmp_path / "out", checkpoint)
    output = Path(argv[argv.index("-o") + 1])
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: Path(path) != output.parent and real_access(path, mode)
    )
    code, err = _run(argv, capsys)
    assert code == 2
    _assert_one_line(command, err, str(output.parent), "read-only")


@pytest.mark.parametrize("command", ["embed", "sample", "evaluate-samples"])
def test_a_full_disk_is_the_users_environment_not_a_bug(
    command: str, tmp_path: Path, checkpoint: Path, capsys, monkeypatch
) -> None:
    """Issue 23, defect 6: a full disk used to be reported as "unexpected error, a bug"."""
    import errno

    from cmim_hf import outputs

    def disk_full(partial, path, overwrite=True) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(outputs, "commit_output", disk_full)
    monkeypatch.setattr("cmim_hf.embedding.embedder.commit_output", disk_full)
    argv = _argv(command, _table(tmp_path / "in.csv"), tmp_path / "out", checkpoint)
    output = Path(argv[argv.index("-o") + 1])
    code, err = _run(argv, capsys)
    assert code == 2
    _assert_one_line(command, err, "the disk is full", output.name)
    assert not output.exists() and not list(tmp_path.glob(".*partial*"))


# The requests whose output grows with a number the user gives, small and ten times larger.
GROWING_REQUESTS = {
    "sample": (["sample", "-n", "{n}", "-o", "OUT.csv", "--batch-size", "50"], 500),
    "interpolate": (["interpolate", "CCO", "CCN", "-o", "OUT.json", "--steps", "{n}", "--batch-size", "50"], 500),
    "optimize": (["optimize", "IN", "-o", "OUT.csv", "--iterations", "{n}", "--population-size", "8",
                  "--score", "HeavyAtomCount"], 25),
}  # fmt: skip


@pytest.mark.parametrize("command", sorted(GROWING_REQUESTS))
def test_memory_does_not_grow_with_the_number_asked_for(
    command: str, tmp_path: Path, checkpoint: Path, capsys, monkeypatch
) -> None:
    """Issue 23, defect 5: `cmim sample -n 3000000` drew every code at once and kept every result
    until the end. Now no decode sees more than one batch of codes, and the Python heap at the last
    decode is where it was at the second, for a request ten times larger too (the decoder is
    replaced by a lookup, so only what grows with the request is measured)."""
    import tracemalloc

    from cmim_hf.generation import optimization, sampling

    heap: list[int] = []
    decoded: list[int] = []

    def lookup_decode(model, tokenizer, z, *options) -> list[str]:
        """Distinct valid molecules C..CO..C (3,600 of them, then again), one per code."""
        start = sum(decoded)
        decoded.append(len(z))
        heap.append(tracemalloc.get_traced_memory()[0])
        return ["C" * (i % 60) + "O" + "C" * (i // 60 % 60) for i in range(start, start + len(z))]

    monkeypatch.setattr(optimization, "SCORE_CACHE_SIZE", 256)  # the search's bounded score memory
    monkeypatch.setattr(sampling, "decode_latents", lookup_decode)
    template, small = GROWING_REQUESTS[command]
    table = tmp_path / "in.csv"
    pd.DataFrame({"smiles": ["CCO"]}).to_csv(table, index=False)  # one seed for optimize
    growth = {}
    for n in (small, 10 * small):
        heap.clear(), decoded.clear()
        argv = [a.format(n=n) for a in template] + ["--model", str(checkpoint), "--overwrite"]
        argv = [str(table) if a == "IN" else a.replace("OUT", str(tmp_path / "out")) for a in argv]
        tracemalloc.start()
        try:
            code, err = _run(argv, capsys)
        finally:
            tracemalloc.stop()
        assert code == 0, err
        assert max(decoded) <= 50 and sum(decoded) >= n
        growth[n] = heap[-1] - heap[1]
    assert max(growth.values()) < 500_000, growth
