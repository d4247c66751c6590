"""End-to-end tests of `cmim pretrain` on a tiny model (cmim_hf.cli.pretrain, cmim_hf.training.pretrain)."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest

from cmim_hf import CMIMForConditionalGeneration
from cmim_hf.cli import main as cmim
from cmim_hf.generation import AggregatePosterior
from cmim_hf.training.corpus import CorpusError, load_smiles_corpus

MOSES = (
    Path(__file__).resolve().parents[1] / "cmim_hf" / "package_data" / "moses" / "moses_test_first5000.csv"
)


def write_corpus(path: Path, n: int, extra: list[str]) -> Path:
    with open(MOSES) as source:
        rows = [line.strip() for line in source][1 : n + 1]
    path.write_text("SMILES\n" + "\n".join(rows[: n // 2] + extra + rows[n // 2 :]) + "\n")
    return path


def main(argv: list[str]) -> int:
    return cmim(["pretrain", *argv])


TINY = ["--hidden-size", "32", "--encoder-layers", "1", "--decoder-layers", "1", "--ffn-dim", "64"]
TINY += ["--num-attention-heads", "2", "--batch-size", "8", "--learning-rate", "1e-3", "--warmup-steps", "0"]
TINY += ["--latent-warmup-steps", "2", "--logging-steps", "1", "--max-length", "64"]


def test_load_corpus_formats_and_errors(tmp_path) -> None:
    smi = tmp_path / "corpus.smi"
    smi.write_text("CCO ethanol\nc1ccccc1\n")
    assert load_smiles_corpus(smi)["smiles"] == ["CCO", "c1ccccc1"]
    assert load_smiles_corpus(MOSES, limit=3)["row"] == [0, 1, 2]
    with pytest.raises(CorpusError, match="not found"):
        load_smiles_corpus(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,value\na,1\n")
    with pytest.raises(CorpusError, match="no SMILES column"):
        load_smiles_corpus(bad)


def test_an_unreadable_corpus_is_reported_once(tmp_path, capfd, caplog) -> None:
    """Our one-line error only: not also the reader's own logged error."""
    latin = tmp_path / "latin.csv"
    latin.write_bytes("smiles\nCCO\nC\u00e9\u00ffO\n".encode("latin-1"))  # the first row reads
    with pytest.raises(CorpusError, match="latin.csv cannot be read"):
        load_smiles_corpus(latin)
    assert "Failed to read file" not in capfd.readouterr().err + caplog.text


def test_pretrain_skips_bad_rows_checkpoints_and_reports(tmp_path) -> None:
    corpus = write_corpus(tmp_path / "train.csv", 64, ["C1CC", "CC[Zz]C", "not a smiles"])
    held_out = write_corpus(tmp_path / "test.csv", 16, [])
    out = tmp_path / "run"
    argv = ["--train-file", str(corpus), "--eval-file", str(held_out), "--output-dir", str(out)]
    assert main([*argv, *TINY, "--max-steps", "4", "--save-steps", "2"]) == 0

    with open(out / "skipped_train_smiles.csv") as handle:
        skipped = list(csv.DictReader(handle))
    assert [row["row"] for row in skipped] == ["32", "33", "34"]
    assert "C1CC" in skipped[0]["reason"] and "[Zz]" in skipped[1]["reason"]
    assert (out / "checkpoint-4").is_dir()
    results = json.loads((out / "pretrain_results.json").read_text())
    assert results["steps"] == 4 and results["skipped_train_molecules"] == 3
    assert {
        "eval_token_accuracy",
        "eval_exact_match",
        "eval_active_units",
        "eval_participation_ratio",
    } <= set(results["held_out"])
    prior = AggregatePosterior.load(out / "final")  # fitted to every usable molecule (fewer than 20000)
    assert prior.molecules == results["aggregate_posterior_molecules"] == 64
    assert results["last_logged_losses"]["loss/total"] > 0
    model = CMIMForConditionalGeneration.from_pretrained(out / "final")
    assert model.config.hidden_size == 32


def logged_losses(output_dir: Path) -> dict[int, float]:
    state = json.loads((output_dir / "checkpoint-6" / "trainer_state.json").read_text())
    return {entry["step"]: entry["loss/total"] for entry in state["log_history"] if "loss/total" in entry}


