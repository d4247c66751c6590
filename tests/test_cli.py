"""`cmim embed|pretrain|benchmark|finetune` end to end through the console script, on a tiny model.

(`sample`, `reconstruct` and `optimize` are covered the same way in test_generation_cli.py.) The
runs start together: each process spends most of its time importing torch and transformers.
"""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest
import torch
from helpers import SMILES, assert_one_line_error, start_cmim, tiny_config

import cmim_hf
from cmim_hf.cli import build_parser, main


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    cmim_hf.CMIMForConditionalGeneration(tiny_config()).save_pretrained(root / "ckpt")
    cmim_hf.CMIMTokenizer().save_pretrained(root / "ckpt")
    pd.DataFrame({"smiles": [*SMILES, "C1CC"], "y": range(len(SMILES) + 1)}).to_csv(
        root / "in.csv", index=False
    )
    with open(
        cmim_hf.__file__.replace("__init__.py", "package_data/moses/moses_test_first5000.csv")
    ) as source:
        (root / "corpus.csv").write_text("".join(line for _, line in zip(range(41), source)))
    tiny = ["--hidden-size", "32", "--encoder-layers", "1", "--decoder-layers", "1", "--ffn-dim", "64"]
    tiny += ["--num-attention-heads", "2", "--batch-size", "8", "--max-length", "64"]
    commands = {
        "embed": ["embed", "in.csv", "--smiles-col", "smiles", "-o", "emb.parquet", "--model", "ckpt"],
        "pretrain": ["pretrain", "--train-file", "corpus.csv", "--output-dir", "pre", "--max-steps", "2", *tiny],
        "benchmark": ["benchmark", "--model", "ecfp4", "--model", "ckpt", "--tasks", "esol", "--seeds", "1",
                      "--probe", "ridge", "--max-molecules", "100", "--out", "bench", "--no-plots", "--no-progress"],
        "finetune": ["finetune", "--model", "ckpt", "--tasks", "esol", "--seeds", "1", "--epochs", "1",
                     "--max-molecules", "60", "--out", "ft", "--no-plots"],
        "missing_input": ["embed", "nope.csv", "-o", "x.parquet", "--model", "ckpt"],
        "missing_corpus": ["pretrain", "--train-file", "nope.csv", "--output-dir", "pre2"],
        "unknown_task": ["benchmark", "--model", "ecfp4", "--tasks", "nosuchtask", "--out", "b2"],
    }  # fmt: skip
    processes = {name: start_cmim(*argv, cwd=root) for name, argv in commands.items()}
    results = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=600)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return {"root": root, **results}


def test_embed_keeps_every_row_and_flags_invalid(runs) -> None:
    assert runs["embed"].returncode == 0, runs["embed"].stderr
    table = pd.read_parquet(runs["root"] / "emb.parquet")
    assert len(table) == len(SMILES) + 1
    assert table["valid"].tolist() == [True] * len(SMILES) + [False]
    assert "C1CC" in table["smiles"].iloc[-1] and table["invalid_reason"].iloc[-1]


def test_pretrain_writes_checkpoint_and_results(runs) -> None:
    assert runs["pretrain"].returncode == 0, runs["pretrain"].stderr
    results = json.loads((runs["root"] / "pre" / "pretrain_results.json").read_text())
    assert results["steps"] == 2 and results["command"].startswith("cmim pretrain --train-file corpus.csv")
    assert (runs["root"] / "pre" / "final" / "model.safetensors").is_file()


def test_benchmark_and_finetune_write_harness_json(runs) -> None:
    for name, folder in (("benchmark", "bench"), ("finetune", "ft")):
        assert runs[name].returncode == 0, runs[name].stderr
        results = json.loads((runs["root"] / folder / "results.json").read_text())
        assert results["summary"] and all(
            row["mean"] > 0 for row in results["summary"] if row["metric"] == "rmse"
        )


def test_user_mistakes_exit_2_with_one_line(runs) -> None:
    assert_one_line_error(runs["missing_input"], 2, "nope.csv")
    assert_one_line_error(runs["missing_corpus"], 2, "nope.csv")
    assert_one_line_error(runs["unknown_task"], 2, "nosuchtask")


@pytest.mark.parametrize(
    "command",
    ["embed", "pretrain", "benchmark", "finetune", "sample", "reconstruct", "optimize", "fit-prior"],
)
def test_every_subcommand_has_help(command, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: cmim " + command in capsys.readouterr().out
    parser, _ = build_parser([command])
    subparser = parser._subparsers._group_actions[0].choices[command]
    formatter = subparser._get_formatter()
    for action in subparser._actions:
        if action.dest == "help":
            continue
        text = formatter._get_help_string(action) % {"default": action.default}
        assert action.help, f"cmim {command} {action.option_strings}: no help"  # issue 13, case 13
        assert text.count("default") <= 1 and "(default: None)" not in text, (
            f"{action.option_strings}: {text}"
        )


def test_missing_subcommand_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


def test_model_shipped_names_the_packaged_checkpoint(tmp_path, monkeypatch) -> None:
    """`--model shipped` means the packaged checkpoint in every command that reads one."""
    assert (
        cmim_hf.resolve_checkpoint("shipped")
        == cmim_hf.resolve_checkpoint(None)
        == cmim_hf.DEFAULT_CHECKPOINT
    )
    assert cmim_hf.resolve_checkpoint("./shipped") == "./shipped"
    monkeypatch.chdir(tmp_path)  # no folder named "shipped" here: a Hub lookup would fail offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pd.DataFrame({"smiles": ["CCO", "c1ccccc1"]}).to_csv("in.csv", index=False)
    assert main(["embed", "in.csv", "-o", "emb.parquet", "--model", "shipped", "--no-progress"]) == 0
    assert main(["reconstruct", "in.csv", "-o", "rec.csv", "--model", "shipped"]) == 0
    assert len(pd.read_csv("rec.csv")) == 2
    parser, _ = build_parser(["finetune"])
    assert parser.parse_args(["finetune", "--model", "shipped"]).model == cmim_hf.DEFAULT_CHECKPOINT
