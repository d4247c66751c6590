"""The MOSES metrics (cmim_hf.evaluation.moses_metrics) against hand computations on tiny inputs, the
shipped MOSES reference data, and `cmim evaluate-samples` end to end."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import signal
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from cmim_hf.cli import main
from cmim_hf.errors import InputError, raise_interrupted
from cmim_hf.evaluation import moses_metrics as mm

MOSES_KEYS = [
    "Valid",
    "Unique@1k",
    "Unique@10k",
    "FCD/Test",
    "FCD/TestSF",
    "SNN/Test",
    "SNN/TestSF",
    "Frag/Test",
    "Frag/TestSF",
    "Scaf/Test",
    "Scaf/TestSF",
    "IntDiv",
    "IntDiv2",
    "Filters",
    "Novelty",
]
REFERENCE = ["CCOC(=O)c1ccccc1", "CC(=O)Nc1ccccc1", "c1ccc(CC2CCCCC2)cc1", "Cc1ccc2[nH]ccc2c1", "OCCN1CCOCC1"]
GENERATED = ["CCOC(=O)c1ccccc1", "OC(C)=O", "c1ccccc1CC1CCCCC1", "not a smiles", "CCN", "CCN"]


def _fingerprints(smiles: list[str]) -> np.ndarray:
    return mm.morgan_fingerprints([Chem.MolFromSmiles(s) for s in smiles])


def _tanimoto(a: str, b: str) -> float:
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    fa, fb = (generator.GetFingerprint(Chem.MolFromSmiles(s)) for s in (a, b))
    return DataStructs.TanimotoSimilarity(fa, fb)


# --- Valid, Unique, Novelty ---------------------------------------------------------------------


def test_valid_counts_empty_strings_non_strings_and_rejected_smiles_as_invalid() -> None:
    assert mm.fraction_valid(["CCO", "", "C1CC", None, "c1ccccc1", "c1cccc1"]) == 2 / 6
    with pytest.raises(InputError, match="no SMILES"):
        mm.fraction_valid([])


def test_valid_canonical_smiles_keeps_order_and_duplicates() -> None:
    assert mm.valid_canonical_smiles(["OCC", "bad", "C(C)O", "c1ccccc1"]) == ["CCO", "CCO", "c1ccccc1"]


def test_unique_at_k_uses_the_first_k_and_warns_when_fewer() -> None:
    canonical = ["CCO", "CCO", "CCN", "CCC"]
    assert mm.fraction_unique(canonical) == 3 / 4
    assert mm.fraction_unique(canonical, k=2) == 1 / 2
    with pytest.warns(UserWarning, match="unique@10"):
        assert mm.fraction_unique(canonical, k=10) == 3 / 4
    assert math.isnan(mm.fraction_unique([]))


def test_novelty_counts_distinct_molecules_not_in_train() -> None:
    assert mm.novelty(["CCO", "CCN", "CCN", "CCC"], frozenset({"CCO", "CO"})) == 2 / 3
    assert math.isnan(mm.novelty([], frozenset()))


# --- SNN and IntDiv -----------------------------------------------------------------------------


@pytest.fixture(params=[(1024, 1024), (2, 3)], ids=["one-block", "many-blocks"])
def blocks(request, monkeypatch) -> None:
    """Run the pairwise metrics with the default blocks and with tiny ones (block edges)."""
    monkeypatch.setattr(mm, "_ROW_BLOCK", request.param[0])
    monkeypatch.setattr(mm, "_COLUMN_BLOCK", request.param[1])


def test_snn_is_the_mean_nearest_tanimoto_to_the_reference(blocks) -> None:
    generated = ["CCOC(=O)c1ccccc1", "CCN", "c1ccccc1CC1CCCCC1", "CCN"]
    expected = np.mean([max(_tanimoto(g, r) for r in REFERENCE) for g in generated])
    snn = mm.nearest_neighbour_similarity(_fingerprints(generated), _fingerprints(REFERENCE))
    assert snn == pytest.approx(expected, abs=1e-6)
    assert math.isnan(mm.nearest_neighbour_similarity(_fingerprints([]), _fingerprints(REFERENCE)))


def test_two_empty_fingerprints_are_identical_as_in_moses(blocks) -> None:
    rows = np.array([[0, 0, 0, 0], [1, 1, 0, 0]], dtype=np.uint8)
    columns = np.array([[1, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=np.uint8)
    # row 0 (empty): 0, 0, 1 -> 1; row 1: 1/2, 2/3, 0 -> 2/3
    assert mm.nearest_neighbour_similarity(rows, columns) == pytest.approx((1 + 2 / 3) / 2)


def test_internal_diversity_of_two_molecules_includes_the_self_pairs(blocks) -> None:
    """MOSES averages over all |A|^2 pairs, self-pairs included: for two molecules with Tanimoto t,
    IntDiv = 1 - (1 + t) / 2 and IntDiv2 = 1 - sqrt((1 + t^2) / 2)."""
    pair = ["CCOC(=O)c1ccccc1", "CCOC(=O)c1ccccc1C"]
    t = _tanimoto(*pair)
    assert 0 < t < 1
    fingerprints = _fingerprints(pair)
    assert mm.internal_diversity(fingerprints) == pytest.approx(1 - (1 + t) / 2, abs=1e-6)
    assert mm.internal_diversity(fingerprints, p=2) == pytest.approx(1 - math.sqrt((1 + t * t) / 2), abs=1e-6)
    assert mm.internal_diversity(_fingerprints(["CCO"])) == pytest.approx(0.0)


def test_internal_diversity_matches_rdkit_on_a_set(blocks) -> None:
    similarities = np.array([[_tanimoto(a, b) for b in REFERENCE] for a in REFERENCE])
    fingerprints = _fingerprints(REFERENCE)
    assert mm.internal_diversity(fingerprints) == pytest.approx(1 - similarities.mean(), abs=1e-6)
    expected_2 = 1 - np.sqrt((similarities**2).mean(1)).mean()
    assert mm.internal_diversity(fingerprints, p=2) == pytest.approx(expected_2, abs=1e-6)


# --- Frag and Scaf ------------------------------------------------------------------------------


def test_cosine_similarity_of_count_vectors() -> None:
    # (1, 2, 0) . (0, 2, 1) / (sqrt(5) sqrt(5)) = 4 / 5
    assert mm.cosine_similarity(Counter(a=1, b=2), Counter(b=2, c=1)) == pytest.approx(0.8)
    assert mm.cosine_similarity(Counter(a=3), Counter(a=1)) == pytest.approx(1.0)
    assert math.isnan(mm.cosine_similarity(Counter(), Counter(a=1)))


def test_brics_fragments_and_scaffolds_of_known_molecules() -> None:
    assert sorted(mm.fragments(mm.get_mol("CC(=O)Nc1ccccc1"))) == ["[1*]C(C)=O", "[16*]c1ccccc1", "[5*]N[5*]"]
    assert mm.scaffold(mm.get_mol("c1ccccc1CC1CCCCC1")) == "c1ccc(CC2CCCCC2)cc1"
    assert mm.scaffold(mm.get_mol("Cc1ccccc1")) is None  # one ring: MOSES counts scaffolds of >= 2 rings
    assert mm.scaffold(mm.get_mol("CCO")) is None


def test_frag_and_scaf_in_moses_metrics_are_the_cosines_of_the_hand_counts(tiny_references) -> None:
    test, test_scaffolds, train = tiny_references
    metrics = mm.moses_metrics(
        GENERATED, test=test, test_scaffolds=test_scaffolds, train=train, unique_at=(3,)
    )
    generated_mols = [mm.get_mol(s) for s in GENERATED if mm.get_mol(s) is not None]
    reference_mols = [mm.get_mol(s) for s in test]
    frag = mm.cosine_similarity(
        Counter(f for m in reference_mols for f in mm.fragments(m)),
        Counter(f for m in generated_mols for f in mm.fragments(m)),
    )
    scaf = mm.cosine_similarity(
        Counter(mm.scaffold(m) for m in reference_mols if mm.scaffold(m)),
        Counter(mm.scaffold(m) for m in generated_mols if mm.scaffold(m)),
    )
    assert metrics["Frag/Test"] == pytest.approx(frag)
    assert metrics["Scaf/Test"] == pytest.approx(scaf)


# --- Filters ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "smiles, passes",
    [
        ("CC(=O)Nc1ccc(O)cc1", True),
        ("Cc1ccc2[nH]ccc2c1", True),
        ("S=C1SC(=Cc2ccccc2)C(=O)N1", False),  # PAINS ene_rhod_A (5-benzylidene rhodanine)
        ("Oc1ccccc1N=Nc1ccccc1", False),  # MCF (azo) and PAINS
        ("C=CC#N", False),  # MCF1, Michael acceptor
        ("C1CCCCCCC1", False),  # an 8-membered ring
        ("CI", False),  # iodine is not an allowed atom
        ("C[N+](C)(C)C", False),  # a charge
    ],
)
def test_filters_on_known_hits_and_clean_molecules(smiles: str, passes: bool) -> None:
    assert mm.passes_filters(mm.get_mol(smiles)) is passes


def test_the_pattern_fingerprint_screen_never_changes_a_filter_match() -> None:
    molecules = ["S=C1SC(=Cc2ccccc2)C(=O)N1", "Oc1ccccc1N=Nc1ccccc1", "C=CC#N", "O=C(C=Cc1ccccc1)c1ccccc1"]
    molecules += pd.read_csv(mm.MOSES_DATA / "moses_test_first5000.csv")["SMILES"].tolist()[:20]
    for smiles in molecules:
        with_hydrogens = Chem.AddHs(mm.get_mol(smiles))
        bits = Chem.PatternFingerprint(with_hydrogens)
        for pattern, screen in mm._filters():
            if with_hydrogens.HasSubstructMatch(pattern):
                assert DataStructs.AllProbeBitsMatch(screen, bits), (smiles, Chem.MolToSmarts(pattern))


def test_all_shipped_filter_smarts_parse() -> None:
    assert len(mm._filters()) == 22 + 480
    assert all(pattern is not None for pattern, _ in mm._filters())


# --- FCD ----------------------------------------------------------------------------------------


def test_chemnet_one_hot_follows_fcd_torch() -> None:
    index = {symbol: i for i, symbol in enumerate(mm.CHEMNET_VOCABULARY)}
    one_hot = mm._chemnet_one_hot("CCl") * len(mm.CHEMNET_VOCABULARY)
    assert one_hot.shape == (350, 35)
    assert [int(np.argmax(row)) for row in one_hot[:3]] == [index["C"], index["Cl"], index["."]]
    assert one_hot[3:].sum() == 0
    assert np.array_equal(mm._chemnet_one_hot("CC.O"), mm._chemnet_one_hot("CC"))  # ends at the first "."
    assert mm._chemnet_one_hot("[Li]C")[1].argmax() == index["X"]  # "Li" is unknown
    long = mm._chemnet_one_hot("C" * 400) * 35
    assert long.sum() == 350 and long[-1].argmax() == index["."]  # cut after 349 symbols


def test_fcd_is_zero_for_identical_sets_and_matches_the_fcd_package() -> None:
    import fcd

    first = mm.valid_canonical_smiles(REFERENCE + ["CCN", "CCCO", "c1ccncc1"])
    second = mm.valid_canonical_smiles(["CCOC(=O)c1ccccc1C", "CCCN", "OCC(=O)O", "c1ccsc1", "CC(C)NC"])
    first_statistics = mm.chemnet_statistics(first)
    assert mm.frechet_chemnet_distance(first_statistics, first_statistics) == pytest.approx(0, abs=1e-4)
    expected = fcd.get_fcd(first, second, device="cpu")
    got = mm.frechet_chemnet_distance(mm.chemnet_statistics(second), first_statistics)
    assert got == pytest.approx(expected, rel=1e-4)
    assert mm.chemnet_statistics(["CCO"]) is None
    assert math.isnan(mm.frechet_chemnet_distance(None, first_statistics))


# --- moses_metrics ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_references() -> tuple[mm.ReferenceStatistics, list[str], list[str]]:
    test = REFERENCE
    test_scaffolds = mm.reference_statistics(
        ["c1ccc2ccccc2c1", "CC1CCC(C)CC1", "OC1CCCCC1", "c1ccc(-c2ccccc2)cc1"]
    )
    return test, test_scaffolds, ["OCC(C)=O", "CCN", "CC(=O)O"]


def test_moses_metrics_keys_order_and_counts(tiny_references) -> None:
    test, test_scaffolds, train = tiny_references
    with pytest.warns(UserWarning, match="unique@1000"):
        metrics = mm.moses_metrics(GENERATED, test=test, test_scaffolds=test_scaffolds, train=train)
    assert list(metrics) == MOSES_KEYS
    assert metrics["Valid"] == 5 / 6
    assert metrics["Unique@1k"] == 4 / 5
    # distinct valid: the ester, acetic acid, the scaffold molecule, ethylamine; train holds acetic acid
    # and ethylamine
    assert metrics["Novelty"] == 2 / 4
    assert metrics["Filters"] == 1.0
    canonical = mm.valid_canonical_smiles(GENERATED)
    fingerprints = _fingerprints(canonical)
    assert metrics["SNN/Test"] == pytest.approx(
        mm.nearest_neighbour_similarity(fingerprints, _fingerprints(REFERENCE))
    )
    assert metrics["IntDiv"] == pytest.approx(mm.internal_diversity(fingerprints))
    assert metrics["Scaf/TestSF"] == 0.0  # no scaffold in common
    assert all(math.isfinite(value) for value in metrics.values())


def test_moses_metrics_in_two_processes_equal_one(tiny_references) -> None:
    test, test_scaffolds, train = tiny_references
    generated = GENERATED * 4 + REFERENCE
    one, two = (
        mm.moses_metrics(
            generated, test=test, test_scaffolds=test_scaffolds, train=train, unique_at=(), n_jobs=n
        )
        for n in (1, 2)
    )
    assert one == pytest.approx(two)


def test_moses_metrics_without_a_valid_molecule(tiny_references) -> None:
    test, test_scaffolds, train = tiny_references
    metrics = mm.moses_metrics(
        ["xyz", ""], test=test, test_scaffolds=test_scaffolds, train=train, unique_at=()
    )
    assert metrics["Valid"] == 0
    assert all(math.isnan(value) for name, value in metrics.items() if name != "Valid")


def test_moses_metrics_refuses_empty_input_and_invalid_references(tiny_references) -> None:
    test, test_scaffolds, train = tiny_references
    with pytest.raises(InputError, match="no SMILES"):
        mm.moses_metrics([], test=test, test_scaffolds=test_scaffolds, train=train)
    with pytest.raises(InputError, match="invalid reference SMILES 'C1CC'"):
        mm.moses_metrics(
            ["CCO"], test=["CCO", "C1CC"], test_scaffolds=test_scaffolds, train=train, unique_at=()
        )


# --- Shipped MOSES data and its cache -----------------------------------------------------------


SHIPPED_FOR_THE_METRICS = [
    "moses_test.csv.gz",
    "moses_test_scaffolds.csv.gz",
    "moses_train.csv.gz",
    "mcf.csv",
    "wehi_pains.csv",
    "moses_test_stats.npz",
    "moses_test_scaffolds_stats.npz",
]


def test_shipped_moses_files_match_sha256sums() -> None:
    sums = {}
    for line in (mm.MOSES_DATA.parent / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name.strip()] = digest
    for name in SHIPPED_FOR_THE_METRICS:
        assert hashlib.sha256((mm.MOSES_DATA / name).read_bytes()).hexdigest() == sums[f"moses/{name}"], name


@pytest.mark.parametrize("name, molecules", [("Test", 176074), ("TestSF", 176225)])
def test_shipped_statistics_describe_the_shipped_sets(name: str, molecules: int) -> None:
    smiles_file, statistics_file = mm.MOSES_REFERENCES[name]
    with np.load(mm.MOSES_DATA / statistics_file) as shipped:
        metadata = json.loads(shipped["metadata"].item())
        assert shipped["chemnet_mean"].shape == (512,)
        assert shipped["chemnet_covariance"].shape == (512, 512)
        assert len(shipped["fragment_smiles"]) == len(shipped["fragment_counts"]) > 10000
        assert len(shipped["scaffold_smiles"]) == len(shipped["scaffold_counts"]) > 10000
    assert metadata["source"] == smiles_file and metadata["molecules"] == molecules
    assert metadata["source_sha256"] == hashlib.sha256((mm.MOSES_DATA / smiles_file).read_bytes()).hexdigest()


@pytest.fixture
def tiny_moses(tmp_path: Path, monkeypatch) -> Path:
    """MOSES_DATA replaced by a folder of tiny Test / TestSF / train files and their statistics."""
    data = tmp_path / "moses"
    data.mkdir()
    for name, smiles in (("test", REFERENCE), ("test_scaffolds", REFERENCE[:3]), ("train", ["OCC", "CCN"])):
        with gzip.open(data / f"{name}.csv.gz", "wt") as file:
            file.write("SMILES\n" + "".join(f"{s}\n" for s in smiles))
    for filters in ("mcf.csv", "wehi_pains.csv"):
        (data / filters).write_bytes((mm.MOSES_DATA / filters).read_bytes())
    monkeypatch.setattr(mm, "MOSES_DATA", data)
    monkeypatch.setattr(mm, "MOSES_TRAIN", "train.csv.gz")
    references = {
        "Test": ("test.csv.gz", "test_stats.npz"),
        "TestSF": ("test_scaffolds.csv.gz", "tsf_stats.npz"),
    }
    monkeypatch.setattr(mm, "MOSES_REFERENCES", references)
    for smiles_file, statistics_file in references.values():
        smiles = mm.read_moses_smiles(data / smiles_file)
        mm.save_reference_statistics(
            mm.reference_statistics(smiles), data / statistics_file, data / smiles_file
        )
    return data


def test_moses_references_are_the_shipped_statistics_plus_cached_fingerprints(tiny_moses, tmp_path) -> None:
    cache = tmp_path / "cache"
    computed = mm.moses_reference_statistics("Test", cache_dir=cache)
    (cached_file,) = cache.rglob("*.npy")
    loaded = mm.moses_reference_statistics("Test", cache_dir=cache)
    expected = mm.reference_statistics(REFERENCE)
    for statistics in (computed, loaded):
        assert np.array_equal(statistics.fingerprints, expected.fingerprints)
        assert statistics.fragments == expected.fragments and statistics.scaffolds == expected.scaffolds
        assert np.allclose(statistics.chemnet.covariance, expected.chemnet.covariance)
    assert cached_file.parent.name.startswith("rdkit-")


def test_moses_train_set_adds_current_canonical_forms(tiny_moses, tmp_path) -> None:
    """The file's "OCC" is written "CCO" by current RDKit: both are in the set, so ethanol is not novel."""
    cache = tmp_path / "cache"
    assert mm.moses_train_set(cache) == frozenset({"OCC", "CCO", "CCN"})
    assert mm.moses_train_set(cache) == frozenset({"OCC", "CCO", "CCN"})  # from the cache
    metrics = mm.moses_metrics(["CCO", "CCCl"], cache_dir=cache, unique_at=())
    assert metrics["Novelty"] == 0.5
    assert list(metrics) == [key for key in MOSES_KEYS if not key.startswith("Unique")]