def test_resumed_run_reproduces_uninterrupted_losses(tmp_path) -> None:
    corpus = write_corpus(tmp_path / "train.csv", 80, [])
    common = ["--train-file", str(corpus), *TINY, "--max-steps", "6", "--save-steps", "3"]
    assert main([*common, "--output-dir", str(tmp_path / "straight")]) == 0

    interrupted = tmp_path / "interrupted"
    assert main([*common, "--output-dir", str(interrupted)]) == 0
    shutil.rmtree(interrupted / "checkpoint-6")  # as if killed after the step-3 checkpoint
    assert main([*common, "--output-dir", str(interrupted), "--resume"]) == 0

    straight, resumed = logged_losses(tmp_path / "straight"), logged_losses(interrupted)
    assert sorted(straight) == [1, 2, 3, 4, 5, 6]
    for step in (4, 5, 6):
        assert resumed[step] == pytest.approx(straight[step], rel=1e-6, abs=1e-7)

    # The results describe the whole run, not its last segment (issue 13, case 13).
    whole = json.loads((tmp_path / "straight" / "pretrain_results.json").read_text())
    after_resume = json.loads((interrupted / "pretrain_results.json").read_text())
    assert after_resume["resumed_from"].endswith("checkpoint-3") and whole["resumed_from"] is None
    assert after_resume["train_loss"] == pytest.approx(whole["train_loss"], rel=1e-6)
    first_segment = json.loads((interrupted / "checkpoint-3" / "pretrain_elapsed.json").read_text())
    assert after_resume["wall_time_s"] == pytest.approx(
        first_segment["wall_time_s"] + after_resume["segment_wall_time_s"], abs=0.2
    )


def test_a_finished_run_is_never_silently_replaced(tmp_path, capsys) -> None:
    """Issue 13, case 4: a folder holding a run needs --resume or --overwrite."""
    common, run, written = _finished_run(tmp_path)
    results, weights = written["pretrain_results.json"], written["final/model.safetensors"]
    assert main(common) == 2
    assert "holds a pre-training run; pass --resume to continue it or --overwrite" in capsys.readouterr().err
    assert (run / "pretrain_results.json").read_bytes() == results
    assert (run / "final" / "model.safetensors").read_bytes() == weights
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]

    assert main([*common, "--resume", "--overwrite"]) == 2
    assert main([*common, "--overwrite", "--max-steps", "1"]) == 0  # asked for: replaced
    assert [p.name for p in run.glob("checkpoint-*")] == ["checkpoint-1"]
    assert json.loads((run / "pretrain_results.json").read_text())["steps"] == 1


def test_resume_needs_a_complete_checkpoint(tmp_path, capsys) -> None:
    corpus = write_corpus(tmp_path / "train.csv", 32, [])
    run = tmp_path / "run"
    common = ["--train-file", str(corpus), "--output-dir", str(run), *TINY, "--save-steps", "1"]
    assert main([*common, "--max-steps", "2", "--resume"]) == 2
    assert "no complete checkpoint-* folder to resume from" in capsys.readouterr().err
    assert main([*common, "--max-steps", "2"]) == 0
    (run / "checkpoint-2" / "trainer_state.json").unlink()  # as if killed while saving
    assert main([*common, "--max-steps", "3", "--resume"]) == 0
    assert "checkpoint-2 is incomplete" in capsys.readouterr().out
    assert json.loads((run / "pretrain_results.json").read_text())["steps"] == 3


