"""The output rule (issue 13): an output equal to an input, or existing without --overwrite, is
refused; results move into place only when complete, so a failed or killed run keeps the old file."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers import MOSES_SAMPLE, tiny_config

from cmim_hf import CMIMForConditionalGeneration, CMIMTokenizer
from cmim_hf.cli import main
from cmim_hf.outputs import OutputError, atomic_output, check_output_path


def test_check_output_path(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("smiles\nCCO\n")
    with pytest.raises(OutputError, match="is the input"):
        check_output_path(source, [source], overwrite=True)
    with pytest.raises(OutputError, match="is the input"):
        check_output_path(tmp_path / "." / "in.csv", [source])
    with pytest.raises(OutputError, match="exists; pass --overwrite"):
        check_output_path(source, [tmp_path / "other.csv"])
    assert check_output_path(source, [None], overwrite=True) == source
    assert check_output_path(tmp_path / "new.csv", [source]) == tmp_path / "new.csv"


def test_atomic_output_moves_into_place_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("previous")
    with pytest.raises(RuntimeError), atomic_output(target) as partial:
        partial.write_text("half")
        raise RuntimeError("failed part-way")
    assert target.read_text() == "previous" and list(tmp_path.iterdir()) == [target]
    with atomic_output(target) as partial:
        partial.write_text("complete")
    assert target.read_text() == "complete" and list(tmp_path.iterdir()) == [target]


def run_embed(*argv: str) -> int:
    return main(["embed", *argv, "--no-progress"])


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "in.parquet"
    pd.DataFrame({"smiles": ["CCO", "c1ccccc1O", "CCN"]}).to_parquet(path)
    return path


def test_embed_refuses_to_write_over_its_input(table: Path, capsys) -> None:
    before = table.read_bytes()
    assert run_embed(str(table), "-o", str(table), "--overwrite") == 2
    assert "is the input" in capsys.readouterr().err
    assert table.read_bytes() == before  # case 1: the input survives


def test_embed_refuses_an_existing_output_unless_overwrite(table: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.parquet"
    out.write_bytes(b"a user's file")
    assert run_embed(str(table), "-o", str(out)) == 2
    err = capsys.readouterr().err
    assert "exists; pass --overwrite" in err and "Traceback" not in err
    assert out.read_bytes() == b"a user's file"  # case 5
    assert run_embed(str(table), "-o", str(out), "--overwrite") == 0
    assert pq.read_table(out).num_rows == 3


def test_a_failure_part_way_keeps_the_previous_output(
    table: Path, tmp_path: Path, tiny_checkpoint: Path, capsys
) -> None:
    out = tmp_path / "out.parquet"
    assert run_embed(str(table), "-o", str(out)) == 0
    previous = out.read_bytes()
    truncated = tmp_path / "truncated.csv.gz"
    lines = MOSES_SAMPLE.read_text().splitlines(keepends=True)
    data = gzip.compress("".join([lines[0], *lines[1:] * 3]).encode())
    truncated.write_bytes(data[: len(data) // 2])  # thousands of readable rows, then the stream ends
    argv = [
        str(truncated),
        "-o",
        str(out),
        "--overwrite",
        "--chunk-size",
        "256",
        "--model",
        str(tiny_checkpoint),
    ]
    assert run_embed(*argv) == 2  # a damaged input: one line naming the file and the row reached
    assert "truncated.csv.gz after row 7168" in capsys.readouterr().err
    assert out.read_bytes() == previous  # case 3: the good output is not deleted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet", "out.parquet", "truncated.csv.gz"]
    assert pq.read_table(out).num_rows == 3


def test_kill_9_during_embed_leaves_the_previous_output_readable(table: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    assert run_embed(str(table), "-o", str(out)) == 0
    previous = out.read_bytes()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "cmim_hf.cli", "embed", str(MOSES_SAMPLE), "-o", str(out), "--overwrite"]
    process = subprocess.Popen([*command, "--no-progress", "--chunk-size", "64"], env=env)
    deadline = time.time() + 120
    while (
        not list(tmp_path.glob(".out.parquet.partial-*"))
        and time.time() < deadline
        and process.poll() is None
    ):
        time.sleep(0.2)  # wait until it is writing
    assert process.poll() is None, "the embed finished before it could be killed"
    process.send_signal(signal.SIGKILL)  # case 2
    process.wait()
    assert out.read_bytes() == previous and pq.read_table(out).num_rows == 3


def test_sample_and_reconstruct_follow_the_output_rule(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    """Issue 13, case 5 for `cmim sample`, and case 1 for `cmim reconstruct`."""
    out = tmp_path / "samples.csv"
    out.write_text("a user's file\n")
    common = ["--model", str(tiny_checkpoint), "--max-length", "6"]
    assert main(["sample", "-n", "2", "-o", str(out), *common]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and out.read_text() == "a user's file\n"
    assert main(["sample", "-n", "2", "-o", str(out), "--overwrite", *common]) == 0
    assert len(pd.read_csv(out)) == 2 and not list(tmp_path.glob(".*partial*"))

    molecules = tmp_path / "molecules.csv"
    pd.DataFrame({"smiles": ["CCO", "CCN"]}).to_csv(molecules, index=False)
    before = molecules.read_bytes()
    assert main(["reconstruct", str(molecules), "-o", str(molecules), "--overwrite", *common]) == 2
    assert "is the input" in capsys.readouterr().err and molecules.read_bytes() == before


@pytest.mark.parametrize("command", ["benchmark", "finetune"])
@pytest.mark.parametrize("name", ["a/b", "/some/abs/path", "..", "x\\y"])
def test_task_names_never_become_paths(tmp_path: Path, capsys, command: str, name: str) -> None:
    """Issue 13, case 6: a --task-name is a file name inside --out, never a path out of it."""
    table = tmp_path / "mine.csv"
    pd.DataFrame({"smiles": ["CCO", "CCN", "CCC", "CCCl"] * 5, "y": range(20)}).to_csv(table, index=False)
    argv = [command, "--csv", str(table), "--label-col", "y", "--task", "regression", "--task-name", name]
    argv += ["--out", str(tmp_path / "out")] + (["--save-model"] if command == "finetune" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot be used as a file name" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not Path("/some/abs/path").exists()


def test_molecules_the_model_cannot_read_faithfully_are_flagged(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """Issue 13, cases 7, 8 and 10: unknown tokens, whitespace inside, blank lines and empty SMILES
    are flagged invalid with a reason, and every data line keeps its index."""
    rows = ["CCO", "[Xe]", "[Kr]", "[13CH3]O", "CC O", "CC\tO", "", "c1ccccc1"]
    source = tmp_path / "in.csv"
    source.write_text("smiles\n" + "\n".join(f'"{r}"' if r else "" for r in rows) + "\n")
    out = tmp_path / "out.parquet"
    assert run_embed(str(source), "-o", str(out), "--model", str(tiny_checkpoint)) == 0
    table = pd.read_parquet(out)
    assert table["row_index"].tolist() == list(range(len(rows)))
    assert table["valid"].tolist() == [True, False, False, False, False, False, False, True]
    reasons = table["invalid_reason"].tolist()
    assert "outside the vocabulary: [Xe]" in reasons[1] and "[Kr]" in reasons[2] and "[13CH3]" in reasons[3]
    assert "whitespace inside" in reasons[4] and "whitespace inside" in reasons[5]
    assert reasons[6].startswith("empty SMILES")
    assert all(len(vector) and pd.isna(vector).all() for vector in table["embedding"][1:7])


def test_a_checkpoint_whose_tokenizer_is_missing_or_does_not_match_is_refused(
    tmp_path: Path, table: Path, capsys
) -> None:
    """Issue 13, case 9."""
    import cmim_hf
    from cmim_hf.checkpoints import CheckpointError, load_model_and_tokenizer
    from cmim_hf.models.cmim.tokenization_cmim import vocabulary_fingerprint

    model = CMIMForConditionalGeneration.from_pretrained(cmim_hf.DEFAULT_CHECKPOINT)
    assert model.config.vocab_fingerprint == vocabulary_fingerprint(CMIMTokenizer())
    bare = tmp_path / "no_tokenizer"
    model.save_pretrained(bare)
    with pytest.raises(CheckpointError, match="has no tokenizer files"):
        load_model_and_tokenizer(bare)

    vocab = CMIMTokenizer().get_vocab()
    tokens = sorted((t for t, i in vocab.items() if i >= 5), key=vocab.get)
    permuted = {
        **{t: i for t, i in vocab.items() if i < 5},
        **{t: 5 + k for k, t in enumerate(reversed(tokens))},
    }
    swapped = tmp_path / "permuted"
    model.save_pretrained(swapped)
    CMIMTokenizer(vocab=permuted).save_pretrained(swapped)
    with pytest.raises(CheckpointError, match="not the one the model was trained with"):
        load_model_and_tokenizer(swapped)

    small = CMIMForConditionalGeneration(tiny_config(vocab_size=40))
    oversized = tmp_path / "oversized"
    small.save_pretrained(oversized)
    CMIMTokenizer().save_pretrained(oversized)
    with pytest.raises(CheckpointError, match="the model's embedding only 40 rows"):
        load_model_and_tokenizer(oversized)
    assert run_embed(str(table), "-o", str(tmp_path / "out.parquet"), "--model", str(swapped)) == 2
    err = capsys.readouterr().err
    assert "not the one the model was trained with" in err and "Traceback" not in err


def test_the_suite_uses_a_temporary_hf_home() -> None:
    """Issue 13, case 13: tests never write into the user's Hugging Face cache."""
    import tempfile

    from huggingface_hub import constants

    assert os.environ["HF_HOME"].startswith(tempfile.gettempdir())
    assert os.environ["HF_HOME"] == constants.HF_HOME


