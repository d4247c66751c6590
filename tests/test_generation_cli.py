"""End-to-end tests of `cmim sample`, `cmim reconstruct` and `cmim optimize` through the console script."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import SMILES, assert_one_line_error, start_cmim, tiny_config
from rdkit import Chem

import cmim_hf
from cmim_hf import generation
from cmim_hf.cli import command_module, generate, main
from cmim_hf.cli.optimize import resolve_score
from cmim_hf.errors import UsageError

INVALID = "C1CC"
TOO_LONG = "C" * 40  # more tokens than the tiny model's 32 positions


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A tiny saved checkpoint (`ckpt/`) and an input CSV with valid, invalid and too-long rows."""
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    model = cmim_hf.CMIMForConditionalGeneration(tiny_config(init_std=0.5, max_position_embeddings=32))
    model.save_pretrained(root / "ckpt")
    cmim_hf.CMIMTokenizer().save_pretrained(root / "ckpt")
    molecules = [*SMILES[:4], INVALID, TOO_LONG]
    pd.DataFrame({"name": [f"m{i}" for i in range(len(molecules))], "SMILES": molecules}).to_csv(
        root / "molecules.csv", index=False
    )
    pd.DataFrame({"smiles": SMILES}).to_csv(root / "reference.csv", index=False)
    broken = root / "broken"
    shutil.copytree(root / "ckpt", broken)
    (broken / "model.safetensors").unlink()
    return root


# The console-script runs start together (each process spends most of its time importing torch).
CONSOLE_RUNS = {
    "sample": ["sample", "-n", "6", "-o", "prior.csv", "--model", "ckpt", "--reference", "reference.csv",
               "--max-length", "12", "--seed", "1", "--constrained"],
    "reconstruct": ["reconstruct", "molecules.csv", "--smiles-col", "SMILES", "-o", "recon.csv", "--model",
                    "ckpt", "--max-length", "12"],
    "optimize": ["optimize", "molecules.csv", "-o", "opt.csv", "--model", "ckpt", "--score", "HeavyAtomCount",
                 "--iterations", "2", "--population-size", "4", "--top-k", "2", "--max-length", "12"],
    "broken": ["sample", "-n", "2", "-o", "out.csv", "--model", "broken"],
}  # fmt: skip


