"""Tests of cmim_hf.chem: parsing, typed errors, scaffolds, ECFP4, descriptors, bulk validation."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator

from cmim_hf.chem import (
    InvalidSmilesError,
    canonicalize,
    descriptor_names,
    ecfp4,
    is_valid_smiles,
    murcko_scaffold,
    parse_smiles,
    rdkit_descriptor,
    rdkit_descriptors,
    validate_smiles,
)

VALENCE_ERROR = "O=N([O-])C1=CC=C1"  # a BBBP-style 5-valent nitrogen


def test_parse_smiles_returns_molecule() -> None:
    mol = parse_smiles("c1ccccc1O")
    assert mol.GetNumAtoms() == 7


@pytest.mark.parametrize(
    ("smiles", "reason_part"),
    [
        ("C1CC", "unclosed ring"),
        ("C((", "syntax error"),
        (VALENCE_ERROR, "valence"),
        ("", "empty"),
        ("   ", "empty"),
    ],
)
def test_parse_smiles_raises_typed_error_naming_input(smiles: str, reason_part: str) -> None:
    with pytest.raises(InvalidSmilesError) as info:
        parse_smiles(smiles, index=7)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.smiles == smiles and err.index == 7
    assert reason_part in err.reason.lower()
    assert repr(smiles) in str(err) and "row 7" in str(err)


def test_parse_smiles_rejects_non_strings_missing_values_and_inner_whitespace() -> None:
    with pytest.raises(InvalidSmilesError, match="expected a string"):
        parse_smiles(12)  # type: ignore[arg-type]
    for missing in (float("nan"), None):
        with pytest.raises(InvalidSmilesError, match=r"empty SMILES \(missing value\)"):
            parse_smiles(missing)  # type: ignore[arg-type]
    for spaced in ("CC O", "CC\tO", "CC\nO"):  # RDKit alone would accept them, reading "O" as a name
        with pytest.raises(InvalidSmilesError, match="whitespace inside"):
            parse_smiles(spaced)
    assert parse_smiles("  CCO \n").GetNumAtoms() == 3  # surrounding whitespace is fine


def test_errors_do_not_print_rdkit_messages(capfd: pytest.CaptureFixture[str]) -> None:
    assert not is_valid_smiles("C1CC")
    validate_smiles(["C1CC", VALENCE_ERROR, "CCO"])
    assert capfd.readouterr().err == ""


def test_is_valid_smiles() -> None:
    assert is_valid_smiles("CCO")
    assert not is_valid_smiles("C1CC")
    assert not is_valid_smiles(None)  # type: ignore[arg-type]


def test_canonicalize() -> None:
    assert canonicalize("OCC") == canonicalize("C(O)C") == "CCO"
    assert canonicalize("C[C@H](N)O") != canonicalize("C[C@H](N)O", isomeric=False)
    assert "@" not in canonicalize("C[C@H](N)O", isomeric=False)
    with pytest.raises(InvalidSmilesError):
        canonicalize("C1CC")


def test_murcko_scaffold() -> None:
    assert murcko_scaffold("OCCc1ccccc1") == "c1ccccc1"
    assert murcko_scaffold("CCCCO") == ""
    assert "@" not in murcko_scaffold("C[C@H]1CC[C@@H](C)C1c1ccccc1")
    with pytest.raises(InvalidSmilesError):
        murcko_scaffold("C1CC")


def test_ecfp4_matches_rdkit_morgan_radius_2() -> None:
    smiles = ["CCO", "c1ccccc1O", "CCO"]
    fps = ecfp4(smiles)
    assert fps.shape == (3, 2048) and fps.dtype == np.uint8
    assert set(np.unique(fps)) <= {0, 1}
    np.testing.assert_array_equal(fps[0], fps[2])
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    expected = generator.GetFingerprintAsNumPy(Chem.MolFromSmiles("c1ccccc1O"))
    np.testing.assert_array_equal(fps[1], expected)
    assert ecfp4(["CCO"], n_bits=512).shape == (1, 512)


def test_ecfp4_raises_with_row_index() -> None:
    with pytest.raises(InvalidSmilesError) as info:
        ecfp4(["CCO", "C1CC"])
    assert info.value.index == 1


def test_rdkit_descriptors() -> None:
    names = descriptor_names()
    values = rdkit_descriptors(["CCO", "c1ccccc1"])
    assert values.shape == (2, len(names)) and values.dtype == np.float64
    assert "log1p_Ipc" in names and "Ipc" not in names
    assert values[0, names.index("MolWt")] == pytest.approx(46.069, abs=1e-2)
    assert np.isfinite(values).all()
    with pytest.raises(InvalidSmilesError):
        rdkit_descriptors(["C1CC"])


def test_one_descriptor_is_its_column_of_all_descriptors() -> None:
    molecules = ["CC(=O)Oc1ccccc1C(=O)O", "C" * 60 + "O"]  # a long chain: Ipc needs its log1p
    every = rdkit_descriptors(molecules)
    for row, smiles in enumerate(molecules):
        one = [rdkit_descriptor(smiles, name) for name in descriptor_names()]
        np.testing.assert_array_equal(one, every[row])
    with pytest.raises(InvalidSmilesError):
        rdkit_descriptor("C1CC", "qed")


def test_validate_smiles_reports_each_invalid_row() -> None:
    smiles = ["CCO", "C1CC", "c1ccccc1", VALENCE_ERROR, ""]
    report = validate_smiles(smiles)
    assert report.n_total == 5
    assert report.valid_indices == [0, 2]
    assert [row.index for row in report.invalid] == [1, 3, 4]
    assert report.n_invalid == 3
    assert "unclosed ring" in report.invalid[0].reason
    assert "valence" in report.invalid[1].reason.lower()
    assert report.to_records()[0] == {"index": 1, "smiles": "C1CC", "reason": report.invalid[0].reason}
