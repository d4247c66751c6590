"""Run Python code in a subprocess where ``cmim_hf`` is NOT importable (as for a Hub user).

``python -S`` skips site-packages' .pth files (where the editable install of cmim_hf hooks its
import finder); site-packages is then added back as a plain directory, so transformers,
tokenizers and torch import but cmim_hf does not. The cwd is a temporary directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

PRELUDE = """
import importlib.util, json, sys
sys.path.extend(json.loads(sys.argv[1]))
assert importlib.util.find_spec("cmim_hf") is None, "cmim_hf must not be importable here"
"""


def run_without_cmim_hf(code: str, args: list[str], workdir: Path, timeout: float = 180) -> str:
    """Run ``code`` (sys.argv[2:] = args) without cmim_hf importable; return its stdout, or fail."""
    site_packages = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(workdir / "hf_home"), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    result = subprocess.run(
        [sys.executable, "-S", "-c", PRELUDE + code, json.dumps(site_packages), *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


# Loads a Hub-ready folder (argv[2]) as a user without cmim_hf would; prints model class and vectors.
HUB_USER_CHECK = """
import torch
from transformers import AutoModel, pipeline
folder = sys.argv[2]
model = AutoModel.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32).eval()
assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
extractor = pipeline("feature-extraction", model=folder, trust_remote_code=True, dtype=torch.float32)
vectors = extractor(json.loads(sys.argv[3]))
print(json.dumps({"model": type(model).__name__, "vectors": [list(map(float, v)) for v in vectors]}))
"""