def test_fewer_usable_molecules_than_one_batch_is_an_error(tmp_path, capsys) -> None:
    """Issue 13, case 11: no silent run of 0 steps with an untrained final/."""
    corpus = write_corpus(tmp_path / "train.csv", 5, ["C1CC", "CC[Zz]C"])
    run = tmp_path / "run"
    assert main(["--train-file", str(corpus), "--output-dir", str(run), *TINY, "--max-steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "5 usable molecules (2 skipped" in err and "fewer than one batch of 8" in err
    assert not (run / "final").exists()


def test_warm_start_keeps_or_replaces_the_posterior_floor(tmp_path) -> None:
    """--init-from keeps the checkpoint's floor; --logvar-min or a floor schedule replaces it."""
    corpus = write_corpus(tmp_path / "train.csv", 32, [])
    common = ["--train-file", str(corpus), *TINY, "--max-steps", "2", "--prior-molecules", "0"]
    assert main([*common, "--logvar-min", "-5", "--output-dir", str(tmp_path / "start")]) == 0
    start = str(tmp_path / "start" / "final")

    def final_floor(run: str, *extra: str) -> float:
        assert main([*common, "--init-from", start, "--output-dir", str(tmp_path / run), *extra]) == 0
        return json.loads((tmp_path / run / "final" / "config.json").read_text())["logvar_min"]

    assert final_floor("kept") == -5.0
    assert final_floor("replaced", "--logvar-min", "-3") == -3.0
    assert final_floor("scheduled", "--posterior-floor-schedule", "0:0.2,1:0.3") == pytest.approx(
        2 * math.log(0.3)
    )


def _finished_run(tmp_path: Path) -> tuple[list[str], Path, dict[str, bytes]]:
    """A finished 2-step run: its common arguments, folder and the bytes of what it wrote."""
    corpus = write_corpus(tmp_path / "train.csv", 32, [])
    run = tmp_path / "run"
    common = [
        "--train-file",
        str(corpus),
        "--output-dir",
        str(run),
        *TINY,
        "--max-steps",
        "2",
        "--save-steps",
        "1",
    ]
    assert main(common) == 0
    return common, run, _snapshot(run)


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "change, message",
    [
        (["--train-file", "typo.csv"], "corpus file not found: typo.csv"),
        (["--init-from", "RUN/final"], "--init-from RUN/final is inside the run folder RUN"),
        (["--train-file", "RUN/train.csv"], "--train-file RUN/train.csv is inside the run folder RUN"),
        (["--init-from", "./no-such-checkpoint"], "is not a checkpoint folder"),
        (["--max-steps", "0"], "--max-steps must be at least 1, got 0"),
    ],
)
def test_overwrite_checks_everything_before_it_touches_the_previous_run(
    tmp_path, capsys, change: list[str], message: str
) -> None:
    """Issue 23, defect 1: a mistyped option under --overwrite used to delete final/ and every
    checkpoint before failing; --init-from RUN/final --output-dir RUN deleted its own start."""
    common, run, before = _finished_run(tmp_path)
    shutil.copy(tmp_path / "train.csv", run / "train.csv")
    before["train.csv"] = (run / "train.csv").read_bytes()
    change = [value.replace("RUN", str(run)) for value in change]
    capsys.readouterr()
    assert main([*common, *change, "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and err[0].startswith("cmim pretrain: error: ")
        and message.replace("RUN", str(run)) in err[0]
    )
    assert _snapshot(run) == before


def test_overwrite_restores_the_previous_run_when_the_new_one_fails_before_its_first_checkpoint(
    tmp_path, capsys
) -> None:
    common, run, before = _finished_run(tmp_path)
    too_small = write_corpus(tmp_path / "small.csv", 5, [])  # fails after tokenizing: fewer than one batch
    assert main([*common, "--train-file", str(too_small), "--overwrite"]) == 2
    assert "fewer than one batch" in capsys.readouterr().err
    assert _snapshot(run) == before and not list(run.glob(".replaced-run-*"))


def test_overwrite_deletes_the_previous_run_once_the_new_one_has_a_checkpoint(tmp_path) -> None:
    common, run, before = _finished_run(tmp_path)
    assert main([*common, "--overwrite", "--max-steps", "1"]) == 0
    assert sorted(p.name for p in run.iterdir() if p.name.startswith((".", "checkpoint"))) == ["checkpoint-1"]
    assert (run / "final" / "model.safetensors").read_bytes() != before["final/model.safetensors"]


def test_an_output_dir_that_is_a_file_is_one_line(tmp_path, capsys) -> None:
    corpus = write_corpus(tmp_path / "train.csv", 32, [])
    (tmp_path / "run").write_text("a user's file")
    assert main(["--train-file", str(corpus), "--output-dir", str(tmp_path / "run"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "is a file, not a folder" in err
    assert (tmp_path / "run").read_text() == "a user's file"
