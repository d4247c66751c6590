"""The model card's "use without cmim_hf" snippets run exactly as written, in a fresh venv that holds
only what the card's own install line names (slow: it installs torch and transformers)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import cmim_hf
from cmim_hf.model_card import render_model_card

pytestmark = pytest.mark.slow

TORCH_CPU = "torch==2.13.0"  # the card says `torch`; on these machines a bare torch is the CUDA build


def card_install_line(card: str) -> list[str]:
    """The packages of the card's ``pip install ...`` line, as pip arguments."""
    match = re.search(r"`pip install ([^`]+)`", card)
    assert match, "the card names no install line"
    return [arg.strip('"') for arg in match.group(1).split()]


def snippets_without_cmim_hf(card: str) -> list[str]:
    """The card's Python blocks that do not use cmim_hf."""
    blocks = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    return [block for block in blocks if "cmim_hf" not in block]


def test_card_snippets_run_in_a_venv_with_only_the_install_line(tmp_path) -> None:
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(cmim_hf.DEFAULT_CHECKPOINT, checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    card = str(render_model_card(repo_id=str(checkpoint), config=config))
    packages = [TORCH_CPU if name == "torch" else name for name in card_install_line(card)]
    snippets = snippets_without_cmim_hf(card)
    assert len(snippets) >= 3  # embeddings, generation, the model itself

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True, timeout=1200)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    for index, snippet in enumerate(snippets):
        script = tmp_path / f"snippet_{index}.py"
        script.write_text(snippet)
        run = subprocess.run(
            [str(python), str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert run.returncode == 0, f"snippet {index} failed:\n{snippet}\n{run.stderr[-3000:]}"
        assert "cmim_hf" not in run.stderr
    installed = subprocess.run([str(python), "-m", "pip", "list"], capture_output=True, text=True).stdout
    assert "cmim" not in installed.lower()
