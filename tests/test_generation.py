"""Tests of cmim_hf.generation and the generation metrics (validity, uniqueness, novelty, Tanimoto)."""

from __future__ import annotations

import math

import evaluate
import numpy as np
import pytest
import torch
from helpers import SMILES, tiny_config
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator
from transformers import LogitsProcessorList

from cmim_hf import CMIMForConditionalGeneration, chem, generation
from cmim_hf.chem import InvalidSmilesError
from cmim_hf.evaluation.metrics.novelty.novelty import Novelty
from cmim_hf.evaluation.metrics.tanimoto_similarity.tanimoto_similarity import TanimotoSimilarity
from cmim_hf.evaluation.metrics.uniqueness.uniqueness import Uniqueness
from cmim_hf.evaluation.metrics.validity.validity import Validity
from cmim_hf.generation import (
    AggregatePosterior,
    DistinctCounter,
    SetMetrics,
    canonical_reference,
    decode_latents,
    descriptor_score,
    encode_smiles,
    fraction_novel,
    fraction_unique,
    fraction_valid,
    interpolate,
    interpolation_path,
    iter_interpolate,
    iter_sample_neighbourhood,
    iter_sample_prior,
    optimize,
    reconstruct,
    sample_neighbourhood,
    sample_prior,
    tanimoto_similarity,
)
from cmim_hf.generation.grammar import SmilesGrammarLogitsProcessor
from cmim_hf.generation.sampling import _NormalStream

MAX_NEW = 16  # decode length in these tests


@pytest.fixture(scope="module")
def model() -> CMIMForConditionalGeneration:
    """A random tiny model whose decodes vary with z (large init) and mix valid and invalid SMILES."""
    torch.manual_seed(0)
    return CMIMForConditionalGeneration(tiny_config(init_std=0.5, max_position_embeddings=32)).eval()


def rdkit_tanimoto(a: str, b: str) -> float:
    """Independent reference: RDKit's own bit-vector Tanimoto of 2048-bit Morgan radius-2 fingerprints."""
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fps = [generator.GetFingerprint(Chem.MolFromSmiles(s)) for s in (a, b)]
    return DataStructs.TanimotoSimilarity(*fps)


def assert_flags_match_rdkit(smiles: list[str], valid: list[bool]) -> None:
    assert valid == [Chem.MolFromSmiles(s) is not None and s != "" for s in smiles]


# --- reconstruction ---------------------------------------------------------------------------


