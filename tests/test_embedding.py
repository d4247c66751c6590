"""Bulk embedding: inputs of every kind, row alignment, invalid-row policies, files, sharding."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from helpers import moses_smiles, tiny_config
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

from cmim_hf import CMIMForConditionalGeneration, CMIMTokenizer
from cmim_hf.chem import InvalidSmilesError
from cmim_hf.cli import main
from cmim_hf.embedding import CMIMEmbedder, CMIMFeaturizer, read_embeddings
from cmim_hf.models.cmim.pipelines import InformativeFeatureExtractionPipeline

SMILES = moses_smiles(96)
BAD = {5: "C1CC", 17: "not a smiles", 40: ""}  # row -> invalid SMILES planted there
WITH_BAD = [BAD.get(i, s) for i, s in enumerate(SMILES)]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> CMIMForConditionalGeneration:
    """The model of the ``tiny_checkpoint`` fixture (the same seed and config)."""
    torch.manual_seed(0)
    return CMIMForConditionalGeneration(tiny_config()).eval()


@pytest.fixture(scope="module")
def reference(model: CMIMForConditionalGeneration) -> np.ndarray:
    """Each molecule embedded alone by the pipeline: (96, D)."""
    pipe = InformativeFeatureExtractionPipeline(model=model, tokenizer=CMIMTokenizer(), device=-1)
    return np.array([pipe(s, return_tensors="np") for s in SMILES])


def test_list_matches_one_at_a_time_pipeline(model, reference: np.ndarray) -> None:
    embedder = CMIMEmbedder(model, batch_size=7, chunk_size=40)
    out = embedder.embed(SMILES)
    assert out.shape == reference.shape == (96, 64) and out.dtype == np.float32
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-5)
    order = list(range(96))
    random.Random(1).shuffle(order)
    shuffled = CMIMEmbedder(model, batch_size=64).embed([SMILES[i] for i in order])
    np.testing.assert_allclose(shuffled, reference[order], rtol=0, atol=1e-5)


def test_every_input_kind_gives_the_same_rows(model, reference: np.ndarray, tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": range(96), "smiles": SMILES})
    frame.to_csv(tmp_path / "in.csv", index=False)
    frame.to_csv(tmp_path / "in.csv.gz", index=False)
    frame.to_parquet(tmp_path / "in.parquet")
    dataset = datasets.Dataset.from_pandas(frame)
    embedder = CMIMEmbedder(model, chunk_size=50)
    inputs = {
        "series": (frame["smiles"], None),
        "numpy": (frame["smiles"].to_numpy(), None),
        "frame": (frame, "smiles"),
        "frame, column found by name": (frame, None),
        "dataset": (dataset, "smiles"),
        "dataset column": (dataset["smiles"], None),
        "generator": ((s for s in SMILES), None),
        "csv": (str(tmp_path / "in.csv"), "smiles"),
        "csv.gz": (tmp_path / "in.csv.gz", None),
        "parquet": (tmp_path / "in.parquet", "smiles"),
    }
    for name, (data, column) in inputs.items():
        np.testing.assert_allclose(
            embedder.embed(data, smiles_col=column), reference, atol=1e-5, err_msg=name
        )
    assert embedder.embed("CCO").shape == (1, 64)


def test_missing_file_and_column_are_clear(model, tmp_path: Path) -> None:
    embedder = CMIMEmbedder(model)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        embedder.embed(tmp_path / "nope.csv")
    pd.DataFrame({"smi": ["CCO"], "name": ["x"]}).to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(KeyError, match="smiles_col"):
        embedder.embed(tmp_path / "in.csv")
    with pytest.raises(KeyError, match="'SMILES' not found"):
        embedder.embed(tmp_path / "in.csv", smiles_col="SMILES")


def test_on_invalid_raise_names_the_row(model) -> None:
    with pytest.raises(InvalidSmilesError, match="row 5: 'C1CC'"):
        CMIMEmbedder(model, on_invalid="raise").embed(WITH_BAD)


def test_on_invalid_nan_keeps_and_reports_rows(model, reference: np.ndarray) -> None:
    embedder = CMIMEmbedder(model, on_invalid="nan", chunk_size=16)
    with pytest.warns(UserWarning, match=r"3 invalid SMILES kept as NaN rows: row 5 'C1CC'"):
        result = embedder.embed_with_report(WITH_BAD)
    assert [(r.index, r.smiles) for r in result.invalid] == sorted(BAD.items())
    assert all(r.reason for r in result.invalid)
    nan_rows = np.flatnonzero(np.isnan(result.embeddings).all(axis=1))
    assert nan_rows.tolist() == sorted(BAD)
    good = [i for i in range(96) if i not in BAD]
    np.testing.assert_allclose(result.embeddings[good], reference[good], atol=1e-5)
    np.testing.assert_array_equal(result.indices, np.arange(96))


def test_on_invalid_skip_returns_kept_indices(model, reference: np.ndarray) -> None:
    with pytest.warns(UserWarning, match="skipped"):
        embeddings, kept = CMIMEmbedder(model, on_invalid="skip").embed(WITH_BAD)
    assert kept.tolist() == [i for i in range(96) if i not in BAD]
    np.testing.assert_allclose(embeddings, reference[kept], atol=1e-5)


def test_too_long_inputs_are_invalid_not_truncated(model) -> None:
    embedder = CMIMEmbedder(model, on_invalid="nan")
    with pytest.warns(UserWarning, match="too long"):
        result = embedder.embed_with_report(["CCO", "C" * 200])
    assert np.isnan(result.embeddings[1]).all() and np.isfinite(result.embeddings[0]).all()


def test_canonicalize(model) -> None:
    canonical = CMIMEmbedder(model).embed(["CCO", "Oc1ccccc1"])  # RDKit's canonical forms
    written_otherwise = ["OCC", "c1ccccc1O"]
    np.testing.assert_allclose(
        CMIMEmbedder(model, normalize="canonical").embed(written_otherwise), canonical, atol=1e-6
    )
    assert not np.allclose(CMIMEmbedder(model).embed(written_otherwise), canonical, atol=1e-3)


def test_options_reach_the_model(model) -> None:
    assert CMIMEmbedder(model, source="latent").embed(["CCO"]).shape == (1, 32)
    assert CMIMEmbedder(model, layers="concat", include_latent=False).embed(["CCO"]).shape == (1, 64)


def test_generic_seq2seq_model() -> None:
    vocab = {
        t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", *"CNOSFBrIPclnos()=#123456789[]+-H@/\\"])
    }
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>")
    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=len(vocab),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
    )
    bart = BartForConditionalGeneration(config).eval()
    embedder = CMIMEmbedder(bart, tokenizer, batch_size=5)
    out = embedder.embed(SMILES[:20])
    pipe = InformativeFeatureExtractionPipeline(model=bart, tokenizer=tokenizer, device=-1)
    np.testing.assert_allclose(out, np.array([pipe(s) for s in SMILES[:20]]), atol=1e-5)
    with pytest.raises(ValueError, match="cMIM"):
        CMIMEmbedder(bart, tokenizer, include_latent=True)


def test_load_from_checkpoint_path(tiny_checkpoint: Path, reference: np.ndarray) -> None:
    np.testing.assert_allclose(
        CMIMEmbedder(str(tiny_checkpoint)).embed(SMILES[:10]), reference[:10], atol=1e-5
    )


def test_embed_file_streams_every_row_in_order(model, reference: np.ndarray, tmp_path: Path) -> None:
    pd.DataFrame({"SMILES": WITH_BAD}).to_csv(tmp_path / "in.csv", index=False)
    embedder = CMIMEmbedder(model, on_invalid="nan", chunk_size=25)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        invalid = embedder.embed_file(tmp_path / "in.csv", "SMILES", tmp_path / "out.parquet")
    assert [r.index for r in invalid] == sorted(BAD)
    table = pq.read_table(tmp_path / "out.parquet").to_pandas()
    assert list(table.columns) == ["row_index", "SMILES", "valid", "invalid_reason", "embedding"]
    assert table["row_index"].tolist() == list(range(96)) and table["SMILES"].fillna("").tolist() == WITH_BAD
    assert table.loc[~table["valid"], "row_index"].tolist() == sorted(BAD)
    assert (
        table.loc[~table["valid"], "invalid_reason"].notna().all()
        and table.loc[table["valid"], "invalid_reason"].isna().all()
    )
    embeddings = read_embeddings(tmp_path / "out.parquet")
    good = [i for i in range(96) if i not in BAD]
    np.testing.assert_allclose(embeddings[good], reference[good], atol=1e-5)
    assert np.isnan(embeddings[sorted(BAD)]).all()


def test_embed_file_leaves_no_partial_output_on_error(model, tmp_path: Path) -> None:
    pd.DataFrame({"SMILES": WITH_BAD}).to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(InvalidSmilesError, match="row 5"):
        CMIMEmbedder(model, chunk_size=4).embed_file(tmp_path / "in.csv", None, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_sklearn_pipeline(tiny_checkpoint: Path) -> None:
    y = np.arange(20, dtype=float)
    estimator = make_pipeline(CMIMFeaturizer(str(tiny_checkpoint), batch_size=8), Ridge())
    predictions = clone(estimator).fit(SMILES[:20], y).predict(SMILES[:20])
    assert predictions.shape == (20,)
    with pytest.warns(UserWarning, match="2 invalid SMILES kept as NaN rows"):
        features = CMIMFeaturizer(str(tiny_checkpoint)).fit_transform(pd.DataFrame({"smiles": WITH_BAD[:20]}))
    assert features.shape == (20, 64) and np.isnan(features[5]).all() and np.isfinite(features[4]).all()


def test_datasets_map(model, reference: np.ndarray) -> None:
    dataset = datasets.Dataset.from_dict({"smiles": SMILES[:30]})
    mapped = dataset.map(CMIMEmbedder(model).map_function("smiles"), batched=True, batch_size=8)
    np.testing.assert_allclose(np.array(mapped["embedding"], dtype=np.float32), reference[:30], atol=1e-5)
    with pytest.raises(ValueError, match="nan"):
        CMIMEmbedder(model, on_invalid="skip").map_function()


WORKER = """
import sys, warnings
import torch
from cmim_hf.embedding import CMIMEmbedder
torch.set_num_threads(1)
warnings.simplefilter("ignore")
CMIMEmbedder(sys.argv[1], on_invalid="nan", chunk_size=16, progress=False).embed_file(sys.argv[2], "SMILES", sys.argv[3])
"""


def test_two_process_sharding_matches_single_process(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """torchrun with 2 CPU processes (gloo) writes the same rows, in input order."""
    pd.DataFrame({"SMILES": WITH_BAD}).to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "worker.py").write_text(textwrap.dedent(WORKER))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    args = [
        str(tmp_path / "worker.py"),
        str(tiny_checkpoint),
        str(tmp_path / "in.csv"),
        str(tmp_path / "sharded.parquet"),
    ]
    launcher = subprocess.Popen(
        command + args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        _, stderr = launcher.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)  # the launcher and its two workers
        launcher.communicate()
        pytest.fail("torchrun did not finish within 90 s")
    assert launcher.returncode == 0, stderr[-3000:]
    assert not list(tmp_path.glob("*.shard-*")), "shard files left behind"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CMIMEmbedder(str(tiny_checkpoint), on_invalid="nan", chunk_size=16).embed_file(
            tmp_path / "in.csv", "SMILES", tmp_path / "single.parquet"
        )
    sharded = pq.read_table(tmp_path / "sharded.parquet").to_pandas()
    single = pq.read_table(tmp_path / "single.parquet").to_pandas()
    assert sharded["row_index"].tolist() == list(range(96))
    pd.testing.assert_frame_equal(sharded.drop(columns="embedding"), single.drop(columns="embedding"))
    np.testing.assert_allclose(
        read_embeddings(tmp_path / "sharded.parquet"), read_embeddings(tmp_path / "single.parquet"), atol=1e-6
    )


def run_cli(*argv: str) -> int:
    return main(["embed", *argv])


def test_cli_keeps_every_row_and_flags_invalid_ones(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    pd.DataFrame({"name": list("abc"), "smiles": ["CCO", "C1CC", "c1ccccc1"]}).to_csv(
        tmp_path / "in.csv", index=False
    )
    out = tmp_path / "out.parquet"
    assert (
        run_cli(str(tmp_path / "in.csv"), "-o", str(out), "--model", str(tiny_checkpoint), "--no-progress")
        == 0
    )
    table = pd.read_parquet(out)
    assert table["valid"].tolist() == [True, False, True] and "unclosed ring" in table["invalid_reason"][1]
    assert "3 rows (1 invalid" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["missing.csv"], 2, "input file not found"),
        (["in.csv", "--smiles-col", "SMI"], 2, "column 'SMI' not found"),
        (["in.csv", "--model", "./nowhere"], 2, "not a checkpoint folder"),
        (["in.csv", "--layers", "0,-1", "--pooling", "eos", "--model", "CKPT"], 0, "dimension 96"),
    ],
)
def test_cli_errors_are_one_line(tiny_checkpoint: Path, tmp_path: Path, capsys, argv, code, message) -> None:
    pd.DataFrame({"smiles": ["CCO"]}).to_csv(tmp_path / "in.csv", index=False)
    argv = [
        str(tmp_path / a) if a.endswith(".csv") else a.replace("CKPT", str(tiny_checkpoint)) for a in argv
    ]
    if "--model" not in argv:
        argv += ["--model", str(tiny_checkpoint)] if code == 2 else []
    assert run_cli(*argv, "-o", str(tmp_path / "out.parquet"), "--no-progress") == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_embed_file_carries_the_other_input_columns(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Issue 13, case 13: ids and labels come through. CSV cells stay the strings written (leading
    zeros, empty cells); Parquet keeps its types; a clashing name becomes input_<name>."""
    source = tmp_path / "in.csv"
    source.write_text("id,smiles,valid,y\n007,CCO,x,1.50\n008,C1CC,y,\n\n010,c1ccccc1,z,3\n")
    embedder = CMIMEmbedder(str(tiny_checkpoint), chunk_size=2, progress=False, on_invalid="nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        embedder.embed_file(source, "smiles", tmp_path / "out.parquet")
    table = pd.read_parquet(tmp_path / "out.parquet")
    assert list(table.columns) == ["row_index", "smiles", "id", "input_valid", "y", "valid", "invalid_reason",
                                   "embedding"]  # fmt: skip
    assert table["row_index"].tolist() == [0, 1, 2, 3]
    assert table["id"].tolist() == ["007", "008", "", "010"] and table["y"].tolist() == ["1.50", "", "", "3"]
    assert table["input_valid"].tolist() == ["x", "y", "", "z"]
    assert table["valid"].tolist() == [True, False, False, True]

    pd.DataFrame({"smiles": ["CCO", "CCN"], "label": [0.5, 1.5], "n": [1, 2]}).to_parquet(
        tmp_path / "in.parquet"
    )
    embedder.embed_file(tmp_path / "in.parquet", None, tmp_path / "out2.parquet")
    typed = pd.read_parquet(tmp_path / "out2.parquet")
    assert typed["label"].tolist() == [0.5, 1.5] and typed["n"].dtype == np.int64
