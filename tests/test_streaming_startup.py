"""The start-up benchmark of streamed vs in-memory pre-training runs end to end (on a tiny corpus)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # as the scripts run
from common import MOSES_SAMPLE as MOSES  # noqa: E402
from streaming_startup import main  # noqa: E402


def test_one_record_per_size_and_mode(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.csv"
    pd.read_csv(MOSES, nrows=120).to_csv(corpus, index=False)
    out = tmp_path / "bench"
    assert main(["--corpus", str(corpus), "--rows", "60", "0", "--batch-size", "16", "--out", str(out)]) == 0

    runs = json.loads((out / "streaming_startup.json").read_text())["runs"]
    assert [(r["corpus_rows"], r["mode"]) for r in runs] == [
        (60, "in-memory"), (60, "streaming"), (120, "in-memory"), (120, "streaming")
    ]  # fmt: skip
    for run in runs:
        assert 0 < run["time_to_first_step_s"] < run["process_wall_s"]
        assert run["peak_rss_mib"] > 100  # torch alone takes more
    table = (out / "streaming_startup.md").read_text()
    assert table.count("\n") == 2 + len(runs) and "| 120 | streaming |" in table