def test_cpu_pretraining_does_not_pin_memory(tmp_path: Path, recwarn) -> None:
    corpus = tmp_path / "train.csv"
    pd.DataFrame({"smiles": ["CCO", "CCN", "CCC", "CCCl"] * 4}).to_csv(corpus, index=False)
    tiny = ["--hidden-size", "16", "--encoder-layers", "1", "--decoder-layers", "1", "--ffn-dim", "32"]
    tiny += ["--num-attention-heads", "2", "--batch-size", "4", "--max-steps", "1"]
    assert main(["pretrain", "--train-file", str(corpus), "--output-dir", str(tmp_path / "run"), *tiny]) == 0
    assert not [w for w in recwarn if "pin_memory" in str(w.message)]


def bad_corpora(folder: Path) -> dict[str, Path]:
    """Files that are not readable SMILES corpora, by what is wrong with them."""
    files = {
        "empty": ("empty.csv", b""),
        "header only": ("header.csv", b"smiles\n"),
        "not UTF-8": ("latin.csv", b"smiles\n\xff\xfeCCO\n"),
        "not gzip": ("plain.csv.gz", b"smiles\nCCO\n"),
    }
    paths = {}
    for case, (name, data) in files.items():
        paths[case] = folder / name
        paths[case].write_bytes(data)
    lines = MOSES_SAMPLE.read_text().splitlines(keepends=True)
    data = gzip.compress("".join([lines[0], *lines[1:] * 3]).encode())
    paths["truncated gzip"] = folder / "truncated.csv.gz"
    paths["truncated gzip"].write_bytes(data[: len(data) // 2])
    return paths


def test_pretrain_reports_unreadable_corpora_in_one_line(tmp_path: Path, capsys) -> None:
    """Issue 13, case 12 for `cmim pretrain`."""
    tiny = ["--hidden-size", "16", "--encoder-layers", "1", "--decoder-layers", "1", "--ffn-dim", "32"]
    tiny += ["--num-attention-heads", "2", "--batch-size", "2", "--max-steps", "1"]
    for case, corpus in bad_corpora(tmp_path).items():
        run = tmp_path / f"run-{corpus.stem}"
        assert main(["pretrain", "--train-file", str(corpus), "--output-dir", str(run), *tiny]) == 2, case
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("cmim pretrain: error:")]
        assert len(lines) == 1 and str(corpus) in lines[0] and "Traceback" not in err, (case, err)
        assert not (run / "final").exists()
    parquet = tmp_path / "corpus.parquet"
    pd.DataFrame({"SMILES": ["CCO", "CCN", "CCC", "CCCl"]}).to_parquet(parquet)
    assert (
        main(["pretrain", "--train-file", str(parquet), "--output-dir", str(tmp_path / "run-parquet"), *tiny])
        == 0
    )


def test_benchmark_reports_unreadable_tables_in_one_line(tmp_path: Path, capsys) -> None:
    """Issue 13, case 12 for `cmim benchmark --csv`; a table smaller than the inner CV still runs."""
    for case, table in bad_corpora(tmp_path).items():
        if case == "header only":
            continue  # a header-only table is a task with no molecules: reported by the harness
        argv = ["benchmark", "--csv", str(table), "--label-col", "y", "--task", "regression", "--no-progress"]
        assert main([*argv, "--out", str(tmp_path / "out")]) == 2, case
        err = capsys.readouterr().err
        assert err.startswith(f"cmim benchmark: error: {table} cannot be read") and "Traceback" not in err, (
            case
        )
    few = tmp_path / "few.csv"
    few.write_text("smiles,y\nCCO,1\nCCN,2\nCCC,3\n")
    argv = [
        "benchmark",
        "--csv",
        str(few),
        "--label-col",
        "y",
        "--task",
        "regression",
        "--no-progress",
        "--no-plots",
    ]
    assert main([*argv, "--out", str(tmp_path / "few")]) == 0


def test_a_truncated_or_foreign_checkpoint_is_a_one_line_error(tmp_path: Path, table: Path, capsys) -> None:
    """Issue 13, case 12 for `cmim embed`: the file is named, exit code 2, no traceback."""
    import shutil

    import cmim_hf

    truncated = tmp_path / "truncated"
    shutil.copytree(cmim_hf.DEFAULT_CHECKPOINT, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100_000])
    assert run_embed(str(table), "-o", str(tmp_path / "a.parquet"), "--model", str(truncated)) == 2
    err = capsys.readouterr().err
    assert str(weights) in err and "corrupt or truncated" in err and "Traceback" not in err
