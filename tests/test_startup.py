"""Start-up cost and lazy registration (issue 15, item 5).

``import cmim_hf`` imports neither torch nor transformers; cMIM is registered with the Auto classes
and the pipeline registry whichever transformers or cmim_hf module the program imports first.
Each case runs in a fresh interpreter, because the point is what an import does to ``sys.modules``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_python(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )


def test_import_loads_neither_torch_nor_transformers(tmp_path: Path) -> None:
    result = run_python(
        "import sys, cmim_hf\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'rdkit', 'sklearn') if m in sys.modules)\n"
        "print('heavy:', heavy, 'version:', cmim_hf.__version__)\n",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "heavy: [] version:" in result.stdout


def test_cmim_help_is_fast(tmp_path: Path) -> None:
    """The target is under 1.5 s; a start-up that imports torch takes longer than that alone."""
    command = [sys.executable, "-c", "import sys; from cmim_hf.cli import main; sys.exit(main(['--help']))"]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert "pretrain" in result.stdout and "interpolate" in result.stdout
    assert elapsed < 1.5, f"cmim --help took {elapsed:.2f} s"


@pytest.mark.parametrize(
    "first_import",
    [
        "from transformers import AutoModel",
        "from transformers.modeling_layers import GradientCheckpointingLayer",
        "import transformers.trainer",
        "from cmim_hf import CMIMModel",
        "from cmim_hf.models.cmim.pipelines import InformativeFeatureExtractionPipeline",
        "from cmim_hf.training.trainer import CMIMTrainer",
    ],
)
def test_auto_classes_and_pipeline_know_cmim_whatever_is_imported_first(
    first_import: str, tmp_path: Path
) -> None:
    """No half-initialised-module error, and the Auto classes load the shipped checkpoint without
    trust_remote_code; the pipeline task is known by its literal name."""
    result = run_python(
        "import cmim_hf\n"
        f"{first_import}\n"
        "from transformers import AutoConfig, AutoModel, AutoTokenizer, pipeline\n"
        "model = AutoModel.from_pretrained(cmim_hf.DEFAULT_CHECKPOINT)\n"
        "tokenizer = AutoTokenizer.from_pretrained(cmim_hf.DEFAULT_CHECKPOINT)\n"
        "extractor = pipeline('informative-feature-extraction', model=model, tokenizer=tokenizer)\n"
        "vector = extractor('CCO')\n"
        "print(type(model).__name__, type(tokenizer).__name__, type(extractor).__name__, len(vector))\n",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    names = result.stdout.split()
    assert names[:3] == ["CMIMModel", "CMIMTokenizer", "InformativeFeatureExtractionPipeline"]
    assert int(names[3]) > 0


def test_transformers_loaded_before_cmim_hf_registers_at_import(tmp_path: Path) -> None:
    result = run_python(
        "from transformers import AutoConfig\n"
        "import cmim_hf\n"
        "config = AutoConfig.for_model('cmim', hidden_size=32)\n"
        "print(type(config).__name__, config.hidden_size)\n",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["CMIMConfig", "32"]
