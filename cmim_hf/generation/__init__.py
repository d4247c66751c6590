"""Generation with a cMIM model: reconstruct, sample, explore, interpolate and optimise molecules.

Every function takes a :class:`~cmim_hf.CMIMForConditionalGeneration` (or any model with the
same ``encode`` / ``decode_latents`` / ``config.num_latents`` / ``config.latent_size`` interface)
and its tokenizer, runs in batches on the model's device with the model in eval mode (its
training flag is restored afterwards), and returns a dataclass with the decoded SMILES and one
RDKit validity flag per molecule. Latent codes are (N, K, L) float32 CPU tensors.

The package: :mod:`~cmim_hf.generation.sampling` (encode, decode, reconstruct, priors, sample,
interpolate), :mod:`~cmim_hf.generation.optimization` (CMA-ES search), :mod:`~cmim_hf.generation.results`
(the dataclasses returned), :mod:`~cmim_hf.generation.metrics` (set metrics) and
:mod:`~cmim_hf.generation.grammar` (grammar-constrained decoding). Loading a checkpoint is
:mod:`cmim_hf.checkpoints`.

Decoding is greedy (``num_beams=1``) or beam search: given the latent codes the output is
deterministic, and the random latent codes of :func:`sample_prior` and
:func:`sample_neighbourhood` come from a private ``torch.Generator`` seeded with ``seed``.
``grammar_constrained=True`` (every decoding function) masks, at each step, the tokens that would
make the SMILES syntactically impossible (:class:`cmim_hf.generation.grammar.SmilesGrammarLogitsProcessor`:
unbalanced parentheses, unclosed rings, misplaced bonds ...); valences and aromaticity stay unchecked.
Input molecules are encoded with z = mu (the posterior mean). Invalid input SMILES raise
:class:`cmim_hf.chem.InvalidSmilesError` naming the molecule and its position.

:func:`optimize` searches the latent space around each seed molecule with CMA-ES (the ``cma``
package) for molecules with a higher score; decodes RDKit rejects (or that the scoring function
cannot score) get a penalty instead of stopping the search.

The set metrics (:func:`fraction_valid`, :func:`fraction_unique`, :func:`fraction_novel`) and
:func:`tanimoto_similarity` are the pure functions behind the local ``evaluate`` metrics
``validity``, ``uniqueness``, ``novelty`` and ``tanimoto_similarity``.

Bounded memory: :func:`iter_sample_prior`, :func:`iter_sample_neighbourhood`,
:func:`iter_interpolate` and :func:`iter_optimize` yield their results one batch (one seed for
the search) at a time, so memory does not grow with the number of molecules asked for;
:class:`SetMetrics` computes validity, uniqueness and novelty of such a stream keeping 8 bytes
per distinct molecule. Their random codes are the ones the one-call functions draw: torch's CPU
generator gives the same normal values whether they are drawn at once or in pieces of multiples
of 16 values (the last piece whole), which is how they are drawn here, whatever the batch size.
"""

from cmim_hf.checkpoints import (  # the old home of these names, kept for 0.2 (see CHANGELOG)
    CheckpointError,
    check_checkpoint_folder,
    check_tokenizer_matches,
    load_model_for_generation,
)
from cmim_hf.generation.grammar import SmilesGrammarLogitsProcessor
from cmim_hf.generation.metrics import (
    DistinctCounter,
    SetMetrics,
    canonical_reference,
    fraction_novel,
    fraction_unique,
    fraction_valid,
    tanimoto_similarity,
)
from cmim_hf.generation.optimization import descriptor_score, iter_optimize, optimize
from cmim_hf.generation.results import (
    GenerationResult,
    InterpolationResult,
    NeighbourhoodResult,
    OptimizationResult,
    OptimizedMolecule,
    ReconstructionResult,
)
from cmim_hf.generation.sampling import (
    AGGREGATE_POSTERIOR_FILE,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_NEW_TOKENS,
    INTERPOLATION_METHODS,
    AggregatePosterior,
    decode_latents,
    encode_posterior,
    encode_smiles,
    fit_aggregate_posterior,
    interpolate,
    interpolation_path,
    iter_interpolate,
    iter_sample_neighbourhood,
    iter_sample_prior,
    reconstruct,
    sample_neighbourhood,
    sample_prior,
)

__all__ = [
    "AGGREGATE_POSTERIOR_FILE",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_NEW_TOKENS",
    "INTERPOLATION_METHODS",
    "AggregatePosterior",
    "CheckpointError",
    "DistinctCounter",
    "GenerationResult",
    "InterpolationResult",
    "NeighbourhoodResult",
    "OptimizationResult",
    "OptimizedMolecule",
    "ReconstructionResult",
    "SetMetrics",
    "SmilesGrammarLogitsProcessor",
    "canonical_reference",
    "check_checkpoint_folder",
    "check_tokenizer_matches",
    "decode_latents",
    "descriptor_score",
    "encode_posterior",
    "encode_smiles",
    "fit_aggregate_posterior",
    "fraction_novel",
    "fraction_unique",
    "fraction_valid",
    "interpolate",
    "interpolation_path",
    "iter_interpolate",
    "iter_optimize",
    "iter_sample_neighbourhood",
    "iter_sample_prior",
    "load_model_for_generation",
    "optimize",
    "reconstruct",
    "sample_neighbourhood",
    "sample_prior",
    "tanimoto_similarity",
]