@pytest.fixture(scope="module")
def console(workdir: Path) -> dict[str, subprocess.CompletedProcess]:
    """The finished console-script runs of CONSOLE_RUNS, by name."""
    processes = {name: start_cmim(*argv, cwd=workdir) for name, argv in CONSOLE_RUNS.items()}
    finished = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=600)
        finished[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return finished


def test_help_explains_every_option() -> None:
    for name in ("sample", "reconstruct", "optimize", "interpolate", "fit_prior"):
        parser = argparse.ArgumentParser(prog=f"cmim {name}")
        command_module(name).add_arguments(parser)
        text = parser.format_help()
        for action in parser._actions:
            assert action.help, f"{name}: {action.dest} has no help"
        assert "exit codes" in text and "example" in text


def test_sample_from_the_prior(workdir: Path, console) -> None:
    result = console["sample"]
    assert result.returncode == 0, result.stderr
    assert "validity" in result.stderr and "novelty" in result.stderr
    table = pd.read_csv(workdir / "prior.csv", keep_default_na=False)
    assert list(table.columns) == ["smiles", "valid"] and len(table) == 6
    assert table["valid"].tolist() == [s != "" and Chem.MolFromSmiles(s) is not None for s in table["smiles"]]


def test_sample_says_which_prior_it_used(console) -> None:
    assert "prior standard (the checkpoint has no aggregate posterior" in console["sample"].stderr


def test_fit_prior_then_sample_from_the_aggregate_posterior(workdir: Path, tmp_path: Path, capsys) -> None:
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(workdir / "ckpt", checkpoint)
    molecules = workdir / "molecules.csv"  # 4 usable rows, an invalid and a too-long one
    code, err = run_in_process("fit_prior", [str(molecules), "--model", str(checkpoint)], capsys)
    assert code == 0, err
    assert "fitted to 4 molecules (2 skipped)" in err
    prior = generation.AggregatePosterior.load(checkpoint)
    assert prior.molecules == 4 and str(molecules) in prior.source

    code, err = run_in_process("fit_prior", [str(molecules), "--model", str(checkpoint)], capsys)
    assert code == 2 and "exists; pass --overwrite" in err
    argv = [str(molecules), "--model", str(checkpoint), "--overwrite", "--max-molecules", "2"]
    code, err = run_in_process("fit_prior", argv, capsys)
    assert code == 0 and "fitted to 2 molecules" in err

    output = tmp_path / "samples.json"
    argv = ["-n", "3", "-o", str(output), "--model", str(checkpoint), "--max-length", "8", "--seed", "5"]
    code, err = run_in_process("sample", argv, capsys)
    assert code == 0, err
    payload = json.loads(output.read_text())
    assert payload["summary"]["prior"] == "aggregate"
    model, tokenizer = generation.load_model_for_generation(checkpoint, device="cpu")
    expected = generation.sample_prior(
        model, tokenizer, 3, seed=5, max_new_tokens=8, prior=generation.AggregatePosterior.load(checkpoint)
    )
    assert [m["smiles"] for m in payload["molecules"]] == expected.smiles
    code, err = run_in_process("sample", [*argv, "--prior", "standard", "--overwrite"], capsys)
    assert code == 0 and "prior standard," in err


def test_sample_around_seed_molecules(workdir: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "near.json"
    argv = ["--around", str(workdir / "reference.csv"), "-n", "2", "--radius", "0.2", "-o", str(output)]
    code, err = run_in_process(
        "sample", [*argv, "--model", str(workdir / "ckpt"), "--max-length", "12"], capsys
    )
    assert code == 0, err
    payload = json.loads(output.read_text())
    assert set(payload["summary"]) == {"molecules", "validity", "uniqueness"}
    assert len(payload["molecules"]) == 2 * len(SMILES)
    assert [m["seed"] for m in payload["molecules"][:2]] == [SMILES[0]] * 2


def test_reconstruct_keeps_every_row(workdir: Path, console) -> None:
    result = console["reconstruct"]
    assert result.returncode == 0, result.stderr
    assert "exact_match" in result.stderr and "invalid_inputs 2" in result.stderr
    table = pd.read_csv(workdir / "recon.csv")
    assert table["row"].tolist() == list(range(6))
    assert table["input"].tolist() == [*SMILES[:4], INVALID, TOO_LONG]
    assert table["invalid_reason"][:4].isna().all()
    assert "unclosed ring" in table["invalid_reason"][4] and "tokens" in table["invalid_reason"][5]
    assert table["smiles"][4:].isna().all()


def test_optimize_writes_ranked_molecules(workdir: Path, console) -> None:
    result = console["optimize"]
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(workdir / "opt.csv")
    assert set(table["row"]) == set(range(6))
    valid_rows = table[table["invalid_reason"].isna()]
    assert (valid_rows.groupby("row").size() <= 2).all()
    found = valid_rows.dropna(subset=["smiles"])
    assert (found["improvement"] == found["score"] - found["seed_score"]).all()
    assert table[table["row"] == 4]["invalid_reason"].str.contains("unclosed ring").all()


def test_broken_checkpoint_through_the_console_script(console) -> None:
    assert_one_line_error(console["broken"], 2, "broken", "model.safetensors is missing")


def test_missing_file_and_column_in_process(workdir: Path, capsys) -> None:
    """Exit codes of the entry point the console script runs, in this process (a subprocess each
    would be slow)."""
    model = ["--model", str(workdir / "ckpt")]
    for name in ("reconstruct", "optimize"):
        code, err = run_in_process(name, [str(workdir / "nope.csv"), "-o", "out.csv", *model], capsys)
        assert code == 2 and "nope.csv" in err and len(err.strip().splitlines()) == 1
        argv = [str(workdir / "molecules.csv"), "--smiles-col", "smi", "-o", "out.csv", *model]
        code, err = run_in_process(name, argv, capsys)
        assert code == 2 and "'smi'" in err and len(err.strip().splitlines()) == 1
    code, err = run_in_process(
        "sample", ["--around", str(workdir / "nope.csv"), "-o", "out.csv", *model], capsys
    )
    assert code == 2 and "nope.csv" in err


def run_in_process(name: str, argv: list[str], capsys) -> tuple[int, str]:
    code = main([name.replace("_", "-"), *argv])
    return code, capsys.readouterr().err


def test_broken_checkpoints_name_the_bad_file(workdir: Path, tmp_path: Path, capsys) -> None:
    source = workdir / "ckpt"
    cases = [
        ("config.json is missing", lambda p: (p / "config.json").unlink()),
        ("config.json is not valid JSON", lambda p: (p / "config.json").write_text("{")),
        ("tokenizer.json is missing", lambda p: (p / "tokenizer.json").unlink()),
        (
            "model.safetensors is corrupt or truncated",
            lambda p: (p / "model.safetensors").write_bytes(
                (source / "model.safetensors").read_bytes()[:4000]
            ),
        ),
    ]
    for index, (expected, damage) in enumerate(cases):
        folder = tmp_path / f"case{index}"
        shutil.copytree(source, folder)
        damage(folder)
        argv = [str(workdir / "molecules.csv"), "-o", str(tmp_path / "o.csv"), "--model", str(folder)]
        code, err = run_in_process("reconstruct", argv, capsys)
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err


def test_usage_errors_in_process(workdir: Path, tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "o.txt")
    code, err = run_in_process("sample", ["-n", "2", "-o", out, "--model", str(workdir / "ckpt")], capsys)
    assert code == 2 and ".csv or .json" in err
    code, err = run_in_process(
        "sample", ["-n", "2", "-o", str(tmp_path / "o.csv"), "--around", str(workdir / "molecules.csv"),
                   "--smiles-col", "SMILES", "--model", str(workdir / "ckpt")], capsys,
    )  # fmt: skip
    assert code == 2 and "--around" in err and INVALID in err
    code, err = run_in_process(
        "optimize", [str(workdir / "molecules.csv"), "-o", str(tmp_path / "o.csv"), "--score", "nope"], capsys
    )
    assert code == 2 and "unknown RDKit descriptor" in err


def test_score_from_a_python_file(workdir: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "my_score.py").write_text("def length(smiles):\n    return float(len(smiles))\n")
    assert resolve_score(f"{tmp_path / 'my_score.py'}:length")("CCO") == 3.0
    assert resolve_score("math:sqrt") is __import__("math").sqrt
    for spec, message in ((f"{tmp_path / 'nope.py'}:f", "not found"), ("math:nope", "no function")):
        with pytest.raises(UsageError, match=message):
            resolve_score(spec)


def test_a_broken_score_file_is_one_line_naming_the_file_and_line(
    workdir: Path, tmp_path: Path, capsys
) -> None:
    """Issue 23, defect 6: a `--score file.py:f` with a syntax error gave a traceback."""
    broken = tmp_path / "broken.py"
    broken.write_text("def f(smiles):\n    return len(smiles\n")
    failing = tmp_path / "failing.py"
    failing.write_text("import math\n\nraise RuntimeError('no licence for the scorer')\n")
    cases = {broken: f"--score {broken}: syntax error at line 2", failing: "importing it failed at line 3"}
    for path, message in cases.items():
        argv = [str(workdir / "molecules.csv"), "-o", str(tmp_path / "o.csv"), "--score", f"{path}:f",
                "--model", str(workdir / "ckpt")]  # fmt: skip
        code, err = run_in_process("optimize", argv, capsys)
        assert code == 2 and "Traceback" not in err and message in err, err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_records_written_batch_by_batch_are_the_one_write_file(tmp_path: Path, suffix: str) -> None:
    """The streaming writer of sample/interpolate/optimize writes byte for byte what the one-call
    writer wrote (quoting, empty cells for None and NaN, the JSON layout), with and without rows."""
    records = [
        {"seed_index": 0, "smiles": "CCO", "valid": True, "similarity": 0.5},
        {"seed_index": 1, "smiles": "", "valid": False, "similarity": float("nan")},
        {"seed_index": None, "smiles": 'C,C"x', "valid": True, "similarity": 1.0},
    ]
    summary = {"molecules": 3, "validity": 2 / 3}
    columns = ["seed_index", "smiles", "valid", "similarity"]
    for rows in (records, []):
        once = tmp_path / f"once{suffix}"  # the one-call writer this streaming one replaced
        if suffix == ".csv":
            pd.DataFrame.from_records(rows, columns=columns).convert_dtypes().to_csv(once, index=False)
        else:
            payload = generate.jsonable({"summary": summary, "molecules": rows})
            once.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        with generate.record_output(tmp_path / f"streamed{suffix}", columns) as out:
            out.write(rows[:1])
            out.write(rows[1:])
            out.summary = summary
        assert (tmp_path / f"streamed{suffix}").read_bytes() == (tmp_path / f"once{suffix}").read_bytes()


def test_constrained_sampling_through_the_console_script(workdir: Path, console) -> None:
    """The console run of `cmim sample --constrained` decodes what the API does with grammar_constrained."""
    assert console["sample"].returncode == 0, console["sample"].stderr
    table = pd.read_csv(workdir / "prior.csv", keep_default_na=False)
    model, tokenizer = generation.load_model_for_generation(workdir / "ckpt", device="cpu")
    expected = generation.sample_prior(
        model, tokenizer, 6, seed=1, max_new_tokens=12, grammar_constrained=True
    )
    assert table["smiles"].tolist() == expected.smiles
    unconstrained = generation.sample_prior(model, tokenizer, 6, seed=1, max_new_tokens=12)
    assert expected.smiles != unconstrained.smiles, "the random model breaks the grammar somewhere"


def test_constrained_flag_reaches_every_decode(workdir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """--constrained (declared once, with the other decoding options) turns on grammar-constrained
    decoding in every command that decodes; it is off without the flag."""
    seen = []
    decode = generation.decode_latents

    def spy(*args, **kwargs):
        seen.append(kwargs.get("grammar_constrained", args[6] if len(args) > 6 else False))
        return decode(*args, **kwargs)

    monkeypatch.setattr(generation.sampling, "decode_latents", spy)
    molecules, model = str(workdir / "molecules.csv"), ["--model", str(workdir / "ckpt"), "--max-length", "8"]
    commands = {
        "sample": ["-n", "2", *model],
        "reconstruct": [molecules, "--smiles-col", "SMILES", *model],
        "optimize": [
            molecules,
            "--smiles-col",
            "SMILES",
            "--iterations",
            "1",
            "--population-size",
            "2",
            *model,
        ],
        "interpolate": ["CCO", "CCN", "--steps", "2", *model],
    }
    for name, argv in commands.items():
        for flag in ([], ["--constrained"]):
            seen.clear()
            output = ["-o", str(tmp_path / f"{name}.csv"), "--overwrite"]
            code, err = run_in_process(name, [*argv, *output, *flag], capsys)
            assert code == 0, err
            assert seen and set(seen) == {bool(flag)}, name