# --- cmim evaluate-samples ----------------------------------------------------------------------


@pytest.fixture
def sample_files(tmp_path: Path) -> dict[str, Path]:
    files = {name: tmp_path / f"{name}.csv" for name in ("samples", "test", "tsf", "train")}
    pd.DataFrame({"id": range(len(GENERATED)), "smiles": GENERATED}).to_csv(files["samples"], index=False)
    pd.DataFrame({"SMILES": REFERENCE}).to_csv(files["test"], index=False)
    pd.DataFrame({"SMILES": REFERENCE[2:]}).to_csv(files["tsf"], index=False)
    pd.DataFrame({"SMILES": ["CCN"]}).to_csv(files["train"], index=False)
    return files


def _evaluate(files: dict[str, Path], output: Path, *extra: str) -> int:
    references = [
        "--test",
        str(files["test"]),
        "--test-scaffolds",
        str(files["tsf"]),
        "--train",
        str(files["train"]),
    ]
    return main(["evaluate-samples", str(files["samples"]), "-o", str(output), *references, *extra])


def test_cli_writes_the_json_and_prints_the_table(sample_files, tmp_path, capsys) -> None:
    output = tmp_path / "metrics.json"
    assert _evaluate(sample_files, output) == 0
    report = json.loads(output.read_text())
    assert list(report["metrics"]) == MOSES_KEYS
    assert report["metrics"]["Valid"] == 5 / 6 and report["metrics"]["Novelty"] == 3 / 4
    assert report["input"]["molecules"] == len(GENERATED)
    assert report["references"]["Test"] == str(sample_files["test"])
    captured = capsys.readouterr()
    assert "IntDiv2" in captured.out and "0.8333" in captured.out
    assert "warning: unique@1000 computed on the 5 valid molecules only" in captured.err


