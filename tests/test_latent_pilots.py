"""benchmarks/latent_pilots.py end to end on a tiny budget: runs, resumes and tabulates pilots."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # as the scripts run
import latent_pilots  # noqa: E402
from common import MOSES_SAMPLE as MOSES  # noqa: E402


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
    assert latent_pilots.main(argv) == 0
    table = json.loads((out / "pilots.json").read_text())
    assert [row["pilot"] for row in table["pilots"]] == ["floor", "grouped"]
    for row in table["pilots"]:
        assert 0.0 <= row["token accuracy"] <= 1.0 and 0 <= row["active directions"] <= 128
        assert row["active units"] >= 0 and row["participation ratio"] >= 0.0
    assert "| floor | log-variance bias at the floor (baseline) |" in (out / "pilots.md").read_text()
    stamp = (out / "floor" / "final" / "model.safetensors").stat().st_mtime_ns
    assert latent_pilots.main(argv) == 0  # finished pilots are reused, not retrained
    assert (out / "floor" / "final" / "model.safetensors").stat().st_mtime_ns == stamp
