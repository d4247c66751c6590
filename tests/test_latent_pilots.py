"""benchmarks/latent_pilots.py end to end on a tiny budget: runs, resumes and tabulates pilots."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "latent_pilots.py"
MOSES = (
    Path(__file__).resolve().parents[1] / "cmim_hf" / "package_data" / "moses" / "moses_test_first5000.csv"
)


def load_script():
    spec = importlib.util.spec_from_file_location("latent_pilots", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pilots_run_and_tabulate(tmp_path: Path) -> None:
    out = tmp_path / "pilots"
    argv = [
        "--train-file",
        str(MOSES),
        "--eval-file",
        str(MOSES),
        "--out",
        str(out),
        "--only",
        "floor,grouped",
    ]
    argv += ["--max-steps", "2", "--save-steps", "1", "--eval-molecules", "40", "--jobs", "2"]
    argv += ["--", "--hidden-size", "16", "--encoder-layers", "1", "--decoder-layers", "1", "--ffn-dim", "32"]
    assert load_script().main(argv) == 0
    table = json.loads((out / "pilots.json").read_text())
    assert [row["pilot"] for row in table["pilots"]] == ["floor", "grouped"]
    for row in table["pilots"]:
        assert 0.0 <= row["token accuracy"] <= 1.0 and 0 <= row["active directions"] <= 128
        assert row["active units"] >= 0 and row["participation ratio"] >= 0.0
    assert "| floor | log-variance bias at the floor (baseline) |" in (out / "pilots.md").read_text()
    stamp = (out / "floor" / "final" / "model.safetensors").stat().st_mtime_ns
    assert load_script().main(argv) == 0  # finished pilots are reused, not retrained
    assert (out / "floor" / "final" / "model.safetensors").stat().st_mtime_ns == stamp