def test_cli_refuses_to_replace_an_output_without_overwrite(sample_files, tmp_path, capsys) -> None:
    output = tmp_path / "metrics.json"
    output.write_text("previous")
    assert _evaluate(sample_files, output, "--unique-at", "5") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cmim evaluate-samples: error:") and "--overwrite" in err[0]
    assert output.read_text() == "previous"
    assert _evaluate(sample_files, output, "--unique-at", "5", "--overwrite") == 0
    assert "metrics" in json.loads(output.read_text())


@pytest.mark.parametrize(
    "extra, culprit",
    [
        (["--smiles-col", "SMILES"], "'SMILES'"),  # the column is "smiles"
        (["--unique-at", "0"], "--unique-at"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(sample_files, tmp_path, capsys, extra, culprit) -> None:
    output = tmp_path / "metrics.json"
    assert _evaluate(sample_files, output, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cmim evaluate-samples: error:") and culprit in err[0], err
    assert not output.exists()


def test_cli_reads_one_smiles_per_line_and_names_a_missing_file(sample_files, tmp_path, capsys) -> None:
    text = tmp_path / "samples.smi"
    text.write_text("SMILES\n" + "".join(f"{s} name{i}\n" for i, s in enumerate(["CCO", "CCN", "c1ccccc1"])))
    assert main(["evaluate-samples", str(text), "-o", str(tmp_path / "a.json"), "--unique-at", "3",
                 "--test", str(sample_files["test"]), "--test-scaffolds", str(sample_files["tsf"]),
                 "--train", str(sample_files["train"])]) == 0  # fmt: skip
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["input"]["molecules"] == 3 and report["metrics"]["Valid"] == 1.0
    capsys.readouterr()
    assert main(["evaluate-samples", str(tmp_path / "absent.csv"), "-o", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "absent.csv" in err[0]


def test_invalid_smiles_in_a_reference_file_names_the_option(sample_files, tmp_path, capsys) -> None:
    pd.DataFrame({"SMILES": ["CCO", "C1CC"]}).to_csv(sample_files["tsf"], index=False)
    assert _evaluate(sample_files, tmp_path / "metrics.json") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--test-scaffolds" in err[0] and "C1CC" in err[0], err


def _signal_dispositions(_: int) -> tuple[object, object]:
    return signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)


def test_pool_workers_leave_signals_to_the_parent() -> None:
    """A command's SIGTERM handler raises; inherited by a pool worker it could fire while the worker
    holds the task queue's lock and hang the others (seen in `cmim evaluate-samples --n-jobs 2`)."""
    previous = {
        signum: signal.signal(signum, raise_interrupted) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        dispositions = mm._parallel_map(_signal_dispositions, list(range(8)), 2)
        assert mm._parallel_map(mm.canonical_smiles, ["OCC", "C(C)O"] * 8, 2) == ["CCO"] * 16
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert set(dispositions) == {(signal.SIG_DFL, signal.SIG_IGN)}
