"""Streaming pre-training (issue 15, item 2): cmim_hf.training.streaming and ``cmim pretrain --streaming``."""

from __future__ import annotations

import csv
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import moses_smiles
from safetensors.torch import load_file

from cmim_hf.cli import main as cmim
from cmim_hf.models.cmim.tokenization_cmim import CMIMTokenizer
from cmim_hf.training.corpus import CorpusError, load_smiles_corpus, tokenize_corpus
from cmim_hf.training.streaming import StreamingSmilesCorpus, corpus_shards

INVALID = ["C1CC", "CC[Zz]C", "not a smiles"]
TINY = ["--hidden-size", "32", "--encoder-layers", "1", "--decoder-layers", "1", "--ffn-dim", "64",
        "--num-attention-heads", "2", "--batch-size", "8", "--learning-rate", "1e-3", "--warmup-steps", "0",
        "--latent-warmup-steps", "2", "--logging-steps", "1", "--max-length", "64", "--num-proc", "1",
        "--prior-molecules", "40", "--streaming", "--bucket-batches", "2"]  # fmt: skip


def write_corpus(path: Path, n: int, invalid_at: int | None = None) -> list[str]:
    """The first n MOSES test molecules, with the invalid ones inserted at row ``invalid_at``."""
    smiles = moses_smiles(n)
    if invalid_at is not None:
        smiles[invalid_at:invalid_at] = INVALID
    pd.DataFrame({"SMILES": smiles}).to_csv(path, index=False)
    return smiles


def corpus(files: list[Path], report: Path | None = None, **options) -> StreamingSmilesCorpus:
    tokenizer = CMIMTokenizer(model_max_length=64)
    return StreamingSmilesCorpus(files, tokenizer, 8, skip_report=report, **{"bucket_batches": 2, **options})


@pytest.mark.parametrize("group_by_length", [False, True])
def test_one_pass_holds_every_usable_molecule_once_in_buffer_order(
    group_by_length: bool, tmp_path: Path
) -> None:
    """Each buffer holds the next usable molecules: shuffled, or length-grouped into batches."""
    path = tmp_path / "corpus.csv"
    write_corpus(path, 100, invalid_at=40)
    report = tmp_path / "skipped.csv"
    stream = list(
        itertools.islice(corpus([path], report, bucket_batches=4, group_by_length=group_by_length), 100)
    )
    stream_ids = [tuple(e["input_ids"]) for e in stream]

    usable, skipped = tokenize_corpus(load_smiles_corpus(path), CMIMTokenizer(model_max_length=64))
    usable_ids = [tuple(ids) for ids in usable["input_ids"]]
    assert sorted(stream_ids) == sorted(usable_ids)
    for start in (0, 32, 64):  # buffers of 4 batches of 8, in corpus order
        buffer = stream_ids[start : start + 32]
        assert (
            sorted(buffer) == sorted(usable_ids[start : start + 32])
            and buffer != usable_ids[start : start + 32]
        )
    with open(report) as handle:
        assert list(csv.DictReader(handle)) == [{k: str(v) for k, v in row.items()} for row in skipped]
    assert [row["row"] for row in skipped] == [40, 41, 42]

    lengths = np.array([len(ids) for ids in stream_ids[:96]]).reshape(-1, 8)
    padding = (lengths.max(axis=1, keepdims=True) - lengths).mean()
    shuffled = np.random.default_rng(0).permutation(lengths.ravel()).reshape(-1, 8)
    random_padding = (shuffled.max(axis=1, keepdims=True) - shuffled).mean()
    assert (padding < random_padding / 2) == group_by_length


def test_the_stream_goes_on_past_the_end_of_the_corpus(tmp_path: Path) -> None:
    path = tmp_path / "corpus.csv"
    write_corpus(path, 30)
    first_two_passes = [tuple(e["input_ids"]) for e in itertools.islice(corpus([path]), 60)]
    assert sorted(first_two_passes[:30]) == sorted(first_two_passes[30:])


@pytest.mark.parametrize("consumed", [0, 13, 16, 37, 50])  # buffer starts (0, 16), inside, next pass
def test_resume_continues_exactly_where_the_stream_stopped(consumed: int, tmp_path: Path) -> None:
    path = tmp_path / "corpus.csv"
    write_corpus(path, 40, invalid_at=20)
    report = tmp_path / "skipped.csv"
    first = corpus([path], report)
    uninterrupted = [e["input_ids"] for e in itertools.islice(first, 90)]
    state = json.loads(json.dumps(first.state_after(consumed)))  # it goes through a JSON file

    resumed = corpus([path], report)
    resumed.resume_from(state)
    assert [e["input_ids"] for e in itertools.islice(resumed, 90 - consumed)] == uninterrupted[consumed:]
    rows = pd.read_csv(report)["row"].tolist()
    assert rows == sorted(set(rows)) == [20, 21, 22]  # re-read rows are not reported twice