def test_reconstruct_shapes_flags_and_latents(model, tokenizer) -> None:
    model.train()
    result = reconstruct(model, tokenizer, SMILES, max_new_tokens=MAX_NEW, batch_size=3)
    assert model.training, "the caller's training flag is restored"
    model.eval()
    assert len(result) == len(SMILES) and result.inputs == SMILES
    assert result.latents.shape == (len(SMILES), 1, 32) and result.latents.dtype == torch.float32
    batch = tokenizer(SMILES, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(result.latents, model.encode(**batch).z_mean, atol=1e-5)  # z = mu
    assert_flags_match_rdkit(result.smiles, result.valid)
    for s, ok, exact, inp, sim in zip(result.smiles, result.valid, result.exact, SMILES, result.similarity):
        assert exact == (ok and chem.canonicalize(s) == chem.canonicalize(inp))
        assert math.isnan(sim) if not ok else sim == pytest.approx(rdkit_tanimoto(s, inp))
    assert result.exact_match == np.mean(result.exact)
    records = result.to_records()
    assert [r["input"] for r in records] == SMILES and set(records[0]) >= {"smiles", "valid", "exact"}


def test_reconstruct_beam_search_and_single_string(model, tokenizer) -> None:
    beams = reconstruct(model, tokenizer, SMILES[:3], num_beams=3, max_new_tokens=MAX_NEW)
    assert len(beams) == 3
    assert_flags_match_rdkit(beams.smiles, beams.valid)
    single = reconstruct(model, tokenizer, "CCO", max_new_tokens=MAX_NEW)
    assert single.inputs == ["CCO"] and len(single) == 1


def test_invalid_and_too_long_inputs_raise_naming_the_molecule(model, tokenizer) -> None:
    with pytest.raises(InvalidSmilesError, match=r"row 1: 'C1CC'"):
        reconstruct(model, tokenizer, ["CCO", "C1CC"], max_new_tokens=MAX_NEW)
    with pytest.raises(InvalidSmilesError, match="C1CC"):
        sample_neighbourhood(model, tokenizer, ["C1CC"], 2)
    with pytest.raises(ValueError, match="row 0.*tokens"):
        encode_smiles(model, tokenizer, ["C" * 40])


# --- sampling ---------------------------------------------------------------------------------


def test_sample_prior_is_seeded_and_flags_match_rdkit(model, tokenizer) -> None:
    first = sample_prior(model, tokenizer, 12, seed=3, max_new_tokens=MAX_NEW, batch_size=5)
    again = sample_prior(model, tokenizer, 12, seed=3, max_new_tokens=MAX_NEW)
    other = sample_prior(model, tokenizer, 12, seed=4, max_new_tokens=MAX_NEW)
    assert first.latents.shape == (12, 1, 32)
    assert torch.equal(first.latents, again.latents) and first.smiles == again.smiles
    assert not torch.equal(first.latents, other.latents)
    assert torch.equal(first.latents, torch.randn((12, 1, 32), generator=torch.Generator().manual_seed(3)))
    assert_flags_match_rdkit(first.smiles, first.valid)
    assert first.validity == sum(first.valid) / 12
    assert first.valid_smiles == [s for s, ok in zip(first.smiles, first.valid) if ok]
    scaled = sample_prior(model, tokenizer, 12, scale=0.5, seed=3, max_new_tokens=MAX_NEW)
    assert torch.allclose(scaled.latents, 0.5 * first.latents)


def test_sample_neighbourhood_groups_by_seed(model, tokenizer) -> None:
    seeds = SMILES[:3]
    result = sample_neighbourhood(model, tokenizer, seeds, 4, radius=0.3, seed=1, max_new_tokens=MAX_NEW)
    assert len(result) == 12 and result.seed_index == [0] * 4 + [1] * 4 + [2] * 4
    mu = encode_smiles(model, tokenizer, seeds)
    noise = torch.randn((3, 4, 1, 32), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(result.latents, (mu.unsqueeze(1) + 0.3 * noise).reshape(12, 1, 32), atol=1e-6)
    assert_flags_match_rdkit(result.smiles, result.valid)
    for s, ok, i, sim in zip(result.smiles, result.valid, result.seed_index, result.similarity):
        assert math.isnan(sim) if not ok else sim == pytest.approx(rdkit_tanimoto(s, seeds[i]))
    exact = sample_neighbourhood(model, tokenizer, seeds, 2, radius=0.0, max_new_tokens=MAX_NEW)
    assert torch.equal(exact.latents, mu.repeat_interleave(2, dim=0))
    assert exact.smiles[::2] == reconstruct(model, tokenizer, seeds, max_new_tokens=MAX_NEW).smiles


# --- bounded memory: batch by batch ----------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normal_stream_matches_one_draw(dtype: torch.dtype) -> None:
    for total in (5, 16, 17, 100, 1000, 4099):
        one_draw = torch.randn(total, generator=torch.Generator().manual_seed(0), dtype=dtype)
        for piece in (1, 3, 16, 33, 250):
            stream = _NormalStream(total, torch.Generator().manual_seed(0), dtype)
            pieces = [stream.take(min(piece, total - start)) for start in range(0, total, piece)]
            assert torch.equal(torch.cat(pieces), one_draw), (total, piece)
    with pytest.raises(ValueError, match="3 left"):
        _NormalStream(3, torch.Generator(), dtype).take(4)


def test_streamed_sampling_is_the_one_call_result_for_any_batch_size(model, tokenizer) -> None:
    whole = sample_prior(model, tokenizer, 40, seed=2, max_new_tokens=MAX_NEW, batch_size=40)
    generator = torch.Generator().manual_seed(0)
    factor = torch.randn(32, 32, generator=generator, dtype=torch.float64)
    prior = AggregatePosterior(torch.randn(32, generator=generator).double(), factor @ factor.T / 32, 100)
    drawn_at_once = prior.sample(40, (1, 32), torch.Generator().manual_seed(2), 0.7)  # the old path
    noise = torch.randn((3, 5, 1, 32), generator=torch.Generator().manual_seed(1))  # the old one draw
    path = interpolate(model, tokenizer, "CCO", "c1ccccc1", steps=11, max_new_tokens=MAX_NEW)
    for batch_size in (3, 16):
        pieces = list(
            iter_sample_prior(model, tokenizer, 40, seed=2, max_new_tokens=MAX_NEW, batch_size=batch_size)
        )
        assert [len(piece) for piece in pieces[:-1]] == [batch_size] * (len(pieces) - 1)
        assert torch.equal(torch.cat([piece.latents for piece in pieces]), whole.latents)
        assert [s for piece in pieces for s in piece.smiles] == whole.smiles
        pieces = iter_sample_prior(model, tokenizer, 40, 0.7, 2, 1, MAX_NEW, batch_size, prior=prior)
        assert torch.allclose(torch.cat([piece.latents for piece in pieces]), drawn_at_once, atol=1e-6)
        pieces = list(
            iter_sample_neighbourhood(model, tokenizer, SMILES[:3], 5, 0.3, 1, 1, MAX_NEW, batch_size)
        )
        mu = encode_smiles(model, tokenizer, SMILES[:3], batch_size)  # as the stream encodes them
        expected = (mu.unsqueeze(1) + 0.3 * noise).reshape(15, 1, 32)
        assert torch.equal(torch.cat([piece.latents for piece in pieces]), expected)
        assert [i for piece in pieces for i in piece.seed_index] == [0] * 5 + [1] * 5 + [2] * 5
        pieces = list(
            iter_interpolate(
                model, tokenizer, "CCO", "c1ccccc1", 11, max_new_tokens=MAX_NEW, batch_size=batch_size
            )
        )
        assert [t for piece in pieces for t in piece.t] == path.t
        assert [s for piece in pieces for s in piece.smiles] == path.smiles


def test_streaming_holds_one_batch_of_codes_whatever_n(model, tokenizer, monkeypatch) -> None:
    """Issue 23, defect 5: `cmim sample -n 3000000` drew every code at once (4 GB before one
    molecule was written). Now no draw and no decode is larger than one batch."""
    drawn, decoded = [], []
    real_randn = torch.randn

    def recording_randn(*args, **kwargs):
        values = real_randn(*args, **kwargs)
        drawn.append(values.numel())
        return values

    def counting_decode(model, tokenizer, z, *options):
        decoded.append(len(z))
        return ["C"] * len(z)

    monkeypatch.setattr(torch, "randn", recording_randn)
    monkeypatch.setattr(generation.sampling, "decode_latents", counting_decode)
    for batch in iter_sample_prior(model, tokenizer, 20_000, seed=0, batch_size=50):
        assert len(batch) == 50
    assert sum(decoded) == 20_000 and max(decoded) == 50 and max(drawn) <= 50 * 32 + 31
    drawn.clear(), decoded.clear()
    for _ in iter_sample_neighbourhood(model, tokenizer, SMILES[:2], 10_000, batch_size=50):
        pass
    assert sum(decoded) == 20_000 and max(decoded) == 50 and max(drawn) <= 50 * 32 + 31
    decoded.clear()
    for batch in iter_interpolate(model, tokenizer, "CCO", "CCN", steps=20_000, batch_size=50):
        assert len(batch.t) == 50
    assert sum(decoded) == 20_000 and max(decoded) == 50


# --- interpolation ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolation_end_points_are_the_inputs_latents(model, tokenizer, method) -> None:
    a, b = "CC(=O)Oc1ccccc1C(=O)O", "c1ccccc1"
    result = interpolate(model, tokenizer, a, b, steps=5, method=method, max_new_tokens=MAX_NEW)
    mu = encode_smiles(model, tokenizer, [a, b])
    assert result.latents.shape == (5, 1, 32) and result.t == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert torch.allclose(result.latents[0], mu[0], atol=1e-5)
    assert torch.allclose(result.latents[-1], mu[1], atol=1e-5)
    assert_flags_match_rdkit(result.smiles, result.valid)
    ends = reconstruct(model, tokenizer, [a, b], max_new_tokens=MAX_NEW).smiles
    assert [result.smiles[0], result.smiles[-1]] == ends


def test_interpolation_path_geometry() -> None:
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    t = torch.tensor([0.0, 0.5, 1.0])
    linear = interpolation_path(a, b, t, "linear")
    assert torch.allclose(linear[1], torch.tensor([[0.5, 1.0]]))
    slerp = interpolation_path(a, b, t, "slerp")  # 90 degrees apart: midpoint at 45 degrees
    expected = (math.sin(math.pi / 4) / math.sin(math.pi / 2)) * (a + b)
    assert torch.allclose(slerp[1], expected, atol=1e-6)
    assert torch.allclose(interpolation_path(a, 3 * a, t, "slerp"), interpolation_path(a, 3 * a, t, "linear"))
    with pytest.raises(ValueError, match="method"):
        interpolation_path(a, b, t, "cubic")


def test_interpolate_rejects_bad_arguments(model, tokenizer) -> None:
    with pytest.raises(ValueError, match="steps"):
        interpolate(model, tokenizer, "CCO", "CCN", steps=1)
    with pytest.raises(InvalidSmilesError, match="C1CC"):
        interpolate(model, tokenizer, "CCO", "C1CC")


# --- optimisation -----------------------------------------------------------------------------


def test_optimize_improves_score_with_correct_similarities(model, tokenizer) -> None:
    seeds = ["CCO", "c1ccccc1"]
    score = descriptor_score("HeavyAtomCount")
    results = optimize(
        model, tokenizer, seeds, score, iterations=3, population_size=6, seed=0, max_new_tokens=MAX_NEW
    )
    assert [r.seed for r in results] == seeds
    assert [r.seed_score for r in results] == [3.0, 6.0]
    for result in results:
        assert result.n_evaluated == 18 and len(result.history) == 3
        assert 0 <= result.n_penalized <= result.n_evaluated
        objectives = [m.objective for m in result.molecules]
        assert objectives == sorted(objectives, reverse=True)
        assert len({m.smiles for m in result.molecules}) == len(result.molecules)
        for m in result.molecules:
            assert m.smiles == chem.canonicalize(m.smiles)
            assert m.score == score(m.smiles) and m.objective == m.score  # similarity_weight 0
            assert m.similarity == pytest.approx(rdkit_tanimoto(m.smiles, chem.canonicalize(result.seed)))
        assert result.improved == [m for m in result.molecules if m.score > result.seed_score]
        if result.molecules:
            assert max(result.history) == result.best.objective
    # molecules decoded from a random model are long chains: the heavy-atom count goes up
    assert any(r.best is not None and r.best.score > r.seed_score for r in results)
    for result in results:
        records = result.to_records(top_k=2)
        assert len(records) == min(2, len(result.molecules))
        for rank, (record, m) in enumerate(zip(records, result.molecules), start=1):
            assert record["rank"] == rank and record["smiles"] == m.smiles and record["seed"] == result.seed
            assert record["improvement"] == m.score - result.seed_score
    again = optimize(
        model, tokenizer, seeds, score, iterations=3, population_size=6, seed=0, max_new_tokens=MAX_NEW
    )
    assert [r.molecules for r in again] == [r.molecules for r in results] and [r.history for r in again] == [
        r.history for r in results
    ]


def test_optimize_keeping_the_best_few_finds_the_same_best(model, tokenizer) -> None:
    score = descriptor_score("HeavyAtomCount")
    options = {"iterations": 3, "population_size": 6, "seed": 0, "max_new_tokens": MAX_NEW}
    every = optimize(model, tokenizer, ["CCO", "c1ccccc1"], score, **options)
    best_two = optimize(model, tokenizer, ["CCO", "c1ccccc1"], score, top_k=2, **options)
    for full, few in zip(every, best_two):
        assert few.molecules == full.molecules[:2] and few.history == full.history
        assert (few.n_evaluated, few.n_penalized) == (full.n_evaluated, full.n_penalized)
        assert few.any_improved == bool(full.improved)
    with pytest.raises(ValueError, match="top_k"):
        optimize(model, tokenizer, "CCO", score, top_k=0, **options)


def test_optimize_penalizes_failing_scores_instead_of_crashing(model, tokenizer) -> None:
    def fragile(smiles: str) -> float:
        if smiles != "CCO":
            raise RuntimeError("cannot score")
        return 1.0

    state = np.random.get_state()
    (result,) = optimize(
        model, tokenizer, ["CCO"], fragile, iterations=2, population_size=4, max_new_tokens=MAX_NEW
    )
    assert np.array_equal(np.random.get_state()[1], state[1]), "numpy's global RNG is left alone"
    assert result.seed_score == 1.0
    # the random model never decodes ethanol: every decode is penalized, none is reported
    assert result.molecules == [] and result.best is None
    assert result.n_penalized == result.n_evaluated == 8 and result.history == [-1000.0, -1000.0]
    with pytest.raises(InvalidSmilesError, match="C1CC"):
        optimize(model, tokenizer, ["C1CC"], fragile, iterations=1)
    with pytest.raises(ValueError, match="unknown RDKit descriptor"):
        descriptor_score("not_a_descriptor")


# --- grammar-constrained decoding -------------------------------------------------------------


def test_every_decoding_function_takes_grammar_constrained(model, tokenizer, monkeypatch) -> None:
    """Off by default; ``grammar_constrained=True`` hands the grammar processor to every generate call."""
    seen = []
    original = model.decode_latents

    def spy(z, **kwargs):
        seen.append(kwargs["logits_processor"])
        return original(z, **kwargs)

    monkeypatch.setattr(model, "decode_latents", spy)
    qed = descriptor_score("qed")
    calls = {
        "reconstruct": lambda **kw: reconstruct(model, tokenizer, SMILES[:2], max_new_tokens=MAX_NEW, **kw),
        "sample_prior": lambda **kw: sample_prior(model, tokenizer, 3, max_new_tokens=MAX_NEW, **kw),
        "sample_neighbourhood": lambda **kw: sample_neighbourhood(
            model, tokenizer, "CCO", 2, max_new_tokens=MAX_NEW, **kw
        ),
        "interpolate": lambda **kw: interpolate(
            model, tokenizer, "CCO", "CCN", 3, max_new_tokens=MAX_NEW, **kw
        ),
        "optimize": lambda **kw: optimize(
            model, tokenizer, "CCO", qed, iterations=1, population_size=3, max_new_tokens=MAX_NEW, **kw
        ),
    }
    for name, call in calls.items():
        seen.clear()
        call()
        assert seen and all(processors is None for processors in seen), name
        seen.clear()
        call(grammar_constrained=True)
        assert seen, name
        for processors in seen:
            assert [type(p) for p in processors] == [SmilesGrammarLogitsProcessor], name


@pytest.mark.parametrize("num_beams", [1, 3])
def test_constrained_decode_is_generate_with_the_processor(model, tokenizer, num_beams: int) -> None:
    z = torch.randn(6, 1, 32, generator=torch.Generator().manual_seed(0))
    decoded = decode_latents(model, tokenizer, z, num_beams, MAX_NEW, batch_size=4, grammar_constrained=True)
    processors = LogitsProcessorList([SmilesGrammarLogitsProcessor(tokenizer)])
    with torch.no_grad():
        ids = model.decode_latents(
            z, num_beams=num_beams, do_sample=False, max_new_tokens=MAX_NEW, logits_processor=processors
        )
    assert decoded == tokenizer.batch_decode(ids, skip_special_tokens=True)
    grammar = SmilesGrammarLogitsProcessor(tokenizer)
    for row, smiles in zip(ids.tolist(), decoded):
        tokens = [t for t in row[1:] if t not in (tokenizer.pad_token_id, tokenizer.eos_token_id)]
        assert grammar.parse(tokens) is not None  # no rule broken (a decode cut off is a legal prefix)
        if tokenizer.eos_token_id in row:
            assert Chem.MolFromSmiles(smiles, sanitize=False) is not None  # complete: RDKit parses it


# --- metrics ----------------------------------------------------------------------------------

GENERATED = ["CCO", "OCC", "C1CC", "", "c1ccccc1", "CCN", "C(C)O"]
REFERENCE = ["CCO", "c1ccccc1", "CCCC"]


def test_set_metrics_by_hand() -> None:
    # valid: CCO, OCC, c1ccccc1, CCN, C(C)O -> 5 of 7; distinct canonical: CCO, c1ccccc1, CCN -> 3 of 5
    assert fraction_valid(GENERATED) == pytest.approx(5 / 7)
    assert fraction_unique(GENERATED) == pytest.approx(3 / 5)
    assert fraction_novel(GENERATED, REFERENCE) == pytest.approx(1 / 3)  # only CCN is new
    known = canonical_reference(["OCC", "c1ccccc1", "CCCC"])  # written differently, canonicalised once
    assert known == {"CCO", "c1ccccc1", "CCCC"}
    assert fraction_novel(GENERATED, known) == pytest.approx(1 / 3)
    assert (
        fraction_valid([]) == 0.0 and fraction_unique(["C1CC"]) == 0.0 and fraction_novel([""], ["C"]) == 0.0
    )
    for reference_check in (lambda r: fraction_novel(GENERATED, r), canonical_reference):
        with pytest.raises(InvalidSmilesError, match="row 1"):
            reference_check(["CCO", "C1CC"])


def test_set_metrics_of_a_stream_are_the_one_call_metrics(monkeypatch) -> None:
    monkeypatch.setattr(DistinctCounter, "_MERGE_AT", 2)  # merge often: the sorted-merge path runs
    metrics = SetMetrics(canonical_reference(REFERENCE))
    for start in range(0, len(GENERATED), 3):
        metrics.update(GENERATED[start : start + 3])
    assert metrics.molecules == 7 and metrics.valid == 5
    assert metrics.validity == pytest.approx(fraction_valid(GENERATED))
    assert metrics.uniqueness == pytest.approx(fraction_unique(GENERATED))
    assert metrics.novelty == pytest.approx(fraction_novel(GENERATED, REFERENCE))
    counter = DistinctCounter()
    for start in range(0, 5000, 700):
        counter.add(str(i % 1234) for i in range(start, min(start + 700, 5000)))
    assert len(counter) == 1234
    empty = SetMetrics()
    assert empty.validity == 0.0 and empty.uniqueness == 0.0
    with pytest.raises(ValueError, match="reference"):
        _ = empty.novelty


def test_tanimoto_by_hand() -> None:
    similarity = tanimoto_similarity(["OCC", "CCN", "C1CC", "c1ccccc1"], ["CCO", "CCO", "CCO", "CCO"])
    assert similarity[0] == 1.0 and math.isnan(similarity[2])
    assert similarity[1] == pytest.approx(rdkit_tanimoto("CCN", "CCO"))
    assert similarity[3] == 0.0  # benzene and ethanol share no ECFP4 bit
    with pytest.raises(ValueError, match="references"):
        tanimoto_similarity(["CCO"], [])


def test_evaluate_metric_modules() -> None:
    assert Validity(keep_in_memory=True).compute(predictions=GENERATED) == {"validity": pytest.approx(5 / 7)}
    assert Uniqueness(keep_in_memory=True).compute(predictions=GENERATED) == {
        "uniqueness": pytest.approx(3 / 5)
    }
    novelty = Novelty(keep_in_memory=True).compute(predictions=GENERATED, reference_smiles=REFERENCE)
    assert novelty == {"novelty": pytest.approx(1 / 3)}
    predictions, references = ["OCC", "C1CC", "CCN"], ["CCO", "CCO", "CCO"]
    expected_valid = (1.0 + rdkit_tanimoto("CCN", "CCO")) / 2
    expected_all = (1.0 + 0.0 + rdkit_tanimoto("CCN", "CCO")) / 3
    assert TanimotoSimilarity(keep_in_memory=True).compute(
        predictions=predictions, references=references
    ) == {
        "tanimoto_similarity": pytest.approx(expected_all),
        "tanimoto_similarity_valid": pytest.approx(expected_valid),
    }
    with pytest.raises(InvalidSmilesError):
        TanimotoSimilarity(keep_in_memory=True).compute(predictions=["CCO"], references=["C1CC"])
    with pytest.raises(ValueError, match="reference_smiles"):
        Novelty(keep_in_memory=True).compute(predictions=["CCO"])


@pytest.mark.parametrize("name", ["validity", "uniqueness", "novelty", "tanimoto_similarity"])
def test_metrics_load_offline_from_their_folder(name) -> None:
    from cmim_hf.evaluation.metrics import METRICS_DIR

    metric = evaluate.load(str(METRICS_DIR / name))
    kwargs = {"predictions": ["CCO", "CCN"]}
    if name == "novelty":
        kwargs["reference_smiles"] = ["CCO"]
    if name == "tanimoto_similarity":
        kwargs["references"] = ["CCO", "CCO"]
    assert set(metric.compute(**kwargs)) >= {name}


@pytest.mark.parametrize(("positions", "expected"), [(32, 31), (1024, 256)])
def test_default_decode_length_is_capped(tokenizer, monkeypatch, positions: int, expected: int) -> None:
    """A code that never decodes <eos> stops at 256 tokens, not at the end of a long position table."""
    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(tiny_config(max_position_embeddings=positions)).eval()
    seen = []
    original = model.decode_latents

    def spy(z, **kwargs):
        seen.append(kwargs["max_new_tokens"])
        return original(z, **{**kwargs, "max_new_tokens": 2})

    monkeypatch.setattr(model, "decode_latents", spy)
    sample_prior(model, tokenizer, 3, seed=0)
    assert seen == [expected]
    sample_prior(model, tokenizer, 3, seed=0, max_new_tokens=7)
    assert seen[-1] == 7
    sample_prior(model, tokenizer, 3, seed=0, max_new_tokens=10_000)  # never past the position table
    assert seen[-1] == positions - 1


# --- steps from a code default to the checkpoint's posterior width --------------------------------


def test_exploration_radius_is_two_posterior_floor_stds() -> None:
    assert tiny_config(logvar_min=-6.0).posterior_floor_std == pytest.approx(0.049787, abs=1e-6)
    wide = tiny_config(logvar_min=2 * math.log(0.3))
    assert wide.posterior_floor_std == pytest.approx(0.3) and wide.exploration_radius == pytest.approx(0.6)


def test_neighbourhood_and_optimisation_default_to_the_exploration_radius(
    model, tokenizer, monkeypatch
) -> None:
    monkeypatch.setattr(model.config, "logvar_min", 2 * math.log(0.3))  # mu does not depend on it
    default = sample_neighbourhood(model, tokenizer, SMILES[:2], 3, seed=4, max_new_tokens=MAX_NEW)
    mu = encode_smiles(model, tokenizer, SMILES[:2])
    noise = torch.randn((2, 3, 1, 32), generator=torch.Generator().manual_seed(4))
    assert torch.allclose(default.latents, (mu.unsqueeze(1) + 0.6 * noise).reshape(6, 1, 32), atol=1e-6)
    score = descriptor_score("HeavyAtomCount")
    options = {"iterations": 2, "population_size": 4, "seed": 0, "max_new_tokens": MAX_NEW}
    by_default = optimize(model, tokenizer, ["CCO"], score, **options)[0]
    explicit = optimize(model, tokenizer, ["CCO"], score, sigma=0.6, **options)[0]
    assert by_default.history == explicit.history and by_default.molecules == explicit.molecules
