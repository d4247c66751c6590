"""Release metadata and the wheel's contents (issue 16): license, version, no GPL-sourced file."""

from __future__ import annotations

import email
import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import cmim_hf
from cmim_hf.model_card import PROJECT_LICENSE, render_model_card

REPO_ROOT = Path(__file__).resolve().parents[1]
# sha256 of the CC0 copies (OpenDrugAI/AttentiveFP@dda67083 data/), and of the GPL-3.0-sourced copies
# they replaced, which must never ship again
CC0_SHA256 = {
    "BBBP.csv": "34c10e0f0b15dbc178c3ce4ad9774decc6a202776a31763f5a899309c97497ee",
    "HIV.csv": "9ffa7fe57dc86c342627ee1d5255e937e2ab812393c73c4d16c697022f6e1d22",
}
GPL_SOURCED_SHA256 = {
    "d07a38487aeac5cee5508413e468043ef3097451d2a112701c2d60be9ec6b662",  # DentonJC BBBP.csv
    "b72f0cf00cd1f45ae5c415f21aef10e69187e30dd24029ddb345fbca35b0d798",  # DentonJC HIV.csv
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the source tree (nothing is written into the repository)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "cmim_hf", source / "cmim_hf", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation"]
    subprocess.run([*command, "-w", str(dist), "-q"], check=True, capture_output=True, timeout=300)
    (built,) = dist.glob("cmim_hf-*.whl")
    return built


def test_wheel_carries_the_license_and_release_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = email.message_from_string(
            archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        )
        (license_file,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert archive.read(license_file) == (REPO_ROOT / "LICENSE").read_bytes()
    assert (REPO_ROOT / "LICENSE").read_text().lstrip().startswith("Apache License\n")
    assert metadata["Version"] == cmim_hf.__version__
    assert metadata["License"] == "Apache-2.0"
    assert "License :: OSI Approved :: Apache Software License" in metadata.get_all("Classifier")
    assert metadata["Requires-Python"] == ">=3.10"
    assert any(
        url.startswith("Paper (cMIM), https://arxiv.org/abs/2502.19642")
        for url in metadata.get_all("Project-URL")
    )
    assert "# cmim_hf" in metadata.get_payload()  # the long description is the README


def test_wheel_ships_no_gpl_sourced_file(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        contents = {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")}
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}
    assert not GPL_SOURCED_SHA256 & set(digests.values())
    for filename, digest in CC0_SHA256.items():
        assert digests[f"cmim_hf/package_data/moleculenet/{filename}"] == digest
    for name, data in contents.items():
        assert b"GNU GENERAL PUBLIC LICENSE" not in data, name
    assert "cmim_hf/pretrained/README.md" in contents and "cmim_hf/pretrained/model.safetensors" in contents


def test_version_is_written_once() -> None:
    """Only cmim_hf/version.py writes the version; setup.py reads it; the changelog starts at 0.1.0."""
    written = [
        path
        for path in [REPO_ROOT / "setup.py", *(REPO_ROOT / "cmim_hf").rglob("*.py")]
        if re.search(r"""(__version__|version)\s*=\s*["']\d""", path.read_text(encoding="utf-8"))
    ]
    assert written == [REPO_ROOT / "cmim_hf" / "version.py"]
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text()
    assert re.findall(r"^## (\S+)", changelog, re.M)[-1] == "0.1.0"


def test_cards_state_the_license() -> None:
    assert PROJECT_LICENSE == "apache-2.0"
    card = render_model_card(model_name="cmim-test")
    assert card.data.license == "apache-2.0"
    assert "## License" in str(card) and "Apache License 2.0" in str(card)
    shipped = (Path(cmim_hf.DEFAULT_CHECKPOINT) / "README.md").read_text()
    assert "\nlicense: apache-2.0\n" in shipped and "## License" in shipped
    assert "Apache License 2.0" in (REPO_ROOT / "README.md").read_text()


def test_wheel_carries_every_package_and_its_data(wheel: Path) -> None:
    """Every source module and package-data file of the tree is in the wheel (a subpackage without
    ``__init__.py`` would be left out by ``find_packages``)."""
    package = REPO_ROOT / "cmim_hf"
    wanted = {
        path.relative_to(REPO_ROOT).as_posix()
        for pattern in ("**/*.py", "models/cmim/vocab.json", "package_data/moses/*", "templates/*")
        for path in package.glob(pattern)
        if "__pycache__" not in path.parts
    }
    with zipfile.ZipFile(wheel) as archive:
        missing = wanted - set(archive.namelist())
    assert not missing, sorted(missing)