def test_shards_stream_in_name_order_and_formats_can_be_parquet_or_smi(tmp_path: Path) -> None:
    smiles = write_corpus(tmp_path / "whole.csv", 30)
    for index, start in enumerate(range(0, 30, 10)):
        pd.DataFrame({"smiles": smiles[start : start + 10]}).to_parquet(tmp_path / f"part-{index}.parquet")
    (tmp_path / "corpus.smi").write_text("".join(f"{s} mol{i}\n" for i, s in enumerate(smiles)))
    expected = [e["input_ids"] for e in itertools.islice(corpus([tmp_path / "whole.csv"]), 30)]

    shards = corpus_shards(str(tmp_path / "part-*.parquet"))
    assert [s.name for s in shards] == ["part-0.parquet", "part-1.parquet", "part-2.parquet"]
    assert [e["input_ids"] for e in itertools.islice(corpus(shards), 30)] == expected
    assert [e["input_ids"] for e in itertools.islice(corpus([tmp_path / "corpus.smi"]), 30)] == expected

    (tmp_path / "part-3.csv").write_text("SMILES\nCCO\n")
    with pytest.raises(CorpusError, match="shards must all be"):
        corpus_shards(str(tmp_path / "part-*"))
    with pytest.raises(CorpusError, match="not found"):
        corpus_shards(str(tmp_path / "nothing-*.csv"))
    with pytest.raises(CorpusError, match="no SMILES column"):
        (tmp_path / "bad.csv").write_text("name\nx\n")
        corpus([tmp_path / "bad.csv"])


def test_a_corpus_without_one_batch_of_usable_molecules_is_an_input_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "corpus.csv"
    pd.DataFrame({"SMILES": INVALID + ["CCO"]}).to_csv(path, index=False)
    out = tmp_path / "run"
    assert (
        cmim(["pretrain", "--train-file", str(path), "--output-dir", str(out), *TINY, "--max-steps", "2"])
        == 2
    )
    error = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(error) == 1 and "1 usable molecules" in error[0] and "3 skipped" in error[0]
    assert "Traceback" not in error[0]
    assert len(pd.read_csv(out / "skipped_train_smiles.csv")) == 3


def test_pretrain_streaming_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """Train 6 steps (checkpoints at 3 and 6); then resume from step 3: the stream position and the
    random state come back, so the final weights are the ones of the uninterrupted run."""
    path = tmp_path / "corpus.csv"
    write_corpus(path, 60, invalid_at=10)
    out = tmp_path / "run"
    argv = [
        "pretrain",
        "--train-file",
        str(path),
        "--output-dir",
        str(out),
        *TINY,
        "--max-steps",
        "6",
        "--save-steps",
        "3",
    ]
    assert cmim(argv) == 0
    results = json.loads((out / "pretrain_results.json").read_text())
    assert results["streaming"] and results["steps"] == 6 and results["skipped_train_molecules"] == 3
    assert results["time_to_first_step_s"] > 0 and results["peak_rss_mib"] > 0
    position = json.loads((out / "checkpoint-3" / "streaming_state.json").read_text())
    assert position["consumed"] == 24 and position["skip"] == 8  # 16 molecules per buffer
    uninterrupted = load_file(out / "final" / "model.safetensors")

    shutil.rmtree(out / "checkpoint-6")
    shutil.rmtree(out / "final")
    assert cmim([*argv, "--resume"]) == 0
    resumed = load_file(out / "final" / "model.safetensors")
    assert all(np.array_equal(uninterrupted[name].numpy(), resumed[name].numpy()) for name in uninterrupted)
    assert json.loads((out / "pretrain_results.json").read_text())["resumed_from"].endswith("checkpoint-3")
    assert pd.read_csv(out / "skipped_train_smiles.csv")["row"].tolist() == [10, 11, 12]


def test_blank_lines_are_skipped_rows_with_their_index_in_both_readers(tmp_path: Path) -> None:
    """A blank CSV line is a data row (an empty SMILES), numbered as `cmim embed` numbers it."""
    smiles = moses_smiles(20)
    path = tmp_path / "blank.csv"
    path.write_text("SMILES\n" + "\n".join([*smiles[:5], "", *smiles[5:10], "[Kr]", "", *smiles[10:]]) + "\n")
    _, skipped = tokenize_corpus(load_smiles_corpus(path), CMIMTokenizer(model_max_length=64))
    assert [(row["row"], "empty SMILES" in row["reason"]) for row in skipped] == [
        (5, True),
        (11, False),
        (12, True),
    ]
    report = tmp_path / "skipped.csv"
    list(itertools.islice(corpus([path], report), 20))
    assert pd.read_csv(report)["row"].tolist() == [5, 11, 12]
